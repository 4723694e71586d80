"""The ClickHouse sink: whole-row states merged in the runtime, idempotent inserts.

Cassandra logs only the cells a write changed, while a replacing engine keeps
one whole row per key. The sink therefore reads the newest stored state of
every key in the batch, joins the batch's deltas into it with Cassandra's
rule (``changes.RowDelta.merge``), and inserts the merged whole rows with a
``_version`` that grows with every state change. Re-delivered or reordered
events merge to the same state, so a repeated insert changes nothing; each
insert also carries a deterministic ``insert_deduplication_token`` so a retried
block is dropped by ClickHouse itself. The checkpoint is inserted after the
data: a crash between the two replays the batch, which is harmless.

Three merges, one rule: plain upserts of distinct rows merge in the compiled
core on Native blocks (``_write_native``), or in Python as flat rows
(``_write_flat``) without the core; everything else (deletions, collections,
statics, repeated rows) takes the general path (``_write_table``).

Cost and limit (docs/sinks.md): one keyed read per batch. Replicas' runtimes
write the same row at the same moment and can each insert a state missing the
other's cells; after each insert a settling read (``_settle``) joins the states
stored beside the newest one, so whoever inserts last repairs the race.
"""

# Identifiers are quoted by ident(); values are bound by clickhouse-connect: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
import urllib3

from pipeline_runtime.cql.canonical import dumps
from pipeline_runtime.cql.schema import Column, TableSchema
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.errors import ConfigError, SinkError
from pipeline_runtime.events import LIVE_TIMESTAMP, ChangeEvent, Position
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.base import Batch, Checkpoint, SinkHealth, SinkState, TableNaming, by_table
from pipeline_runtime.sinks.changes import (
    Elements,
    Layout,
    RowDelta,
    Shaper,
    SimpleCell,
    Tombstone,
    coalesce,
    covers,
    tombstone_from_record,
    tombstone_record,
)
from pipeline_runtime.sinks.clickhouse.ddl import ensure_tables
from pipeline_runtime.sinks.clickhouse.errors import boundary
from pipeline_runtime.sinks.clickhouse.flat import FlatRows, nonempty_columns
from pipeline_runtime.sinks.clickhouse.sql import TableSql, key_parameters
from pipeline_runtime.sinks.clickhouse.typemap import ch_encoder, from_ch, is_array, normalise, stage_type
from pipeline_runtime.sinks.encoding import native_classes

CHECKPOINTS = "headrace.checkpoints"
CHECKPOINT_COLUMNS = [
    ("pipeline", "String"),
    ("node", "String"),
    ("segment_id", "Int64"),
    ("offset", "Int64"),
    ("version", "UInt128"),
]
Hook = Callable[[], Awaitable[None]]
#: ClickHouse's error code for a table that does not exist.
UNKNOWN_TABLE = 60
#: States per key a settling read joins (the newest; concurrent replicas' inserts are among them).
SETTLE_DEPTH = 8
#: Settling rounds after one insert: each round is needed only when another runtime inserted meanwhile.
SETTLE_ROUNDS = 4


@dataclass
class _Table:
    sql: TableSql
    shaper: Shaper
    flat: FlatRows
    #: The compiled core's stage encoder and merger (``native/src/chnative.rs``, ``chmerge.rs``)
    #: for flat tables, when the core is built.
    native: _Native | None


@dataclass(frozen=True)
class _Native:
    stage: Any
    merger: Any


