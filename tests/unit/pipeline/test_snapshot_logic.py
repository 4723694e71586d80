"""The snapshot's pure logic: which ranges a node reads, where a page lets a restart resume, marks, throttle."""

from __future__ import annotations

import itertools

import pytest

from pipeline_runtime.events import Position
from pipeline_runtime.pipeline.snapshot import (
    DONE,
    IN_PROGRESS,
    TableProgress,
    Throttle,
    range_key,
    resume_after,
    table_key,
)
from pipeline_runtime.source.snapshot import MAX_TOKEN, MIN_TOKEN, TokenRange
from pipeline_runtime.source.snapshot.ranges import primary_ranges
from pipeline_runtime.source.snapshot.reader import complete_through


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
