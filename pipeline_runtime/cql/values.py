"""CQL values Python's own types cannot hold, as the decoders and the sinks carry them.

Change events carry the value cassandra-driver returns for a column, with
three exceptions, each the same in the pure-Python and the compiled decoder
(docs/commitlog.md, "Values"):

- a ``timestamp`` is any signed 64-bit count of milliseconds, about 292
  million years either side of 1970; ``datetime`` holds years 1 to 9999.
  Inside that range the value is a naive UTC ``datetime`` computed exactly
  (the driver goes through a float and can be off by microseconds past the
  year 2200); outside it, a ``Timestamp`` holding the milliseconds.
- a ``date`` is the driver's ``cassandra.util.Date``, which holds every day
  Cassandra can (its ``days_from_epoch``); ``date_days`` reads any form.
- a zero-length value of a type whose values are never empty (``int``,
  ``timestamp``, ``uuid``...: ``blobAsInt(0x)`` is legal CQL) is ``EMPTY``,
  the driver's own marker, where the driver would return None and so be
  indistinguishable from null. Text, ascii and blob stay ``''``/``b''``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cassandra import cqltypes

#: The zero-length value of a type whose values are never empty (``cassandra.cqltypes.EMPTY``).
EMPTY: Any = cqltypes.EMPTY
EmptyValue: type[Any] = cqltypes.EmptyValue

EPOCH = dt.datetime(1970, 1, 1)  # naive UTC, as the driver returns timestamps
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
#: Milliseconds since 1970 of 0001-01-01T00:00:00.000 and 9999-12-31T23:59:59.999 (``datetime``'s range).
DATETIME_MIN_MS = (dt.datetime.min - EPOCH) // dt.timedelta(milliseconds=1)
DATETIME_MAX_MS = (dt.datetime(9999, 12, 31, 23, 59, 59, 999000) - EPOCH) // dt.timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """A CQL ``timestamp`` outside ``datetime``'s years 1-9999: milliseconds since 1970-01-01 UTC."""

    milliseconds: int

    def __str__(self) -> str:
        return f"{self.milliseconds} ms since 1970-01-01T00:00:00Z"


def timestamp_from_millis(milliseconds: int) -> dt.datetime | Timestamp:
    """The decoded form of a timestamp: an exact naive UTC datetime where one exists, else ``Timestamp``."""
    if DATETIME_MIN_MS <= milliseconds <= DATETIME_MAX_MS:
        return EPOCH + dt.timedelta(milliseconds=milliseconds)
    return Timestamp(milliseconds)


def timestamp_micros(value: Any) -> int:
    """Microseconds since 1970 UTC of a timestamp value: ``Timestamp``, datetime (naive = UTC) or ms number."""
    if isinstance(value, Timestamp):
        return value.milliseconds * 1000
    if isinstance(value, dt.datetime):
        moment: dt.datetime = value
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        days = moment.toordinal() - _EPOCH_ORDINAL
        seconds = (days * 24 + moment.hour) * 3600 + moment.minute * 60 + moment.second
        return seconds * 1_000_000 + moment.microsecond
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, float):
        return round(value * 1000)
    raise TypeError(f"not a timestamp: {type(value).__name__}")


def date_days(value: Any) -> int:
    """Days since 1970-01-01 of a date value: ``cassandra.util.Date``, date, datetime or a day number."""
    if isinstance(value, dt.datetime):
        return value.date().toordinal() - _EPOCH_ORDINAL
    if isinstance(value, dt.date):
        return value.toordinal() - _EPOCH_ORDINAL
    if isinstance(value, int):
        return value
    days = getattr(value, "days_from_epoch", None)
    if isinstance(days, int):
        return days
    raise TypeError(f"not a date: {type(value).__name__}")
