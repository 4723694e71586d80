"""The runtimes' reports: one ConfigMap per runtime (``render/rbac.py``), read on every pass.

The operator folds them into ``status.nodes`` (``reconcile.py``); a report that
does not parse (hand-edited, a runtime of another version) counts as no report,
with a log line, rather than blocking the pipeline's status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cdc_operator import naming
from cdc_operator.kube.client import Kube
from pipeline_runtime.config.status import REPORT_KEY, NodeStatus

log = logging.getLogger(__name__)


def parse_report(config_map: Mapping[str, Any]) -> tuple[str, NodeStatus] | None:
    """(Cassandra pod, its runtime's report), or None when the runtime has not reported (or wrote nonsense)."""
    meta = config_map.get("metadata") or {}
    pod = (meta.get("annotations") or {}).get(naming.ANNOTATION_CASSANDRA_POD)
    raw = (config_map.get("data") or {}).get(REPORT_KEY)
    if not pod or not raw:
        return None
    try:
        return pod, NodeStatus.model_validate_json(raw)
    except ValidationError as exc:
        log.warning(
            "ignoring a runtime report that does not parse",
            extra={"config_map": meta.get("name"), "error": str(exc).splitlines()[0]},
        )
        return None


async def read_reports(kube: Kube, namespace: str, pipeline: str) -> tuple[dict[str, NodeStatus], list[str]]:
    """The reports of ``pipeline``'s runtimes by Cassandra pod, and the names of the ConfigMaps holding one."""
    reports: dict[str, NodeStatus] = {}
    holding: list[str] = []
    for config_map in await kube.list("ConfigMap", namespace, naming.report_selector(pipeline)):
        parsed = parse_report(config_map)
        if parsed is not None:
            reports[parsed[0]] = parsed[1]
            holding.append(config_map["metadata"]["name"])
    return reports, holding


async def clear_reports(kube: Kube, namespace: str, names: list[str]) -> None:
    """Empty report ConfigMaps (while paused: the runtimes are stopped and what they said is history)."""
    for name in names:
        await kube.merge_patch("ConfigMap", namespace, name, {"data": {REPORT_KEY: None}})
