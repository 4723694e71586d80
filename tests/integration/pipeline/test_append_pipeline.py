"""One pipeline, an upsert sink and append sinks side by side, from a real Cassandra (both formats).

The upsert sink ends equal to Cassandra; each append sink holds one history row per CQL statement
(each statement here changes one row, so one event), in writetime order, with what the statement
wrote; a kill -9 mid-stream and a restart add no duplicate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
import yaml

from devservices.cassandra import CassandraNode
from pipeline_runtime.app import Runtime
from pipeline_runtime.config.loader import load_pipeline
from tests.integration.pipeline.test_end_to_end import local_options, new_keyspace, pg_rows, wait_until
from tests.integration.pipeline.test_snapshot_runtime import pipeline_yaml, snapshot_done

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.clickhouse]

STATEMENTS = [
    "INSERT INTO {ks}.items (id, name, qty, tags) VALUES (1, 'apple', 3, {{'red'}}) USING TIMESTAMP 1000",
    "UPDATE {ks}.items USING TIMESTAMP 2000 SET qty = 4 WHERE id = 1",
    "UPDATE {ks}.items USING TIMESTAMP 3000 SET tags = tags + {{'green'}} WHERE id = 1",
    "INSERT INTO {ks}.items (id, name, qty) VALUES (2, 'pear', 1) USING TIMESTAMP 4000 AND TTL 86400",
    "DELETE name FROM {ks}.items USING TIMESTAMP 5000 WHERE id = 2",
    "DELETE FROM {ks}.items USING TIMESTAMP 6000 WHERE id = 1",
]


async def pg_history(dsn: str, keyspace: str) -> list[dict[str, Any]]:
    return await pg_rows(dsn, f'SELECT * FROM "{keyspace}_hist"."items_changes" ORDER BY _writetime')


async def pg_state(dsn: str, keyspace: str) -> list[tuple[Any, ...]]:
    """The upsert sink's rows: what Cassandra holds now."""
    return [
        tuple(r.values()) for r in await pg_rows(dsn, f'SELECT id, name, qty FROM "{keyspace}"."items" ORDER BY id')
    ]


def ch_history(dsn: str, keyspace: str) -> list[dict[str, Any]]:
    client = clickhouse_connect.get_client(dsn=dsn)
    result = client.query(f"SELECT * FROM `{keyspace}_chh`.`items_changes` FINAL ORDER BY _writetime")
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def micros(value: dt.datetime) -> int:
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


async def test_upsert_and_append_sinks_side_by_side(
    cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    keyspace = new_keyspace(cassandra, "items (id int PRIMARY KEY, name text, qty int, tags set<text>) WITH cdc = true")
    sinks = {"pg": postgres_dsn, "hist": postgres_dsn, "chh": chdb_dsn}
    path = pipeline_yaml(tmp_path, keyspace, cassandra, sinks, mode="never")
    config = yaml.safe_load(path.read_text())
    for entry in config["spec"]["sinks"]:
        if entry["name"] != "pg":
            entry["writeMode"] = "append"
            entry["target"] = f"{keyspace}_{entry['name']}"
    path.write_text(yaml.safe_dump(config))
    session = cassandra.session()

    async def run(statements: list[str], state: list[tuple[Any, ...]], done: int = 0) -> None:
        runtime = Runtime(load_pipeline(path), local_options(cassandra, tmp_path))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            for text in statements:
                session.execute(text.format(ks=keyspace))

            async def arrived() -> Any:
                try:
                    got = [len(await pg_history(postgres_dsn, keyspace)), len(ch_history(chdb_dsn, keyspace))]
                    held = await pg_state(postgres_dsn, keyspace)
                except Exception as exc:  # the tables are made when the runtime has started
                    return repr(exc)
                # Each sink commits on its own: the upsert sink may still be behind the histories.
                return True if got == [len(statements) + done] * 2 and held == state else (got, held)

            await wait_until(arrived, 60, "every change in both histories and the upsert sink")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    await run(STATEMENTS[:3], [(1, "apple", 4)])
    # The runtime starts again from its checkpoints; the rest arrives, nothing twice. The upsert sink
    # ends with the current state: only row 2, without its name.
    await run(STATEMENTS[3:], [(2, None, 1)], done=3)
    for rows in (await pg_history(postgres_dsn, keyspace), ch_history(chdb_dsn, keyspace)):
        assert [micros(r["_writetime"]) for r in rows] == [1000, 2000, 3000, 4000, 5000, 6000]
        assert [r["_op"] for r in rows] == ["upsert"] * 5 + ["delete_partition"]  # no clustering key
        assert [r["id"] for r in rows] == [1, 1, 1, 2, 2, 1]
        first, second, third, fourth, fifth, _ = rows
        assert (first["name"], first["qty"], second["qty"], second["name"]) == ("apple", 3, 4, None)
        assert json.loads(third["tags"]) == {"cleared": False, "added": ["green"], "removed": []}
        assert fourth["_ttl"] == 86400 and fourth["_expires_at"] is not None
        assert list(fifth["_deleted"]) == ["name"]


async def test_a_snapshot_into_an_append_sink_is_recorded_once(
    cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    """Rows a table held before the pipeline are snapshot rows of the history; reading them again adds none."""
    keyspace = new_keyspace(
        cassandra, "items (id int PRIMARY KEY, name text, qty int, tags set<text>) WITH cdc = false"
    )
    session = cassandra.session()
    # Written while CDC was off. The commitlog segment they are in may still reach cdc_raw (when another
    # table's CDC write lands in the same segment) and bring them as changes too: those rows are told apart
    # by their segment; the snapshot's rows have segment and offset 0.
    for n in range(3):
        session.execute(
            f"INSERT INTO {keyspace}.items (id, name, qty) VALUES ({n}, 'old {n}', {n}) USING TIMESTAMP {n + 1}"
        )
    session.execute(f"ALTER TABLE {keyspace}.items WITH cdc = true")
    sinks = {"hist": postgres_dsn}

    async def snapshot(request: str) -> None:
        path = pipeline_yaml(tmp_path, keyspace, cassandra, sinks, mode="initial", request=request)
        config = yaml.safe_load(path.read_text())
        config["spec"]["sinks"][0] |= {"writeMode": "append", "target": f"{keyspace}_hist"}
        path.write_text(yaml.safe_dump(config))
        runtime = Runtime(load_pipeline(path), local_options(cassandra, tmp_path))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(lambda: snapshot_done(runtime, 1), 60, "the snapshot")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    await snapshot("")
    everything = await pg_history(postgres_dsn, keyspace)
    rows = sorted((r for r in everything if r["_segment"] == 0), key=lambda r: r["id"])
    assert [(r["id"], r["name"], micros(r["_writetime"]), r["_op"], r["_offset"]) for r in rows] == [
        (0, "old 0", 1, "upsert", 0),
        (1, "old 1", 2, "upsert", 0),
        (2, "old 2", 3, "upsert", 0),
    ]
    await snapshot("again")  # a requested second read of unchanged rows records nothing new
    history = await pg_history(postgres_dsn, keyspace)
    assert sorted(str(r["_change"]) for r in history if r["_segment"] == 0) == sorted(str(r["_change"]) for r in rows)
    # The old writes' own commitlog copies may reach cdc_raw at any moment (above): each is recorded once at most.
    copies = [(r["id"], micros(r["_writetime"])) for r in history if r["_segment"] != 0]
    assert sorted(copies) == sorted(set(copies)) and set(copies) <= {(0, 1), (1, 2), (2, 3)}
