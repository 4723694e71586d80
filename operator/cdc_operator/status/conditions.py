"""Kubernetes-style conditions that keep their transition time while their status holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline_runtime.config.status import Condition, ConditionStatus, ConditionType


@dataclass(frozen=True)
class Verdict:
    """A condition's content before it gets its timestamps."""

    status: ConditionStatus
    reason: str
    message: str


def conditions(
    verdicts: dict[ConditionType, Verdict],
    previous: Sequence[Condition],
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Build conditions in a fixed order; ``lastTransitionTime`` moves only when ``status`` changes."""
    earlier = {c.type: c for c in previous}
    built = []
    for kind in ConditionType:
        verdict = verdicts[kind]
        before = earlier.get(kind)
        since = before.last_transition_time if before is not None and before.status == verdict.status else now
        built.append(
            Condition(
                type=kind,
                status=verdict.status,
                reason=verdict.reason,
                message=verdict.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return built


def true(reason: str, message: str) -> Verdict:
    return Verdict(ConditionStatus.TRUE, reason, message)


def false(reason: str, message: str) -> Verdict:
    return Verdict(ConditionStatus.FALSE, reason, message)
