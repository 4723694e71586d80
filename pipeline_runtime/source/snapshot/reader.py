"""Paging through one table's token ranges with cassandra-driver (docs/snapshot.md).

One prepared statement per table, pages of ``fetch_size`` rows, results as
tuples (no dicts built and thrown away). Driver exceptions become
``SnapshotReadError`` here and nowhere else.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.source.errors import SourceError
from pipeline_runtime.source.snapshot.events import SnapshotConverter
from pipeline_runtime.source.snapshot.ranges import TokenRange


class SnapshotReadError(SourceError):
    """A snapshot page could not be read (node down, timeout); retry the range from its last page."""

    retryable = True


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    """One page of one token range: its events, rows read, and where the next page starts (None: range done)."""

    range: TokenRange
    events: list[ChangeEvent]
    rows: int
    paging_state: bytes | None


def _element_list_type() -> Any:
    """A driver type for Cassandra 5.0's per-element WRITETIME/TTL lists, which hold nulls.

    The driver's own list type rejects a null element ("Length must be positive"), and
    ``toJson(TTL(col))`` fails on the 5.0.8 server (a NullPointerException), so the
    reader decodes these columns itself: a count, then per element a length (-1: null)
    and a big-endian integer of that length.
    """
    from cassandra.cqltypes import _CassandraType  # noqa: PLC0415

    class ElementList(_CassandraType):  # type: ignore[misc]
        typename = "headrace_element_list"

        @staticmethod
        def deserialize(byts: bytes, protocol_version: int) -> list[int | None]:
            (count,) = struct.unpack_from(">i", byts, 0)
            at = 4
            out: list[int | None] = []
            for _ in range(count):
                (length,) = struct.unpack_from(">i", byts, at)
                at += 4
                if length < 0:
                    out.append(None)
                    continue
                out.append(int.from_bytes(byts[at : at + length], "big", signed=True))
                at += length
            return out

    return ElementList


def _protocol_handler(element_list: Any) -> Any:
    """The driver's (pure Python) protocol handler, decoding per-element WRITETIME/TTL lists as ``element_list``.

    Cassandra sends the result metadata with the rows, so the types must be swapped where the
    driver reads it, not only in the prepared statement.
    """
    from cassandra.cqltypes import ListType  # noqa: PLC0415
    from cassandra.protocol import ProtocolHandler, ResultMessage  # noqa: PLC0415

    def swapped(metadata: list[Any] | None) -> list[Any] | None:
        if not metadata:
            return metadata
        return [
            (ks, table, name, element_list)
            if isinstance(kind, type) and issubclass(kind, ListType) and name.lower().startswith(("writetime(", "ttl("))
            else (ks, table, name, kind)
            for ks, table, name, kind in metadata
        ]

    class ElementListResult(ResultMessage):  # type: ignore[misc]
        def recv_results_metadata(self, f: Any, user_type_map: Any) -> None:
            super().recv_results_metadata(f, user_type_map)
            metadata: list[Any] | None = getattr(self, "column_metadata", None)
            self.column_metadata = swapped(metadata)

    opcodes = dict(ProtocolHandler.message_types_by_opcode)
    opcodes[ResultMessage.opcode] = ElementListResult
    return type("SnapshotProtocolHandler", (ProtocolHandler,), {"message_types_by_opcode": opcodes})


class SnapshotReader:
    """Reads token ranges of one table as change events, page by page."""

    def __init__(self, session: Any, schema: TableSchema, node: str, fetch_size: int = 1000) -> None:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT  # noqa: PLC0415
        from cassandra.query import tuple_factory  # noqa: PLC0415

        self.schema = schema
        self.node = node
        self.fetch_size = fetch_size
        self.converter = SnapshotConverter(schema)
        element_list = _element_list_type()
        # A session of its own: its protocol handler decodes the per-element lists (and it is not the caller's).
        self._session = session.cluster.connect()
        self._session.client_protocol_handler = _protocol_handler(element_list)
        self._profile = self._session.execution_profile_clone_update(EXEC_PROFILE_DEFAULT, row_factory=tuple_factory)
        try:
            self._statement = self._session.prepare(self.converter.select())
        except Exception as exc:  # the driver's exception tree stops here
            raise SnapshotReadError(f"cannot prepare the snapshot of {schema.qualified_name}: {exc}") from exc
        metadata = list(self._statement.result_metadata)
        for index in self.converter.multi_cell_fields():
            keyspace, table, name, _ = metadata[index]
            metadata[index] = (keyspace, table, name, element_list)
        self._statement.result_metadata = metadata
        self._statement.fetch_size = fetch_size
        self._numbered = 0

    def close(self) -> None:
        """Shut the reader's own session down."""
        self._session.shutdown()

    def pages(self, token_range: TokenRange, paging_state: bytes | None = None) -> Iterator[SnapshotPage]:
        """The pages of ``token_range``, from ``paging_state`` (a page's own) or from its start."""
        previous: Any = None
        while True:
            read_at = time.time_ns() // 1000
            try:
                result = self._session.execute(
                    self._statement,
                    (token_range.start, token_range.end),
                    execution_profile=self._profile,
                    paging_state=paging_state,
                )
                rows = result.current_rows
            except Exception as exc:  # the driver's exception tree stops here
                raise SnapshotReadError(f"snapshot of {self.schema.qualified_name} {token_range}: {exc}") from exc
            events, previous = self.converter.events(rows, self.node, self._numbered, read_at, previous)
            self._numbered += len(events)
            paging_state = result.paging_state
            yield SnapshotPage(token_range, events, len(rows), paging_state)
            if paging_state is None:
                return

    def read(self, ranges: tuple[TokenRange, ...]) -> Iterator[SnapshotPage]:
        """Every page of ``ranges``, range after range."""
        for token_range in ranges:
            yield from self.pages(token_range)
