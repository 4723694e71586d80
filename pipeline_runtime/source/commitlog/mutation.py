"""Mutation bodies -> change events (``db/Mutation``, ``db/partitions/PartitionUpdate``,
``db/rows/UnfilteredSerializer``, ``db/rows/Cell``, ``db/ClusteringPrefix``).

A mutation is a vint count of partition updates, each: table id (16 bytes),
vint-length partition key, flags, encoding stats, column headers, then the
partition deletion, static row, row estimate, rows and range tombstone
markers, and an end-of-partition byte. Updates carry no length, so every
table's schema is needed to walk past its update (``TablePlan``).

Timestamps, deletion times and TTLs are deltas from the update's encoding
stats. Java's arithmetic is kept exactly: ints read from vints are checked
casts, the stats' deletion time is an int sum that may wrap, and a
negative local deletion time means "invalid" under messaging version 12 and
"unsigned, past 2038" from version 13 on (``Cell.decodeLocalDeletionTime``).

The functions here are the hot path: they work on ``bytes`` with integer
positions, inline the one-byte vint case, and look up per-column plans
resolved ahead of time.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline_runtime.events import (
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    ColumnChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    SourcePosition,
)
from pipeline_runtime.source.commitlog.plan import ColumnPlan, KeyPart, TablePlan
from pipeline_runtime.source.commitlog.vint import EXTRA_BYTES, FIRST_MASK
from pipeline_runtime.source.errors import DecodeError, SchemaError

TIMESTAMP_EPOCH = 1442880000000000  # 2015-09-22T00:00:00Z in microseconds
DELETION_TIME_EPOCH = 1442880000  # the same instant in seconds
#: ``Cell.NO_DELETION_TIME`` / ``LIVE`` deletion markers.
NO_DELETION_TIME = 2**63 - 1
LIVE_TIMESTAMP = -(2**63)
INVALID_DELETION_TIME = 2**32 - 2  # CassandraUInt.MAX_VALUE_LONG - 1
MAX_DELETION_TIME = 2**32 - 3
EXPIRED_LIVENESS_TTL = 2**31 - 1
MESSAGING_VERSION_50 = 13

_I64_MAX = 2**63 - 1
_U64 = 2**64
_U16 = struct.Struct(">H")

# Unfiltered flags
_END_OF_PARTITION = 0x01
_IS_MARKER = 0x02
_HAS_TIMESTAMP = 0x04
_HAS_TTL = 0x08
_HAS_DELETION = 0x10
_HAS_ALL_COLUMNS = 0x20
_HAS_COMPLEX_DELETION = 0x40
_EXTENSION_FLAG = 0x80
_IS_STATIC = 0x01
# Partition flags
_IS_EMPTY = 0x01
_IS_REVERSED = 0x02
_HAS_PARTITION_DELETION = 0x04
_HAS_STATIC_ROW = 0x08
_HAS_ROW_ESTIMATE = 0x10
# Cell flags
_CELL_DELETED = 0x01
_CELL_EXPIRING = 0x02
_CELL_EMPTY = 0x04
_CELL_ROW_TIMESTAMP = 0x08
_CELL_ROW_TTL = 0x10
# Range marker kinds (ClusteringPrefix.Kind ordinals)
_EXCL_END = 0
_INCL_START = 1
_EXCL_END_INCL_START = 2
_INCL_END_EXCL_START = 5
_INCL_END = 6
_EXCL_START = 7


@dataclass(slots=True)
class DecodeStats:
    """What the decoder saw besides events; the pipeline exports these as metrics."""

    mutations: int = 0
    partition_updates: int = 0
    events: int = 0
    #: Selected tables' updates not reported, by reason ("counter", "view").
    skipped: dict[str, int] = field(default_factory=dict)


PlanLookup = Callable[[bytes], TablePlan]


class _Reader:
    """Decoding state of one mutation body: the buffer, the update's stats, the message version."""

    __slots__ = ("buf", "min_ldt", "min_ts", "min_ttl", "pos", "version")

    def __init__(self, buf: bytes, version: int) -> None:
        self.buf = buf
        self.pos = 0
        self.version = version
        self.min_ts = TIMESTAMP_EPOCH
        self.min_ldt = DELETION_TIME_EPOCH
        self.min_ttl = 0

    def uvint(self) -> int:
        buf = self.buf
        pos = self.pos
        first = buf[pos]
        if first < 0x80:
            self.pos = pos + 1
            return first
        extra = EXTRA_BYTES[first]
        end = pos + 1 + extra
        if end > len(buf):
            raise IndexError("vint past the end")
        self.pos = end
        return ((first & FIRST_MASK[first]) << (8 * extra)) | int.from_bytes(buf[pos + 1 : end], "big")

    def int32(self) -> int:
        raw = self.uvint()
        if raw < 0x80000000:
            return raw
        if raw > _I64_MAX:
            raw -= _U64
        if raw < -(2**31) or raw > 2**31 - 1:
            raise DecodeError(f"vint {raw} does not fit in a 32-bit int")
        return raw

    def timestamp(self) -> int:
        value = self.uvint() + self.min_ts
        if value > _I64_MAX:
            value = ((value + 2**63) % _U64) - 2**63
        return value

    def local_deletion_time(self) -> int:
        return self.int32() + self.min_ldt

    def ttl(self) -> int:
        return self.int32() + self.min_ttl

    def deletion(self) -> Deletion | None:
        """A DeletionTime (``readDeletionTime``); None when it is LIVE."""
        markedAt = self.timestamp()
        ldt = self.local_deletion_time()
        if markedAt == LIVE_TIMESTAMP:
            return None
        if ldt < 0 or ldt > MAX_DELETION_TIME:
            ldt = INVALID_DELETION_TIME
        return Deletion(markedAt, ldt)

    def complex_deletion(self) -> Deletion | None:
        markedAt = self.timestamp()
        ldt = self.local_deletion_time()
        if markedAt == LIVE_TIMESTAMP:
            return None
        if ldt < 0:
            ldt = INVALID_DELETION_TIME if self.version < MESSAGING_VERSION_50 else ldt & 0xFFFFFFFF
        elif ldt > MAX_DELETION_TIME:
            ldt = INVALID_DELETION_TIME
        return Deletion(markedAt, ldt)

    def decode_ldt(self, ldt: int, ttl: int) -> int:
        """``Cell.decodeLocalDeletionTime``."""
        if ldt >= ttl:
            return ldt
        if ldt < 0:
            return INVALID_DELETION_TIME if self.version < MESSAGING_VERSION_50 else ldt & 0xFFFFFFFF
        return ldt if ttl == EXPIRED_LIVENESS_TTL else INVALID_DELETION_TIME

    def take(self, length: int) -> bytes:
        pos = self.pos
        end = pos + length
        if end > len(self.buf) or length < 0:
            raise IndexError("value past the end")
        self.pos = end
        return self.buf[pos:end]

    def value(self, fixed: int) -> bytes:
        if fixed >= 0:
            return self.take(fixed)
        return self.take(self.uvint())


