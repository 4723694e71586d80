"""The runtime's small HTTP endpoint: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers while the event loop runs (the process is alive).
``/readyz`` answers 200 only while the source is readable and every sink is
reachable, and 503 with the reasons otherwise. ``/metrics`` is Prometheus
text format. Plain asyncio: three GET routes do not justify a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

#: Returns the reasons the runtime is not ready; empty when it is.
ReadinessProbe = Callable[[], list[str]]


class HealthServer:
    """Serve health, readiness and metrics on ``host:port``."""

    def __init__(self, registry: CollectorRegistry, readiness: ReadinessProbe, host: str, port: int) -> None:
        self._registry = registry
        self._readiness = readiness
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def route(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path``."""
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            reasons = self._readiness()
            if reasons:
                return 503, "text/plain", ("\n".join(reasons) + "\n").encode()
            return 200, "text/plain", b"ready\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, _ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, content_type, body = (
                self.route(path.split("?", 1)[0]) if method == "GET" else (405, "text/plain", b"GET only\n")
            )
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
