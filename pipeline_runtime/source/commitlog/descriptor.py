"""Segment names and headers (``db/commitlog/CommitLogDescriptor.java``).

A segment is ``CommitLog-<version>-<id>.log``; its CDC index is
``CommitLog-<version>-<id>_cdc.idx``. The header is: int version, long id,
u16 params length, params as JSON, int CRC32 over version, id low and high
halves, the params length as a 4-byte int, and the params bytes.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from pipeline_runtime.source.errors import SegmentHeaderError, UnsupportedSegmentError

#: Commitlog descriptor version -> messaging version of its mutation bodies.
MESSAGING_VERSIONS = {7: 12, 8: 13}
LZ4_CLASSES = frozenset({"LZ4Compressor", "org.apache.cassandra.io.compress.LZ4Compressor"})
_ENCRYPTION_KEYS = ("encCipher", "encKeyAlias", "encIV")

SEGMENT_NAME = re.compile(r"^CommitLog-(\d+)-(\d+)\.log$")
INDEX_NAME = re.compile(r"^CommitLog-(\d+)-(\d+)_cdc\.idx$")
_FIXED = struct.Struct(">iqH")


def crc_of_ints(*values: int) -> int:
    """CRC32 of ints each written as 4 big-endian bytes (Cassandra's ``updateChecksumInt``)."""
    return zlib.crc32(b"".join((v & 0xFFFFFFFF).to_bytes(4, "big") for v in values))


@dataclass(frozen=True, slots=True)
class SegmentName:
    """What a segment's file name says: descriptor version and id."""

    version: int
    segment_id: int

    @property
    def log_name(self) -> str:
        return f"CommitLog-{self.version}-{self.segment_id}.log"

    @property
    def index_name(self) -> str:
        return f"CommitLog-{self.version}-{self.segment_id}_cdc.idx"


def parse_segment_name(name: str) -> SegmentName | None:
    """The version and id of a ``.log`` or ``_cdc.idx`` file name, or None for other files."""
    match = SEGMENT_NAME.match(name) or INDEX_NAME.match(name)
    return SegmentName(int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """A parsed, CRC-checked segment header."""

    version: int
    segment_id: int
    params: dict[str, Any] = field(default_factory=dict)
    #: Bytes from the start of the file to the first sync marker.
    length: int = 0

    @property
    def messaging_version(self) -> int:
        return MESSAGING_VERSIONS[self.version]

    @property
    def compression_class(self) -> str | None:
        value = self.params.get("compressionClass")
        return str(value) if value is not None else None

    @property
    def compressed(self) -> bool:
        return self.compression_class is not None


def parse_header(data: bytes, segment: str) -> SegmentHeader:
    """Parse and check the header at the start of ``data``.

    Raises SegmentHeaderError when it is truncated, fails its CRC or names an
    unknown version, and UnsupportedSegmentError for encryption or a
    compressor other than LZ4 (naming the header parameter found).
    """
    if len(data) < _FIXED.size + 4:
        raise SegmentHeaderError(segment, 0, f"header truncated: {len(data)} bytes")
    version, segment_id, params_length = _FIXED.unpack_from(data, 0)
    end = _FIXED.size + params_length
    if len(data) < end + 4:
        raise SegmentHeaderError(segment, 0, f"header truncated: params need {params_length} bytes")
    params_bytes = data[_FIXED.size : end]
    expected = zlib.crc32(params_bytes, crc_of_ints(version, segment_id, segment_id >> 32, params_length))
    (claimed,) = struct.unpack_from(">I", data, end)
    if claimed != expected:
        raise SegmentHeaderError(segment, 0, f"header CRC mismatch (stored {claimed:#010x}, computed {expected:#010x})")
    if version not in MESSAGING_VERSIONS:
        raise SegmentHeaderError(segment, 0, f"commitlog descriptor version {version} is not supported (7 and 8 are)")
    try:
        params = json.loads(params_bytes.decode("utf-8")) if params_bytes else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegmentHeaderError(segment, _FIXED.size, f"header parameters are not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise SegmentHeaderError(segment, _FIXED.size, "header parameters are not a JSON object")
    header = SegmentHeader(version, segment_id, params, end + 4)
    for key in _ENCRYPTION_KEYS:
        if key in params:
            raise UnsupportedSegmentError(segment, 0, f"encrypted segment (header parameter {key}={params[key]!r})")
    compressor = header.compression_class
    if compressor is not None and compressor not in LZ4_CLASSES:
        raise UnsupportedSegmentError(
            segment, 0, f"compressed with compressionClass={compressor!r}; only LZ4Compressor is supported"
        )
    return header
