"""Kubernetes Events for a pipeline: what changed between two statuses, and which spec fields changed.

Pure logic; the reconcile pass posts what ``notices`` returns. Events mark
transitions, never steady states, so a timer pass that changes nothing posts
nothing: a phase change, a new reason for Degraded, a recovery, a rollout to a
new configuration (naming the spec fields that changed). Messages come from
the conditions, which never hold Secret values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_runtime.config.status import Condition, ConditionStatus, ConditionType, Phase, PipelineStatus

#: The API server refuses longer Event messages.
MAX_MESSAGE = 1024
_WARNING_PHASES = (Phase.FAILED, Phase.DEGRADED)


@dataclass(frozen=True)
class Notice:
    """One Event to post on the pipeline."""

    type: str  # Normal or Warning
    reason: str
    message: str


def _condition(status: PipelineStatus, kind: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def _degraded(status: PipelineStatus) -> Condition | None:
    found = _condition(status, ConditionType.DEGRADED)
    return found if found is not None and found.status is ConditionStatus.TRUE else None


def notices(previous: PipelineStatus, status: PipelineStatus, changed_fields: list[str] | None = None) -> list[Notice]:
    """The Events that tell the difference between ``previous`` and ``status``; none when nothing moved."""
    out: list[Notice] = []
    before, after = _degraded(previous), _degraded(status)
    if after is not None and (before is None or before.reason != after.reason or previous.phase != status.phase):
        out.append(Notice("Warning", after.reason, f"{status.phase.value}: {after.message}"))
    elif before is not None and after is None and status.phase is not Phase.PAUSED:
        out.append(Notice("Normal", "Recovered", f"no longer degraded ({before.reason}); phase {status.phase.value}"))
    if status.phase != previous.phase and status.phase not in _WARNING_PHASES and after is None:
        ready = _condition(status, ConditionType.READY)
        detail = ready.message if ready is not None else ""
        out.append(Notice("Normal", status.phase.value, f"phase {status.phase.value}: {detail}".rstrip(": ")))
    if previous.config_hash and status.config_hash and previous.config_hash != status.config_hash:
        fields = f" ({', '.join(changed_fields)})" if changed_fields else ""
        out.append(
            Notice(
                "Normal",
                "Rollout",
                f"configuration changed{fields}: the runtimes restart with config hash {status.config_hash}",
            )
        )
    return [Notice(n.type, n.reason, n.message[:MAX_MESSAGE]) for n in out]


def changed_fields(old: Any, new: Any, path: str = "spec", limit: int = 8) -> list[str]:
    """Dotted paths (``spec.sinks[0].batchSize``) where ``new`` differs from ``old``, at most ``limit``."""
    found: list[str] = []
    _diff(old, new, path, found)
    if len(found) > limit:
        return [*found[:limit], f"and {len(found) - limit} more"]
    return found


def _diff(old: Any, new: Any, path: str, found: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), f"{path}.{key}", found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(a, b, f"{path}[{index}]", found)
    elif old != new:
        found.append(path)
