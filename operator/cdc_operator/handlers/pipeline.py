"""Kopf handlers for CDCPipeline: every trigger runs the same reconcile pass; deletion cleans up.

Create and update handlers make spec edits, ``spec.paused`` and the
``headrace.io/restart`` annotation take effect at once. Each pipeline also has
a loop (a kopf daemon) that runs a pass whenever a watched change concerns it
(a Cassandra pod added, moved or gone; a runtime Deployment or Pod changing; a
runtime ConfigMap edited or deleted: see ``handlers/watch.py``) and otherwise
every ``HEADRACE_RECONCILE_INTERVAL_SECONDS``, the safety net that also reads
the runtimes' reports. A per-pipeline lock keeps passes from interleaving.
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
from cdc_operator.wakeups import Wakeups

RESOURCE = (naming.GROUP, naming.VERSION, naming.PLURAL)
#: A burst of watched changes (a rollout: a Deployment and its Pods, several updates each) makes one pass.
SETTLE_S = 0.5
#: A periodic pass this soon after another pass is skipped.
FRESH_S = 2.0
#: While blocked on what no watch reports (a Secret or workload not there yet), look again this often.
RECHECK_S = 5.0


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


async def _run(
    trigger: str, body: kopf.Body, memo: Any, logger: kopf.Logger, unless_within: float | None = None
) -> None:
    """One pass under the pipeline's lock; none when ``unless_within`` and a pass ended that recently."""
    kube: Kube = memo.kube
    config: OperatorConfig = memo.config
    async with _lock(memo):
        if unless_within is not None and time.monotonic() - getattr(memo, "last_pass", -unless_within) < unless_within:
            return
        started = time.perf_counter()
        try:
            # The stored object, not the event's copy: a pass right after another (a watch woken by the
            # previous pass's own writes) must see that pass's status, or it would report changes twice.
            current = await kube.get(naming.KIND, body.metadata.namespace or "", body.metadata.name or "")
            if current is None or current["metadata"].get("deletionTimestamp"):
                return
            outcome = await reconcile(kube, config, current, _applied(memo))
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
            memo.last_pass = time.monotonic()
    metrics.RECONCILES.labels(trigger=trigger, result="ok").inc()
    metrics.record_phase(body.metadata.namespace or "", body.metadata.name or "", outcome.status.phase.value)
    memo.wakeups.note((body.metadata.namespace or "", body.metadata.name or ""), outcome.interest)
    if outcome.written:
        logger.info("phase %s, ready %s", outcome.status.phase.value, outcome.status.ready_nodes)


@kopf.on.create(*RESOURCE)
async def created(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    await _run("create", body, memo, logger)


@kopf.on.update(*RESOURCE)
async def updated(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Spec, labels or annotations changed (status changes do not trigger this)."""
    await _run("update", body, memo, logger)


@kopf.daemon(*RESOURCE, initial_delay=1.0, cancellation_timeout=10.0)
async def loop(stopped: kopf.DaemonStopped, body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Passes on watched changes and every reconcile interval; also the first pass after an operator restart."""
    wakeups: Wakeups = memo.wakeups
    config: OperatorConfig = memo.config
    key = (body.metadata.namespace or "", body.metadata.name or "")
    signal = wakeups.enrol(key)
    trigger = "timer"
    try:
        while not stopped:
            if signal.is_set():  # woken, also before this loop started (between a create and its start)
                trigger = "watch"
            signal.clear()
            pause = config.reconcile_interval_s
            if not body.metadata.get("deletionTimestamp"):
                try:
                    # A periodic pass right after another one (the create handler's, on a new pipeline)
                    # has nothing to add; after an operator restart this loop's first pass finds it.
                    await _run(trigger, body, memo, logger, unless_within=FRESH_S if trigger == "timer" else None)
                    if wakeups.interest(key).waiting_on_unwatched:
                        pause = min(pause, RECHECK_S)
                except kopf.TemporaryError as exc:
                    logger.warning("reconcile pass failed, next in %.0f s: %s", exc.delay or pause, exc)
                    pause = min(pause, exc.delay or pause)
                except Exception:
                    if stopped:  # the operator is stopping: its API session may close under this pass
                        return
                    raise
            trigger = "timer"
            if await _sleep(signal, stopped, pause):
                await asyncio.sleep(SETTLE_S)
    finally:
        wakeups.leave(key)


async def _sleep(signal: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> bool:
    """Wait ``seconds``, or less when woken (True) or stopped (False)."""
    woken = asyncio.ensure_future(signal.wait())
    ended = asyncio.ensure_future(stopped.wait(seconds))
    try:
        await asyncio.wait({woken, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (woken, ended):
            waiter.cancel()
    return signal.is_set() and not stopped


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
    # A pipeline standing down because this one read its Cassandra pods' cdc_raw can take them now.
    wakeups: Wakeups = memo.wakeups
    wakeups.wake(wakeups.in_namespace(body.metadata.namespace or ""))
