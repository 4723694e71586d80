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
from pipeline_runtime.cql.values import EMPTY, Timestamp, date_days
from pipeline_runtime.errors import ValueEncodingError
from pipeline_runtime.events import Cell, ChangeEvent, CollectionChange, Liveness, Op
from pipeline_runtime.sinks.changes import Layout

Encoder = Callable[[Any], Any]


class UnstorableValueError(ValueError):
    """Raised by a scalar encoder for a value its sink cannot hold; ``column_encoder`` names the column.

    ``reason`` says why without quoting the value (values never reach logs).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def native_classes() -> dict[str, Any]:
    """What the compiled encoders recognise by identity and read by slot (``native/src/upserts.rs``)."""
    return {
        "upsert": Op.UPSERT,
        "event": ChangeEvent,
        "cell": Cell,
        "collection": CollectionChange,
        "liveness": Liveness,
        "uuid": uuid.UUID,
        "decimal": Decimal,
    }


def column_encoder(  # noqa: PLR0917 - the sinks' factories pass them straight through
    cql_type: CqlType,
    scalars: Mapping[Kind, Encoder],
    native_array: Callable[[CqlType], bool],
    table: str = "",
    column: str = "",
    json_check: Callable[[str], str | None] | None = None,
    *,
    key: bool = False,
) -> Encoder:
    """Driver value -> sink value for ``cql_type``; None stays None.

    Scalars use the sink's own encoders, vectors the sink stores as native arrays
    encode element by element, and everything else is canonical JSON text
    (``json_check`` gives the reason a sink cannot store a JSON text, or None).
    A zero-length value (``EMPTY``) is stored as NULL: no scalar column type can
    tell it from null (docs/sinks.md); in a ``key`` column, where NULL is no
    value (ClickHouse would store the type's default, merging the row into
    another), it is refused. A value the sink cannot hold raises
    ``ValueEncodingError`` naming ``table``, ``column`` and the CQL type: that
    row is dead-lettered, the rest of the batch is written.
    """
    encoder = scalars.get(cql_type.kind)
    if encoder is None:
        if native_array(cql_type):
            element = scalars[cql_type.args[0].kind]

            def encoder(value: Any) -> Any:
                return [element(v) for v in value]

        elif json_check is None:

            def encoder(value: Any) -> Any:
                return dumps(to_json(value, cql_type))

        else:
            check = json_check

            def encoder(value: Any) -> Any:
                text = dumps(to_json(value, cql_type))
                reason = check(text)
                if reason is not None:
                    raise UnstorableValueError(reason)
                return text

    plain = encoder

    def encode(value: Any) -> Any:
        if value is None:
            return None
        if value is EMPTY:
            if key:
                raise ValueEncodingError(table or "?", column or "?", cql_type.cql(), _EMPTY_KEY)
            return None
        try:
            return plain(value)
        except UnstorableValueError as exc:
            raise ValueEncodingError(table or "?", column or "?", cql_type.cql(), exc.reason) from None

    return encode


_EPOCH_DATE = dt.date(1970, 1, 1)
#: Days since 1970 of ``datetime.date``'s first and last day (years 1 and 9999).
_DATE_MIN_DAYS = dt.date.min.toordinal() - _EPOCH_DATE.toordinal()
_DATE_MAX_DAYS = dt.date.max.toordinal() - _EPOCH_DATE.toordinal()


_EMPTY_KEY = "a zero-length value cannot be stored in a key column of this sink"


def to_date(value: Any) -> dt.date:
    """A CQL ``date`` as a ``datetime.date``: from a date, datetime, days since 1970 or the driver's ``Date``.

    Raises ``UnstorableValueError`` for a day outside ``datetime.date``'s years 1-9999.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    days = date_days(value)
    if not _DATE_MIN_DAYS <= days <= _DATE_MAX_DAYS:
        raise UnstorableValueError("the date is outside years 1-9999, which this sink's date type holds")
    return _EPOCH_DATE + dt.timedelta(days=days)


def to_utc(value: Any) -> dt.datetime:
    """A CQL ``timestamp`` as an aware datetime: naive ones are UTC, numbers are milliseconds since 1970.

    Raises ``UnstorableValueError`` for a ``Timestamp`` (outside ``datetime``'s years 1-9999).
    """
    if isinstance(value, Timestamp):
        raise UnstorableValueError("the timestamp is outside years 1-9999, which this sink's timestamp type holds")
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
