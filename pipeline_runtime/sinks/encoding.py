"""Per-column value encoders and storage-object names, shaped the same way in every SQL sink.

Each sink has its own type table (``postgres/typemap.py``, ``clickhouse/typemap.py``);
what turns that table into a column encoder, and how a Cassandra table's storage
objects are named, is the same everywhere and lives here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pipeline_runtime.cql.canonical import dumps, to_json
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import Cell, ChangeEvent, Liveness, Op
from pipeline_runtime.sinks.changes import Layout

Encoder = Callable[[Any], Any]


def native_classes() -> dict[str, Any]:
    """What the compiled encoders recognise by identity and read by slot (``native/src/upserts.rs``)."""
    return {
        "upsert": Op.UPSERT,
        "event": ChangeEvent,
        "cell": Cell,
        "liveness": Liveness,
        "uuid": uuid.UUID,
        "decimal": Decimal,
    }


def column_encoder(
    cql_type: CqlType, scalars: Mapping[Kind, Encoder], native_array: Callable[[CqlType], bool]
) -> Encoder:
    """Driver value -> sink value for ``cql_type``; None stays None.

    Scalars use the sink's own encoders, vectors the sink stores as native arrays
    encode element by element, and everything else is canonical JSON text.
    """
    encoder = scalars.get(cql_type.kind)
    if encoder is None:
        if native_array(cql_type):
            element = scalars[cql_type.args[0].kind]

            def encoder(value: Any) -> Any:
                return [element(v) for v in value]

        else:

            def encoder(value: Any) -> Any:
                return dumps(to_json(value, cql_type))

    plain = encoder

    def encode(value: Any) -> Any:
        return None if value is None else plain(value)

    return encode


def to_date(value: Any) -> dt.date:
    """A CQL ``date`` as a ``datetime.date``: from a date, datetime, days since 1970 or the driver's ``Date``."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int):
        return dt.date(1970, 1, 1) + dt.timedelta(days=value)
    return value.date()  # type: ignore[no-any-return]  # cassandra.util.Date; ValueError out of range


def to_utc(value: Any) -> dt.datetime:
    """A CQL ``timestamp`` as an aware datetime: naive ones are UTC, numbers are milliseconds since 1970."""
    if isinstance(value, (int, float)):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TableObjects:
    """Names of one Cassandra table's objects in a sink: the view users read and its side tables.

    ``namespace`` is the PostgreSQL schema or the ClickHouse database; ``quote`` the
    sink's identifier quoting.
    """

    layout: Layout
    namespace: str
    table: str

    @staticmethod
    def quote(name: str) -> str:
        raise NotImplementedError

    def name(self, suffix: str = "") -> str:
        return f"{self.quote(self.namespace)}.{self.quote(self.table + suffix)}"

    @property
    def statics(self) -> str:
        return self.name("__static")

    @property
    def tombstones(self) -> str:
        return self.name("__tombstones")

    @property
    def view(self) -> str:
        return self.name()

    @property
    def has_statics(self) -> bool:
        return bool(self.layout.statics)
