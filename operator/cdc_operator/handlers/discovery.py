"""Find the Cassandra pods of a pipeline and check its Secrets: the reads of a reconcile pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cdc_operator import naming
from cdc_operator.cassandra import CassandraPod, describe, is_live, selector_query, static_selector, workload_selector
from cdc_operator.kube.client import Kube
from pipeline_runtime.config.model import CassandraSource, PipelineSpec


@dataclass(frozen=True)
class Discovery:
    description: str
    """How pods are selected, in words, for status messages."""
    pods: list[CassandraPod] = field(default_factory=list)
    problem: str | None = None
    """Set when the pods cannot be looked up at all (missing workload, empty selector)."""
    selector: dict[str, str] | None = None
    """The Cassandra pods' labels, when they could be looked up."""
    present: list[str] = field(default_factory=list)
    """Every selected pod that still exists, terminating or finished ones too (a gone pod is in none)."""


async def discover(kube: Kube, namespace: str, source: CassandraSource) -> Discovery:
    selector = static_selector(source)
    description = f"pods with labels {selector_query(selector)}" if selector else ""
    if selector is None:
        if source.workload is None:
            return Discovery("nothing", problem="set spec.source.cassandra.podSelector or .workload")
        kind, name = source.workload.kind, source.workload.name
        body = await kube.get(kind, namespace, name)
        if body is None:
            return Discovery(
                f"the pods of {kind} {name}",
                problem=f"{kind} {name} does not exist in namespace {namespace}; "
                "create it or fix spec.source.cassandra.workload",
            )
        selector = workload_selector(kind, body)
        description = f"the pods of {kind} {name} ({selector_query(selector)})"
    if not selector:
        return Discovery(description, problem="the Cassandra pod selector is empty and would match every pod")
    pods = await kube.list("Pod", namespace, selector_query(selector))
    live = [describe(p, selector, source.data_volume) for p in pods if is_live(p)]
    present = sorted(p["metadata"]["name"] for p in pods)
    return Discovery(description, pods=sorted(live, key=lambda p: p.name), selector=selector, present=present)


async def missing_secrets(kube: Kube, namespace: str, wanted: Mapping[str, tuple[str, ...]]) -> list[str]:
    """``<secret>`` or ``<secret>/<key>`` for every reference that cannot be mounted.

    Only key names are looked at; the values are dropped with the response.
    """
    missing: list[str] = []
    for name, keys in wanted.items():
        body = await kube.get("Secret", namespace, name)
        if body is None:
            missing.append(name)
            continue
        present = set(body.get("data") or {}) | set(body.get("stringData") or {})
        missing.extend(f"{name}/{key}" for key in keys if key not in present)
    return missing


def _age(meta: Mapping[str, Any]) -> tuple[str, str]:
    """Creation order: creationTimestamp (RFC 3339, seconds), then name for pipelines created in one second."""
    return meta.get("creationTimestamp") or "", meta["name"]


async def read_elsewhere(
    kube: Kube, namespace: str, me: Mapping[str, Any], mine: CassandraSource, pods: list[CassandraPod]
) -> dict[str, str]:
    """Cassandra pod -> the pipeline created earlier that already reads its ``cdc_raw``, for each of ``pods``.

    ``me`` is this pipeline's metadata, ``mine`` its Cassandra source. A runtime deletes the
    segments its own sinks committed; a second pipeline on the same pods would delete segments
    the first has not read yet. The older pipeline keeps the pods, paused
    or not (a paused pipeline resumes from its segments); one being deleted, or whose spec is
    invalid (it runs nothing), gives them up.

    One list of the namespace's pipelines per pass; their selectors are matched against the
    labels of ``pods`` here, so the cost does not grow with the square of the pipelines (a
    pipeline naming another workload than this one's selects none of its pods, and only a
    workload named by an older pipeline while this one uses a podSelector is read).
    """
    if not pods:
        return {}
    claimed: dict[str, str] = {}
    for other in await kube.list(naming.KIND, namespace):
        meta = other["metadata"]
        if meta["name"] == me["name"] or meta.get("deletionTimestamp") or _age(meta) >= _age(me):
            continue
        try:
            theirs = PipelineSpec.model_validate(other.get("spec") or {}).source.cassandra
        except ValidationError:
            continue
        selector = await _selector_of(kube, namespace, theirs, mine)
        if not selector:
            continue
        for pod in pods:
            if all(pod.labels.get(key) == value for key, value in selector.items()):
                claimed.setdefault(pod.name, meta["name"])
    return claimed


async def _selector_of(kube: Kube, namespace: str, theirs: CassandraSource, mine: CassandraSource) -> dict[str, str]:
    """The label selector of another pipeline's Cassandra pods; empty when it cannot select ours."""
    selector = static_selector(theirs)
    if selector is not None:
        return selector
    workload = theirs.workload
    if workload is None:
        return {}
    if mine.workload is not None and (mine.workload.kind, mine.workload.name) != (workload.kind, workload.name):
        return {}  # a pod belongs to one StatefulSet or datacenter: another workload's pods are not ours
    body = await kube.get(workload.kind, namespace, workload.name)
    return workload_selector(workload.kind, body) if body is not None else {}
