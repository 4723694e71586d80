"""The PostgreSQL sink: one transaction per batch holding data and checkpoint.

Per batch and table: the events are shaped into row deltas (merged in memory
when a row repeats), COPYed into a temporary staging table, and merged into
``t__rows``/``t__static`` by one ``INSERT ... ON CONFLICT`` whose per-column
guard keeps the newer cell (see ``sql.py``). Tombstones are stored and raise
``_del_ts`` of the rows they cover, existing ones and ones written later.
The checkpoint row is upserted in the same transaction, so a crash anywhere
before COMMIT leaves neither data nor checkpoint, and a replay is harmless.

Concurrency between runtimes (one per Cassandra replica) is made safe by
table locks taken in name order (``_setup``).

A large batch of plain upserts is written over two connections at once
(``_write_apart``): its first half in a transaction of its own, the rest with
the checkpoint in the main one, which waits for the first half's commit
before its own, through an advisory lock, so PostgreSQL sees that wait too
(``_wait_for``). The checkpoint therefore still commits with, and never
before, the data it covers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import asyncpg

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import SinkError
from pipeline_runtime.events import ChangeEvent, Op, Position
from pipeline_runtime.sinks.base import Batch, Checkpoint, SinkHealth, SinkState, TableNaming, by_table
from pipeline_runtime.sinks.changes import (
    Layout,
    Shaper,
    Tombstone,
    coalesce,
    tombstone_from_record,
    tombstone_record,
)
from pipeline_runtime.sinks.postgres.ddl import DDL_LOCK, ensure_tables
from pipeline_runtime.sinks.postgres.errors import boundary
from pipeline_runtime.sinks.postgres.records import CopyData, Record, RecordBuilder
from pipeline_runtime.sinks.postgres.sql import TableSql, ident
from pipeline_runtime.sinks.postgres.typemap import pg_encoder, register_codecs

log = logging.getLogger(__name__)

#: Batches (per table) of plain upserts from this many rows on are written over two connections
#: at once, in two halves (``PostgresSink._write_apart``), when the pool has two connections.
PARALLEL_MIN_ROWS = 1_000

CHECKPOINT_SCHEMA = "headrace"
CHECKPOINTS = "headrace.checkpoints"

Hook = Callable[[asyncpg.Connection], Awaitable[None]]


@dataclass
class _Table:
    sql: TableSql
    shaper: Shaper
    records: RecordBuilder

    @cached_property
    def row_columns(self) -> list[str]:
        return [*self.sql.layout.key_names, *(n for n, _ in self.sql.row_columns)]

    @cached_property
    def static_columns(self) -> list[str]:
        return [*self.sql.layout.partition_names, *(n for n, _ in self.sql.static_columns)]

    @cached_property
    def row_stage(self) -> str:
        return _stage_name(self.sql.rows, self.row_columns)

    @cached_property
    def static_stage(self) -> str:
        return _stage_name(self.sql.statics, self.static_columns)


@dataclass
class _Work:
    """One table's share of a batch, ready for COPY (rows as records, or as COPY data already)."""

    table: _Table
    rows: list[Record] | CopyData
    statics: list[Record]
    tombstones: list[Tombstone]
    #: Rows written over a second connection, in a transaction of their own (``_write_apart``).
    apart: CopyData | None = None


