"""What a runtime Pod's own status says is wrong with it, in words a user can act on.

A runtime that never reports (unschedulable, its image not pulled, crash-looping, killed for memory)
would otherwise leave the pipeline waiting with nothing to say; the Pod's status names the cause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Container waiting reasons that do not fix themselves.
WAITING_PROBLEMS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why the runtime Pod ``pod`` (as the API returns it) does not run, or None when nothing says so."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return f"Pod {name} failed: {status.get('reason') or 'no reason'} {status.get('message') or ''}".rstrip()
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            return f"Pod {name} cannot be scheduled ({reason}): {condition.get('message') or 'no message'}"
    for container in status.get("containerStatuses") or ():
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason not in WAITING_PROBLEMS:
            continue
        detail = f"Pod {name} container {container.get('name')}: {reason}"
        if waiting.get("message"):
            detail += f": {waiting['message']}"
        last = (container.get("lastState") or {}).get("terminated") or {}
        if last:
            detail += f" (last exit: {last.get('reason') or 'code'} {last.get('exitCode')}"
            detail += f", {container.get('restartCount', 0)} restarts)"
        return detail
    return None


def problems_by_cassandra_pod(pods: Sequence[Mapping[str, Any]], label: str) -> dict[str, str]:
    """Per value of ``label`` (the Cassandra pod a runtime serves): the problem of one of its runtime Pods."""
    out: dict[str, str] = {}
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name"))):
        owner = (pod.get("metadata", {}).get("labels") or {}).get(label)
        problem = pod_problem(pod)
        if owner and problem and owner not in out:
            out[owner] = problem
    return out
