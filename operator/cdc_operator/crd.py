"""Generate the CDCPipeline CRD from the typed model, and check ``crds/`` against it.

``python -m cdc_operator.crd --write crds/ [more dirs]`` writes the manifest;
``--check crds/ [more dirs]`` exits 1 with a unified diff when a file differs,
so CI fails on drift instead of shipping a CRD the runtime disagrees with.

Kopf's own bookkeeping never touches ``status`` (see ``handlers/settings.py``:
progress and diff-base are annotations under ``headrace.io/``, and handlers
return nothing), so the status schema can be exact: it is
``pipeline_runtime.config.status.PipelineStatus`` and nothing else.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cdc_operator import naming
from cdc_operator.schema.openapi import structural
from cdc_operator.schema.validations import annotate
from pipeline_runtime.config.model import PipelineSpec
from pipeline_runtime.config.status import PipelineStatus

FILENAME = f"{naming.GROUP}_{naming.PLURAL}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Pipeline phase"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.readyNodes",
        "description": "Runtimes reporting without error / Cassandra pods selected",
    },
    {
        "name": "Max-Lag",
        "type": "number",
        "jsonPath": ".status.maxLagSeconds",
        "description": "Largest end-to-end lag over the nodes, in seconds",
    },
    {
        "name": "Events/s",
        "type": "number",
        "jsonPath": ".status.eventsPerSecond",
        "description": "Changes decoded per second over all nodes",
    },
    {
        "name": "Dead-Letters",
        "type": "integer",
        "jsonPath": ".status.deadLetters",
        "description": "Events sinks rejected, kept in the runtimes' dead-letter files",
    },
    {
        "name": "Snapshot",
        "type": "string",
        "jsonPath": ".status.snapshot",
        "description": "Initial snapshot over the nodes: share of token ranges written and tables done, or done",
    },
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

#: metadata.name ends up in label values (63 characters at most).
ROOT_RULES = [
    {
        "rule": "size(self.metadata.name) <= 63",
        "message": "metadata.name must be at most 63 characters: it becomes a label value on the runtime objects",
    },
]


class _PlainDumper(yaml.SafeDumper):
    """No ``&id`` anchors: kubectl and Helm read them, but humans reviewing a diff should not have to."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def openapi_schema() -> dict[str, Any]:
    """The whole resource's schema: spec from PipelineSpec, status from PipelineStatus."""
    spec = structural(PipelineSpec.model_json_schema(by_alias=True, mode="validation"), annotate)
    status = structural(PipelineStatus.model_json_schema(by_alias=True, mode="validation"), annotate)
    spec["description"] = "Desired pipeline: Cassandra source, sinks, transforms and runtime settings."
    status["description"] = "Observed state: runtimes write status.nodes.<pod>, the operator the rest."
    return {
        "type": "object",
        "description": "Change data capture from Cassandra's CDC commitlogs to PostgreSQL, TimescaleDB and ClickHouse.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": ROOT_RULES,
    }


def build() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{naming.PLURAL}.{naming.GROUP}",
            "labels": {naming.LABEL_NAME: "headrace", naming.LABEL_PART_OF: "headrace"},
        },
        "spec": {
            "group": naming.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": naming.KIND,
                "listKind": f"{naming.KIND}List",
                "plural": naming.PLURAL,
                "singular": naming.SINGULAR,
                "shortNames": list(naming.SHORT_NAMES),
                "categories": ["headrace"],
            },
            "versions": [
                {
                    "name": naming.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render() -> str:
    """The manifest as YAML, in a stable order so the drift check is byte-exact."""
    header = "# Generated from pipeline_runtime/config by `make crds`. Do not edit.\n"
    return header + yaml.dump(build(), Dumper=_PlainDumper, sort_keys=False, width=100, allow_unicode=True)


def write(folders: Sequence[Path]) -> None:
    text = render()
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / FILENAME).write_text(text)


def check(folders: Sequence[Path]) -> list[str]:
    """A unified diff per folder whose CRD differs from the model; empty when all match."""
    expected = render()
    diffs = []
    for folder in folders:
        path = folder / FILENAME
        actual = path.read_text() if path.exists() else ""
        if actual != expected:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{path} (from the model)",
            )
            diffs.append("".join(diff))
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdc_operator.crd", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", nargs="+", type=Path, metavar="DIR", help="write the CRD into each DIR")
    mode.add_argument("--check", nargs="+", type=Path, metavar="DIR", help="fail with a diff when a DIR drifts")
    mode.add_argument("--print", action="store_true", help="print the CRD to stdout")
    args = parser.parse_args(argv)
    if args.print:
        sys.stdout.write(render())
        return 0
    if args.write:
        write(args.write)
        return 0
    diffs = check(args.check)
    for diff in diffs:
        sys.stderr.write(diff or "missing file\n")
    if diffs:
        sys.stderr.write("CRD drifted from pipeline_runtime/config: run `make crds` and commit the result.\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
