"""The compiled decoder (``headrace_native``) against the pure-Python reference: same events, same errors.

Every entry of every recorded segment is decoded by both, with every table
selected (system tables exercise many more types and shapes) and with the
fixtures' own selection (walked-but-not-emitted tables, skipped counters).
Mutated and random bodies must give the same events or the same exception
type, and only the source's own exception types, quickly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devservices.pytest_require import require_module
from pipeline_runtime import native as native_choice
from pipeline_runtime.events import Bound, ChangeEvent, Position, SourcePosition
from pipeline_runtime.source.commitlog import fast
from pipeline_runtime.source.commitlog.mutation import DecodeStats, MutationDecoder
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.errors import SourceError
from pipeline_runtime.source.schema.registry import SchemaRegistry, StaticSchemaSource
from pipeline_runtime.source.schema.rows import SchemaRows
from pipeline_runtime.source.tailer import CdcRawTailer
from tests.unit.source.fixture_data import FIXTURES, RECORDINGS, copy_recording, drain, registry, segment_path

native = require_module(native_choice.NATIVE_MODULE, "`make dev` (pip install ./native) builds the compiled core")

Outcome = tuple[str, Any]


def all_tables(name: str) -> SchemaRegistry:
    rows = SchemaRows.from_json(json.loads((FIXTURES / name / "schema.json").read_text()))
    return SchemaRegistry(StaticSchemaSource(rows), selector=lambda _schema: True, min_refresh_interval=0.0)


def native_decoder(plans: Callable[[bytes], Any], version: int, stats: DecodeStats | None = None) -> Any:
    runtime = fast.native_runtime()
    assert runtime is not None, "headrace_native imports but does not accept the event classes"
    return native.MutationDecoder(plans, version, stats or DecodeStats(), runtime)


def outcome(decoder: Any, body: bytes, source: SourcePosition) -> Outcome:
    """Events, or the exception type; any exception other than a ``SourceError`` fails the test."""
    try:
        return ("events", decoder.decode(body, source))
    except SourceError as exc:
        return ("error", type(exc))


def same(left: object, right: object) -> bool:
    """Equality that also holds for NaN values decoded from the same bytes."""
    if left == right:
        return True
    if isinstance(left, float) and isinstance(right, float):
        return math.isnan(left) and math.isnan(right)
    if type(left) is not type(right):
        return False
    if isinstance(left, (list, tuple)):
        assert isinstance(right, (list, tuple))
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    if hasattr(left, "__dataclass_fields__"):
        return all(same(getattr(left, f), getattr(right, f)) for f in left.__dataclass_fields__)
    return False


def recorded_entries(name: str) -> Iterator[tuple[bytes, SourcePosition]]:
    for entry in SegmentReader(segment_path(name)).read():
        yield entry.body, SourcePosition("node-1", Position(entry.segment_id, entry.end))


def messaging_version(name: str) -> int:
    return SegmentReader(segment_path(name)).read_header().messaging_version


@pytest.mark.parametrize("selection", ["all", "fixture"])
@pytest.mark.parametrize("name", RECORDINGS)
def test_every_recorded_entry_decodes_identically(name: str, selection: str) -> None:
    plans = all_tables(name) if selection == "all" else registry(name)
    version = messaging_version(name)
    reference = MutationDecoder(plans.plan, version)
    compiled = native_decoder(plans.plan, version)
    events = 0
    for body, source in recorded_entries(name):
        expected = outcome(reference, body, source)
        assert outcome(compiled, body, source) == expected, f"entry ending at {source.position}"
        if expected[0] == "events":
            events += len(expected[1])
    assert compiled.stats == reference.stats
    assert events > (500 if selection == "all" else 20)


def test_events_keep_types_and_sharing_of_the_reference() -> None:
    """Not only equal: the same classes, and field by field the same kinds of values."""
    plans = registry("v8")
    reference = MutationDecoder(plans.plan, 13)
    compiled = native_decoder(plans.plan, 13)
    for body, source in recorded_entries("v8"):
        for ours, theirs in zip(compiled.decode(body, source), reference.decode(body, source), strict=True):
            assert type(ours) is ChangeEvent
            assert ours.source is source
            for field in ChangeEvent.__dataclass_fields__:
                assert type(getattr(ours, field)) is type(getattr(theirs, field)), field
            for column, change in ours.cells.items():
                assert type(change) is type(theirs.cells[column])
            for bound in (ours.range_start, ours.range_end):
                assert bound is None or (type(bound) is Bound and type(bound.values) is tuple)


@pytest.mark.parametrize("name", RECORDINGS)
def test_tailer_batches_are_identical(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_recording(name, tmp_path / "native")
    compiled = drain(CdcRawTailer(folder, "node-1", registry(name)))
    monkeypatch.setattr("pipeline_runtime.source.tailer.mutation_decoder", MutationDecoder)
    pure = drain(CdcRawTailer(folder, "node-1", registry(name)))
    assert [(b.position, b.entries, b.completed_segment) for b in compiled] == [
        (b.position, b.entries, b.completed_segment) for b in pure
    ]
    assert [b.events for b in compiled] == [b.events for b in pure]


# -- damaged and random input -----------------------------------------------------------------

_CORPUS = [(name, body) for name in RECORDINGS[:2] for body, _ in recorded_entries(name)]
_REGISTRIES = {name: all_tables(name) for name in RECORDINGS[:2]}
_HERE = SourcePosition("n", Position(1, 1))


def compare_on(name: str, body: bytes, version: int) -> None:
    plans = _REGISTRIES[name]
    reference_stats, native_stats = DecodeStats(), DecodeStats()
    started = time.monotonic()
    compiled = outcome(native_decoder(plans.plan, version, native_stats), body, _HERE)
    assert time.monotonic() - started < 1
    expected = outcome(MutationDecoder(plans.plan, version, reference_stats), body, _HERE)
    assert compiled[0] == expected[0], (compiled, expected)
    assert same(compiled[1], expected[1]), (compiled, expected)
    assert native_stats == reference_stats


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(_CORPUS) - 1),
    at=st.integers(0, 10_000),
    junk=st.binary(min_size=1, max_size=12),
    version=st.sampled_from([12, 13]),
)
def test_damaged_bodies_fail_alike(index: int, at: int, junk: bytes, version: int) -> None:
    name, body = _CORPUS[index]
    at %= len(body)
    compare_on(name, body[:at] + junk + body[at + len(junk) :], version)


def test_an_eight_byte_zero_count_fails_alike() -> None:
    # Found by test_damaged_bodies_fail_alike: the compiled vint read of 0xFE (seven extra bytes)
    # shifted a u8 mask by 8, so it read this partition-update count as non-zero.
    name, body = _CORPUS[0]
    compare_on(name, b"\xfe" + bytes(7) + body[8:], 12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(_CORPUS) - 1), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255))))
def test_flipped_bits_fail_alike(index: int, flips: list[tuple[int, int]]) -> None:
    name, body = _CORPUS[index]
    data = bytearray(body)
    for at, mask in flips:
        data[at % len(data)] ^= mask
    compare_on(name, bytes(data), 13)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(_CORPUS) - 1), cut=st.integers(0, 10_000))
def test_truncated_bodies_fail_alike(index: int, cut: int) -> None:
    name, body = _CORPUS[index]
    compare_on(name, body[: cut % len(body)], 13)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=96), version=st.sampled_from([12, 13]))
def test_random_bytes_fail_alike(data: bytes, version: int) -> None:
    compare_on("v8", data, version)


# -- choosing the decoder ---------------------------------------------------------------------


@pytest.fixture
def fresh_choice() -> Iterator[None]:
    fast.native_runtime.cache_clear()
    native_choice.native_module.cache_clear()
    yield
    fast.native_runtime.cache_clear()
    native_choice.native_module.cache_clear()


@pytest.mark.usefixtures("fresh_choice")
def test_native_is_chosen_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native_choice.PURE_PYTHON_ENV, raising=False)
    assert fast.native_available()
    assert type(fast.mutation_decoder(registry("v8").plan, 13)) is native.MutationDecoder


@pytest.mark.usefixtures("fresh_choice")
def test_env_var_forces_the_reference(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(native_choice.PURE_PYTHON_ENV, "1")
    with caplog.at_level(logging.INFO, logger=native_choice.__name__):
        decoder = fast.mutation_decoder(registry("v8").plan, 13)
    assert type(decoder) is MutationDecoder
    assert native_choice.PURE_PYTHON_ENV in caplog.text


@pytest.mark.usefixtures("fresh_choice")
def test_missing_module_falls_back_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(native_choice.PURE_PYTHON_ENV, raising=False)
    monkeypatch.setattr(native_choice, "NATIVE_MODULE", "headrace_native_not_built")
    with caplog.at_level(logging.WARNING, logger=native_choice.__name__):
        decoder = fast.mutation_decoder(registry("v8").plan, 13)
    assert type(decoder) is MutationDecoder
    assert "headrace_native_not_built is not built" in caplog.text


@dataclass(frozen=True, slots=True)
class _CheckedCell:
    value: Any
    timestamp: int
    ttl: int | None = None
    local_deletion_time: int | None = None
    deleted: bool = False

    def __post_init__(self) -> None:
        if self.timestamp < 0:
            raise ValueError("negative timestamp")


@dataclass(slots=True)
class _ShortCell:
    value: Any
    timestamp: int


@pytest.mark.parametrize(("cell", "reason"), [(_CheckedCell, "__post_init__"), (_ShortCell, "fields")])
def test_classes_it_cannot_build_exactly_are_refused(cell: type, reason: str) -> None:
    """The core builds instances without running ``__init__``: classes where that would differ are refused."""
    classes = fast.event_classes() | {"cell": cell}
    with pytest.raises(TypeError, match=reason):
        native.Runtime(classes, fast.error_classes(), {})