class MutationDecoder:
    """Decodes mutation bodies of one messaging version into change events."""

    def __init__(self, plans: PlanLookup, messaging_version: int, stats: DecodeStats | None = None) -> None:
        self.plans = plans
        self.version = messaging_version
        self.stats = stats or DecodeStats()

    def decode(self, body: bytes, source: SourcePosition) -> list[ChangeEvent]:
        """All events of one mutation, in the order Cassandra serialized them.

        Raises DecodeError (malformed body) or SchemaError (unknown table or column).
        """
        reader = _Reader(body, self.version)
        events: list[ChangeEvent] = []
        try:
            count = reader.uvint()
            if count == 0:
                raise DecodeError("mutation with no partition update")
            for _ in range(count):
                self._update(reader, source, events)
            if reader.pos != len(body):
                raise DecodeError(f"{len(body) - reader.pos} bytes left after the last partition update")
        except (DecodeError, SchemaError):
            raise
        except (IndexError, ValueError, struct.error, OverflowError, UnicodeDecodeError) as exc:
            raise DecodeError(f"malformed mutation at byte {reader.pos}: {exc!r}") from exc
        self.stats.mutations += 1
        self.stats.events += len(events)
        return events

    def _update(self, r: _Reader, source: SourcePosition, events: list[ChangeEvent]) -> None:
        table_id = r.take(16)
        plan = self.plans(table_id)
        self.stats.partition_updates += 1
        key = r.take(r.uvint())
        flags = r.take(1)[0]
        if flags & _IS_EMPTY:
            return
        if flags & _IS_REVERSED:
            raise DecodeError("reversed partition update in a mutation")
        r.min_ts = _wrap(r.uvint() + TIMESTAMP_EPOCH)
        r.min_ldt = _int32_wrap(r.int32() + DELETION_TIME_EPOCH)
        r.min_ttl = r.int32()
        statics: tuple[ColumnPlan, ...] = ()
        if flags & _HAS_STATIC_ROW:
            statics, r.pos = plan.read_columns(r.buf, r.pos)
        regulars, r.pos = plan.read_columns(r.buf, r.pos)
        emit = plan.emit
        if not emit and plan.selected and plan.skip_reason is not None:
            skipped = self.stats.skipped
            skipped[plan.skip_reason] = skipped.get(plan.skip_reason, 0) + 1
        pk: dict[str, Any] = plan.decode_partition_key(key) if emit else {}
        keyspace = plan.keyspace
        table = plan.table
        if flags & _HAS_PARTITION_DELETION:
            deletion = r.deletion()
            if emit and deletion is not None:
                events.append(ChangeEvent(Op.DELETE_PARTITION, keyspace, table, pk, source, deletion=deletion))
        if flags & _HAS_STATIC_ROW:
            row_flags = r.take(1)[0]
            if not row_flags & _EXTENSION_FLAG:
                raise DecodeError("static row without extended flags")
            ext = r.take(1)[0]
            if not ext & _IS_STATIC:
                raise DecodeError("static row not flagged static")
            self._row_body(r, plan, statics, row_flags, emit, pk, {}, True, source, events)
        if flags & _HAS_ROW_ESTIMATE:
            r.uvint()
        clustering = plan.clustering
        open_start: Bound | None = None
        open_deletion: Deletion | None = None
        is_open = False
        buf = r.buf
        while True:
            row_flags = buf[r.pos]
            r.pos += 1
            if row_flags & _END_OF_PARTITION:
                break
            ext = 0
            if row_flags & _EXTENSION_FLAG:
                ext = buf[r.pos]
                r.pos += 1
            if row_flags & _IS_MARKER:
                kind = buf[r.pos]
                size = _U16.unpack_from(buf, r.pos + 1)[0]
                r.pos += 3
                if size > len(clustering):
                    raise DecodeError(f"range bound of {size} values, table has {len(clustering)} clustering columns")
                values = _prefix(r, clustering, size, emit)
                if kind in (_EXCL_END_INCL_START, _INCL_END_EXCL_START):
                    end_deletion = r.deletion()
                    start_deletion = r.deletion()
                    if emit:
                        if not is_open:
                            raise DecodeError("range tombstone boundary without an open range")
                        end = Bound(values, kind == _INCL_END_EXCL_START)
                        events.append(_range(plan, pk, source, open_start, end, open_deletion or end_deletion))
                    open_start = Bound(values, kind == _EXCL_END_INCL_START) if size else None
                    open_deletion = start_deletion
                    is_open = True
                elif kind in (_INCL_START, _EXCL_START):
                    open_deletion = r.deletion()
                    open_start = Bound(values, kind == _INCL_START) if size else None
                    is_open = True
                elif kind in (_EXCL_END, _INCL_END):
                    end_deletion = r.deletion()
                    if emit:
                        if not is_open:
                            raise DecodeError("range tombstone end without a start")
                        end_bound = Bound(values, kind == _INCL_END) if size else None
                        events.append(_range(plan, pk, source, open_start, end_bound, end_deletion))
                    is_open = False
                    open_start = None
                else:
                    raise DecodeError(f"range tombstone marker of kind {kind}")
                continue
            if ext & _IS_STATIC:
                raise DecodeError("static flag on a regular row")
            ck = _clustering(r, clustering, emit)
            self._row_body(r, plan, regulars, row_flags, emit, pk, ck, False, source, events)

    def _row_body(  # noqa: PLR0917 - hot path: plain arguments, no context object per row
        self,
        r: _Reader,
        plan: TablePlan,
        header: tuple[ColumnPlan, ...],
        flags: int,
        emit: bool,
        pk: dict[str, Any],
        ck: dict[str, Any],
        static: bool,
        source: SourcePosition,
        events: list[ChangeEvent],
    ) -> None:
        liveness: Liveness | None = None
        row_ts = LIVE_TIMESTAMP
        row_ttl = 0
        row_ldt = NO_DELETION_TIME
        if flags & _HAS_TIMESTAMP:
            row_ts = r.timestamp()
            if flags & _HAS_TTL:
                row_ttl = r.ttl()
                row_ldt = r.decode_ldt(r.local_deletion_time(), row_ttl)
                liveness = Liveness(row_ts, row_ttl, row_ldt)
            else:
                liveness = Liveness(row_ts)
        row_deletion = r.deletion() if flags & _HAS_DELETION else None
        columns = header if flags & _HAS_ALL_COLUMNS else _subset(r, plan, header)
        has_complex_deletion = flags & _HAS_COMPLEX_DELETION
        cells: dict[str, ColumnChange] = {}
        buf = r.buf
        for column in columns:
            if column.complex:
                change = _complex(r, column, has_complex_deletion, row_ts, row_ttl, row_ldt, emit)
                if emit and change is not None and not column.dropped:
                    cells[column.name] = change
                continue
            # Simple cell, inlined: it is the innermost loop of the decoder.
            cell_flags = buf[r.pos]
            r.pos += 1
            ts = row_ts if cell_flags & _CELL_ROW_TIMESTAMP else r.timestamp()
            ttl = 0
            ldt = NO_DELETION_TIME
            if cell_flags & _CELL_ROW_TTL:
                ttl = row_ttl
                ldt = row_ldt
            elif cell_flags & (_CELL_DELETED | _CELL_EXPIRING):
                ldt = r.local_deletion_time()
                if cell_flags & _CELL_EXPIRING:
                    ttl = r.ttl()
                if ttl < 0:
                    raise DecodeError(f"invalid TTL {ttl}")
                ldt = r.decode_ldt(ldt, ttl)
            if cell_flags & _CELL_EMPTY:
                raw = b""
            else:
                fixed = column.fixed
                raw = r.take(fixed) if fixed >= 0 else r.take(r.uvint())
            if not emit or column.dropped:
                continue
            dropped_at = column.dropped_at
            if dropped_at is not None and ts <= dropped_at:
                continue  # written before the column was dropped: Cassandra ignores it
            if cell_flags & _CELL_DELETED:
                cells[column.name] = Cell(None, ts, None, ldt, True)
            else:
                value = column.decode(raw) if raw else column.empty
                if cell_flags & _CELL_EXPIRING:
                    cells[column.name] = Cell(value, ts, ttl, ldt)
                else:
                    cells[column.name] = Cell(value, ts)
        if not emit:
            return
        if row_deletion is not None:
            events.append(
                ChangeEvent(
                    Op.DELETE_ROW, plan.keyspace, plan.table, pk, source, ck, deletion=row_deletion, static=static
                )
            )
            if liveness is None and not cells:
                return
        events.append(ChangeEvent(Op.UPSERT, plan.keyspace, plan.table, pk, source, ck, cells, liveness, static=static))


