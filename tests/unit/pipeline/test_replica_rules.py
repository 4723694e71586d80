"""Replica dedup's rules as pure logic: who owns a token, and what becomes of a held change (docs/replicas.md)."""

from __future__ import annotations

import uuid

import pytest
from cassandra.metadata import Murmur3Token

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.events import Cell, ChangeEvent, Op, Position, SourcePosition
from pipeline_runtime.pipeline.replicas import (
    MAX_HELD,
    ReplicaRouter,
    Ring,
    Watermark,
    murmur3_token,
    watermark_key,
    watermarks,
)
from tests.integration.sinks.workload import column

NOW = 1_800_000_000.0
RING = Ring.of([(-100, "a"), (0, "b"), (100, "c")], local="a")


def table(*keys: str) -> TableSchema:
    columns = [column(name, cql, ColumnKind.PARTITION_KEY, i) for i, (name, cql) in enumerate(k.split() for k in keys)]
    return TableSchema("ks", "t", uuid.uuid4(), (*columns, column("v", "text")))


def event(n: int, **key: object) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT, "ks", "t", key or {"id": n}, SourcePosition("node", Position(1, n)), {}, {"v": Cell("x", 1)}
    )


def router(tokens: dict[int, int], marks: dict[str, Watermark] | None = None, **kwargs: object) -> ReplicaRouter:
    """A router over RING whose token of event n is ``tokens[n]``; the clock stands at NOW."""
    clock = kwargs.pop("clock", lambda: NOW)
    routed = ReplicaRouter(
        ring=lambda: kwargs.pop("ring", RING),  # type: ignore[arg-type,return-value]
        schema=lambda keyspace, name: table("id int"),
        margin=15.0,
        takeover=60.0,
        tokenizer=lambda schema, e: tokens[e.partition_key["id"]],  # type: ignore[index]
        clock=clock,  # type: ignore[arg-type]
        since=NOW - 3600,
    )
    routed.refresh(marks or {})
    return routed


def test_a_token_belongs_to_the_node_of_the_first_ring_token_at_or_after_it() -> None:
    assert [RING.owner("ks", t) for t in (-500, -100, -99, 0, 1, 100, 101)] == ["a", "a", "b", "b", "c", "c", "a"]


def test_tokens_are_the_drivers_murmur3_of_the_serialized_key() -> None:
    assert murmur3_token(table("id int"), event(5)) == Murmur3Token.from_key((5).to_bytes(4, "big")).value
    composite = table("p text", "q int")
    key = b"\x00\x01x\x00" + b"\x00\x04" + (7).to_bytes(4, "big") + b"\x00"
    assert murmur3_token(composite, event(0, p="x", q=7)) == Murmur3Token.from_key(key).value
    assert murmur3_token(table("id int"), event(0, id="not an int")) is None  # written as without dedup


def test_own_changes_are_written_and_the_others_held_at_their_entry() -> None:
    routed = router({1: -200, 2: -50, 3: 50})
    assert routed.route([event(1)], NOW, Position(1, 0)) == [event(1)]  # token -200: node a, this one
    assert routed.route([event(2), event(3)], NOW, Position(1, 1)) == []
    assert [(h.owner, h.resume_at) for h in routed.held] == [("b", Position(1, 1)), ("c", Position(1, 1))]
    assert routed.hold_from() == Position(1, 1)
    assert routed.counts == {"written": 1, "held": 2}
    assert routed.status() == {"a": "writing", "b": "standby", "c": "standby"}


@pytest.mark.parametrize(
    ("mark", "t", "verdict"),
    [
        (Watermark(NOW - 1, NOW - 3600), NOW - 20, "covered"),  # its runtime wrote past t + margin
        (Watermark(NOW - 1, NOW - 3600), NOW - 10, "hold"),  # not past t + margin yet
        (Watermark(NOW - 1, NOW - 30), NOW - 40, "take"),  # before the period it vouches for
        (Watermark(NOW - 1, NOW - 40), NOW - 20, "covered"),
        (None, NOW - 30, "hold"),  # no watermark yet: wait ...
        (None, NOW - 60, "take"),  # ... at most takeover seconds
    ],
)
def test_what_becomes_of_a_held_change(mark: Watermark | None, t: float, verdict: str) -> None:
    routed = router({}, {"b": mark} if mark else {})
    assert routed.verdict("b", t, NOW) == verdict


def test_an_owner_whose_watermark_stops_moving_is_taken_over_one_that_lags_is_waited_for() -> None:
    clock = [NOW]
    routed = router({}, {"b": Watermark(NOW - 100, NOW - 3600)}, clock=lambda: clock[0])
    assert routed.verdict("b", NOW - 50, clock[0]) == "hold"  # 100 s behind, but seen moving just now
    clock[0] = NOW + 59
    routed.refresh({"b": Watermark(NOW - 45, NOW - 3600)})  # it moved on: lagging, alive
    assert routed.verdict("b", NOW - 50, clock[0]) == "hold"
    clock[0] = NOW + 118
    routed.refresh({"b": Watermark(NOW - 45, NOW - 3600)})  # the same mark for 59 s: not yet
    assert routed.verdict("b", NOW - 10, clock[0]) == "hold"
    clock[0] = NOW + 119
    routed.refresh({"b": Watermark(NOW - 45, NOW - 3600)})  # unmoved for takeover seconds: silent
    assert routed.verdict("b", NOW - 10, clock[0]) == "take"
    assert routed.status()["b"] == "taking over"


