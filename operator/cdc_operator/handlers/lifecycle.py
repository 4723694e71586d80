"""Operator start and stop: kopf's settings and the API client the handlers share.

Kopf's bookkeeping is moved out of ``status`` into annotations under
``headrace.io/``: the CRD's status schema is exact (structural), so anything
kopf wrote there would be pruned and kopf would loop re-running handlers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from cdc_operator import naming
from cdc_operator.config import OperatorConfig
from cdc_operator.handlers import watch
from cdc_operator.kube.client import Kube
from cdc_operator.wakeups import Wakeups


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.KOPF_PREFIX, key=naming.KOPF_DIFFBASE.split("/", 1)[1]
    )
    settings.persistence.finalizer = naming.FINALIZER
    # Kubernetes Events only for problems: one Event per timer tick would flood the namespace.
    settings.posting.level = logging.WARNING
    # Reconnect watches regularly so a silently dropped connection costs minutes, not hours.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # With peering: a replica that stops heartbeating (killed, node lost) is replaced after this long.
    settings.peering.lifetime = int(os.environ.get("HEADRACE_PEERING_LIFETIME_SECONDS", "30"))
    memo.kube = Kube.connect(lambda: credentials(settings))
    memo.config = OperatorConfig.from_env()
    memo.wakeups = Wakeups()
    watch.quiet()
    logger.info("headrace operator configured: %s", memo.config)


def credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In-cluster service account first, else the kubeconfig (``$KUBECONFIG`` read at call time)."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no in-cluster service account and no kubeconfig: cannot reach the API server")
    return info


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """Kopf and the operator's own client log in the same way, without the official client library.

    Kopf calls this again when the API server answers 401 (a rotated
    service-account token); the operator's client re-reads it on 401 too.
    """
    return credentials(settings)


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    kube = getattr(memo, "kube", None)
    if isinstance(kube, Kube):
        await kube.close()
