from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from pipeline_runtime.config.model import SecretRef
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.observability.http import HealthServer
from pipeline_runtime.observability.logging import JsonFormatter, configure_logging
from pipeline_runtime.observability.metrics import create_metrics
from pipeline_runtime.secrets import SecretStore, env_name


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


async def test_health_server_reports_readiness_and_metrics() -> None:
    metrics = create_metrics()
    metrics.events_decoded.labels(pipeline="p", node="n0", table="ks.t", op="upsert").inc(3)
    reasons: list[str] = ["sink pg unreachable"]
    server = HealthServer(metrics.registry, lambda: reasons, "127.0.0.1", 0)
    await server.start()
    try:
        assert await http_get(server.port, "/healthz") == (200, "ok\n")
        assert await http_get(server.port, "/readyz") == (503, "sink pg unreachable\n")
        reasons.clear()
        assert await http_get(server.port, "/readyz") == (200, "ready\n")
        status, body = await http_get(server.port, "/metrics")
        assert status == 200
        assert 'headrace_events_decoded_total{node="n0",op="upsert",pipeline="p",table="ks.t"} 3.0' in body
        assert (await http_get(server.port, "/nope"))[0] == 404
    finally:
        await server.stop()


def test_json_logs_carry_context_and_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", pipeline="orders", node="cassandra-0")
    try:
        logging.getLogger("headrace.test").info("batch written", extra={"table": "shop.orders", "rows": 5})
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["pipeline"] == "orders"
        assert line["node"] == "cassandra-0"
        assert line["table"] == "shop.orders"
        assert line["rows"] == 5
        assert line["msg"] == "batch written"
        assert line["level"] == "info"
    finally:
        logging.getLogger().handlers.clear()
        JsonFormatter.context = {}


def test_secrets_come_from_files_or_env_and_errors_never_show_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path
    ref = SecretRef(name="pg-conn", key="dsn")
    store = SecretStore(root)
    with pytest.raises(ConfigError, match="secret pg-conn/dsn is not available") as caught:
        store.read(ref)
    assert "HEADRACE_SECRET_PG_CONN_DSN" in str(caught.value)
    (root / "pg-conn").mkdir()
    (root / "pg-conn" / "dsn").write_text("postgresql://u:s3cret@h/db\n")
    assert store.read(ref) == "postgresql://u:s3cret@h/db"
    monkeypatch.setenv(env_name(ref), "from-env")
    assert store.read_bytes(ref) == b"from-env"
