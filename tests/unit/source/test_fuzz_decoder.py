"""Random and mutated segments: the reader and decoder finish quickly and raise only their own errors."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_runtime.events import Position, SourcePosition
from pipeline_runtime.source.commitlog.mutation import MutationDecoder
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.commitlog.vint import read_uvint, write_uvint
from pipeline_runtime.source.errors import SourceError
from tests.unit.source.fixture_data import registry, segment_path

ORIGINAL = segment_path("v8").read_bytes()
REGISTRY = registry("v8", min_refresh_interval=0.0)  # damaged ids refresh without waiting
BODIES = [e.body for e in SegmentReader(segment_path("v8")).read()]
HERE = SourcePosition("n", Position(1, 1))


def decode_all(path: Path) -> None:
    reader = SegmentReader(path)
    decoder = MutationDecoder(REGISTRY.plan, 13)
    for entry in reader.read():
        decoder.decode(entry.body, HERE)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, len(ORIGINAL) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_mutated_segments(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(ORIGINAL)
    for at, mask in flips:
        data[at] ^= mask
    path = tmp_path / "CommitLog-8-1.log"
    path.write_bytes(bytes(data))
    started = time.monotonic()
    with contextlib.suppress(SourceError):
        decode_all(path)
    assert time.monotonic() - started < 2


@settings(max_examples=300, deadline=500)
@given(index=st.integers(0, len(BODIES) - 1), at=st.integers(0, 10_000), junk=st.binary(min_size=1, max_size=16))
def test_mutated_bodies_raise_only_decode_errors(index: int, at: int, junk: bytes) -> None:
    """Bodies with valid CRCs but damaged content (what a CRC collision or a schema mismatch looks like)."""
    body = BODIES[index]
    at %= len(body)
    damaged = body[:at] + junk + body[at + len(junk) :]
    decoder = MutationDecoder(REGISTRY.plan, 13)
    with contextlib.suppress(SourceError):
        decoder.decode(damaged, HERE)


@settings(max_examples=200, deadline=500)
@given(st.binary(max_size=64))
def test_random_bytes_as_a_body(data: bytes) -> None:
    with contextlib.suppress(SourceError):
        MutationDecoder(REGISTRY.plan, 12).decode(data, HERE)


@given(st.integers(0, 2**64 - 1))
def test_vint_round_trip(value: int) -> None:
    encoded = write_uvint(value)
    assert read_uvint(encoded, 0) == (value, len(encoded))
