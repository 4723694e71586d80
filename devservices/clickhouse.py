"""The real ClickHouse engine in-process, through chdb and clickhouse-connect.

No ClickHouse server recent enough for clickhouse-connect exists in the
registries this project can reach, so tests run the engine itself (the
``chdb`` package, ClickHouse 26.x) behind clickhouse-connect's ``chdb://``
client: the SQL, table engines and FINAL semantics are ClickHouse's own.
chdb holds one data path per process; clients on that path share it.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from devservices.process import ServiceError


@cache
def engine_path() -> Path:
    """The one chdb data folder of this process."""
    return Path(tempfile.mkdtemp(prefix="headrace-chdb-"))


def chdb_dsn(path: Path | None = None) -> str:
    """A clickhouse-connect DSN for the in-process engine."""
    return f"chdb://{path or engine_path()}"


def chdb_client(path: Path | None = None) -> Any:
    """A clickhouse-connect client on the in-process engine."""
    try:
        import clickhouse_connect  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise ServiceError("clickhouse: clickhouse-connect is not installed (pip install -e '.[dev]')") from exc
    try:
        return clickhouse_connect.get_client(dsn=chdb_dsn(path))
    except Exception as exc:
        raise ServiceError(f"clickhouse: cannot open the chdb engine at {path or engine_path()}: {exc}") from exc
