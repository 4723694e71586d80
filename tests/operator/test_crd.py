"""The generated CRD: in sync with crds/, structural, and carrying the rules the issue asks for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdc_operator import crd

REPO = Path(__file__).resolve().parents[2]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def schema() -> dict[str, Any]:
    return crd.build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crds_folder_matches_the_model() -> None:
    assert crd.check([REPO / "crds"]) == [], "crds/ drifted: run `make crds`"


def test_chart_carries_the_same_crd() -> None:
    chart = REPO / "charts" / "headrace" / "crds"
    assert chart.is_dir(), "the Helm chart must carry the CRD in charts/headrace/crds/"
    assert crd.check([chart]) == [], "run: python -m cdc_operator.crd --write crds/ charts/headrace/crds/"


def test_check_reports_drift_with_a_diff(tmp_path: Path) -> None:
    crd.write([tmp_path])
    path = tmp_path / crd.FILENAME
    path.write_text(path.read_text().replace("cdcp", "cdcx"))
    (diff,) = crd.check([tmp_path])
    assert "-    - cdcx" in diff and "+    - cdcp" in diff
    assert crd.main(["--check", str(tmp_path)]) == 1
    assert crd.main(["--write", str(tmp_path)]) == 0
    assert crd.main(["--check", str(tmp_path)]) == 0


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node and "title" not in node, path
        if "properties" in node:
            assert "additionalProperties" not in node, path
            assert node.get("type") == "object", path
        if path.endswith((".properties", "x-kubernetes-validations")):
            continue
        if any(k in node for k in ("description", "default", "pattern")) and not path.endswith("properties"):
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if node.get("default") is None:
            assert "default" not in node, f"{path}: null default"


def test_names_scope_and_columns() -> None:
    spec = crd.build()["spec"]
    assert spec["group"] == "headrace.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["cdcp"] and spec["names"]["plural"] == "cdcpipelines"
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Ready"] == ".status.readyNodes"
    assert columns["Max-Lag"] == ".status.maxLagSeconds"
    assert columns["Events/s"] == ".status.eventsPerSecond"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_defaults_and_descriptions_come_from_the_model() -> None:
    spec = schema()["properties"]["spec"]
    sink = spec["properties"]["sinks"]["items"]
    assert sink["properties"]["batchSize"]["default"] == 10_000
    assert sink["properties"]["batchSize"]["maximum"] == 100_000
    assert sink["properties"]["type"]["enum"] == ["postgres", "timescaledb", "clickhouse"]
    assert sink["properties"]["name"]["description"] == "Unique name within the pipeline."
    assert spec["properties"]["runtime"]["default"] == {}
    assert spec["properties"]["runtime"]["properties"]["maxLagSeconds"]["default"] == 60


def test_cel_rules_cover_the_model_validators() -> None:
    rules = [r["rule"] for _, node in walk(schema()) for r in node.get("x-kubernetes-validations", [])]
    text = " ".join(rules)
    assert "exists_one(t, t.name == s.name)" in text
    assert "has(self.timescale)" in text
    assert "has(self.hashKeySecret)" in text
    assert "has(self.length)" in text
    assert "has(self.podSelector) || has(self.workload)" in text


def test_status_schema_declares_every_field_kopf_or_runtimes_write() -> None:
    status = schema()["properties"]["status"]["properties"]
    node = status["nodes"]["additionalProperties"]["properties"]
    reported = {"position", "lagSeconds", "eventsPerSecond", "cdcRawBytes", "cdcRawShare", "lastError"}
    reported.add("lastReportTime")
    assert reported <= set(node)
    assert set(status["sinks"]["additionalProperties"]["properties"]) == {"healthy", "lastCommitTime", "rowsWritten"}
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert "kopf" not in status, "kopf's bookkeeping lives in annotations"