def _wrap(value: int) -> int:
    if value > _I64_MAX:
        value -= _U64
    return value


def _int32_wrap(value: int) -> int:
    """Java int addition: ``readUnsignedVInt32() + DELETION_TIME_EPOCH`` overflows as an int."""
    return ((value + 2**31) % 2**32) - 2**31


def _range(  # noqa: PLR0917
    plan: TablePlan,
    pk: dict[str, Any],
    source: SourcePosition,
    start: Bound | None,
    end: Bound | None,
    deletion: Deletion | None,
) -> ChangeEvent:
    if deletion is None:
        raise DecodeError("range tombstone with a live deletion time")
    return ChangeEvent(
        Op.DELETE_RANGE, plan.keyspace, plan.table, pk, source, deletion=deletion, range_start=start, range_end=end
    )


def _prefix(r: _Reader, parts: tuple[KeyPart, ...], size: int, emit: bool) -> tuple[Any, ...]:
    """``size`` clustering values: per 32 values a vint header of null/empty bits, then the present values."""
    values: list[Any] = []
    offset = 0
    while offset < size:
        header = r.uvint()
        limit = min(size, offset + 32)
        while offset < limit:
            part = parts[offset]
            bit = (offset % 32) * 2
            if header >> (bit + 1) & 1:
                values.append(None)
            elif header >> bit & 1:
                values.append(part.empty)
            else:
                raw = r.value(part.fixed)
                values.append(part.decode(raw) if emit else None)
            offset += 1
    return tuple(values)


