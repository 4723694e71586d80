"""Kopf handlers for CDCPipeline: every trigger runs the same reconcile pass; deletion cleans up.

The timer is what notices Cassandra scale-up/down and runtime reports; create
and update handlers make spec edits, ``spec.paused`` and the
``headrace.io/restart`` annotation take effect at once instead of on the next
tick. A per-pipeline lock keeps a timer tick and an update from interleaving.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import kopf

from cdc_operator import metrics, naming
from cdc_operator.config import OperatorConfig
from cdc_operator.handlers.apply import AppliedState
from cdc_operator.handlers.cleanup import delete_owned
from cdc_operator.handlers.reconcile import reconcile
from cdc_operator.kube.client import Kube
from cdc_operator.kube.errors import KubeError

RESOURCE = (naming.GROUP, naming.VERSION, naming.PLURAL)
_INTERVAL_S = OperatorConfig.from_env().reconcile_interval_s


def _lock(memo: kopf.Memo) -> asyncio.Lock:
    lock = getattr(memo, "reconcile_lock", None)
    if not isinstance(lock, asyncio.Lock):
        lock = memo.reconcile_lock = asyncio.Lock()
    return lock


def _applied(memo: kopf.Memo) -> AppliedState:
    state = getattr(memo, "applied", None)
    if not isinstance(state, AppliedState):
        state = memo.applied = AppliedState()
    return state


async def _run(trigger: str, body: kopf.Body, memo: Any, logger: kopf.Logger) -> None:
    kube: Kube = memo.kube
    config: OperatorConfig = memo.config
    started = time.perf_counter()
    async with _lock(memo):
        try:
            outcome = await reconcile(kube, config, body, _applied(memo))
        except KubeError as exc:
            metrics.RECONCILES.labels(trigger=trigger, result="error").inc()
            _applied(memo).forget()
            if exc.retryable:
                raise kopf.TemporaryError(str(exc), delay=10) from exc
            # A rejected write is a bug or a policy (an admission webhook): say so loudly, retry on the timer.
            logger.error("reconcile failed: %s", exc)
            raise kopf.TemporaryError(str(exc), delay=60) from exc
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels(trigger=trigger, result="ok").inc()
    metrics.record_phase(body.metadata.namespace or "", body.metadata.name or "", outcome.status.phase.value)
    if outcome.written:
        logger.info("phase %s, ready %s", outcome.status.phase.value, outcome.status.ready_nodes)


@kopf.on.create(*RESOURCE)
async def created(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    await _run("create", body, memo, logger)


@kopf.on.update(*RESOURCE)
async def updated(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Spec, labels or annotations changed (status changes do not trigger this)."""
    await _run("update", body, memo, logger)


@kopf.timer(*RESOURCE, interval=_INTERVAL_S, initial_delay=1.0)
async def periodic(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Also the first pass after an operator restart: it finds existing objects and re-applies idempotently."""
    if body.metadata.get("deletionTimestamp"):
        return
    await _run("timer", body, memo, logger)


@kopf.on.delete(*RESOURCE)
async def deleted(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Remove what the operator created; sink data (tables, rows, checkpoints) is never touched."""
    kube: Kube = memo.kube
    async with _lock(memo):
        try:
            count = await delete_owned(
                kube, body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid or ""
            )
        except KubeError as exc:
            raise kopf.TemporaryError(str(exc), delay=10) from exc
    metrics.record_phase(body.metadata.namespace or "", body.metadata.name or "", None)
    logger.info("removed %d objects; sink data is left as it is", count)
