"""Reading entries out of one commitlog segment, incrementally.

Layout (``CommitLogSegment``, ``CommitLogSegmentReader``, ``CommitLogReader``):
header, then sync sections. A section starts with a sync marker (int
position of the next marker, int CRC32 over the segment id's halves and the
marker's own file position) followed by entries: int size, int CRC of the
size, the mutation body, int CRC over size and body. A marker of two zero
ints, or an entry size of 0, ends the data (uncompressed segments are
preallocated with zeros).

In an LZ4-compressed segment each section is marker, int uncompressed length,
then one LZ4 block (4-byte little-endian raw length, compressed bytes).
Offsets there are *logical*: positions in the uncompressed buffer Cassandra
wrote, which is what ``_cdc.idx`` counts and what positions use.

``SegmentReader.read(limit)`` returns the entries whose end is at or before
``limit`` (the durable offset from ``_cdc.idx``) and remembers where it
stopped, so a segment still being written is followed by calling it again
with a larger limit. Any damage raises a ``SegmentError`` with the segment and
offset; entries before the damage have already been returned, and the reader
never moves past it.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import lz4.block

from pipeline_runtime.source.commitlog.descriptor import SegmentHeader, crc_of_ints, parse_header
from pipeline_runtime.source.errors import SegmentCorruptError

SYNC_MARKER_SIZE = 8
ENTRY_OVERHEAD = 12
#: Cassandra refuses entries shorter than this (CASSANDRA-2128).
MIN_ENTRY_SIZE = 10
#: Large enough for any header: 20 fixed bytes + up to 65535 bytes of params.
_HEADER_READ = 20 + 65535 + 4
_UNBOUNDED = 2**62
_INTS = struct.Struct(">ii")
_INT = struct.Struct(">i")
_UINT = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Entry:
    """One mutation entry: its body and where it starts and ends (logical offsets)."""

    segment_id: int
    start: int
    end: int
    body: bytes


class ReaderState(Enum):
    """Where a reader is in its segment; it only moves forward."""

    NEW = "new"  # header not read yet
    READING = "reading"  # more entries may come
    ENDED = "ended"  # end-of-data marker seen: nothing more will be written


class SegmentReader:
    """Follows one segment file; each ``read`` continues where the last stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.state = ReaderState.NEW
        self.header: SegmentHeader | None = None
        #: Logical offset of the next unread byte; entries before it were returned.
        self.position = 0
        # Physical offset of the next sync marker (== position while not compressed).
        self._physical = 0
        # Logical end of the current section; position == section_end means "at a marker".
        self._section_end = 0

    @property
    def physical_position(self) -> int:
        """File offset of the next unread byte (equals ``position`` unless the segment is compressed)."""
        return self._physical

    def read_header(self) -> SegmentHeader:
        """Parse the header once (needs the file to hold it)."""
        if self.header is None:
            with self.path.open("rb") as handle:
                data = handle.read(_HEADER_READ)
            header = parse_header(data, self.name)
            self.header = header
            self.position = self._physical = self._section_end = header.length
            self.state = ReaderState.READING
        return self.header

    def read(self, limit: int | None = None) -> Iterator[Entry]:
        """Yield the entries that end at or before ``limit`` (default: the whole file).

        ``limit`` is the durable offset ``_cdc.idx`` gives. The file must hold
        every byte before it: a shorter file is truncated (SegmentCorruptError).
        """
        header = self.read_header()
        if self.state is ReaderState.ENDED:
            return
        size = os.path.getsize(self.path)
        if header.compressed:
            yield from self._read_compressed(header, limit, size)
        else:
            end = size if limit is None else limit
            if end > size:
                raise SegmentCorruptError(self.name, size, f"file truncated: {size} bytes, durable offset is {end}")
            yield from self._read_plain(header, end, size)

    # -- uncompressed -------------------------------------------------------------------

    def _read_plain(self, header: SegmentHeader, limit: int, file_size: int) -> Iterator[Entry]:
        base = self.position
        if limit <= base:
            return
        with self.path.open("rb") as handle:
            handle.seek(base)
            data = handle.read(limit - base)
        pos = base
        while True:
            if pos == self._section_end:
                if limit - pos < SYNC_MARKER_SIZE:
                    return
                next_marker = self._check_marker(header.segment_id, data, pos - base, pos)
                if next_marker is None:
                    return
                self._section_end = next_marker
                pos += SYNC_MARKER_SIZE
                self.position = self._physical = pos
                continue
            section_end = min(self._section_end, limit)
            entry = self._next_entry(header.segment_id, data, pos - base, pos, section_end)
            if entry is None:
                if self.state is ReaderState.ENDED:
                    return
                if self._section_end > limit:
                    if limit >= file_size:
                        raise SegmentCorruptError(
                            self.name, pos, f"file truncated at {file_size} bytes inside an entry"
                        )
                    return
                pos = self._section_end  # fewer than 4 bytes left in the section
                continue
            pos = entry.end
            self.position = self._physical = pos
            yield entry

    # -- compressed ---------------------------------------------------------------------

    def _read_compressed(self, header: SegmentHeader, durable: int | None, file_size: int) -> Iterator[Entry]:
        limit = _UNBOUNDED if durable is None else durable
        with self.path.open("rb") as handle:
            while self.state is ReaderState.READING:
                marker_at = self._physical
                if file_size - marker_at < SYNC_MARKER_SIZE + 4:
                    if durable is not None and self.position < durable:
                        raise SegmentCorruptError(
                            self.name, self.position, f"file truncated at {file_size} bytes, durable offset is {limit}"
                        )
                    return
                handle.seek(marker_at)
                head = handle.read(SYNC_MARKER_SIZE + 4)
                next_marker = self._check_marker(header.segment_id, head, 0, marker_at)
                if next_marker is None:
                    return
                if next_marker > file_size:
                    raise SegmentCorruptError(
                        self.name, self.position, f"file truncated: section runs to {next_marker}, file has {file_size}"
                    )
                (raw_length,) = _INT.unpack_from(head, SYNC_MARKER_SIZE)
                section_start = self.position + SYNC_MARKER_SIZE
                section_end = section_start + raw_length
                if raw_length < 0 or next_marker < marker_at + SYNC_MARKER_SIZE + 4:
                    raise SegmentCorruptError(self.name, section_start, f"impossible section length {raw_length}")
                if section_end > limit:
                    return  # not durable yet
                block = handle.read(next_marker - marker_at - SYNC_MARKER_SIZE - 4)
                data = self._decompress(block, raw_length, section_start)
                pos = section_start
                entries: list[Entry] = []
                while pos < section_end:
                    entry = self._next_entry(header.segment_id, data, pos - section_start, pos, section_end)
                    if entry is None:
                        break
                    entries.append(entry)
                    pos = entry.end
                # A section is all or nothing in the file, so move on only once it is consumed.
                for entry in entries:
                    self.position = entry.end
                    yield entry
                if self.state is ReaderState.READING:
                    self.position = self._section_end = section_end
                    self._physical = next_marker

    def _decompress(self, block: bytes, raw_length: int, section_start: int) -> bytes:
        if len(block) < 4:
            raise SegmentCorruptError(self.name, section_start, "compressed section shorter than its length prefix")
        try:
            data: bytes = lz4.block.decompress(block)
        except (lz4.block.LZ4BlockError, ValueError, MemoryError) as exc:
            raise SegmentCorruptError(self.name, section_start, f"LZ4 block does not decompress: {exc}") from exc
        if len(data) != raw_length:
            raise SegmentCorruptError(
                self.name, section_start, f"section decompressed to {len(data)} bytes, marker says {raw_length}"
            )
        return data

    # -- shared -------------------------------------------------------------------------

    def _check_marker(self, segment_id: int, data: bytes, at: int, file_pos: int) -> int | None:
        """Validate the sync marker at ``file_pos``; return the next marker position, or None at end of data."""
        next_marker, claimed = _INTS.unpack_from(data, at)
        expected = crc_of_ints(segment_id, segment_id >> 32, file_pos)
        if claimed & 0xFFFFFFFF != expected:
            if next_marker == 0 and claimed == 0:
                self.state = ReaderState.ENDED
                return None
            raise SegmentCorruptError(self.name, file_pos, "sync marker CRC mismatch")
        if next_marker < file_pos + SYNC_MARKER_SIZE:
            raise SegmentCorruptError(self.name, file_pos, f"sync marker points to impossible position {next_marker}")
        return int(next_marker)

    def _next_entry(self, segment_id: int, data: bytes, at: int, pos: int, section_end: int) -> Entry | None:
        """Parse the entry at logical ``pos`` (``data[at]``); None when it is not complete before ``section_end``."""
        if section_end - pos < 4:
            return None
        (size,) = _INT.unpack_from(data, at)
        if size == 0:
            self.state = ReaderState.ENDED
            return None
        if section_end - pos < 8:
            return None
        if size < MIN_ENTRY_SIZE:
            raise SegmentCorruptError(self.name, pos, f"impossible entry size {size}")
        size_bytes = data[at : at + 4]
        (size_crc,) = _UINT.unpack_from(data, at + 4)
        crc = zlib.crc32(size_bytes)
        if size_crc != crc:
            raise SegmentCorruptError(self.name, pos, "entry size CRC mismatch")
        end = pos + ENTRY_OVERHEAD + size
        if end > section_end:
            if end > self._section_end:
                raise SegmentCorruptError(self.name, pos, f"entry of {size} bytes crosses the next sync marker")
            return None
        body = data[at + 8 : at + 8 + size]
        (body_crc,) = _UINT.unpack_from(data, at + 8 + size)
        if body_crc != zlib.crc32(body, crc):
            raise SegmentCorruptError(self.name, pos, "entry CRC mismatch")
        return Entry(segment_id, pos, end, body)


def read_segment(path: Path) -> Iterator[Entry]:
    """Every entry of a closed segment file (a convenience for tools and tests)."""
    yield from SegmentReader(path).read()
