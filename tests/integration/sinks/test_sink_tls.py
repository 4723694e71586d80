"""``sinks[].tls`` against real TLS servers: verified or refused, never plaintext.

PostgreSQL runs with ``ssl=on`` and TCP over TLS only; its certificate is swapped (a configuration
reload) for one of the wrong host and an expired one. ClickHouse's HTTPS path runs against ClickHouse's HTTP
interface over TLS (``devservices.clickhouse_http``, the engine behind it), which requires a client
certificate of the test CA: the handshake, the CA, the hostname and the client certificate are what
the sink's options decide. Failures name the sink and the reason.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devservices.clickhouse_http import ClickHouseFront, running_clickhouse_front
from devservices.pki import Certificate, TestPki
from devservices.postgres import PostgresServer, running_postgres
from devservices.pytest_require import require_module, require_tool
from pipeline_runtime.app import build_sink
from pipeline_runtime.config.model import SecretRef, SinkSpec, SinkType, TLSSpec
from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.errors import ConfigError, SinkUnavailableError
from pipeline_runtime.events import Cell, ChangeEvent, Op, Position, SourcePosition
from pipeline_runtime.secrets import SecretStore
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.sinks.clickhouse.sink import ClickHouseSink
from pipeline_runtime.sinks.postgres.sink import PostgresSink
from tests.integration.sinks.workload import column

pytestmark = [pytest.mark.postgres]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    require_tool("openssl", "it makes the test certificates (Debian package openssl)")
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_postgres(pki: TestPki) -> Iterator[PostgresServer]:
    require_tool("psql", "PostgreSQL's client and server come from Debian's postgresql package")
    folder = Path(tempfile.mkdtemp(prefix="headrace-pgtls-"))  # the server's user must reach it
    try:
        with running_postgres(folder, durable=False, tls=pki.server) as server:
            server.psql('CREATE DATABASE "mtls"')
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def secrets(tmp_path: Path, values: dict[str, str]) -> SecretStore:
    for key, value in values.items():
        (tmp_path / "s").mkdir(parents=True, exist_ok=True)
        (tmp_path / "s" / key).write_text(value)
    return SecretStore(tmp_path)


def spec(kind: str, **tls: Any) -> SinkSpec:
    """A sink named ``warehouse`` with TLS on; ``tls``: TLSSpec fields, ``*_secret`` ones naming keys of Secret s."""
    refs = {k: SecretRef(name="s", key=v) if k.endswith("_secret") else v for k, v in tls.items()}
    return SinkSpec(
        name="warehouse",
        type=SinkType(kind),
        connection_secret=SecretRef(name="s", key="dsn"),
        tls=TLSSpec.model_validate({"enabled": True, **refs}),
    )


def pem(*certificates: Path) -> str:
    return "".join(c.read_text() for c in certificates)


async def pg_sink(tmp_path: Path, dsn: str, **tls: Any) -> PostgresSink:
    values = {"dsn": dsn, "ca": pem(tls.pop("ca")) if "ca" in tls else ""}
    client: Certificate | None = tls.pop("client", None)
    if client is not None:
        values |= {"crt": pem(client.cert), "key": pem(client.key)}
        tls |= {"client_cert_secret": "crt", "client_key_secret": "key"}
    if values["ca"]:
        tls["ca_secret"] = "ca"
    sink = build_sink(spec("postgres", **tls), secrets(tmp_path, values))
    assert isinstance(sink, PostgresSink)
    return sink


async def ssl_of_own_connection(sink: PostgresSink) -> tuple[bool, str | None]:
    async with sink.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return bool(row["ssl"]), row["client_dn"]


async def test_postgres_verified_against_the_secrets_ca(
    tls_postgres: PostgresServer, pki: TestPki, tmp_path: Path
) -> None:
    sink = await pg_sink(tmp_path, tls_postgres.dsn(), ca=pki.ca)
    await sink.open()
    try:
        assert await sink.committed_positions("p") == {}  # the checkpoint table was made over TLS
        assert await ssl_of_own_connection(sink) == (True, None)
    finally:
        await sink.close()


async def test_postgres_mutual_tls_presents_the_client_certificate(
    tls_postgres: PostgresServer, pki: TestPki, tmp_path: Path
) -> None:
    without = await pg_sink(tmp_path / "a", tls_postgres.dsn("mtls"), ca=pki.ca)
    with pytest.raises(Exception, match="certificate") as refused:
        await without.open()
    assert "warehouse" in str(refused.value)
    sink = await pg_sink(tmp_path / "b", tls_postgres.dsn("mtls"), ca=pki.ca, client=pki.client)
    await sink.open()
    try:
        assert await ssl_of_own_connection(sink) == (True, "/CN=headrace")
    finally:
        await sink.close()


@pytest.mark.parametrize(
    ("served", "trusted", "reason"),
    [
        ("server", "other_ca", "certificate verify failed"),
        ("wrong_host", "ca", "IP address mismatch"),
        ("expired", "ca", "certificate has expired"),
    ],
    ids=["unknown-ca", "hostname-mismatch", "expired"],
)
async def test_postgres_refuses_a_server_it_cannot_verify(
    tls_postgres: PostgresServer, pki: TestPki, tmp_path: Path, served: str, trusted: str, reason: str
) -> None:
    tls_postgres.use_certificate(getattr(pki, served))
    try:
        sink = await pg_sink(tmp_path, tls_postgres.dsn(), ca=getattr(pki, trusted))
        with pytest.raises(SinkUnavailableError, match=reason) as caught:
            await sink.open()
        assert str(caught.value).startswith("sink warehouse:"), caught.value
    finally:
        tls_postgres.use_certificate(pki.server)


async def test_postgres_skips_verification_only_when_asked(
    tls_postgres: PostgresServer, pki: TestPki, tmp_path: Path
) -> None:
    sink = await pg_sink(tmp_path, tls_postgres.dsn(), ca=pki.other_ca, insecure_skip_verify=True)
    await sink.open()
    try:
        assert (await ssl_of_own_connection(sink))[0] is True
    finally:
        await sink.close()


async def test_postgres_with_tls_never_falls_back_to_plaintext(postgres_dsn: str, pki: TestPki, tmp_path: Path) -> None:
    """The suite's shared server has no TLS: the sink refuses it, although the DSN alone would connect."""
    sink = await pg_sink(tmp_path, f"{postgres_dsn}?sslmode=prefer", ca=pki.ca)
    with pytest.raises(SinkUnavailableError, match=r"rejected SSL upgrade|does not support SSL") as caught:
        await sink.open()
    assert "warehouse" in str(caught.value)


