"""The operator's Kubernetes calls: get, list, server-side apply, merge patch, create, delete.

Writes use server-side apply with one field manager, so applying the same
rendered object twice is a no-op and applying a changed one removes exactly
the fields the operator stopped rendering, while fields others own (a user's
annotation, an HPA's replicas) stay. This is what makes reconciling after an
operator restart safe: there is no "create if missing" branch to race.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

from cdc_operator import naming
from cdc_operator.kube.errors import Conflict, KubeError, NotFound, Rejected, Unavailable
from cdc_operator.kube.resources import KINDS

_TIMEOUT = aiohttp.ClientTimeout(total=30)


#: Produces fresh credentials; called again when the API server answers 401.
Login = Callable[[], kopf.ConnectionInfo]


class Kube:
    """One aiohttp session to the API server, authenticated like kopf itself."""

    def __init__(self, session: aiohttp.ClientSession, server: str, login: Login) -> None:
        self._session = session
        self._server = server.rstrip("/")
        self._login = login

    @classmethod
    def connect(cls, login: Login) -> Kube:
        info = login()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=20),
            headers={**info.as_http_headers(), "User-Agent": naming.FIELD_MANAGER},
            timeout=_TIMEOUT,
        )
        return cls(session, info.server, login)

    async def close(self) -> None:
        await self._session.close()

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._request("GET", KINDS[kind].path(namespace, name))
        except NotFound:
            return None

    async def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self._request("GET", KINDS[kind].path(namespace), params=params)
        return list(body.get("items", []))

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (create or update), taking over conflicting fields."""
        meta = obj["metadata"]
        path = KINDS[obj["kind"]].path(meta["namespace"], meta["name"])
        params = {"fieldManager": naming.FIELD_MANAGER, "force": "true"}
        return await self._request("PATCH", path, params=params, body=obj, content_type="application/apply-patch+yaml")

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        path = KINDS[kind].path(namespace, name, subresource)
        return await self._request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def create(self, kind: str, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (POST); for objects that are only ever created, such as Events."""
        return await self._request("POST", KINDS[kind].path(namespace), body=obj)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete in the foreground of nothing: True if it existed."""
        try:
            await self._request("DELETE", KINDS[kind].path(namespace, name), body={"propagationPolicy": "Background"})
        except NotFound:
            return False
        return True

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in (1, 2):
            try:
                async with self._session.request(
                    method, self._server + path, params=params, data=data, headers=headers
                ) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unavailable(f"{method} {path}: {exc!r}") from exc
            if status == 401 and attempt == 1:
                # Service-account tokens rotate: log in again and retry once.
                self._session.headers.update(self._login().as_http_headers())
                continue
            if status >= 400:
                raise _translate(method, path, status, text)
            return dict(json.loads(text)) if text else {}
        raise AssertionError("unreachable")


def _translate(method: str, path: str, status: int, text: str) -> KubeError:
    try:
        message = str(json.loads(text).get("message", text))
    except ValueError:
        message = text
    description = f"{method} {path}: {status} {message}"
    if status == 404:
        return NotFound(description, status)
    if status == 409:
        return Conflict(description, status)
    if status in (429,) or status >= 500:
        return Unavailable(description, status)
    return Rejected(description, status)
