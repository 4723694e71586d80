"""One reconcile pass: read, render, apply, retire, assess, report. Safe to run any number of times.

Every trigger (create, update, restart annotation, the periodic timer, an
operator restart) runs this same pass, so there is one code path to test and
nothing depends on which event came first or whether an event was missed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cdc_operator import naming
from cdc_operator.config import OperatorConfig
from cdc_operator.handlers.apply import AppliedState, apply_all, drift, fingerprint
from cdc_operator.handlers.discovery import discover, missing_secrets, read_elsewhere
from cdc_operator.handlers.events import post_events
from cdc_operator.handlers.reports import clear_reports, read_reports
from cdc_operator.handlers.scale import retire, stand_down
from cdc_operator.kube.client import Kube
from cdc_operator.kube.errors import Rejected
from cdc_operator.render import PipelineRef, render_pipeline
from cdc_operator.status.assess import assess
from cdc_operator.status.conditions import Verdict, conditions, false
from cdc_operator.status.events import Notice, changed_fields, notices
from cdc_operator.status.nodes import reports_in_force
from cdc_operator.status.observation import Observation
from cdc_operator.status.pods import problems_by_cassandra_pod
from cdc_operator.wakeups import Interest
from pipeline_runtime.config.loader import describe_validation_error
from pipeline_runtime.config.model import PipelineSpec
from pipeline_runtime.config.status import ConditionType, NodeStatus, PipelineStatus

log = logging.getLogger(__name__)
#: The Progressing reason while the pause-reconciliation annotation holds.
HOLD_REASON = "ReconciliationPaused"


@dataclass(frozen=True)
class Outcome:
    status: PipelineStatus
    written: bool
    """False when the status already said this (no write was needed)."""
    interest: Interest = field(default_factory=Interest)
    """What the pass found the pipeline depends on, for the watches that wake it."""


async def reconcile(
    kube: Kube,
    config: OperatorConfig,
    body: Mapping[str, Any],
    applied: AppliedState,
) -> Outcome:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    annotations = meta.get("annotations") or {}
    ref = PipelineRef(name, namespace, meta["uid"], restart_token=annotations.get(naming.ANNOTATION_RESTART))
    previous = _previous_status(body.get("status"))
    # The runtimes' own reports (one ConfigMap each); status.nodes is the operator's copy of them.
    nodes, holding = await read_reports(kube, namespace, name)
    now = datetime.now(UTC)
    base = {
        "namespace": namespace,
        "generation": int(meta.get("generation", 0)),
        "now": now,
        "previous_conditions": previous.conditions,
        "nodes": nodes,
        "thresholds": config.thresholds,
    }
    if annotations.get(naming.ANNOTATION_PAUSE_RECONCILIATION, "").lower() == "true":
        return await _hold(kube, body, previous, nodes, now)
    try:
        spec = with_offsets_reset(
            with_snapshot_request(
                PipelineSpec.model_validate(body.get("spec") or {}), annotations.get(naming.ANNOTATION_SNAPSHOT)
            ),
            annotations.get(naming.ANNOTATION_RESET_OFFSETS),
        )
    except ValidationError as exc:
        seen = Observation(spec=None, invalid_spec=describe_validation_error(exc).replace("\n", "; "), **base)
        return await _report(kube, body, seen, previous)

    discovery = await discover(kube, namespace, spec.source.cassandra)
    rendered = render_pipeline(ref, spec, discovery.pods, config.runtime_image)
    missing = await missing_secrets(kube, namespace, rendered.secrets)
    existing = await kube.list("Deployment", namespace, naming.pipeline_selector(name))
    shared = await read_elsewhere(kube, namespace, meta, spec.source.cassandra, discovery.pods)
    if shared:
        existing = await stand_down(kube, namespace, existing, shared)
    blocked = discovery.problem is not None or bool(missing) or bool(shared)
    rejected = None
    if not blocked:
        digest = fingerprint(rendered.objects)
        changed = await drift(kube, rendered.objects, existing, naming.pipeline_selector(name))
        if changed or not applied.is_current(digest, config.reapply_after_s):
            if changed and applied.fingerprint is not None:
                log.warning("repairing objects changed by hand", extra={"pipeline": name, "drift": "; ".join(changed)})
            try:
                await apply_all(kube, rendered.objects)
                applied.mark(digest)
            except Rejected as exc:
                # Admitted by the CRD, refused as a Deployment or ConfigMap: say so in status, apply again next pass.
                log.error("the API server refused an object", extra={"pipeline": name, "error": str(exc)})
                rejected, blocked = str(exc), True
    live = [p.name for p in discovery.pods]
    # Without a trustworthy pod list, retiring runtimes could delete healthy ones: skip it.
    retired = (
        await retire(
            kube,
            namespace,
            existing,
            live_pods=live,
            present_pods=discovery.present,
            nodes=nodes,
            now=now,
            drain_timeout=config.drain_timeout,
            paused=spec.paused,
        )
        if not blocked
        else None
    )
    runtime_pods = await kube.list("Pod", namespace, naming.pipeline_selector(name))
    by_label = {naming.fit(p.name): p.name for p in discovery.pods}
    problems = {
        by_label[label]: problem
        for label, problem in problems_by_cassandra_pod(runtime_pods, naming.LABEL_CASSANDRA_POD).items()
        if label in by_label
    }
    in_force = reports_in_force(spec.paused, previous.conditions, nodes)
    if spec.paused and holding:
        await clear_reports(kube, namespace, holding)
    seen = Observation(
        spec=spec,
        source_description=discovery.description,
        source_problem=discovery.problem,
        pods=live,
        pods_without_data=rendered.pods_without_data,
        missing_secrets=missing,
        draining=retired.draining if retired else {},
        deployments={p.name: naming.runtime_deployment(name, p.name) for p in discovery.pods},
        config_hash=rendered.config_hash,
        runtime_problems=problems,
        read_elsewhere=shared,
        apply_rejected=rejected,
        **(base | {"nodes": in_force}),
    )
    outcome = await _report(kube, body, seen, previous)
    interest = Interest(discovery.selector, waiting_on_unwatched=bool(missing) or discovery.selector is None)
    return dataclasses.replace(outcome, interest=interest)


def _previous_status(raw: Any) -> PipelineStatus:
    """The status as stored; a malformed one (hand-edited) counts as empty rather than blocking."""
    try:
        return PipelineStatus.model_validate(raw or {})
    except ValidationError:
        log.warning("ignoring a status that does not match the model")
        return PipelineStatus()


async def _report(kube: Kube, body: Mapping[str, Any], seen: Observation, previous: PipelineStatus) -> Outcome:
    name = body["metadata"]["name"]
    status = assess(seen)
    patch = status_patch(status, previous, seen.nodes)
    if patch is not None:
        await kube.merge_patch(naming.KIND, seen.namespace, name, patch, subresource="status")
        await post_events(kube, body, notices(previous, status, _spec_changes(body)), seen.now)
    return Outcome(status, written=patch is not None)


async def _hold(
    kube: Kube, body: Mapping[str, Any], previous: PipelineStatus, nodes: Mapping[str, NodeStatus], now: datetime
) -> Outcome:
    """Reconciliation paused: touch nothing but the Progressing condition, which says so.

    Runtimes keep running, and their reports still reach ``status.nodes``; phase and the aggregates
    stay as the last pass left them, and ``observedGeneration`` does not move (spec edits wait).
    """
    message = (
        f"reconciliation is paused by the annotation {naming.ANNOTATION_PAUSE_RECONCILIATION}=true: the operator "
        "changes nothing (runtimes keep running; spec edits wait); remove the annotation to resume"
    )
    verdicts = {c.type: Verdict(c.status, c.reason, c.message) for c in previous.conditions}
    for kind in ConditionType:
        verdicts.setdefault(kind, false(HOLD_REASON, message))
    verdicts[ConditionType.PROGRESSING] = false(HOLD_REASON, message)
    held = conditions(verdicts, previous.conditions, previous.observed_generation, now)
    status = previous.model_copy(update={"conditions": held})
    patch = status_patch(status, previous, nodes)
    if patch is not None:
        name = body["metadata"]["name"]
        await kube.merge_patch(naming.KIND, body["metadata"]["namespace"], name, patch, subresource="status")
        if status_patch(status, previous, previous.nodes) is not None:  # the hold is news, not a new report
            await post_events(kube, body, [Notice("Normal", HOLD_REASON, message)], now)
    return Outcome(status, written=patch is not None)


def _spec_changes(body: Mapping[str, Any]) -> list[str]:
    """The spec fields (and the snapshot annotation) that differ from what kopf last handled."""
    annotations = body["metadata"].get("annotations") or {}
    try:
        handled = json.loads(annotations.get(naming.KOPF_DIFFBASE, "") or "{}")
    except ValueError:
        return []
    changes = changed_fields(handled.get("spec") or {}, body.get("spec") or {})
    old_annotations = (handled.get("metadata") or {}).get("annotations") or {}
    for key in (naming.ANNOTATION_SNAPSHOT, naming.ANNOTATION_RESET_OFFSETS):
        if old_annotations.get(key) != annotations.get(key):
            changes.append(f"annotation {key}")
    return changes


def status_patch(
    status: PipelineStatus, previous: PipelineStatus, nodes: Mapping[str, NodeStatus]
) -> dict[str, Any] | None:
    """A merge patch from ``previous`` to ``status`` with ``nodes`` as ``status.nodes``, or None when equal.

    Entries of nodes no longer reported (a runtime removed, a pause) and sinks no longer in the spec
    are deleted (null in a merge patch).
    """
    fresh = status.model_dump(mode="json", by_alias=True, exclude={"nodes"})
    old = previous.model_dump(mode="json", by_alias=True, exclude={"nodes"})
    for sink in old.get("sinks", {}):
        if sink not in fresh["sinks"]:
            fresh["sinks"][sink] = None
    reported = {pod: node.model_dump(mode="json", by_alias=True) for pod, node in nodes.items()}
    before = {pod: node.model_dump(mode="json", by_alias=True) for pod, node in previous.nodes.items()}
    if fresh == old and reported == before:
        return None
    if reported != before:
        fresh["nodes"] = {**dict.fromkeys(before), **reported}
    return {"status": fresh}


def with_offsets_reset(spec: PipelineSpec, value: str | None) -> PipelineSpec:
    """The spec with the ``headrace.io/reset-offsets`` annotation as ``source.offsetsReset`` (it wins over the field).

    The value is ``earliest`` or ``SEGMENT:OFFSET``, for every node and sink, optionally followed by
    ``@<tag>``; the whole value is the request, so ``earliest@2`` applies ``earliest`` once more. The
    rendered config changes, the runtimes roll, and each applies the reset once as it starts. An invalid
    value raises the model's ValidationError, reported like a bad spec.
    """
    if value is None:
        return spec
    document = spec.model_dump(by_alias=True, mode="json")
    document["source"]["offsetsReset"] = {"request": value, "to": value.partition("@")[0]}
    return PipelineSpec.model_validate(document)


def with_snapshot_request(spec: PipelineSpec, request: str | None) -> PipelineSpec:
    """The spec with the ``headrace.io/snapshot`` annotation as ``source.snapshot.request`` (it wins over the field).

    The rendered config then changes, so the runtimes roll and read every selected table once more.
    An invalid value (over 253 characters) raises the model's ValidationError, reported like a bad spec.
    """
    if request is None:
        return spec
    document = spec.model_dump(by_alias=True, mode="json")
    document["source"].setdefault("snapshot", {})["request"] = request
    return PipelineSpec.model_validate(document)
