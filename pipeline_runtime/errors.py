"""Headrace's exception tree.

Every failure the runtime can report is one of these. Errors from a dependency
(cassandra-driver, asyncpg, clickhouse-connect, the filesystem) are translated
into this tree at exactly one boundary per dependency, so code above that
boundary never catches a driver's exception type.

    HeadraceError
    ├── ConfigError                 invalid pipeline configuration (fatal)
    ├── SourceError
    │   ├── SegmentError            a commitlog segment cannot be read past a point
    │   │   ├── SegmentHeaderError
    │   │   ├── SegmentCorruptError CRC mismatch, truncated or impossible entry
    │   │   └── UnsupportedSegmentError  compression/encryption we cannot read
    │   ├── DecodeError             a mutation body does not match the schema
    │   ├── SchemaError             table id or column unknown after a refresh
    │   └── IndexFileError          a _cdc.idx file cannot be parsed
    ├── SinkError
    │   ├── SinkUnavailableError    retryable: connection lost, server down
    │   │   └── SinkTimeoutError    retryable: a sink call did not finish in time
    │   ├── SchemaDriftError        fatal until a human acts: drop / type change
    │   ├── DeadLettersFullError    retryable: the dead-letter file reached its bound; the batch waits
    │   └── RowRejectedError        a row-level failure: dead-letter the row
    │       └── ValueEncodingError  a value the sink cannot store, named by column and type
    └── CheckpointError

``retryable`` tells the caller whether waiting and trying again may help.
"""

from __future__ import annotations


class HeadraceError(Exception):
    """Base of every error Headrace raises on purpose."""

    retryable: bool = False


class ConfigError(HeadraceError):
    """The pipeline configuration is invalid; the message says what to fix."""


class SourceError(HeadraceError):
    """Reading change data from Cassandra failed."""


class SegmentError(SourceError):
    """A commitlog segment cannot be read at ``offset``.

    Events before ``offset`` were valid; nothing at or after it was delivered.
    """

    def __init__(self, segment: str, offset: int, reason: str) -> None:
        super().__init__(f"{segment} at offset {offset}: {reason}")
        self.segment = segment
        self.offset = offset
        self.reason = reason


class SegmentHeaderError(SegmentError):
    """The segment header is missing, truncated or fails its CRC."""


class SegmentCorruptError(SegmentError):
    """An entry fails its CRC or has an impossible size."""


class UnsupportedSegmentError(SegmentError):
    """The segment uses a compressor or encryption Headrace cannot read."""


class DecodeError(SourceError):
    """A mutation body does not decode with the table's schema."""


class SchemaError(SourceError):
    """A table id or column is unknown even after refreshing the schema."""


class IndexFileError(SourceError):
    """A ``_cdc.idx`` file holds something other than an offset and COMPLETED."""

    retryable = True


class SinkError(HeadraceError):
    """Writing to a sink failed."""


class SinkUnavailableError(SinkError):
    """The sink cannot be reached or refused the batch for a transient reason."""

    retryable = True


class SinkTimeoutError(SinkUnavailableError):
    """A sink call (write, open, checkpoint read, table creation) did not finish within its timeout."""


class SchemaDriftError(SinkError):
    """The sink's table differs from Cassandra in a way Headrace never applies silently."""

    def __init__(self, table: str, column: str, change: str) -> None:
        super().__init__(f"table {table}, column {column}: {change}")
        self.table = table
        self.column = column
        self.change = change


class DeadLettersFullError(SinkError):
    """The dead-letter file would pass ``runtime.deadLetters.maxSize``: the batch waits, nothing is dropped."""

    retryable = True


class RowRejectedError(SinkError):
    """The sink rejected the batch because of the rows in it, not the connection."""


class ValueEncodingError(RowRejectedError):
    """One value cannot be stored by the sink: a row-level rejection, named without the value itself.

    Raised on purpose by encoders that know the column; a plain ``ValueError`` or
    ``TypeError`` from inside a sink is a bug, never taken for a bad row.
    """

    def __init__(self, table: str, column: str, cql_type: str, reason: str) -> None:
        super().__init__(f"table {table}, column {column} ({cql_type}): {reason}")
        self.table = table
        self.column = column
        self.cql_type = cql_type
        self.reason = reason


class CheckpointError(HeadraceError):
    """Reading or writing a committed position failed."""

    retryable = True
