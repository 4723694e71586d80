"""Reading Cassandra pods: selectors from workloads, liveness, identity."""

from __future__ import annotations

from cdc_operator.cassandra import describe, is_live, selector_query, workload_selector


def test_statefulset_selector() -> None:
    labels = {"app": "cassandra", "tier": "db"}
    body = {"metadata": {"name": "cassandra"}, "spec": {"selector": {"matchLabels": labels}}}
    selector = workload_selector("StatefulSet", body)
    assert selector == {"app": "cassandra", "tier": "db"}
    assert selector_query(selector) == "app=cassandra,tier=db"


def test_cass_operator_datacenter_selector() -> None:
    assert workload_selector("CassandraDatacenter", {"metadata": {"name": "dc1"}}) == {
        "cassandra.datastax.com/datacenter": "dc1"
    }


def test_terminating_and_finished_pods_are_not_live() -> None:
    assert is_live({"metadata": {}, "status": {"phase": "Pending"}})
    assert not is_live({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
    assert not is_live({"metadata": {}, "status": {"phase": "Failed"}})


def test_root_cassandra_falls_back_to_uid_999() -> None:
    pod = describe(
        {"metadata": {"name": "c-0", "labels": {"app": "c"}}, "spec": {"securityContext": {"runAsUser": 0}}},
        {"app": "c"},
        "server-data",
    )
    assert pod.run_as_user == 999 and pod.data_claim is None


def test_pod_without_statefulset_label_uses_its_stable_labels() -> None:
    body = {"metadata": {"name": "c-0", "labels": {"app": "c", "node": "n1", "pod-template-hash": "abc"}}, "spec": {}}
    assert dict(describe(body, {"app": "c"}, "server-data").affinity_labels) == {"app": "c", "node": "n1"}


def test_address_is_the_stable_dns_name_else_the_ip() -> None:
    def address(spec: dict[str, str], status: dict[str, str]) -> str | None:
        body = {"metadata": {"name": "c-0", "namespace": "data", "labels": {}}, "spec": spec, "status": status}
        return describe(body, {}, "server-data").address

    stateful = {"hostname": "c-0", "subdomain": "cassandra"}
    assert address(stateful, {"podIP": "10.0.0.9"}) == "c-0.cassandra.data.svc"
    assert address({"hostname": "c-0"}, {"podIP": "10.0.0.9"}) == "10.0.0.9"  # no governing service: no DNS name
    assert address({}, {}) is None  # not scheduled yet