def _clustering(r: _Reader, parts: tuple[KeyPart, ...], emit: bool) -> dict[str, Any]:
    if not parts:
        return {}
    values = _prefix(r, parts, len(parts), emit)
    return {part.name: value for part, value in zip(parts, values, strict=True)} if emit else {}


def _subset(r: _Reader, plan: TablePlan, header: tuple[ColumnPlan, ...]) -> tuple[ColumnPlan, ...]:
    """The row's columns, as a subset of the header (``Columns.Serializer.deserializeSubset``)."""
    encoded = r.uvint()
    if encoded == 0:
        return header
    count = len(header)
    if count >= 64:
        return _large_subset(r, header, encoded)
    key = (id(header), encoded)
    cached = plan.subsets.get(key)
    if cached is not None:
        return cached
    if len(plan.subsets) > 4096:
        plan.subsets.clear()
    if encoded >> count:
        raise DecodeError("column subset names more columns than the header has")
    subset = tuple(c for i, c in enumerate(header) if not encoded >> i & 1)
    plan.subsets[key] = subset
    return subset


def _large_subset(r: _Reader, header: tuple[ColumnPlan, ...], delta: int) -> tuple[ColumnPlan, ...]:
    count = len(header)
    present = count - delta
    if present < 0:
        raise DecodeError("column subset larger than its header")
    if present < count // 2:
        return tuple(header[_index(r.int32(), count)] for _ in range(present))
    missing = {_index(r.int32(), count) for _ in range(delta)}
    return tuple(c for i, c in enumerate(header) if i not in missing)