class ClickHouseSink:
    """Writes change events into ClickHouse (or the in-process chdb engine)."""

    def __init__(
        self,
        name: str,
        dsn: str,
        naming: TableNaming | None = None,
        *,
        settle: Callable[[], bool] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if tls is not None and dsn.startswith("chdb:"):
            raise ConfigError(f"sink {name}: tls does not apply to chdb:// (the in-process engine has no connection)")
        self.name = name
        #: With a context (``sinks[].tls``) the client speaks HTTPS, verified as the context says.
        self._tls = tls
        #: Whether another runtime may write the same rows at this moment (replicas without replicaDedup,
        #: or a takeover): then each insert is followed by a settling read (``_settle``). None: always.
        self.concurrent_writers = settle or (lambda: True)
        self._dsn = dsn
        self._naming = naming or TableNaming()
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._tables: dict[str, _Table] = {}
        self._health = SinkHealth(name)
        #: Temporary staging tables this sink's session created: dropped at close.
        self._stages: set[str] = set()
        #: Rows inserted to settle a race with another runtime's concurrent insert (``_settle``).
        self.settled = 0
        #: Test seam: awaited after the data insert, before the checkpoint insert.
        self.before_checkpoint: Hook | None = None

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # clickhouse-connect is synchronous (and chdb runs in-process): keep it off the event loop.
        async with self._lock, boundary(self.name):
            return await asyncio.to_thread(function, *args, **kwargs)

    @property
    def client(self) -> Any:
        if self._client is None:
            raise SinkError(f"sink {self.name} is not open")
        return self._client

    # -- lifecycle -------------------------------------------------------

    def _tls_options(self) -> dict[str, Any]:
        """clickhouse-connect's options for HTTPS through this sink's SSL context (none without one)."""
        if self._tls is None:
            return {}
        verify = self._tls.verify_mode is not ssl.CERT_NONE
        pool = urllib3.PoolManager(
            ssl_context=self._tls,
            cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
            assert_hostname=None if verify else False,
            maxsize=8,
            retries=1,
            block=False,
        )
        return {"interface": "https", "secure": True, "pool_mgr": pool}

    async def open(self) -> None:
        async with boundary(self.name):
            self._client = await asyncio.to_thread(clickhouse_connect.get_client, dsn=self._dsn, **self._tls_options())
        await self._call(self.client.command, "CREATE DATABASE IF NOT EXISTS headrace")
        await self._call(
            self.client.command,
            f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (pipeline String, node String, segment_id Int64, "
            "offset Int64, version UInt128, updated_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree(version) ORDER BY (pipeline, node)",
        )
        self._health.state = SinkState.OPEN

    async def close(self) -> None:
        if self._client is not None:
            for stage in self._stages:
                with contextlib.suppress(SinkError):
                    await self._call(self._client.command, f"DROP TABLE IF EXISTS {stage}")
            self._stages.clear()
            client, self._client = self._client, None
            async with boundary(self.name):
                await asyncio.to_thread(client.close)
        self._health.state = SinkState.CLOSED

    def health(self) -> SinkHealth:
        return self._health

    # -- schema ----------------------------------------------------------

    async def ensure_table(self, schema: TableSchema) -> None:
        sql = TableSql(Layout(schema), *self._naming.place(schema.keyspace, schema.name, self.name))
        async with self._lock, boundary(self.name):
            await asyncio.to_thread(ensure_tables, self.client, sql)
        flat = FlatRows(sql.layout)
        native = _native(sql) if flat.eligible else None
        self._tables[schema.qualified_name] = _Table(sql, Shaper(schema, ch_encoder), flat, native)

    # -- writing ---------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        tables = by_table(batch.events)
        for qualified, events in sorted(tables.items()):
            table = self._tables.get(qualified)
            if table is None:
                raise SinkError(f"sink {self.name}: table {qualified} was not prepared with ensure_table")
            native, staged = table.native, None
            deltas: dict[tuple[Any, ...], list[Any]] | None = None
            async with boundary(self.name):  # encoding errors become RowRejectedError here
                if native is not None:
                    staged = native.stage.encode(events)
                else:
                    deltas = table.flat.shape(events)
            # The compiled encoder takes exactly the batches ``flat.shape`` takes.
            if (staged is not None or deltas is not None) and not await self._has_tombstones(table.sql):
                if native is not None and staged is not None:
                    token = _block_token(self.name, qualified, staged[0])
                    if await self._write_native(table, native, staged[0], token):
                        continue
                    async with boundary(self.name):  # the core declined: merge in Python
                        deltas = table.flat.shape(events)
                if deltas is not None:
                    await self._write_flat(table, deltas, _token(self.name, qualified, events))
                    continue
            token = _token(self.name, qualified, events)
            async with boundary(self.name):
                rows, tombstones = coalesce(table.shaper.shape(e) for e in events)
            await self._write_table(table, rows, tombstones, token)
        if self.before_checkpoint is not None:
            await self.before_checkpoint()
        if batch.checkpoint is not None:
            await self._store_checkpoint(batch.checkpoint)
        self._health.committed(len(batch.events))

    async def _write_native(self, table: _Table, native: _Native, block: bytes, token: str) -> bool:
        """Merge a batch of plain upserts in the compiled core; False if it declined (merge in Python).

        The same reads and writes as ``_write_flat``: the deltas (a Native block) go
        into the session's staging table, one query returns the newest stored state
        of their keys as a Native block, ``ChMerger.merge`` joins the two with the
        rules of ``FlatRows.merge`` without making a Python object per value, and the
        changed whole rows are inserted as they come out, with the same token. It
        declines a batch only where an equal-writetime tie needs an order ClickHouse
        and Python do not share (NaN).
        """
        sql = table.sql
        create = sql.create_stage() if sql.stage not in self._stages else None
        client = self.client

        def run() -> int | None:
            if create is not None:
                client.command(create)
            try:
                client.command(f"TRUNCATE TABLE {sql.stage}")
            except Exception as exc:
                if getattr(exc, "code", None) != UNKNOWN_TABLE:
                    raise
                # The server lost this session (a restart ends every session): its temporary table too.
                client.command(sql.create_stage())
            client.raw_insert(sql.stage, [n for n, _ in sql.stage_columns], block, fmt="Native")
            stored = client.raw_query(sql.latest_staged(), fmt="Native")
            merged = native.merger.merge(block, stored)
            if merged is None:
                return None
            rows, count = merged
            if count:
                client.raw_insert(
                    sql.state,
                    [n for n, _ in sql.state_columns],
                    rows,
                    fmt="Native",
                    settings={"insert_deduplication_token": token + ":rows", "optimize_on_insert": 0},
                )
            return int(count)

        inserted: int | None = await self._call(run)
        self._stages.add(sql.stage)
        if inserted is None:
            return False
        if inserted and self.concurrent_writers():
            await self._settle_flat(sql, sql.conflicting_staged(SETTLE_DEPTH), None)  # the stage holds the keys
        return True

    async def _write_flat(self, table: _Table, deltas: dict[tuple[Any, ...], list[Any]], token: str) -> None:
        """The fast path (``flat.py``): plain upserts into a table without stored range or partition deletions.

        Same reads and writes as the general path (one keyed read of the
        stored states, one insert of the changed whole rows, same token),
        minus the per-cell objects; the insert is column-oriented and leaves
        out columns that are NULL in every row.
        """
        sql = table.sql
        stored: dict[tuple[Any, ...], list[Any]] = {}
        versions: dict[tuple[Any, ...], int] = {}
        if deltas:
            key_columns = sql.layout.schema.primary_key
            formats = {c.name: "bytes" for c in sql.layout.schema.columns if c.type.kind is Kind.BLOB}
            parameters = key_parameters(list(deltas), len(key_columns))
            result = await self._call(
                self.client.query, sql.latest_flat(), parameters=parameters, column_formats=formats
            )
            if result.row_count:
                stored, versions = table.flat.stored(result.result_columns)
        rows = table.flat.merge(deltas, stored, versions)
        if rows:
            columns, data = nonempty_columns(rows, sql.state_columns)
            await self._insert(sql.state, columns, data, token + ":rows", column_oriented=True)
            if self.concurrent_writers():
                width = len(sql.layout.key_names)
                keys = [tuple(row[:width]) for row in rows]
                await self._settle_flat(sql, sql.conflicting_keys(SETTLE_DEPTH), keys)

    async def _has_tombstones(self, sql: TableSql) -> bool:
        result = await self._call(self.client.query, sql.has_tombstones())
        return bool(result.result_rows[0][0])

    async def _write_table(self, table: _Table, rows: list[RowDelta], tombstones: list[Tombstone], token: str) -> None:
        sql, layout = table.sql, table.sql.layout
        partitions = {r.key[: len(layout.partition_names)] for r in rows} | {t.partition for t in tombstones}
        stored = await self._tombstones(sql, partitions)
        if tombstones:
            records = [tombstone_record(t, len(layout.clustering)) for t in tombstones]
            await self._insert(sql.tombstones, sql.tombstone_columns, records, token + ":tombstones")
        known = _by_partition(stored + tombstones)
        regular = [r for r in rows if not r.static]
        static = [r for r in rows if r.static]
        if tombstones:
            # Rows of the deleted partitions that this batch does not touch still need their deletion raised.
            touched = {r.key for r in regular}
            parts = list({t.partition for t in tombstones})
            for state, _ in await self._read(sql, sql.partition_rows(), parts, static=False):
                if state.key not in touched:
                    regular.append(RowDelta(state.key))
            if sql.has_statics:
                static_keys = {r.key for r in static}
                static += [RowDelta(p, static=True) for p in parts if p not in static_keys]
        if regular:
            merged = await self._merge(sql, regular, known, static=False)
            await self._insert(sql.state, sql.state_columns, merged, token + ":rows")
            await self._settle_keys(sql, [tuple(row[: len(layout.key_names)]) for row in merged], static=False)
        if static and sql.has_statics:
            merged = await self._merge(sql, static, known, static=True)
            await self._insert(sql.statics, sql.static_columns, merged, token + ":statics")
            width = len(layout.partition_names)
            await self._settle_keys(sql, [tuple(row[:width]) for row in merged], static=True)

    async def _merge(
        self, sql: TableSql, deltas: list[RowDelta], tombstones: dict[tuple[Any, ...], list[Tombstone]], *, static: bool
    ) -> list[list[Any]]:
        key_columns = sql.layout.schema.partition_key if static else sql.layout.schema.primary_key
        query = sql.latest(sql.statics if static else sql.state, key_columns)
        found = await self._read(sql, query, [d.key for d in deltas], static=static)
        current = {s.key: s for s, _ in found}
        versions = {s.key: version for s, version in found}
        layout = sql.layout
        columns = _plan(layout.statics if static else layout.regulars)
        width = len(layout.partition_names)
        out = []
        for delta in deltas:
            state = current.get(delta.key)
            if state is None:
                state, changed = delta, True  # a new key: the delta is the whole state
            else:
                changed = state.merge(delta)
            for tombstone in tombstones.get(delta.key[:width], ()):
                covered = tombstone.whole_partition or (
                    not static and covers(tombstone, delta.key[width:], layout.clustering)
                )
                if covered and tombstone.ts > state.deleted_at:
                    state.deleted_at = tombstone.ts
                    changed = True
            if changed:
                # At least the stored version plus one: the in-ClickHouse merge counts up that way.
                version = max(state.version, versions.get(delta.key, -1) + 1)
                out.append(_row(state, columns, static, version))
        return out

    async def _settle_flat(self, sql: TableSql, query: str, keys: Sequence[tuple[Any, ...]] | None) -> None:
        """``_settle`` for a flat table: first ask ClickHouse which keys need it (``TableSql.conflicting``)."""
        key_columns = sql.layout.schema.primary_key
        formats = {c.name: "bytes" for c in key_columns if c.type.kind is Kind.BLOB}
        parameters = key_parameters(list(keys), len(key_columns)) if keys is not None else None
        result = await self._call(self.client.query, query, parameters=parameters, column_formats=formats)
        found = [tuple(from_ch(v, c.type) for v, c in zip(row, key_columns, strict=True)) for row in result.result_rows]
        await self._settle_keys(sql, found, static=False)

    async def _settle_keys(self, sql: TableSql, keys: Sequence[tuple[Any, ...]], *, static: bool) -> None:
        if keys and self.concurrent_writers():
            key_columns = sql.layout.schema.partition_key if static else sql.layout.schema.primary_key
            query = sql.recent(sql.statics if static else sql.state, key_columns, SETTLE_DEPTH)
            await self._settle(sql, query, keys, static=static)

    async def _settle(self, sql: TableSql, query: str, keys: Sequence[tuple[Any, ...]] | None, *, static: bool) -> None:
        """After an insert, make each key's newest state hold the cells of every state stored beside it.

        Replicas' runtimes merge the same rows at the same moment: each reads the newest state,
        joins its cells and inserts a whole row, so a state inserted concurrently can win
        ``FINAL`` while lacking another's cells. Read back the newest ``SETTLE_DEPTH`` states
        of the keys just written (``query``: by ``keys``, or by the stage when None); where the
        newest lacks a cell another holds, insert their join above both, and look again.
        Whoever inserts last sees every state that landed before its read (docs/sinks.md, Replicas).
        """
        layout = sql.layout
        target = sql.statics if static else sql.state
        columns = _plan(layout.statics if static else layout.regulars)
        width = len(layout.partition_names) if static else len(layout.key_names)
        key_columns = layout.schema.partition_key if static else layout.schema.primary_key
        for _ in range(SETTLE_ROUNDS):
            newest: dict[tuple[Any, ...], tuple[RowDelta, int, bool]] = {}
            for state, version in await self._read(sql, query, keys, static=static):  # newest first per key
                top = newest.get(state.key)
                if top is None:
                    newest[state.key] = (state, version, False)
                elif top[0].merge(state):
                    newest[state.key] = (top[0], top[1], True)
            joined = [
                _row(state, columns, static, max(state.version, version + 1))
                for state, version, changed in newest.values()
                if changed
            ]
            if not joined:
                return
            self.settled += len(joined)
            await self._insert(target, target_columns(sql, static), joined, f"settle:{secrets.token_hex(8)}")
            keys = [tuple(row[:width]) for row in joined]
            query = sql.recent(target, key_columns, SETTLE_DEPTH)

    async def _read(
        self, sql: TableSql, query: str, keys: Sequence[tuple[Any, ...]] | None, *, static: bool
    ) -> list[tuple[RowDelta, int]]:
        """The stored states ``query`` selects for ``keys`` (None: it names its own), each with its ``_version``."""
        if keys is not None and not keys:
            return []
        layout = sql.layout
        columns = layout.statics if static else layout.regulars
        key_columns = layout.schema.partition_key if static else layout.schema.primary_key
        formats = {c.name: "bytes" for c in (*key_columns, *columns) if c.type.kind is Kind.BLOB}
        parameters = key_parameters(list(keys), len(key_columns)) if keys is not None else None
        result = await self._call(self.client.query, query, parameters=parameters, column_formats=formats)
        names = result.column_names
        out = []
        for row in result.result_rows:
            values = dict(zip(names, row, strict=True))
            out.append((_state(values, key_columns, columns, static), values["_version"]))
        return out

    async def _tombstones(self, sql: TableSql, partitions: Iterable[tuple[Any, ...]]) -> list[Tombstone]:
        keys = list(partitions)
        if not keys:
            return []
        # Most tables never see a range or partition delete: one cheap count avoids the keyed read.
        if not await self._has_tombstones(sql):
            return []
        parameters = key_parameters(keys, len(sql.layout.partition_names))
        result = await self._call(self.client.query, sql.tombstones_of(), parameters=parameters)
        layout = sql.layout
        return [
            tombstone_from_record([normalise(v) for v in row], len(layout.partition_names), len(layout.clustering))
            for row in result.result_rows
        ]

    async def _insert(
        self, table: str, columns: list[tuple[str, str]], data: list[Any], token: str, *, column_oriented: bool = False
    ) -> None:
        """Insert rows (or columns); the types are given, so clickhouse-connect skips its DESCRIBE round trip."""
        if not data:
            return
        await self._call(
            self.client.insert,
            table,
            data,
            column_names=[n for n, _ in columns],
            column_type_names=[t for _, t in columns],
            column_oriented=column_oriented,
            # Rows of one insert have distinct keys: collapsing them on insert would only cost time.
            settings={"insert_deduplication_token": token, "optimize_on_insert": 0},
        )

    # -- checkpoints -----------------------------------------------------

    async def _store_checkpoint(self, checkpoint: Checkpoint) -> None:
        position = checkpoint.position
        # Ordered as positions are, for offsets of either sign (a snapshot mark's offset is a token):
        # a commitlog offset (>= 0) lands above 2**63, above every older version written without the bias.
        version = (position.segment_id << 64) | (position.offset + 2**63)
        row = [checkpoint.pipeline, checkpoint.node, position.segment_id, position.offset, version]
        await self._insert(
            CHECKPOINTS,
            CHECKPOINT_COLUMNS,
            [row],
            f"checkpoint:{checkpoint.pipeline}:{checkpoint.node}:{position}",
        )

    async def committed_positions(self, pipeline: str) -> dict[str, Position]:
        result = await self._call(
            self.client.query,
            f"SELECT node, segment_id, offset FROM {CHECKPOINTS} FINAL WHERE pipeline = %(pipeline)s",
            parameters={"pipeline": pipeline},
        )
        return {node: Position(segment, offset) for node, segment, offset in result.result_rows}

    async def reset_position(self, pipeline: str, node: str, position: Position | None) -> None:
        """Set a node's checkpoint exactly: its rows deleted first, since the newest version (the highest
        position) wins a ReplacingMergeTree's merge."""
        await self._call(
            self.client.command,
            f"DELETE FROM {CHECKPOINTS} WHERE pipeline = %(pipeline)s AND node = %(node)s",
            parameters={"pipeline": pipeline, "node": node},
        )
        if position is not None:
            await self._store_checkpoint(Checkpoint(pipeline, node, position))


def _native(sql: TableSql) -> _Native | None:
    """The compiled stage encoder and merger of a flat table, or None without the compiled core."""
    module = native_module()
    if module is None:
        return None
    layout = sql.layout

    def spec(column: Column, key: bool = False) -> tuple[str, str, Callable[[Any], Any]]:
        encoder = ch_encoder(column.type, layout.schema.qualified_name, column.name, key=key)
        return column.name, stage_type(column.type), encoder

    stage = module.ChStageEncoder(
        native_classes(),
        [spec(c, key=True) for c in layout.schema.partition_key],
        [spec(c, key=True) for c in layout.clustering],
        [spec(c) for c in layout.regulars],
        [],
    )
    return _Native(stage, module.ChMerger(len(layout.schema.primary_key), sql.state_columns))


def _by_partition(tombstones: Iterable[Tombstone]) -> dict[tuple[Any, ...], list[Tombstone]]:
    out: dict[tuple[Any, ...], list[Tombstone]] = {}
    for tombstone in tombstones:
        out.setdefault(tombstone.partition, []).append(tombstone)
    return out


def _block_token(sink: str, table: str, block: bytes) -> str:
    """Same deltas, same token: the staged block's digest.

    Safe although two batches from different positions can have equal deltas: the
    merge is idempotent, so the second of them changes no row and inserts nothing.
    Hashing the block (2 ms for 10,000 rows) costs a seventh of ``_token``.
    """
    return hashlib.sha256(f"{sink}|{table}|".encode() + block).hexdigest()


def _token(sink: str, table: str, events: Sequence[ChangeEvent]) -> str:
    """Same events, same token: a retried insert of this batch is dropped by ClickHouse."""
    digest = hashlib.sha256(f"{sink}|{table}|{len(events)}".encode())
    for event in events:
        source = event.source
        digest.update(f"|{source.node}:{source.position}:{event.op}".encode())
    return digest.hexdigest()


def _state(row: dict[str, Any], keys: Sequence[Column], columns: Sequence[Column], static: bool) -> RowDelta:
    state = RowDelta(tuple(from_ch(row[c.name], c.type) for c in keys), static=static)
    for column in columns:
        name = column.name
        ts = row[name + "__ts"]
        if ts is None and name in row:
            continue  # never written
        if name not in row:  # multi-cell: stored as element state
            text = row[name + "__state"]
            if text or ts is not None:
                cells = json.loads(text) if text else {}
                state.elements[name] = Elements(LIVE_TIMESTAMP if ts is None else ts, cells)
        else:
            state.cells[name] = SimpleCell(from_ch(row[name], column.type), ts, row[name + "__exp"])
    if not static:
        state.live_ts, state.live_exp = row["_live_ts"], row["_live_exp"]
    state.deleted_at = row["_del_ts"]
    return state


def _plan(columns: Sequence[Column]) -> list[tuple[str, bool, bool]]:
    """(name, multi-cell, array) per column: looked up once per batch, not per row."""
    return [(c.name, c.type.multi_cell, is_array(c.type)) for c in columns]


def _row(state: RowDelta, columns: list[tuple[str, bool, bool]], static: bool, version: int) -> list[Any]:
    out: list[Any] = list(state.key)
    alive = state.live_ts is not None and state.live_ts > state.deleted_at and not static
    for name, multi, array in columns:
        if multi:
            elements = state.elements.get(name)
            if elements is None:
                out += ["", None]
                continue
            out += [dumps(elements.cells), None if elements.deleted_at == LIVE_TIMESTAMP else elements.deleted_at]
            floor = max(elements.deleted_at, state.deleted_at)
            alive = alive or any(s[0] is not None and s[1] > floor for s in elements.cells.values())
            continue
        cell = state.cells.get(name)
        if cell is None:
            out += [[] if array else None, None, None]
            continue
        value = [] if cell.value is None and array else cell.value
        out += [value, cell.ts, cell.exp]
        alive = alive or (cell.value is not None and cell.ts > state.deleted_at)
    if not static:
        out += [state.live_ts, state.live_exp]
    out += [state.deleted_at, version, 0 if alive else 1]
    return out


def target_columns(sql: TableSql, static: bool) -> list[tuple[str, str]]:
    return sql.static_columns if static else sql.state_columns
