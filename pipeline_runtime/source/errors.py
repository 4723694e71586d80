"""The source's own errors, all inside Headrace's tree (``pipeline_runtime.errors``).

    SourceError
    ├── SegmentError (segment + offset)
    │   ├── SegmentHeaderError
    │   ├── SegmentCorruptError      CRC mismatch, truncated or impossible entry
    │   │   └── MutationDecodeError  entry CRC is fine but its body does not decode
    │   └── UnsupportedSegmentError  compressor or encryption we cannot read
    ├── DecodeError                  a body does not match the schema (no position known)
    ├── SchemaError
    │   ├── UnknownTableError        table id unknown after a schema refresh
    │   └── UnknownColumnError       column name unknown after a refresh
    ├── IndexFileError               a ``_cdc.idx`` cannot be read (retryable)
    └── CdcRawUnavailableError       cdc_raw or a segment file cannot be read now (retryable)

``retryable`` separates the two kinds: ``IndexFileError`` and
``CdcRawUnavailableError`` are True (permissions, I/O errors, a volume not
mounted: waiting and reading again from the committed position may help);
every ``SegmentError``, ``DecodeError`` and ``SchemaError`` is False (damage or
a schema the decoder cannot follow: retrying reads the same bytes again). An
empty or half-written ``_cdc.idx`` raises nothing at all: the tailer keeps the
last offset it read and looks again at its next poll.

Only these leave the source: the decoder turns IndexError, ValueError and
struct errors raised by malformed bytes into ``DecodeError`` at one place
(``mutation.decode_mutation``), and the reader wraps that with the segment and
offset of the entry.
"""

from __future__ import annotations

import uuid

from pipeline_runtime.errors import (
    DecodeError,
    IndexFileError,
    SchemaError,
    SegmentCorruptError,
    SegmentError,
    SegmentHeaderError,
    SourceError,
    UnsupportedSegmentError,
)

__all__ = [
    "CdcRawUnavailableError",
    "DecodeError",
    "IndexFileError",
    "MutationDecodeError",
    "SchemaError",
    "SegmentCorruptError",
    "SegmentError",
    "SegmentHeaderError",
    "SourceError",
    "UnknownColumnError",
    "UnknownTableError",
    "UnsupportedSegmentError",
]


class CdcRawUnavailableError(SourceError):
    """cdc_raw, or a segment file in it, cannot be read right now (permissions, I/O error, volume gone).

    Retryable: nothing was read past the last delivered batch, so reading
    again from the committed position loses nothing.
    """

    retryable = True


class MutationDecodeError(SegmentCorruptError):
    """An entry passed its CRCs but its mutation does not decode with the known schema.

    Fatal for the segment: a mutation carries no per-table length, so nothing
    after a body we cannot parse can be trusted.
    """


class UnknownTableError(SchemaError):
    """A table id is not in ``system_schema`` even after a refresh."""

    def __init__(self, table_id: uuid.UUID) -> None:
        super().__init__(
            f"table id {table_id} is not in system_schema even after a refresh; "
            "its updates cannot be skipped because a mutation carries no per-table length"
        )
        self.table_id = table_id


class UnknownColumnError(SchemaError):
    """A column name in a mutation is neither a live nor a dropped column of its table."""

    def __init__(self, table: str, table_id: uuid.UUID, column: str) -> None:
        super().__init__(f"column {column!r} of {table} (id {table_id}) is unknown even after a refresh")
        self.table = table
        self.table_id = table_id
        self.column = column