def _index(value: int, count: int) -> int:
    if not 0 <= value < count:
        raise DecodeError(f"column index {value} out of range")
    return value


def _complex(  # noqa: PLR0917 - hot path
    r: _Reader,
    column: ColumnPlan,
    has_complex_deletion: int,
    row_ts: int,
    row_ttl: int,
    row_ldt: int,
    emit: bool,
) -> CollectionChange | None:
    deletion = r.complex_deletion() if has_complex_deletion else None
    dropped_at = column.dropped_at
    if deletion is not None and dropped_at is not None and deletion.timestamp <= dropped_at:
        deletion = None  # ``isDroppedComplexDeletion``
    count = r.int32()
    if count < 0:
        raise DecodeError(f"negative cell count {count}")
    codec = column.codec
    assert codec is not None
    elements: list[ElementCell] = []
    for _ in range(count):
        cell_flags = r.take(1)[0]
        ts = row_ts if cell_flags & _CELL_ROW_TIMESTAMP else r.timestamp()
        ttl = 0
        ldt = NO_DELETION_TIME
        if cell_flags & _CELL_ROW_TTL:
            ttl = row_ttl
            ldt = row_ldt
        elif cell_flags & (_CELL_DELETED | _CELL_EXPIRING):
            ldt = r.local_deletion_time()
            if cell_flags & _CELL_EXPIRING:
                ttl = r.ttl()
            if ttl < 0:
                raise DecodeError(f"invalid TTL {ttl}")
            ldt = r.decode_ldt(ldt, ttl)
        path_raw = r.take(r.uvint())
        raw = b"" if cell_flags & _CELL_EMPTY else r.take(r.uvint())
        if not emit or (dropped_at is not None and ts <= dropped_at):
            continue
        value: Any = None
        if codec.field_names:
            index = int.from_bytes(path_raw, "big", signed=True)
            if not 0 <= index < len(codec.field_names):
                raise DecodeError(f"UDT field index {index} out of range")
            path: Any = codec.field_names[index]
            if not cell_flags & _CELL_DELETED:
                value = codec.field_values[index](raw) if raw else codec.field_empties[index]
        else:
            assert codec.path is not None
            path = codec.path(path_raw) if path_raw else codec.path_empty
            if codec.value is not None and not cell_flags & _CELL_DELETED:
                value = codec.value(raw) if raw else codec.value_empty
        if cell_flags & _CELL_DELETED:
            elements.append(ElementCell(path, None, ts, None, ldt, True))
        elif cell_flags & _CELL_EXPIRING:
            elements.append(ElementCell(path, value, ts, ttl, ldt))
        else:
            elements.append(ElementCell(path, value, ts))
    if not emit or (deletion is None and not elements):
        return None
    return CollectionChange(deletion, tuple(elements))
