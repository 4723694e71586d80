"""Headrace on a real cluster, as a user runs it: helm install, a Cassandra StatefulSet, kubectl apply.

One scenario in steps (the tests run in file order and share the cluster):
rows written through the Cassandra Service arrive in PostgreSQL and
ClickHouse equal to Cassandra's ``SELECT *`` after the pipeline's masking
(devservices/sinkview.py, the oracle of the pipeline tests), including rows
that were there before the pipeline (the snapshot); ``kubectl get cdcp``
shows what the runtimes report through their own ServiceAccount; then the
faults: a runtime pod deleted mid-workload, a Cassandra pod deleted, pause
and resume, the restart annotation, a runtime killed part-way through a
re-snapshot (it resumes from its last page), the StatefulSet scaled to 3 and back,
``helm upgrade`` of the operator mid-stream, and deleting the pipeline. The
Argo CD health check (argocd/) is evaluated on the live status at each step,
and PostgreSQL goes down for a while (Degraded, nothing lost).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.clusters import REPO, Cluster, any_cluster, missing

#: In CI nothing this suite needs may be missing: the fixture fails instead of skipping.
IN_CI = bool(os.environ.get("CI"))
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(missing() is not None and not IN_CI, reason=str(missing()))]

HERE = Path(__file__).resolve().parent
NAMESPACE = "default"
PIPELINE = "shop"
HEALTH_LUA = REPO / "argocd" / "headrace.io" / "CDCPipeline" / "health.lua"
SCHEMA = [
    "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}",
    "CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, customer text, email text, amount decimal, "
    "tags set<text>, placed timestamp) WITH cdc = true",
]
#: Rows in the table before the pipeline exists: the snapshot brings them.
PRELOADED = 300


def wait_for(check: Callable[[], Any], what: str, timeout: float = 300.0, interval: float = 2.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a cluster in motion answers with errors: retried until the deadline
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last answer: {last!r}")


@dataclass
class Workload:
    """Inserts, partial updates and deletes through the Cassandra Service, in a thread."""

    session: Any
    first_id: int
    count: int
    writes: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def run(self) -> None:
        rng = random.Random(self.first_id)
        try:
            insert = self.session.prepare(
                "INSERT INTO shop.orders (id, customer, email, amount, tags, placed) VALUES (?, ?, ?, ?, ?, ?)"
            )
            update = self.session.prepare("UPDATE shop.orders SET amount = ?, tags = tags + ? WHERE id = ?")
            delete = self.session.prepare("DELETE FROM shop.orders WHERE id = ?")
            for offset in range(self.count):
                key = self.first_id + offset
                self.session.execute(
                    insert,
                    (key, f"c{key % 17}", f"user{key}@example.com", Decimal(key) / 100, {"new"}, 1_700_000_000_000),
                )
                if offset % 3 == 0:
                    target = rng.randrange(0, key + 1)
                    self.session.execute(update, (Decimal(rng.randrange(10_000)) / 100, {f"t{offset % 5}"}, target))
                if offset % 11 == 0:
                    self.session.execute(delete, (rng.randrange(0, key + 1),))
                self.writes += 1
                time.sleep(0.005)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self) -> Workload:
        self.thread = threading.Thread(target=self.run, name="workload", daemon=True)
        self.thread.start()
        return self

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=600)
        if self.error is not None:
            raise self.error
        assert self.writes == self.count


@dataclass
class World:
    cluster: Cluster
    session: Any
    secrets_dir: Path
    next_id: int = PRELOADED

    def workload(self, count: int) -> Workload:
        workload = Workload(self.session, self.next_id, count)
        self.next_id += count
        return workload

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None, stderr: bool = False) -> str:
        return self.cluster.kubectl(*args, check=check, stdin=stdin, stderr=stderr)

    def pipeline(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", "cdcpipeline", PIPELINE, "-o", "json"))
        return result

    def runtime_pods(self) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-l", f"headrace.io/pipeline={PIPELINE}", "-o", "json")
        return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]

    def running_runtimes(self) -> dict[str, dict[str, Any]]:
        """Ready runtime pods by the Cassandra pod they serve."""
        ready = {}
        for pod in self.runtime_pods():
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True":
                ready[pod["metadata"]["labels"]["headrace.io/cassandra-pod"]] = pod
        return ready

    def sinks_equal(self) -> bool:
        """Both sinks equal Cassandra after the pipeline's masking (the pipeline tests' oracle)."""
        import clickhouse_connect  # noqa: PLC0415

        from devservices.sinkview import compare_pipeline  # noqa: PLC0415 - imports the runtime
        from pipeline_runtime.config.loader import load_pipeline  # noqa: PLC0415
        from pipeline_runtime.secrets import SecretStore  # noqa: PLC0415

        spec = load_pipeline(HERE / "manifests" / "pipeline.yaml").spec
        client = clickhouse_connect.get_client(dsn=self.cluster.clickhouse.dsn)
        try:
            results, lines = asyncio.run(compare_pipeline(spec, SecretStore(self.secrets_dir), self.session, client))
        finally:
            client.close()
        if not all(r.equal for r in results):
            raise AssertionError("\n".join(lines[:10]))
        return bool(results) and all(r.expected > 0 for r in results)

    def wait_equal(self, timeout: float = 300.0) -> None:
        wait_for(self.sinks_equal, "PostgreSQL and ClickHouse to equal Cassandra", timeout=timeout, interval=3.0)

    def health(self) -> str:
        lupa = pytest.importorskip("lupa", reason="lupa runs the Argo CD health check (make dev installs it)")
        runtime = lupa.LuaRuntime(unpack_returned_tuples=True)

        def to_lua(value: Any) -> Any:
            if isinstance(value, dict):
                return runtime.table_from({k: to_lua(v) for k, v in value.items()})
            if isinstance(value, list):
                return runtime.table_from([to_lua(v) for v in value])
            return value

        runtime.globals().obj = to_lua(self.pipeline())
        return str(runtime.execute(HEALTH_LUA.read_text())["status"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if missing() is not None:
        pytest.fail(f"CI must run the end-to-end suite, but {missing()}")
    workdir = tmp_path_factory.mktemp("e2e")
    with any_cluster(workdir) as cluster:
        cluster.kubectl("apply", "-f", str(HERE / "manifests" / "cassandra.yaml"))
        repository, tag = cluster.image("headrace")
        cluster.helm(
            "install", "headrace", str(REPO / "charts" / "headrace"),
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "operator.reconcileIntervalSeconds=5", "--wait", "--timeout", "300s",
        )  # fmt: skip
        cluster.kubectl("rollout", "status", "statefulset/cassandra", "--timeout=600s", timeout=660)
        session = wait_for(cluster.cql_session, "CQL through the Service")
        for statement in SCHEMA:
            session.execute(statement, timeout=60)
        # Both nodes must know the table before statements go to either (a node that just joined may lag).
        agreed = session.cluster.control_connection.wait_for_schema_agreement
        wait_for(lambda: agreed(wait_time=10), "schema agreement between the Cassandra pods")
        insert = wait_for(
            lambda: session.prepare("INSERT INTO shop.orders (id, customer, email, amount) VALUES (?, ?, ?, ?)"),
            "the table on every Cassandra pod",
        )
        for key in range(PRELOADED):
            session.execute(insert, (key, f"c{key % 17}", f"early{key}@example.com", Decimal(key)))
        secrets_dir = workdir / "secrets"
        values = {
            "postgres-dsn": cluster.postgres.dsn(),
            "clickhouse-dsn": cluster.clickhouse.dsn,
            "hmac-key": uuid.uuid4().hex,
        }
        (secrets_dir / "shop-sinks").mkdir(parents=True)
        for name, value in values.items():
            (secrets_dir / "shop-sinks" / name).write_text(value)
        cluster.kubectl(
            "create", "secret", "generic", "shop-sinks", *(f"--from-literal={k}={v}" for k, v in values.items())
        )
        cluster.kubectl("apply", "-f", str(HERE / "manifests" / "pipeline.yaml"))
        try:
            yield World(cluster=cluster, session=session, secrets_dir=secrets_dir)
        finally:
            session.cluster.shutdown()


def test_preloaded_and_live_rows_arrive_in_both_sinks(world: World) -> None:
    seen: list[str] = []

    def started() -> bool:
        seen.append(world.health())
        return len(world.running_runtimes()) == 2

    wait_for(started, "a runtime pod per Cassandra pod", timeout=300, interval=1.0)
    assert "Progressing" in seen, seen  # Argo CD waits while the runtimes start
    workload = world.workload(400).start()
    workload.join()
    world.wait_equal()
    count = world.session.execute("SELECT count(*) FROM shop.orders").one()[0]
    assert count > PRELOADED


def test_runtime_pods_sit_beside_their_cassandra_pods(world: World) -> None:
    cassandra = {
        p["metadata"]["name"]: p
        for p in json.loads(world.kubectl("get", "pods", "-l", "app=cassandra", "-o", "json"))["items"]
    }
    runtimes = world.running_runtimes()
    assert set(runtimes) == set(cassandra)
    for name, pod in runtimes.items():
        assert pod["spec"]["nodeName"] == cassandra[name]["spec"]["nodeName"]
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v
        ]
        assert f"server-data-{name}" in claims
        uid = pod["spec"]["securityContext"].get("runAsUser") or pod["spec"]["containers"][0]["securityContext"].get(
            "runAsUser"
        )
        assert uid == 999  # the Cassandra image's uid: reads and deletes cdc_raw files


def test_kubectl_get_shows_what_the_runtimes_report(world: World) -> None:
    def running() -> dict[str, Any] | None:
        pipeline = world.pipeline()
        status = pipeline.get("status", {})
        nodes = status.get("nodes", {})
        reported = all(n.get("position") and n.get("lastReportTime") for n in nodes.values())
        if status.get("phase") == "Running" and status.get("readyNodes") == "2/2" and len(nodes) == 2 and reported:
            return pipeline
        return None

    pipeline = wait_for(running, "phase Running, 2/2 ready, a position per node")
    table = world.kubectl("get", "cdcp", PIPELINE)
    assert "Running" in table and "2/2" in table
    assert pipeline["status"]["maxLagSeconds"] is not None
    assert pipeline["status"]["snapshot"] == "done"  # the rows loaded before the pipeline, read by the pods
    assert world.health() == "Healthy"


def test_sink_outage_turns_degraded_and_loses_nothing(world: World) -> None:
    world.cluster.postgres.stop()
    try:
        world.workload(200).start().join()
        wait_for(lambda: world.health() == "Degraded", "Argo CD health Degraded while PostgreSQL is down")
        conditions = {c["type"]: c for c in world.pipeline()["status"]["conditions"]}
        assert "pg" in conditions["Degraded"]["message"], conditions["Degraded"]
    finally:
        world.cluster.postgres.restart()
    world.wait_equal()
    wait_for(lambda: world.health() == "Healthy", "Argo CD health Healthy once PostgreSQL is back")


def test_runtime_pod_deleted_mid_workload(world: World) -> None:
    workload = world.workload(600).start()
    victim = next(iter(world.running_runtimes().values()))
    world.kubectl("delete", "pod", victim["metadata"]["name"], "--wait=false")
    wait_for(
        lambda: (
            len(world.running_runtimes()) == 2
            and victim["metadata"]["uid"] not in {p["metadata"]["uid"] for p in world.running_runtimes().values()}
        ),
        "the Deployment to replace the runtime pod",
    )
    workload.join()
    world.wait_equal()


def test_cassandra_pod_deleted_and_its_runtime_follows(world: World) -> None:
    before = world.running_runtimes()["cassandra-1"]["metadata"]["uid"]
    world.kubectl("delete", "pod", "cassandra-1")
    world.cluster.kubectl("rollout", "status", "statefulset/cassandra", "--timeout=600s", timeout=660)
    wait_for(lambda: "cassandra-1" in world.running_runtimes(), "the runtime of cassandra-1 to run again")
    # The test's own CQL session reconnects with backoff after the pod it reached through the Service went away.
    wait_for(lambda: world.session.execute("SELECT release_version FROM system.local").one(), "CQL answering again")
    workload = world.workload(300).start()
    workload.join()
    world.wait_equal()
    assert world.running_runtimes()["cassandra-1"]["spec"]["nodeName"]
    assert before  # the runtime pod may be kept (it retries) or recreated; either way it serves the new pod


def test_pause_stops_the_runtimes_and_resume_catches_up(world: World) -> None:
    world.kubectl("patch", "cdcpipeline", PIPELINE, "--type=merge", "-p", '{"spec": {"paused": true}}')
    wait_for(lambda: not world.runtime_pods(), "the runtime pods to stop")
    wait_for(lambda: world.health() == "Suspended", "Argo CD health Suspended")
    world.workload(200).start().join()
    world.kubectl("patch", "cdcpipeline", PIPELINE, "--type=merge", "-p", '{"spec": {"paused": false}}')
    wait_for(lambda: len(world.running_runtimes()) == 2, "the runtimes to come back")
    world.wait_equal()
    wait_for(lambda: world.health() == "Healthy", "Argo CD health Healthy again")


def test_restart_annotation_replaces_the_runtime_pods(world: World) -> None:
    before = {p["metadata"]["uid"] for p in world.running_runtimes().values()}
    world.kubectl("annotate", "--overwrite", "cdcpipeline", PIPELINE, f"headrace.io/restart={uuid.uuid4().hex[:8]}")
    wait_for(
        lambda: (
            len(world.running_runtimes()) == 2
            and not before & {p["metadata"]["uid"] for p in world.running_runtimes().values()}
        ),
        "new runtime pods after the restart annotation",
    )
    world.workload(200).start().join()
    world.wait_equal()


def test_a_runtime_killed_mid_snapshot_resumes_from_its_last_page(world: World) -> None:
    """The annotation re-reads the table, throttled; one runtime is killed (a forced deletion: SIGKILL)
    part-way through. Its successor resumes from the last page the sinks hold: it reads less than its
    node's share, and the two together at most one page more than the share. The throttle is low (10 rows/s,
    a page every 10 s) because the status it watches is up to one report interval (10 s) old: at a faster
    rate the victim could finish its share before the kill lands, and its successor would have nothing
    left to resume."""
    table = "shop.orders"
    total = world.session.execute("SELECT count(*) FROM shop.orders").one()[0]
    patch = {
        "metadata": {"annotations": {"headrace.io/snapshot": f"again-{uuid.uuid4().hex[:8]}"}},
        "spec": {"source": {"snapshot": {"rowsPerSecond": 10, "fetchSize": 100}}},
    }
    world.kubectl("patch", "cdcpipeline", PIPELINE, "--type", "merge", "-p", json.dumps(patch))

    def part_way() -> tuple[str, int, str] | None:
        pods = world.runtime_pods()
        for name, node in world.pipeline().get("status", {}).get("nodes", {}).items():
            progress = node.get("snapshot", {}).get(table, {})
            mine = [p for p in pods if p["metadata"]["labels"]["headrace.io/cassandra-pod"] == name]
            if progress.get("state") == "running" and progress.get("rowsRead", 0) >= 100 and len(mine) == 1:
                return name, progress["rowsRead"], mine[0]["metadata"]["name"]
        return None

    node, read_before, victim = wait_for(part_way, "a runtime part-way through the new snapshot", interval=0.5)
    world.kubectl("delete", "pod", victim, "--grace-period=0", "--force")

    def finished() -> dict[str, Any] | None:
        status = world.pipeline().get("status", {})
        nodes: dict[str, Any] = status.get("nodes", {})
        states = [n.get("snapshot", {}).get(table, {}).get("state") for n in nodes.values()]
        return nodes if status.get("snapshot") == "done" and len(nodes) == 2 and set(states) == {"done"} else None

    nodes = wait_for(finished, "the new snapshot done on both nodes after the kill")
    read_after = nodes[node]["snapshot"][table]["rowsRead"]
    share = total - next(n for name, n in nodes.items() if name != node)["snapshot"][table]["rowsRead"]
    assert 0 < read_after < share, (read_before, read_after, share)  # resumed, not read from the start
    assert read_before + read_after <= share + 100, (read_before, read_after, share)  # one page at most twice
    world.wait_equal()
    # Back to the default throttle for the steps that follow.
    world.kubectl("patch", "cdcpipeline", PIPELINE, "--type", "merge", "-p", '{"spec":{"source":{"snapshot":null}}}')
    wait_for(lambda: len(world.running_runtimes()) == 2, "two runtimes after the throttle is lifted")


def test_scale_to_three_and_back(world: World) -> None:
    world.kubectl("scale", "statefulset/cassandra", "--replicas=3")
    world.cluster.kubectl("rollout", "status", "statefulset/cassandra", "--timeout=600s", timeout=660)
    wait_for(lambda: len(world.running_runtimes()) == 3, "a third runtime for cassandra-2")
    wait_for(lambda: world.pipeline().get("status", {}).get("readyNodes") == "3/3", "readyNodes 3/3")
    world.workload(300).start().join()
    world.wait_equal()
    world.kubectl("scale", "statefulset/cassandra", "--replicas=2")
    # The scale-down policy: the runtime of the removed pod drains its cdc_raw, then goes.
    wait_for(lambda: set(world.running_runtimes()) == {"cassandra-0", "cassandra-1"}, "the third runtime to go")
    # Drained, its Deployment is deleted (not kept until the drain timeout).
    wait_for(
        lambda: "NotFound" in world.kubectl("get", "deployment", "shop-cassandra-2", check=False, stderr=True),
        "the drained runtime's Deployment to be deleted",
    )
    world.wait_equal()


def test_helm_upgrade_mid_stream(world: World) -> None:
    workload = world.workload(400).start()
    repository, tag = world.cluster.image("headrace")
    world.cluster.helm(
        "upgrade", "headrace", str(REPO / "charts" / "headrace"),
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "operator.reconcileIntervalSeconds=7", "--wait", "--timeout", "300s",
    )  # fmt: skip
    workload.join()
    world.wait_equal()
    assert world.health() == "Healthy"


def test_pods_reach_nothing_outside_this_machine(world: World) -> None:
    pod = next(iter(world.running_runtimes().values()))["metadata"]["name"]
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 443), timeout=5)\n"
        "    print('reached')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    out = world.kubectl("exec", pod, "--", "python3", "-c", probe)
    # ENETUNREACH: no route at all (not a timeout, which a machine without internet would also give).
    assert out.strip() == "refused 101", out


def test_delete_pipeline_removes_what_the_operator_made_and_keeps_the_data(world: World) -> None:
    world.kubectl("delete", "cdcpipeline", PIPELINE, "--timeout=300s")
    wait_for(lambda: not world.runtime_pods(), "the runtime pods to go")
    selector = f"headrace.io/pipeline={PIPELINE}"
    left = world.kubectl(
        "get", "deployments,configmaps,serviceaccounts,roles,rolebindings", "-l", selector, "-o", "name"
    )
    assert left.strip() == ""
    spec = yaml.safe_load((HERE / "manifests" / "pipeline.yaml").read_text())
    assert spec["metadata"]["name"] == PIPELINE
    assert world.sinks_equal()  # sink data stays, still equal to Cassandra
