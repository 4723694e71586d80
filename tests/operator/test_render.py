"""The pure renderers: golden files for the whole object set, plus the properties that must never regress."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdc_operator import naming
from cdc_operator.cassandra import describe
from cdc_operator.render import PipelineRef, render_pipeline
from cdc_operator.render.deployment import DEFAULT_RESOURCES
from cdc_operator.render.pipeline import RenderedPipeline

from pipeline_runtime.config.model import (
    DEFAULT_RUNTIME_IMAGE,
    DeadLetterSpec,
    DeadLetterVolume,
    PipelineSpec,
    Resources,
)
from tests.operator.golden import assert_golden

FIXTURES = Path(__file__).parent / "fixtures"
SELECTOR = {"app": "cassandra"}


def load_pipeline() -> tuple[PipelineRef, PipelineSpec, dict[str, Any]]:
    manifest = yaml.safe_load((FIXTURES / "pipeline.yaml").read_text())
    meta = manifest["metadata"]
    ref = PipelineRef(meta["name"], meta["namespace"], meta["uid"])
    return ref, PipelineSpec.model_validate(manifest["spec"]), manifest


def pods() -> list[Any]:
    bodies = yaml.safe_load((FIXTURES / "cassandra-pods.yaml").read_text())
    return [describe(body, SELECTOR, "server-data") for body in bodies]


def rendered(
    ref: PipelineRef | None = None, spec: PipelineSpec | None = None, image: str | None = None
) -> RenderedPipeline:
    default_ref, default_spec, _ = load_pipeline()
    return render_pipeline(ref or default_ref, spec or default_spec, pods(), image)


def as_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=True)


def test_objects_match_golden_file() -> None:
    assert_golden("render-shop.yaml", as_yaml(rendered().objects))


def test_paused_golden_file() -> None:
    _, spec, _ = load_pipeline()
    objects = rendered(spec=spec.model_copy(update={"paused": True})).objects
    assert_golden("render-shop-paused.yaml", as_yaml(objects))


def test_objects_are_owned_and_labelled() -> None:
    ref, _, _ = load_pipeline()
    for obj in rendered().objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "data"
        assert meta["ownerReferences"] == [ref.owner_reference()]
        assert meta["labels"][naming.LABEL_PIPELINE] == "shop"
    kinds = [o["kind"] for o in rendered().objects]
    runtime = ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment"]
    assert kinds == ["ConfigMap", *runtime, *runtime]


def test_deployment_per_pod_pinned_to_that_pod() -> None:
    deployments = rendered().deployments
    assert [d["metadata"]["name"] for d in deployments] == ["shop-cassandra-0", "shop-cassandra-1"]
    pod_spec = deployments[0]["spec"]["template"]["spec"]
    (term,) = pod_spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # The volatile controller-revision-hash must not be in the selector, the pod-name label must.
    assert term["labelSelector"]["matchLabels"] == {
        "app": "cassandra",
        "statefulset.kubernetes.io/pod-name": "cassandra-0",
    }
    claim = next(v for v in pod_spec["volumes"] if v["name"] == "cassandra-data")
    assert claim["persistentVolumeClaim"] == {"claimName": "server-data-cassandra-0"}
    mount = next(m for m in pod_spec["containers"][0]["volumeMounts"] if m["name"] == "cassandra-data")
    assert "readOnly" not in mount, "the runtime deletes consumed segments: the data volume is read-write"
    assert deployments[0]["spec"]["strategy"] == {"type": "Recreate"}


def test_runtime_is_locked_down() -> None:
    for deployment in rendered().deployments:
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        assert pod_spec["securityContext"]["runAsUser"] > 0
        (container,) = pod_spec["containers"]
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {p["name"] for p in container["ports"]} == {"http-metrics"}


def test_runs_as_the_cassandra_user_and_tolerates_its_taints() -> None:
    first, second = (d["spec"]["template"]["spec"] for d in rendered().deployments)
    assert first["securityContext"]["runAsUser"] == 999
    assert second["securityContext"]["runAsUser"] == 1001
    taint = {"key": "dedicated", "operator": "Equal", "value": "cassandra", "effect": "NoSchedule"}
    assert first["tolerations"] == [taint]
    assert "tolerations" not in second


def test_secrets_are_mounted_as_files_with_only_their_keys() -> None:
    result = rendered()
    assert result.secrets == {
        "cassandra-cql": ("password", "username"),
        "cassandra-tls": ("ca.crt",),
        "shop-masking": ("hmac-key",),
        "shop-sinks": ("clickhouse-url", "postgres-dsn"),
    }
    pod_spec = result.deployments[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["secret-shop-sinks"]["secret"]["items"] == [
        {"key": "clickhouse-url", "path": "clickhouse-url"},
        {"key": "postgres-dsn", "path": "postgres-dsn"},
    ]
    mounts = {m["name"]: m["mountPath"] for m in pod_spec["containers"][0]["volumeMounts"]}
    assert mounts["secret-shop-sinks"] == "/etc/headrace/secrets/shop-sinks"


def test_config_map_holds_references_never_values() -> None:
    config_map = rendered().objects[0]
    document = yaml.safe_load(config_map["data"]["pipeline.yaml"])
    assert document["kind"] == "CDCPipeline"
    assert document["spec"]["sinks"][0]["connectionSecret"] == {"name": "shop-sinks", "key": "postgres-dsn"}
    assert "paused" not in document["spec"]
    # What the runtime loads is exactly the spec the operator validated, with the image it runs.
    spec = load_pipeline()[1]
    resolved = spec.model_copy(update={"runtime": spec.runtime.model_copy(update={"image": DEFAULT_RUNTIME_IMAGE})})
    assert PipelineSpec.model_validate(document["spec"]) == resolved


def test_config_hash_rolls_on_change_but_not_on_pause() -> None:
    _, spec, _ = load_pipeline()
    base = rendered()
    changed_sink = spec.sinks[0].model_copy(update={"batch_size": 5})
    changed = rendered(spec=spec.model_copy(update={"sinks": [changed_sink, spec.sinks[1]]}))
    paused = rendered(spec=spec.model_copy(update={"paused": True}))
    assert changed.config_hash != base.config_hash
    assert paused.config_hash == base.config_hash
    template = changed.deployments[0]["spec"]["template"]["metadata"]["annotations"]
    assert template[naming.ANNOTATION_CONFIG_HASH] == changed.config_hash
    assert [d["spec"]["replicas"] for d in paused.deployments] == [0, 0]
    assert [d["spec"]["replicas"] for d in base.deployments] == [1, 1]


def test_restart_token_is_stamped_on_the_pod_template() -> None:
    ref, _, _ = load_pipeline()
    restarted = rendered(ref=PipelineRef(ref.name, ref.namespace, ref.uid, restart_token="2026-01-01T00:00:00Z"))
    annotations = restarted.deployments[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[naming.ANNOTATION_RESTART] == "2026-01-01T00:00:00Z"
    assert naming.ANNOTATION_RESTART not in rendered().deployments[0]["spec"]["template"]["metadata"]["annotations"]


def test_operator_image_replaces_only_the_default_image() -> None:
    _, spec, _ = load_pipeline()
    image = rendered(image="registry.local/headrace:1.2").deployments[0]["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "registry.local/headrace:1.2"
    pinned = spec.model_copy(update={"runtime": spec.runtime.model_copy(update={"image": "mine:1"})})
    container = rendered(spec=pinned, image="registry.local/headrace:1.2").deployments[0]["spec"]["template"]
    assert container["spec"]["containers"][0]["image"] == "mine:1"


def test_a_pipeline_without_an_image_follows_the_operators_across_an_upgrade() -> None:
    """Nothing is stored in the pipeline: a new operator image rolls its runtimes (the config hash moves)."""
    _, spec, _ = load_pipeline()
    assert spec.runtime.image is None
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "headrace.io_cdcpipelines.yaml").read_text())
    runtime = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["runtime"]
    assert "default" not in runtime["properties"]["image"]  # nothing stored in each pipeline
    before, after = rendered(image="registry.local/headrace:1.2"), rendered(image="registry.local/headrace:1.3")
    assert after.deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/headrace:1.3"
    assert before.config_hash != after.config_hash
    assert rendered().deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"] == DEFAULT_RUNTIME_IMAGE


def test_pod_without_data_claim_gets_no_runtime() -> None:
    ref, spec, _ = load_pipeline()
    body = yaml.safe_load((FIXTURES / "cassandra-pods.yaml").read_text())[0]
    body["spec"]["volumes"] = [{"name": "server-data", "emptyDir": {}}]
    result = render_pipeline(ref, spec, [describe(body, SELECTOR, "server-data")])
    assert result.deployments == []
    assert result.pods_without_data == ["cassandra-0"]


@pytest.mark.parametrize("pipeline", ["p" * 63, "a-very-long-pipeline-name-that-goes-on-and-on"])
def test_long_names_fit_kubernetes_limits(pipeline: str) -> None:
    _, spec, _ = load_pipeline()
    result = render_pipeline(PipelineRef(pipeline, "data", "uid"), spec, pods())
    for obj in result.objects:
        assert len(obj["metadata"]["name"]) <= 63
        assert all(len(v) <= 63 for v in obj["metadata"]["labels"].values())
    names = [d["metadata"]["name"] for d in result.deployments]
    assert len(set(names)) == 2


def test_each_runtime_has_an_identity_that_may_write_only_its_own_report() -> None:
    objects = rendered().objects
    for deployment in rendered().deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["metadata"]["annotations"][naming.ANNOTATION_CASSANDRA_POD]
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == name
        env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
        assert env["HEADRACE_REPORT_CONFIGMAP"] == naming.runtime_report("shop", pod) == f"{name}-report"
        role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == name)
        assert role["rules"] == [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [f"{name}-report"],
                "verbs": ["get", "patch"],
            }
        ]
        binding = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "data"}]
        report = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{name}-report")
        assert "data" not in report  # the runtime writes it; the operator's apply never touches it
        assert report["metadata"]["labels"][naming.LABEL_COMPONENT] == naming.COMPONENT_REPORT


def test_each_runtime_is_told_its_own_cassandra() -> None:
    hosts = [
        {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}.get(
            "HEADRACE_CASSANDRA_HOST"
        )
        for d in rendered().deployments
    ]
    assert hosts == ["cassandra-0.cassandra.data.svc", "10.244.1.7"]


def test_a_runtime_follows_its_pods_node_and_steps_aside_while_it_has_none() -> None:
    _, spec, _ = load_pipeline()
    placed = {d["metadata"]["name"]: d for d in rendered().deployments}
    first = placed["shop-cassandra-0"]["spec"]
    terms = first["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
    ]
    assert first["replicas"] == 1
    ref = load_pipeline()[0]
    unscheduled = [dataclasses.replace(p, node_name=None) if p.name == "cassandra-0" else p for p in pods()]
    waiting = {d["metadata"]["name"]: d for d in render_pipeline(ref, spec, unscheduled).deployments}
    assert waiting["shop-cassandra-0"]["spec"]["replicas"] == 0
    assert "nodeAffinity" not in waiting["shop-cassandra-0"]["spec"]["template"]["spec"]["affinity"]
    assert waiting["shop-cassandra-1"]["spec"]["replicas"] == 1


def test_runtime_pods_are_never_best_effort_and_take_the_pod_settings_users_set() -> None:
    _, spec, _ = load_pipeline()
    unset = spec.model_copy(update={"runtime": spec.runtime.model_copy(update={"resources": Resources()})})
    plain = rendered(spec=unset).deployments[0]["spec"]["template"]["spec"]
    container = plain["containers"][0]
    assert container["resources"] == DEFAULT_RESOURCES  # nothing set: not BestEffort beside Cassandra
    assert plain["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["timeoutSeconds"] == 5
    assert "imagePullSecrets" not in plain and "priorityClassName" not in plain
    runtime = spec.runtime.model_copy(
        update={
            "resources": Resources(limits={"memory": "2Gi", "cpu": "1"}),
            "image_pull_secrets": ["registry-creds"],
            "priority_class_name": "data-plane",
        }
    )
    chosen = rendered(spec=spec.model_copy(update={"runtime": runtime})).deployments[0]["spec"]["template"]["spec"]
    assert chosen["containers"][0]["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "2Gi", "cpu": "1"},
    }
    assert chosen["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert chosen["priorityClassName"] == "data-plane"


def test_a_dead_letter_claim_per_runtime_when_asked_and_kept_off_cassandras_volume() -> None:
    _, spec, _ = load_pipeline()
    assert not [o for o in rendered().objects if o["kind"] == "PersistentVolumeClaim"]
    asked = spec.model_copy(
        update={
            "runtime": spec.runtime.model_copy(
                update={
                    "dead_letters": DeadLetterSpec(volume_claim=DeadLetterVolume(size="5Gi", storage_class_name="fast"))
                }
            )
        }
    )
    objects = rendered(spec=asked).objects
    claims = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert sorted(claims) == ["shop-cassandra-0-dead-letters", "shop-cassandra-1-dead-letters"]
    claim = claims["shop-cassandra-0-dead-letters"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    assert "ownerReferences" not in claim["metadata"]  # rejected rows outlive the runtime and the pipeline
    assert claim["metadata"]["labels"][naming.LABEL_PIPELINE] == "shop"
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod_spec = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        volume = next(v for v in pod_spec["volumes"] if v["name"] == "dead-letters")
        assert volume == {"name": "dead-letters", "persistentVolumeClaim": {"claimName": f"{name}-dead-letters"}}
        container = pod_spec["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "dead-letters")
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HEADRACE_DEAD_LETTER_DIR"] == mount["mountPath"] == "/var/lib/headrace/dead-letters"
        # The claim comes before the Deployment that mounts it.
        order = [(o["kind"], o["metadata"]["name"]) for o in objects]
        assert order.index(("PersistentVolumeClaim", f"{name}-dead-letters")) < order.index(("Deployment", name))