class PostgresSink:
    """Writes change events into PostgreSQL with exactly-once effect."""

    def __init__(
        self,
        name: str,
        dsn: str,
        naming: TableNaming | None = None,
        *,
        pool_size: int = 2,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._dsn = dsn
        #: With a context (``sinks[].tls``) every connection is TLS, verified as the context says, whatever
        #: the DSN's sslmode; without one the DSN decides.
        self._tls = tls
        self._naming = naming or TableNaming()
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._tables: dict[str, _Table] = {}
        self._health = SinkHealth(name)
        #: Test seam: awaited inside the transaction after the data, before the checkpoint.
        self.before_checkpoint: Hook | None = None

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        async with boundary(self.name):
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._pool_size, init=register_codecs, ssl=self._tls
            )
        try:
            async with boundary(self.name), self._pool.acquire() as conn:
                await self._prepare_database(conn)
        except BaseException:
            await self.close()
            raise
        self._health.state = SinkState.OPEN

    async def _prepare_database(self, conn: asyncpg.Connection) -> None:
        # Under the DDL lock: CREATE ... IF NOT EXISTS alone still fails (23505) when runtimes race.
        await conn.execute(
            f"SELECT pg_advisory_xact_lock({DDL_LOCK}); "
            f"CREATE SCHEMA IF NOT EXISTS {CHECKPOINT_SCHEMA}; "
            f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (pipeline text NOT NULL, node text NOT NULL, "
            'segment_id bigint NOT NULL, "offset" bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), '
            "PRIMARY KEY (pipeline, node))"
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            async with boundary(self.name):
                await pool.close()
        self._health.state = SinkState.CLOSED

    def health(self) -> SinkHealth:
        return self._health

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise SinkError(f"sink {self.name} is not open")
        return self._pool

    # -- schema ----------------------------------------------------------

    async def ensure_table(self, schema: TableSchema) -> None:
        sql = TableSql(Layout(schema), *self._naming.place(schema.keyspace, schema.name, self.name))
        async with boundary(self.name), self.pool.acquire() as conn, conn.transaction():
            await ensure_tables(conn, sql)
            await self._after_create(conn, sql)
        self._tables[schema.qualified_name] = _Table(
            sql, Shaper(schema, pg_encoder), RecordBuilder(sql.layout, pg_encoder)
        )

    async def _after_create(self, conn: asyncpg.Connection, sql: TableSql) -> None:
        """Hook for TimescaleDB: turn the fresh table into a hypertable."""

    # -- writing ---------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        async with boundary(self.name):
            work = self._prepare(batch.events)  # encoding errors become RowRejectedError here
        apart = [item for item in work if item.apart is not None]
        side: asyncio.Future[None] | None = None
        key = secrets.randbits(62)
        if apart:
            locked = asyncio.Event()
            side = asyncio.ensure_future(self._write_apart(apart, key, locked))
            took = asyncio.ensure_future(locked.wait())
            try:
                await asyncio.wait([side, took], return_when=asyncio.FIRST_COMPLETED)
            finally:
                took.cancel()
        try:
            if side is not None and side.done():
                side.result()  # it failed before taking its lock: raise that
            async with boundary(self.name), self.pool.acquire() as conn, conn.transaction():
                if work:
                    await conn.execute(_setup(work))
                for item in work:
                    await self._write_table(conn, item)
                if side is not None:
                    await _wait_for(conn, key, side)
                if self.before_checkpoint is not None:
                    await self.before_checkpoint(conn)
                if batch.checkpoint is not None:
                    await store_checkpoint(conn, batch.checkpoint)
        finally:
            if side is not None:
                await asyncio.wait([side])  # its own transaction ends either way: never leave it running
                if not side.cancelled():
                    side.exception()  # seen: where the main transaction failed, its own error is the one raised
        self._health.committed(len(batch.events))

    def _prepare(self, events: Sequence[ChangeEvent]) -> list[_Work]:
        tables = by_table(events)
        work = []
        for qualified, table_events in sorted(tables.items()):
            table = self._tables.get(qualified)
            if table is None:
                raise SinkError(f"sink {self.name}: table {qualified} was not prepared with ensure_table")
            if (
                self._pool_size >= 2
                and len(table_events) >= PARALLEL_MIN_ROWS
                and all(e.op is Op.UPSERT and not e.static for e in table_events)
            ):
                parts = table.records.copy_parts(table_events, 2)
                if parts is not None:
                    work.append(_Work(table, parts[1], [], [], apart=parts[0]))
                    continue
            fast: list[Record] | CopyData | None = table.records.copy_data(table_events)
            if fast is None:
                fast = table.records.fast(table_events)
            if fast is not None:
                work.append(_Work(table, fast, [], []))
                continue
            rows, tombstones = coalesce(table.shaper.shape(e) for e in table_events)
            regular = [table.records.row(r) for r in rows if not r.static]
            statics = [table.records.static(r) for r in rows if r.static]
            work.append(_Work(table, regular, statics, tombstones))
        return work

    async def _write_apart(self, items: list[_Work], key: int, locked: asyncio.Event) -> None:
        """Write the ``apart`` rows of ``items`` over a second connection, in a transaction of their own.

        The transaction first takes the advisory lock ``key`` (then sets ``locked``) and
        holds it until it ends: the main transaction waits for it there (``_wait_for``).
        Its rows are distinct from the main transaction's, and the stored deletions that
        cover them are applied to its own rows only, so it never waits for the main
        transaction (the main one may wait for its rows: that only orders them). Any cycle
        through a third transaction passes through waits PostgreSQL sees, so it is a
        deadlock error (retried), never a hang.
        """
        async with boundary(self.name), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            locked.set()
            own = [_Work(item.table, item.apart, [], []) for item in items if item.apart is not None]
            await conn.execute(_setup(own))
            for item in own:
                table, sql = item.table, item.table.sql
                stage = await _merge(conn, table.row_stage, sql.merge_rows, table.row_columns, item.rows)
                for found in await conn.fetch(sql.tombstones_for_stage(stage)):
                    await _apply_tombstone(conn, sql, found, within=stage)

    async def _write_table(self, conn: asyncpg.Connection, item: _Work) -> None:
        table = item.table
        sql = table.sql
        stages = []
        applied: dict[str, tuple[Any, ...]] = {}
        if item.rows:
            stages.append(await _merge(conn, table.row_stage, sql.merge_rows, table.row_columns, item.rows))
        if item.statics:
            stages.append(await _merge(conn, table.static_stage, sql.merge_statics, table.static_columns, item.statics))
        for tombstone in item.tombstones:
            record = tombstone_record(tombstone, len(sql.layout.clustering))
            await conn.execute(sql.insert_tombstone(), *record)
            _keep_newest(applied, record)
        for stage in stages:
            for found in await conn.fetch(sql.tombstones_for_stage(stage)):
                _keep_newest(applied, tuple(found))
        for record in applied.values():
            await _apply_tombstone(conn, sql, record)

    # -- checkpoints -----------------------------------------------------

    async def committed_positions(self, pipeline: str) -> dict[str, Position]:
        async with boundary(self.name), self.pool.acquire() as conn:
            rows = await conn.fetch(
                'SELECT node, segment_id, "offset" FROM headrace.checkpoints WHERE pipeline = $1', pipeline
            )
        return {r["node"]: Position(r["segment_id"], r["offset"]) for r in rows}

    async def reset_position(self, pipeline: str, node: str, position: Position | None) -> None:
        """Set a node's checkpoint exactly (the upsert of a commit never moves it back)."""
        async with boundary(self.name), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM headrace.checkpoints WHERE pipeline = $1 AND node = $2", pipeline, node)
            if position is not None:
                await store_checkpoint(conn, Checkpoint(pipeline, node, position))


def _setup(work: list[_Work]) -> str:
    """One round trip that takes the batch's table locks and makes sure its staging tables exist.

    Locks: writers take ROW EXCLUSIVE (they do not block each other); a batch
    with range or partition deletions takes SHARE ROW EXCLUSIVE, so a deletion
    never misses a row a concurrent writer inserts. Taken in name order, so two
    runtimes never wait on each other in a cycle.

    Staging tables are temporary tables kept for the session and emptied at
    every commit (ON COMMIT DELETE ROWS): creating and dropping one per batch
    cost as much catalog work as a 1,000-row merge. The name digests the
    target and the COPY columns, so a schema change gets a fresh table.
    """
    locks: list[tuple[str, str]] = []
    stages: list[str] = []
    for item in work:
        table = item.table
        sql = table.sql
        mode = "SHARE ROW EXCLUSIVE" if item.tombstones else "ROW EXCLUSIVE"
        locks.append((sql.rows, mode))
        if sql.has_statics:
            locks.append((sql.statics, mode))
        if item.rows:
            stages.append(f"CREATE TEMP TABLE IF NOT EXISTS {table.row_stage} (LIKE {sql.rows}) ON COMMIT DELETE ROWS")
        if item.statics:
            stages.append(
                f"CREATE TEMP TABLE IF NOT EXISTS {table.static_stage} (LIKE {sql.statics}) ON COMMIT DELETE ROWS"
            )
    statements = [f"LOCK TABLE {name} IN {mode} MODE" for name, mode in sorted(locks)]
    return "; ".join(statements + stages)


def _stage_name(target: str, columns: Sequence[str]) -> str:
    digest = hashlib.blake2s(f"{target}|{','.join(columns)}".encode(), digest_size=10).hexdigest()
    return f"headrace_stage_{digest}"


async def _merge(
    conn: asyncpg.Connection,
    stage: str,
    merge: Callable[[str], str],
    columns: list[str],
    records: list[Record] | CopyData,
) -> str:
    """COPY the records into the session's staging table and merge them into the target."""
    await _copy(conn, stage, columns, records)
    await conn.execute(merge(f"pg_temp.{stage}"))
    return f"pg_temp.{stage}"


async def _copy(conn: asyncpg.Connection, stage: str, columns: list[str], records: list[Record] | CopyData) -> None:
    if isinstance(records, tuple):
        await conn.copy_to_table(
            stage, source=_chunks(records[0]), columns=columns, schema_name="pg_temp", format="binary"
        )
    else:
        await conn.copy_records_to_table(stage, records=records, columns=columns, schema_name="pg_temp")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _keep_newest(applied: dict[str, tuple[Any, ...]], record: Sequence[Any]) -> None:
    """Keep, per tombstone id (partition and bounds), the deletion with the newest timestamp (the last field).

    One batch can hold two deletions of the same partition or range out of writetime order (a hint or
    another replica's change read later): the newer one must be the one applied to the rows.
    """
    known = applied.get(record[0])
    if known is None or record[-1] > known[-1]:
        applied[record[0]] = tuple(record)


async def _apply_tombstone(
    conn: asyncpg.Connection, sql: TableSql, record: Sequence[Any], within: str | None = None
) -> None:
    tombstone = tombstone_from_record(record, len(sql.layout.partition_names), len(sql.layout.clustering))
    start, end = tombstone.start, tombstone.end
    rows, statics = sql.apply_tombstone(
        len(start.values) if start else 0,
        start.inclusive if start else True,
        len(end.values) if end else 0,
        end.inclusive if end else True,
        within,
    )
    params = [tombstone.ts, *tombstone.partition, *(start.values if start else ()), *(end.values if end else ())]
    await conn.execute(rows, *params)
    if statics:
        await conn.execute(statics, *params)


async def _wait_for(conn: asyncpg.Connection, key: int, side: asyncio.Future[None]) -> None:
    """Wait, inside the main transaction, until ``_write_apart``'s transaction has ended; raise if it failed.

    Waiting on its advisory lock rather than only on the task lets PostgreSQL's
    deadlock detector see the wait: a cycle through another runtime's transaction
    aborts one of them (a retryable deadlock error) instead of hanging.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
    await side  # done by now: the lock is free once its transaction has committed or rolled back


async def store_checkpoint(conn: asyncpg.Connection, checkpoint: Checkpoint) -> None:
    # Never moves back: a replay from a lower position (another sink was behind) keeps this one.
    await conn.execute(
        'INSERT INTO headrace.checkpoints AS c (pipeline, node, segment_id, "offset") VALUES ($1, $2, $3, $4) '
        'ON CONFLICT (pipeline, node) DO UPDATE SET segment_id = EXCLUDED.segment_id, "offset" = EXCLUDED."offset", '
        'updated_at = now() WHERE (c.segment_id, c."offset") < (EXCLUDED.segment_id, EXCLUDED."offset")',
        checkpoint.pipeline,
        checkpoint.node,
        checkpoint.position.segment_id,
        checkpoint.position.offset,
    )


__all__ = ["PostgresSink", "ident", "store_checkpoint"]
