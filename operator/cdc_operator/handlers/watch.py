"""Watches on what a pipeline depends on: each change wakes the pipelines it concerns (``wakeups.py``).

- Pods: a Cassandra pod created, rescheduled, becoming ready or deleted (scale
  up and down, a pod moving to another node), and the runtimes' own Pods (an
  image pull failure, a crash loop, unschedulable: status says so at once).
- Deployments and ConfigMaps labelled ``headrace.io/pipeline``: a runtime
  scaled or edited by hand, a ConfigMap deleted, a rollout progressing. The
  runtimes' report ConfigMaps wake a pass only when deleted: reports arrive
  every few seconds and are folded into status by the periodic pass.

These handlers only wake loops; the pass itself reads what it needs. Secrets
are not watched: that needs ``list`` on every Secret of the namespace, more
than the operator should hold; a pipeline waiting for a Secret looks for it
every few seconds instead (``RECHECK_S`` in ``pipeline.py``). ServiceAccounts,
Roles and RoleBindings changed by hand are repaired by the periodic pass.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from cdc_operator import naming
from cdc_operator.wakeups import Wakeups


class QuietWatches(logging.Filter):
    """Drops kopf's "Handler '...' succeeded." line for these handlers: one per Pod change is noise."""

    HANDLERS = ("pod_changed", "deployment_changed", "config_map_changed")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.endswith("succeeded.") and any(f"'{name}'" in message for name in self.HANDLERS))


def quiet() -> None:
    """Install the filter on kopf's per-object logger (once)."""
    logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietWatches) for f in logger.filters):
        logger.addFilter(QuietWatches())


def _wake(memo: Any, namespace: str | None, labels: kopf.Labels, *, pod: bool) -> None:
    wakeups: Wakeups | None = getattr(memo, "wakeups", None)
    if wakeups is not None and namespace:
        wakeups.wake(wakeups.concerned(namespace, labels, pod=pod))


@kopf.on.event("", "v1", "pods")
async def pod_changed(memo: Any, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    _wake(memo, namespace, labels, pod=True)


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_PIPELINE: kopf.PRESENT})
async def deployment_changed(memo: Any, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    _wake(memo, namespace, labels, pod=False)


@kopf.on.event("", "v1", "configmaps", labels={naming.LABEL_PIPELINE: kopf.PRESENT})
async def config_map_changed(memo: Any, namespace: str | None, labels: kopf.Labels, type: str | None, **_: Any) -> None:
    """A runtime's report is written every few seconds: it wakes nothing (the periodic pass folds the
    reports into status) unless the report object is deleted and must be put back."""
    if labels.get(naming.LABEL_COMPONENT) == naming.COMPONENT_REPORT and type != "DELETED":
        return
    _wake(memo, namespace, labels, pod=False)
