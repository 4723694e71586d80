"""Patch ``status.nodes.<cassandra pod>`` of the runtime's own CDCPipeline.

The runtime's ServiceAccount may patch only its pipeline's status (the
operator's Role says so), and it writes only its own node's key with a JSON
merge patch, so runtimes and the operator never overwrite each other. The
kubernetes client is synchronous: calls run in a worker thread. Its errors
are translated here, at this boundary, into ``ReportError``; a failed report
is logged and retried on the next tick, never fatal to the data path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipeline_runtime.config.loader import API_VERSION
from pipeline_runtime.config.status import NodeStatus
from pipeline_runtime.errors import HeadraceError

log = logging.getLogger(__name__)

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "cdcpipelines"


class ReportError(HeadraceError):
    """The status report could not be written."""

    retryable = True


def status_patch(node: str, status: NodeStatus) -> dict[str, Any]:
    """The merge patch that sets this node's entry and nothing else."""
    return {"status": {"nodes": {node: status.model_dump(mode="json", by_alias=True)}}}


class KubernetesStatusReporter:
    """Writes this runtime's NodeStatus onto its pipeline resource."""

    def __init__(self, namespace: str, pipeline: str, node: str, api_client: Any = None) -> None:
        self.namespace = namespace
        self.pipeline = pipeline
        self.node = node
        self._api_client = api_client

    def _api(self) -> Any:
        from kubernetes import client, config  # noqa: PLC0415 - only needed on Kubernetes

        if self._api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            self._api_client = client.ApiClient()
        return client.CustomObjectsApi(self._api_client)

    def _patch(self, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            self._api().patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.pipeline, body
            )
        except ApiException as exc:
            raise ReportError(
                f"patching {self.namespace}/{self.pipeline} status failed: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:  # connection errors, config errors
            raise ReportError(f"patching {self.namespace}/{self.pipeline} status failed: {exc}") from exc

    async def report(self, status: NodeStatus) -> bool:
        """Write the report; False (and a log line) when it failed."""
        try:
            await asyncio.to_thread(self._patch, status_patch(self.node, status))
        except ReportError as exc:
            log.warning("status report failed", extra={"error": str(exc)})
            return False
        return True