def test_tls_on_the_in_process_clickhouse_engine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls does not apply to chdb://"):
        build_sink(spec("clickhouse"), secrets(tmp_path, {"dsn": "chdb:///tmp/x"}))


@pytest.fixture(scope="module")
def https_front(pki: TestPki) -> Iterator[ClickHouseFront]:
    """ClickHouse's HTTP interface over HTTPS, with the test CA's certificate, requiring client certificates."""
    require_module("chdb", "the ClickHouse front serves the chdb engine (`make dev`)")
    folder = Path(tempfile.mkdtemp(prefix="headrace-chtls-"))
    try:
        with running_clickhouse_front(folder, tls=(pki.server.cert, pki.server.key, pki.ca)) as front:
            yield front
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def ch_open(tmp_path: Path, dsn: str, pki: TestPki, trusted: Path, client: bool) -> ClickHouseSink:
    values = {"dsn": dsn, "ca": pem(trusted)}
    tls: dict[str, Any] = {"ca_secret": "ca"}
    if client:
        values |= {"crt": pem(pki.client.cert), "key": pem(pki.client.key)}
        tls |= {"client_cert_secret": "crt", "client_key_secret": "key"}
    sink = build_sink(spec("clickhouse", **tls), secrets(tmp_path, values))
    assert isinstance(sink, ClickHouseSink)
    return sink


async def test_clickhouse_writes_over_verified_https_with_the_client_certificate(
    https_front: ClickHouseFront, pki: TestPki, tmp_path: Path
) -> None:
    """An http:// DSN with tls on goes over HTTPS; the server required and verified the client certificate."""
    sink = await ch_open(tmp_path, https_front.dsn.replace("https://", "http://"), pki, pki.ca, client=True)
    key = column("k", "int", ColumnKind.PARTITION_KEY, 0)
    schema = TableSchema("tls", "kv", uuid.uuid4(), (key, column("v", "text")))
    events = [
        ChangeEvent(Op.UPSERT, "tls", "kv", {"k": n}, SourcePosition("n", Position(1, n)), {}, {"v": Cell(f"v{n}", 9)})
        for n in range(3)
    ]
    await sink.open()
    try:
        await sink.ensure_table(schema)
        await sink.write(Batch(events, Checkpoint("p", "n", Position(1, 2))))
        rows = sink.client.query("SELECT k, v FROM tls.kv FINAL ORDER BY k").result_rows
        assert rows == [(0, "v0"), (1, "v1"), (2, "v2")]
        assert await sink.committed_positions("p") == {"n": Position(1, 2)}
    finally:
        await sink.close()


async def test_clickhouse_without_the_client_certificate_is_refused(
    https_front: ClickHouseFront, pki: TestPki, tmp_path: Path
) -> None:
    sink = await ch_open(tmp_path, https_front.dsn, pki, pki.ca, client=False)
    with pytest.raises(SinkUnavailableError, match=r"(?i)certificate|handshake|SSL") as caught:
        await sink.open()
    assert str(caught.value).startswith("sink warehouse:")


async def test_clickhouse_refuses_a_server_of_an_unknown_ca(
    https_front: ClickHouseFront, pki: TestPki, tmp_path: Path
) -> None:
    sink = await ch_open(tmp_path, https_front.dsn, pki, pki.other_ca, client=True)
    with pytest.raises(SinkUnavailableError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed") as caught:
        await sink.open()
    assert str(caught.value).startswith("sink warehouse:")


async def test_clickhouse_refuses_a_server_named_otherwise(pki: TestPki, tmp_path: Path) -> None:
    """A server whose certificate (of the trusted CA) names another host is refused."""
    with running_clickhouse_front(tmp_path / "front", tls=(pki.wrong_host.cert, pki.wrong_host.key, None)) as front:
        sink = await ch_open(tmp_path, front.dsn, pki, pki.ca, client=True)
        with pytest.raises(SinkUnavailableError, match=r"(?i)hostname|doesn't match|not valid for|mismatch") as caught:
            await sink.open()
    assert str(caught.value).startswith("sink warehouse:")
