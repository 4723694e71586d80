"""Write this runtime's NodeStatus into its report ConfigMap, the one object it may write.

The operator creates one report ConfigMap per runtime and a Role that lets the
runtime's own ServiceAccount ``get`` and ``patch`` that object only; the
operator folds the reports into the pipeline's ``status.nodes``. So a runtime
can speak only for itself. The kubernetes client is synchronous: calls run in
a worker thread. Its errors are translated here, at this boundary, into
``ReportError``; a failed report is logged and retried on the next tick, never
fatal to the data path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipeline_runtime.config.status import REPORT_KEY, NodeStatus
from pipeline_runtime.errors import HeadraceError

log = logging.getLogger(__name__)


class ReportError(HeadraceError):
    """The status report could not be written."""

    retryable = True


def report_patch(status: NodeStatus) -> dict[str, Any]:
    """The merge patch that writes ``status`` into a report ConfigMap."""
    return {"data": {REPORT_KEY: status.model_dump_json(by_alias=True)}}


class KubernetesStatusReporter:
    """Writes this runtime's NodeStatus into its report ConfigMap."""

    def __init__(self, namespace: str, config_map: str, api_client: Any = None) -> None:
        self.namespace = namespace
        self.config_map = config_map
        self._api_client = api_client

    def _api(self) -> Any:
        from kubernetes import client, config  # noqa: PLC0415 - only needed on Kubernetes

        if self._api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            self._api_client = client.ApiClient()
        return client.CoreV1Api(self._api_client)

    def _patch(self, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        where = f"ConfigMap {self.namespace}/{self.config_map}"
        try:
            self._api().patch_namespaced_config_map(self.config_map, self.namespace, body)
        except ApiException as exc:
            raise ReportError(f"writing the report into {where} failed: {exc.status} {exc.reason}") from exc
        except Exception as exc:  # connection errors, config errors
            raise ReportError(f"writing the report into {where} failed: {exc}") from exc

    async def report(self, status: NodeStatus) -> bool:
        """Write the report; False (and a log line) when it failed."""
        try:
            await asyncio.to_thread(self._patch, report_patch(status))
        except ReportError as exc:
            log.warning("status report failed", extra={"error": str(exc)})
            return False
        return True
