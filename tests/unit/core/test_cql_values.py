"""Every value of each CQL type's whole range decodes exactly and encodes exactly or is refused by name.

Property tests over the serialized forms Cassandra writes (the native
protocol's, as inside a commitlog cell): the decoder's value functions are
the ones both decoders call for these types (the compiled decoder hands
them every value that is not a plain number, text, uuid or blob).
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from decimal import Decimal

import pytest
from cassandra import cqltypes
from cassandra.util import Duration
from hypothesis import given
from hypothesis import strategies as st

from pipeline_runtime.cql import canonical
from pipeline_runtime.cql.canonical import to_json
from pipeline_runtime.cql.types import CqlType, Kind, parse_type
from pipeline_runtime.cql.values import (
    DATETIME_MAX_MS,
    DATETIME_MIN_MS,
    EMPTY,
    Timestamp,
    date_days,
    timestamp_from_millis,
    timestamp_micros,
)
from pipeline_runtime.errors import ValueEncodingError
from pipeline_runtime.sinks.clickhouse.typemap import ch_encoder
from pipeline_runtime.sinks.postgres import typemap as pg
from pipeline_runtime.source.commitlog.values import empty_value, value_decoder

INT64 = st.integers(-(2**63), 2**63 - 1)
TIMESTAMP = CqlType(Kind.TIMESTAMP)
DATE = CqlType(Kind.DATE)


def decode(cql: str, data: bytes) -> object:
    return value_decoder(parse_type(cql, "ks", {}), "ks")(data)


@given(INT64)
def test_every_timestamp_decodes_to_its_exact_millisecond(ms: int) -> None:
    value = decode("timestamp", struct.pack(">q", ms))
    assert timestamp_micros(value) == ms * 1000
    if DATETIME_MIN_MS <= ms <= DATETIME_MAX_MS:
        assert isinstance(value, dt.datetime) and value.tzinfo is None
        assert value == dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
    else:
        assert value == Timestamp(ms)
    # Nested values decode the same way (the driver's own timestamp would overflow or round).
    nested = cqltypes.ListType.apply_parameters([cqltypes.LongType], None).serialize([ms], 4)
    assert decode("frozen<list<timestamp>>", nested) == [value]


@given(st.integers(0, 2**32 - 1))
def test_every_date_decodes_to_its_day(raw: int) -> None:
    value = decode("date", struct.pack(">I", raw))
    assert date_days(value) == raw - 2**31


@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), st.booleans())
def test_every_duration_decodes(months: int, days: int, nanos: int, negative: bool) -> None:
    sign = -1 if negative else 1
    duration = Duration(sign * months, sign * days, sign * nanos)
    value = decode("duration", cqltypes.DurationType.serialize(duration, 4))
    assert (value.months, value.days, value.nanoseconds) == (sign * months, sign * days, sign * nanos)  # type: ignore[attr-defined]
    assert to_json(value, CqlType(Kind.DURATION)) == {
        "months": sign * months,
        "days": sign * days,
        "nanoseconds": sign * nanos,
    }


@given(st.lists(st.floats(allow_nan=False), unique_by=lambda v: (v, math.copysign(1.0, v))))
def test_frozen_sets_keep_every_element_cassandra_keeps(elements: list[float]) -> None:
    ordered = sorted(elements, key=lambda v: (v, math.copysign(1.0, v)))
    data = cqltypes.ListType.apply_parameters([cqltypes.DoubleType], None).serialize(ordered, 4)
    value = decode("frozen<set<double>>", data)
    assert [repr(v) for v in value] == [repr(v) for v in ordered]  # type: ignore[attr-defined]
    assert len(to_json(value, parse_type("frozen<set<double>>", "ks", {}))) == len(ordered)


@pytest.mark.parametrize(
    ("cql", "expected"),
    [
        *((cql, EMPTY) for cql in ("int", "timestamp", "uuid", "varint", "decimal", "date", "frozen<list<int>>")),
        *(("text", ""), ("ascii", ""), ("blob", b"")),
    ],
)
def test_zero_length_values_are_empty_not_none(cql: str, expected: object) -> None:
    assert empty_value(parse_type(cql, "ks", {}), "ks") == expected
    tuple_bytes = struct.pack(">i", 0) + struct.pack(">i", -1)
    assert decode("frozen<tuple<int, int>>", tuple_bytes) == (EMPTY, None)
    assert to_json((EMPTY, None), parse_type("frozen<tuple<int, int>>", "ks", {})) == ["", None]


# -- sinks ---------------------------------------------------------------------------------------

PG_TIMESTAMP = pg.pg_encoder(TIMESTAMP, "ks.t", "at")
PG_DATE = pg.pg_encoder(DATE, "ks.t", "day")
CH_TIMESTAMP = ch_encoder(TIMESTAMP, "ks.t", "at")
CH_DATE = ch_encoder(DATE, "ks.t", "day")


@given(INT64)
def test_postgres_stores_a_timestamp_exactly_or_refuses_it_by_name(ms: int) -> None:
    value = timestamp_from_millis(ms)
    micros = ms * 1000 - pg.PG_EPOCH_MICROS
    if pg.PG_TIMESTAMP_MIN <= micros < pg.PG_TIMESTAMP_END:
        assert PG_TIMESTAMP(value) == micros
        decoded = pg._decode_timestamptz(pg._encode_timestamptz(PG_TIMESTAMP(value)))
        assert timestamp_micros(decoded) == ms * 1000
    else:
        with pytest.raises(ValueEncodingError, match=r"table ks\.t, column at \(timestamp\): .*timestamptz"):
            PG_TIMESTAMP(value)


@given(st.integers(-(2**31), 2**31 - 1))
def test_postgres_stores_a_date_exactly_or_refuses_it_by_name(days: int) -> None:
    value = decode("date", struct.pack(">I", days + 2**31))
    if pg.PG_DATE_MIN <= days - pg.PG_EPOCH_DAYS < pg.PG_DATE_END:
        assert PG_DATE(value) == days - pg.PG_EPOCH_DAYS
        assert date_days(pg._decode_date(pg._encode_date(PG_DATE(value)))) == days
    else:
        with pytest.raises(ValueEncodingError, match=r"column day \(date\): .*PostgreSQL date"):
            PG_DATE(value)


@given(INT64)
def test_clickhouse_stores_years_1_to_9999_or_refuses_by_name(ms: int) -> None:
    value = timestamp_from_millis(ms)
    if isinstance(value, dt.datetime):
        assert CH_TIMESTAMP(value) == value.replace(tzinfo=dt.UTC)
    else:
        with pytest.raises(ValueEncodingError, match=r"column at \(timestamp\): .*years 1-9999"):
            CH_TIMESTAMP(value)


@given(st.integers(-(2**31), 2**31 - 1))
def test_clickhouse_dates(days: int) -> None:
    value = decode("date", struct.pack(">I", days + 2**31))
    try:
        expected = dt.date(1970, 1, 1) + dt.timedelta(days=days)
    except OverflowError:
        with pytest.raises(ValueEncodingError, match=r"column day \(date\): .*years 1-9999"):
            CH_DATE(value)
    else:
        assert CH_DATE(value) == expected


@given(st.integers(-(10**40), 10**40), st.integers(-(2**31), 2**31 - 1))
def test_decimals_keep_their_value_and_scale_or_are_refused(unscaled: int, scale: int) -> None:
    data = struct.pack(">i", scale) + cqltypes.IntegerType.serialize(unscaled, 4)
    value = decode("decimal", data)
    assert value == Decimal(f"{unscaled}E{-scale}")
    assert value.as_tuple().exponent == -scale  # type: ignore[union-attr]
    assert ch_encoder(CqlType(Kind.DECIMAL))(value) == str(value)  # ClickHouse keeps the exact text
    digits = len(str(abs(unscaled))) if unscaled else 1
    encoder = pg.pg_encoder(CqlType(Kind.DECIMAL), "ks.t", "amount")
    if scale > pg.PG_NUMERIC_SCALE or (unscaled and digits - scale > pg.PG_NUMERIC_INTEGER_DIGITS):
        with pytest.raises(ValueEncodingError, match=r"column amount \(decimal\): PostgreSQL numeric"):
            encoder(value)
    else:
        assert encoder(value) == value


@given(st.text())
def test_postgres_text_refuses_only_nul(text: str) -> None:
    encoder = pg.pg_encoder(CqlType(Kind.TEXT), "ks.t", "body")
    nested = pg.pg_encoder(parse_type("frozen<list<text>>", "ks", {}), "ks.t", "lines")
    if "\x00" in text:
        with pytest.raises(ValueEncodingError, match="U\\+0000"):
            encoder(text)
        with pytest.raises(ValueEncodingError, match="U\\+0000"):
            nested([text])
    else:
        assert encoder(text) == text
        assert isinstance(nested([text]), str)


def test_empty_is_stored_as_null_in_scalar_columns() -> None:
    for kind in (Kind.INT, Kind.TIMESTAMP, Kind.UUID, Kind.DECIMAL, Kind.DATE):
        assert pg.pg_encoder(CqlType(kind))(EMPTY) is None
        assert ch_encoder(CqlType(kind))(EMPTY) is None


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False)
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON_VALUES)
def test_canonical_json_is_the_same_text_through_the_compiled_encoder(value: object) -> None:
    """``dumps`` hands values without Decimal to the stdlib's compiled encoder: its text is ``_encode``'s."""
    assert canonical.dumps(value) == "".join(canonical._encode(value))
