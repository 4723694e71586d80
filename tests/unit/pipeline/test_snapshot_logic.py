"""The snapshot's pure logic: which ranges a node reads, where a page lets a restart resume, marks, throttle,
ranges read side by side."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.observability.metrics import create_metrics
from pipeline_runtime.pipeline.snapshot import (
    DONE,
    IN_PROGRESS,
    INITIAL,
    RANGES_AT_ONCE,
    SnapshotRun,
    SnapshotSettings,
    TableProgress,
    Throttle,
    range_key,
    resume_after,
    table_key,
)
from pipeline_runtime.sinks.base import Checkpoint
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.source.snapshot import MAX_TOKEN, MIN_TOKEN, SnapshotPage, TokenRange, split_ring
from pipeline_runtime.source.snapshot.ranges import primary_ranges
from pipeline_runtime.source.snapshot.reader import SnapshotReadError, complete_through


def covered(ranges: tuple[TokenRange, ...]) -> int:
    return sum(r.end - r.start for r in ranges)


def test_a_single_token_node_owns_the_whole_ring_in_two_ranges() -> None:
    assert primary_ranges([(42, True)]) == (TokenRange(MIN_TOKEN, 42), TokenRange(42, MAX_TOKEN))
    assert primary_ranges([]) == (TokenRange(MIN_TOKEN, MAX_TOKEN),)


def test_three_nodes_split_the_ring_without_gaps_or_overlaps() -> None:
    tokens = [(-(2**62), "a"), (0, "b"), (2**62, "c"), (2**62 + 5, "a"), (-5, "c")]
    per_node = {n: primary_ranges([(t, owner == n) for t, owner in tokens]) for n in "abc"}
    assert sum(covered(r) for r in per_node.values()) == MAX_TOKEN - MIN_TOKEN
    # node a owns the first token: the wrap-around is cut at the ring's ends
    assert TokenRange(MIN_TOKEN, -(2**62)) in per_node["a"]
    assert TokenRange(2**62 + 5, MAX_TOKEN) in per_node["a"]
    assert TokenRange(2**62, 2**62 + 5) in per_node["a"]
    assert per_node["b"] == (TokenRange(-5, 0),)
    everything = sorted(r for ranges in per_node.values() for r in ranges)
    assert all(left.end == right.start for left, right in itertools.pairwise(everything))


def test_a_page_resumes_after_its_last_finished_partition() -> None:
    # the last row's partition may go on in the next page
    # tokens 1, 1, 5, 9, 9: the last row's token is 9, the one before it 5
    assert complete_through(9, 5, last_page=False) == 5
    assert complete_through(9, 5, last_page=True) == 9
    # tokens 7, 7, 7: one partition, maybe unfinished
    assert complete_through(7, None, last_page=False) is None
    assert complete_through(7, None, last_page=True) == 7
    assert complete_through(None, None, last_page=True) is None


def test_marks_resume_from_their_token_and_never_read_a_done_range() -> None:
    r = TokenRange(-100, 100)
    assert resume_after(None, r) == -100
    assert resume_after(Position(IN_PROGRESS, 30), r) == 30
    assert resume_after(Position(DONE, 100), r) is None
    # an in-progress mark is below every done one, so a replayed page never moves a done range back
    assert Position(IN_PROGRESS, MAX_TOKEN) < Position(DONE, MIN_TOKEN)
    assert range_key("initial", "n1", "ks.t", r).startswith(table_key("initial", "n1", "ks.t") + ":")
    assert range_key("initial", "n1", "ks.t", r) != range_key("request-2", "n1", "ks.t", r)


def test_throttle_spaces_pages_to_the_rate() -> None:
    now = [100.0]
    throttle = Throttle(1000, clock=lambda: now[0])
    assert throttle.wait_for(500) == pytest.approx(0.5)
    now[0] += 0.5
    assert throttle.wait_for(500) == pytest.approx(0.5)
    now[0] += 2.0  # reading was slower than the rate: no wait
    assert throttle.wait_for(500) == 0.0
    assert Throttle(0, clock=lambda: 0.0).wait_for(10**6) == 0.0


def test_progress_reports_rate_and_time_left_from_ranges_done() -> None:
    progress = TableProgress(state="running", rows_read=3000, ranges_done=1, ranges_total=4, started=10.0)
    status = progress.status(now=13.0)
    assert status.rows_per_second == 1000.0
    assert status.eta_seconds == 9.0
    assert TableProgress(state="running", started=10.0, ranges_total=4).status(now=11.0).eta_seconds is None
    done = TableProgress(state="done", rows_read=10, ranges_done=4, ranges_total=4, started=1.0, finished=3.0)
    assert done.status(now=100.0).rows_per_second == 5.0
    assert done.status(now=100.0).eta_seconds == 0.0


class _PagedRanges:
    """A table of ``ranges`` token ranges of three pages each; page reads block briefly, as Cassandra's do."""

    def __init__(self, ranges: int, fail_once: TokenRange | None = None) -> None:
        self._ranges = split_ring(ranges)
        self.fail_once = fail_once
        #: (range, first token after which the page reads) of every page read.
        self.reads: list[tuple[TokenRange, int]] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def ranges(self) -> tuple[TokenRange, ...]:
        return self._ranges

    def page(self, token_range: TokenRange, after: int | None, paging_state: bytes | None) -> SnapshotPage:
        # A page ends at the next third of its range: where it starts (a mark or a paging state) decides.
        at = int(paging_state) if paging_state else (token_range.start if after is None else after)
        width = (token_range.end - token_range.start) // 3
        through = next(b for b in (token_range.start + width, token_range.start + 2 * width, token_range.end) if b > at)
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.reads.append((token_range, at))
        try:
            time.sleep(0.02)
            if token_range == self.fail_once and at > token_range.start:
                self.fail_once = None
                raise SnapshotReadError(f"{token_range}: timed out")
        finally:
            with self._lock:
                self.in_flight -= 1
        last = through == token_range.end
        return SnapshotPage(token_range, [], 10, None if last else str(through).encode(), through)

    def close(self) -> None:
        pass


