"""Post Kubernetes Events on a pipeline (core/v1 Events, as ``kubectl describe cdcp`` shows them).

An Event that cannot be posted is logged and dropped: Events inform, they never
block a reconcile pass.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cdc_operator import metrics, naming
from cdc_operator.kube.client import Kube
from cdc_operator.kube.errors import KubeError
from cdc_operator.status.events import Notice

log = logging.getLogger(__name__)
COMPONENT = "headrace-operator"


def event_body(pipeline: Mapping[str, Any], notice: Notice, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about ``pipeline``."""
    meta = pipeline["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": naming.API_VERSION,
            "kind": naming.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": notice.type,
        "reason": notice.reason,
        "message": notice.message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_events(kube: Kube, pipeline: Mapping[str, Any], notices: Sequence[Notice], now: datetime) -> None:
    """Post each notice; a refusal is logged, not raised."""
    for notice in notices:
        try:
            await kube.create("Event", pipeline["metadata"]["namespace"], event_body(pipeline, notice, now))
        except KubeError as exc:
            metrics.EVENTS_DROPPED.inc()
            log.warning(
                "cannot post an Event",
                extra={"pipeline": pipeline["metadata"]["name"], "reason": notice.reason, "error": str(exc)},
            )