def test_resolve_drops_covered_changes_writes_taken_ones_and_moves_the_hold() -> None:
    clock = [NOW - 59]
    routed = router({1: -50, 2: 50, 3: -50}, {"c": Watermark(NOW - 120, NOW - 3600)}, clock=lambda: clock[0])
    clock[0] = NOW
    routed.route([event(1)], NOW - 30, Position(1, 10))
    routed.route([event(2)], NOW - 30, Position(1, 20))
    routed.route([event(3)], NOW - 5, Position(1, 30))
    clock[0] = NOW + 1
    routed.refresh({"b": Watermark(NOW - 1, NOW - 3600), "c": Watermark(NOW - 120, NOW - 3600)})
    assert routed.resolve() == [event(2)]  # c is silent: taken over; b covers its first change, not its last
    assert routed.hold_from() == Position(1, 30)
    assert routed.counts["covered"] == 1 and routed.counts["taken_over"] == 1
    assert routed.status()["c"] == "taking over"
    routed.route([event(2)], NOW, Position(1, 40))  # c still silent: its changes are written at once
    assert routed.counts["taken_over"] == 2
    clock[0] = NOW + 20
    routed.refresh({"b": Watermark(NOW + 19, NOW - 3600), "c": Watermark(NOW + 19, NOW - 3600)})
    assert routed.resolve() == []
    assert routed.hold_from() is None and not routed.held
    assert routed.status()["c"] == "standby"  # back: its watermark moved


def test_without_a_ring_every_change_is_written() -> None:
    routed = router({1: 50}, ring=None)
    assert routed.route([event(1)], NOW, Position(1, 0)) == [event(1)]
    assert routed.counts == {"taken_over": 1}
    assert routed.status() == {} and routed.own_watermark(0.0) is None


class _Rebuilding(Ring):
    """A ring whose token map is being rebuilt: no owner known for any token."""

    def owner(self, keyspace: str, token: int) -> str | None:
        return None


def test_a_change_without_a_known_owner_is_written() -> None:
    """Seen in the stress test: while a node restarts, the driver's token map briefly lists no replicas."""
    routed = router({1: 50}, ring=_Rebuilding(RING.tokens, RING.owners, "a"))
    assert routed.route([event(1)], NOW, Position(1, 0)) == [event(1)]
    assert routed.counts["taken_over"] == 1 and not routed.held


def test_a_held_backlog_beyond_its_bound_is_written_not_dropped() -> None:
    routed = router(dict.fromkeys(range(MAX_HELD + 3), 50))
    written = routed.route([event(n) for n in range(MAX_HELD + 3)], NOW, Position(1, 0))
    assert written == [event(n) for n in range(3)]
    assert len(routed.held) == MAX_HELD


def test_the_period_vouched_for_starts_again_while_the_own_node_is_down() -> None:
    down = Ring(RING.tokens, RING.owners, "a", local_up=False)
    routed = router({}, ring=down)
    assert routed.since == NOW
    assert routed.own_watermark(2.0) is None
    routed.ring = lambda: RING
    routed.refresh({})
    assert routed.own_watermark(2.0) == ("a", Watermark(NOW - 2.0, NOW))


def test_watermarks_are_published_as_positions_and_read_as_the_oldest_over_the_sinks() -> None:
    mark = Watermark(NOW, NOW - 60)
    assert Watermark.from_position(mark.position()) == mark
    assert Watermark(NOW + 1, 0).position() > mark.position()  # checkpoints never move backwards
    marks = {
        "pg": {
            watermark_key("a"): Watermark(NOW, 1).position(),
            watermark_key("b"): mark.position(),
            "node-0": Position(1, 2),
        },
        "ch": {watermark_key("a"): Watermark(NOW - 5, 1).position()},
    }
    assert watermarks(marks) == {"a": Watermark(NOW - 5, 1)}  # b is not in every sink yet
    assert watermarks({}) == {}


def test_replica_dedup_reads_on_and_off_from_yaml_and_bounds_its_timings() -> None:
    import yaml  # noqa: PLC0415

    from pipeline_runtime.config.loader import parse_pipeline  # noqa: PLC0415
    from pipeline_runtime.errors import ConfigError  # noqa: PLC0415

    text = """
source:
  cassandra: {{}}
  tables: [{{keyspace: ks}}]
  replicaDedup: {value}
  replicaTakeoverSeconds: {takeover}
sinks: [{{name: pg, type: postgres, connectionSecret: {{name: pg, key: dsn}}}}]
"""
    on = parse_pipeline(yaml.safe_load(text.format(value="on", takeover=30))).spec.source
    assert on.replica_dedup is True and on.replica_takeover_seconds == 30 and on.replica_margin_seconds == 15
    assert parse_pipeline(yaml.safe_load(text.format(value="off", takeover=30))).spec.source.replica_dedup is False
    with pytest.raises(ConfigError, match="replicaTakeoverSeconds"):
        parse_pipeline(yaml.safe_load(text.format(value="on", takeover=1)))
