"""Operator-wide settings, read once from the environment (the Helm chart sets them).

Each value documents its unit and why it has its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from cdc_operator.status.observation import Thresholds


@dataclass(frozen=True)
class OperatorConfig:
    reconcile_interval_s: float = 30.0
    """HEADRACE_RECONCILE_INTERVAL_SECONDS: how often each pipeline re-discovers its Cassandra pods and
    re-evaluates its status. Bounds how late a scale-up or a stale runtime is noticed; 30 s keeps 100
    pipelines at a few requests per second."""
    report_stale_after_s: float = 120.0
    """HEADRACE_REPORT_STALE_SECONDS: a runtime silent for longer counts as not running."""
    drain_timeout_s: float = 3600.0
    """HEADRACE_DRAIN_TIMEOUT_SECONDS: longest wait for the runtime of a removed Cassandra pod to drain."""
    reapply_after_s: float = 600.0
    """HEADRACE_REAPPLY_SECONDS: re-apply unchanged objects this often, to repair manual edits."""
    runtime_image: str | None = None
    """HEADRACE_RUNTIME_IMAGE: image for pipelines that set no spec.runtime.image."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        source = os.environ if env is None else env

        def seconds(name: str, default: float) -> float:
            raw = source.get(name)
            if raw is None or raw == "":
                return default
            value = float(raw)
            if value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
            return value

        return cls(
            reconcile_interval_s=seconds("HEADRACE_RECONCILE_INTERVAL_SECONDS", cls.reconcile_interval_s),
            report_stale_after_s=seconds("HEADRACE_REPORT_STALE_SECONDS", cls.report_stale_after_s),
            drain_timeout_s=seconds("HEADRACE_DRAIN_TIMEOUT_SECONDS", cls.drain_timeout_s),
            reapply_after_s=seconds("HEADRACE_REAPPLY_SECONDS", cls.reapply_after_s),
            runtime_image=source.get("HEADRACE_RUNTIME_IMAGE") or None,
        )

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(report_stale_after=timedelta(seconds=self.report_stale_after_s))

    @property
    def drain_timeout(self) -> timedelta:
        return timedelta(seconds=self.drain_timeout_s)
