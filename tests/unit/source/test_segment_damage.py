"""Damaged segments: typed errors with segment and offset, nothing skipped past the damage."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from pipeline_runtime.source.cdc_index import read_index
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.errors import (
    IndexFileError,
    SegmentCorruptError,
    SegmentHeaderError,
    UnsupportedSegmentError,
)
from pipeline_runtime.source.tailer import CdcRawTailer
from tests.unit.source.fixture_data import copy_recording, drain, registry, segment_path


def entries(path: Path) -> list[tuple[int, int]]:
    return [(e.start, e.end) for e in SegmentReader(path).read()]


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    copy_recording("v8", tmp_path)
    (path,) = tmp_path.glob("*.log")
    return path


def test_flipped_byte_in_an_entry_is_a_crc_mismatch_after_the_good_entries(plain: Path) -> None:
    good = entries(plain)
    start, _end = good[40]
    data = bytearray(plain.read_bytes())
    data[start + 20] ^= 0xFF
    plain.write_bytes(bytes(data))
    reader = SegmentReader(plain)
    seen: list[tuple[int, int]] = []
    with pytest.raises(SegmentCorruptError) as caught:
        seen.extend((e.start, e.end) for e in reader.read())
    assert seen == good[:40]
    assert caught.value.segment == plain.name and caught.value.offset == start
    assert "CRC" in caught.value.reason
    # Reading again never skips past the damage.
    with pytest.raises(SegmentCorruptError):
        list(reader.read())


def test_truncated_file(plain: Path) -> None:
    good = entries(plain)
    start, _end = good[100]
    plain.write_bytes(plain.read_bytes()[: start + 30])
    seen: list[int] = []
    with pytest.raises(SegmentCorruptError) as caught:
        seen.extend(e.end for e in SegmentReader(plain).read())
    assert seen == [e for _, e in good[:100]]
    assert caught.value.offset == start and "truncated" in caught.value.reason


def test_truncated_before_a_durable_offset(plain: Path) -> None:
    size = plain.stat().st_size
    with pytest.raises(SegmentCorruptError, match="truncated"):
        list(SegmentReader(plain).read(limit=size + 100))


def test_bad_header_crc(plain: Path) -> None:
    data = bytearray(plain.read_bytes())
    data[6] ^= 0x01  # inside the segment id
    plain.write_bytes(bytes(data))
    with pytest.raises(SegmentHeaderError) as caught:
        list(SegmentReader(plain).read())
    assert caught.value.offset == 0 and "CRC" in caught.value.reason


def test_bad_sync_marker(plain: Path) -> None:
    data = bytearray(plain.read_bytes())
    header_end = 20
    data[header_end + 5] ^= 0x10
    plain.write_bytes(bytes(data))
    with pytest.raises(SegmentCorruptError) as caught:
        list(SegmentReader(plain).read())
    assert caught.value.offset == header_end


def header_with(params: dict[str, object], version: int = 7, segment_id: int = 42) -> bytes:
    body = json.dumps(params).encode()
    crc = zlib.crc32(body, zlib.crc32(struct.pack(">iiii", version, segment_id, 0, len(body))))
    return struct.pack(">iqH", version, segment_id, len(body)) + body + struct.pack(">I", crc)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"compressionClass": "SnappyCompressor", "compressionParameters": {}}, "SnappyCompressor"),
        ({"compressionClass": "ZstdCompressor", "compressionParameters": {}}, "ZstdCompressor"),
        ({"encCipher": "AES/CBC/PKCS5Padding", "encKeyAlias": "k", "encIV": "aa"}, "encCipher"),
    ],
)
def test_unsupported_segments_name_the_parameter(tmp_path: Path, params: dict[str, object], named: str) -> None:
    path = tmp_path / "CommitLog-7-42.log"
    path.write_bytes(header_with(params) + bytes(64))
    with pytest.raises(UnsupportedSegmentError, match=re.escape(named)):
        list(SegmentReader(path).read())


def test_unknown_version(tmp_path: Path) -> None:
    path = tmp_path / "CommitLog-9-42.log"
    path.write_bytes(header_with({}, version=9) + bytes(64))
    with pytest.raises(SegmentHeaderError, match=r"version 9"):
        list(SegmentReader(path).read())


def test_compressed_section_damage(tmp_path: Path) -> None:
    copy_recording("v7-lz4", tmp_path)
    (path,) = tmp_path.glob("*.log")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentCorruptError):
        list(SegmentReader(path).read())


def test_empty_idx_is_retried_then_reported(tmp_path: Path) -> None:
    idx = tmp_path / "CommitLog-7-1_cdc.idx"
    idx.write_text("")
    with pytest.raises(IndexFileError, match=re.escape("CommitLog-7-1_cdc.idx")):
        read_index(idx, attempts=3, delay=0.001)


def test_tailer_reports_damage_with_position_and_keeps_earlier_events(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path / "cdc_raw")
    (path,) = folder.glob("*.log")
    good = entries(path)
    start, _ = good[150]
    data = bytearray(path.read_bytes())
    data[start + 13] ^= 0x55
    path.write_bytes(bytes(data))
    tailer = CdcRawTailer(folder, "n", registry("v7"))
    delivered = []
    with pytest.raises(SegmentCorruptError) as caught:
        while (batch := tailer.poll()) is not None:
            delivered.extend(batch.events)
    assert caught.value.offset == start
    assert delivered and all(e.source.position.offset <= start for e in delivered)
    assert segment_path("v7").name == caught.value.segment
    assert drain is not None
