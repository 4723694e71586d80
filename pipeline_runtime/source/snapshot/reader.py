"""Paging through one table's token ranges with cassandra-driver (docs/snapshot.md).

One prepared statement per table, pages of ``fetch_size`` rows, each page's
rows kept as the bytes Cassandra sent (the converter decodes them, no driver
row tuples built and thrown away). Driver exceptions become
``SnapshotReadError`` here and nowhere else.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.source.errors import SourceError
from pipeline_runtime.source.snapshot.events import RawRows, SnapshotConverter
from pipeline_runtime.source.snapshot.ranges import TokenRange, primary_ranges


class SnapshotReadError(SourceError):
    """A snapshot page could not be read (node down, timeout); retry the range from its last page."""

    retryable = True


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    """One page of one token range: its events, rows read, and where reading goes on.

    ``paging_state``: the driver's position for the next page (None: the range is done).
    ``complete_through``: the highest token whose partitions this page finished, so a reader
    started afresh (after a restart) resumes with ``token > complete_through`` and misses
    nothing; None when the page holds only part of one partition.
    """

    range: TokenRange
    events: list[ChangeEvent]
    rows: int
    paging_state: bytes | None
    complete_through: int | None = None

    @property
    def last(self) -> bool:
        return self.paging_state is None


def complete_through(final_token: int | None, token_before_final: int | None, last_page: bool) -> int | None:
    """The highest token of a page whose partitions the page finished.

    The last row's partition (``final_token``) may go on in the next page, so only the tokens before
    it count, unless this is the range's last page.
    """
    return final_token if last_page else token_before_final


def _raw_protocol_handler() -> Any:
    """The driver's protocol handler with result rows kept as Cassandra sent them (``RawRows``).

    The converter decodes the bytes itself (``SnapshotConverter``): values as the commitlog decoder
    decodes cells, and the per-element WRITETIME/TTL lists of multi-cell columns, which hold nulls
    that the driver's list type cannot decode ("Length must be positive"). Only the snapshot
    SELECT runs on a session with this handler (the reader's own).
    """
    from cassandra.protocol import ProtocolHandler, ResultMessage  # noqa: PLC0415

    base = ProtocolHandler.message_types_by_opcode[ResultMessage.opcode]

    class RawResult(base):  # type: ignore[misc,valid-type]
        def recv_results_rows(
            self, f: Any, protocol_version: int, user_type_map: Any, result_metadata: Any, encryption: Any
        ) -> None:
            self.recv_results_metadata(f, user_type_map)
            metadata = self.column_metadata or result_metadata
            self.column_names = [c[2] for c in metadata]
            self.column_types = [c[3] for c in metadata]
            self.parsed_rows = RawRows(f.read(), len(metadata))

    opcodes = dict(ProtocolHandler.message_types_by_opcode)
    opcodes[ResultMessage.opcode] = RawResult
    return type("SnapshotProtocolHandler", (ProtocolHandler,), {"message_types_by_opcode": opcodes})


class SnapshotReader:
    """Reads token ranges of one table as change events, page by page, from the local node.

    ``local_address``: this runtime's own Cassandra node; reads are routed to it and ``ranges()``
    are the ranges it is primary replica for. None (or a node the driver does not know): the
    driver's default routing and the whole ring.
    """

    def __init__(
        self,
        session: Any,
        schema: TableSchema,
        node: str,
        fetch_size: int = 1000,
        *,
        consistency: str = "LOCAL_QUORUM",
        local_address: str | None = None,
    ) -> None:
        from cassandra import ConsistencyLevel  # noqa: PLC0415
        from cassandra.cluster import EXEC_PROFILE_DEFAULT  # noqa: PLC0415
        from cassandra.policies import HostFilterPolicy  # noqa: PLC0415
        from cassandra.query import tuple_factory  # noqa: PLC0415

        self.schema = schema
        self.node = node
        self.fetch_size = fetch_size
        self.converter = SnapshotConverter(schema)
        cluster = session.cluster
        self._local = find_host(cluster, local_address)
        # A session of its own: its protocol handler keeps result rows undecoded (and it is not the caller's).
        self._session = cluster.connect()
        self._session.client_protocol_handler = _raw_protocol_handler()
        default = cluster.profile_manager.profiles[EXEC_PROFILE_DEFAULT]
        routing: dict[str, Any] = {}
        if self._local is not None:
            local = self._local
            routing["load_balancing_policy"] = HostFilterPolicy(
                default.load_balancing_policy, predicate=lambda host: host == local
            )
        self._profile = self._session.execution_profile_clone_update(
            EXEC_PROFILE_DEFAULT,
            row_factory=tuple_factory,
            consistency_level=ConsistencyLevel.name_to_value[consistency],
            **routing,
        )
        try:
            self._statement = self._session.prepare(self.converter.select())
        except Exception as exc:  # the driver's exception tree stops here
            raise SnapshotReadError(f"cannot prepare the snapshot of {schema.qualified_name}: {exc}") from exc
        self._statement.fetch_size = fetch_size
        self._numbered = 0
        self._previous: dict[TokenRange, Any] = {}
        #: Pages of different ranges are read in threads at the same time; numbering is one sequence.
        self._converting = threading.Lock()

    def close(self) -> None:
        """Shut the reader's own session down."""
        self._session.shutdown()

    def ranges(self) -> tuple[TokenRange, ...]:
        """The ranges this node is primary replica for (the whole ring when the node is unknown)."""
        token_map = self._session.cluster.metadata.token_map
        if self._local is None or token_map is None:
            return primary_ranges([])
        owners = token_map.token_to_host_owner
        return primary_ranges([(token.value, owners[token] == self._local) for token in token_map.ring])

    def page(
        self, token_range: TokenRange, after: int | None = None, paging_state: bytes | None = None
    ) -> SnapshotPage:
        """One page of ``token_range``: rows with ``after < token <= end`` (``after`` defaults to its start),
        from ``paging_state`` (the page before's) or from the first row. Blocks: run it in a thread
        (pages of different ranges may be read in threads at the same time)."""
        low = token_range.start if after is None else after
        read_at = time.time_ns() // 1000
        try:
            result = self._session.execute(
                self._statement,
                (low, token_range.end),
                execution_profile=self._profile,
                paging_state=paging_state,
            )
            (rows,) = result.current_rows
        except Exception as exc:  # the driver's exception tree stops here
            raise SnapshotReadError(f"snapshot of {self.schema.qualified_name} {token_range}: {exc}") from exc
        with self._converting:
            previous = self._previous.get(token_range) if paging_state is not None else None
            try:
                converted = self.converter.events(rows, self.node, self._numbered, read_at, previous)
            except (ValueError, struct.error) as exc:  # a page that does not match the table's schema
                raise SnapshotReadError(f"snapshot of {self.schema.qualified_name} {token_range}: {exc}") from exc
            self._previous[token_range] = converted.last_partition
            self._numbered += len(converted.events)
        following = result.paging_state
        through = complete_through(converted.final_token, converted.token_before_final, following is None)
        return SnapshotPage(token_range, converted.events, converted.rows, following, through)

    def pages(self, token_range: TokenRange, paging_state: bytes | None = None) -> Iterator[SnapshotPage]:
        """The pages of ``token_range``, from ``paging_state`` (a page's own) or from its start."""
        while True:
            page = self.page(token_range, None, paging_state)
            yield page
            if page.last:
                return
            paging_state = page.paging_state

    def read(self, ranges: tuple[TokenRange, ...]) -> Iterator[SnapshotPage]:
        """Every page of ``ranges``, range after range."""
        for token_range in ranges:
            yield from self.pages(token_range)


def find_host(cluster: Any, address: str | None) -> Any:
    """The driver's Host for ``address`` (an IP or a name that resolves to one), or None."""
    if address is None:
        return None
    try:
        wanted = {address, socket.gethostbyname(address)}
    except OSError:
        wanted = {address}
    for host in cluster.metadata.all_hosts():
        if host.address in wanted or str(host.endpoint.address) in wanted:
            return host
    return None