class _Identity:
    def table(self, schema: TableSchema) -> TableSchema:
        return schema

    def events(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        return list(events)


def _run(reader: _PagedRanges) -> tuple[SnapshotRun, dict[str, Position], list[str]]:
    marks: dict[str, Position] = {}
    written: list[str] = []
    writing = [0]

    async def deliver(events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        writing[0] += 1
        try:
            assert writing[0] == 1, "two pages written at once"
            await asyncio.sleep(0.005)  # a write cancelled here (another range failed) leaves no mark
            previous = marks.get(checkpoint.node)
            assert previous is None or previous <= checkpoint.position, "a mark went back"
            marks[checkpoint.node] = checkpoint.position
            written.append(checkpoint.node)
        finally:
            writing[0] -= 1

    async def read_marks() -> dict[str, dict[str, Position]]:
        return {"sink": dict(marks)}

    schema = TableSchema("ks", "t", uuid.uuid4(), (Column("k", CqlType(Kind.INT), ColumnKind.PARTITION_KEY, 0),))
    run = SnapshotRun(
        pipeline="p",
        node="n1",
        tables=[schema],
        open_reader=lambda _: reader,
        transform=_Identity(),
        deliver=deliver,
        read_marks=read_marks,
        metrics=create_metrics(CollectorRegistry()),
        settings=SnapshotSettings(backoff=Backoff(initial=0.01, maximum=0.01, attempts=5)),
    )
    asyncio.run(run.run())
    return run, marks, written


def test_ranges_are_read_two_at_a_time_and_written_one_page_at_a_time() -> None:
    reader = _PagedRanges(6)
    run, marks, written = _run(reader)
    assert reader.most_in_flight == RANGES_AT_ONCE == 2
    assert len(reader.reads) == 6 * 3  # every page once
    assert all(marks[range_key(INITIAL, "n1", "ks.t", r)] == Position(DONE, r.end) for r in reader.ranges())
    assert written[-1] == table_key(INITIAL, "n1", "ks.t")  # the table is done after all its ranges
    assert run.status()["ks.t"].ranges_done == 6


def test_a_failed_range_stops_the_others_and_every_range_resumes_from_its_mark() -> None:
    ranges = split_ring(4)
    reader = _PagedRanges(4, fail_once=ranges[1])
    run, marks, _ = _run(reader)
    assert all(marks[range_key(INITIAL, "n1", "ks.t", r)] == Position(DONE, r.end) for r in ranges)
    # The failed page is read again, and at most two pages of the range read beside it (the one whose
    # write the failure cancelled, the one read ahead); pages already written are not: every range
    # resumes after its own mark.
    again = [read for read in reader.reads if reader.reads.count(read) > 1]
    assert (ranges[1], ranges[1].start + (ranges[1].end - ranges[1].start) // 3) in again
    assert 4 * 3 + 1 <= len(reader.reads) <= 4 * 3 + 3
    assert run.status()["ks.t"].state == "done"
