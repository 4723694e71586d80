"""Segments Cassandra leaves behind in cdc_raw at a graceful stop, and the proof that one may go.

Why they exist (apache/cassandra, branch cassandra-5.0, ``db/commitlog``):
``CommitLogSegmentManagerCDC.createSegment`` hard-links every new segment into
cdc_raw, including the spare one the allocator thread prepares ahead of need
(``AbstractCommitLogSegmentManager.availableSegment``). At shutdown,
``AbstractCommitLogSegmentManager.shutdown`` calls ``discardAvailableSegment``,
which calls ``CommitLogSegment.discard(true)``: ``close()`` (a final, empty
sync section), then delete the file in the commitlog directory. That path
bypasses ``CommitLogSegmentManagerCDC.discard``, the only place that unlinks
the cdc_raw link of a segment without CDC data, and ``handleReplayedSegment``
at the next start only looks at segments still in the commitlog directory. So
each graceful stop leaves one segment in cdc_raw for good: a header, one
empty sync section, zeros (LZ4: a header and an empty section), no
``_cdc.idx``, one link. Measured on 5.0.8: one such file per stop, 1 MiB each
with 1 MiB segments (the full segment size: ``cdc_total_space`` counts it).

A segment is reclaimable only when every one of these holds:

1. it has no ``_cdc.idx`` file at all (Cassandra never synced CDC data in it;
   an idx caught mid-rewrite still exists and keeps the segment);
2. its link count is 1: its name in the commitlog directory is gone, which
   Cassandra does only in ``discard``, after ``close()``; nothing writes the
   segment any more. The segment being written and the spare both have 2;
3. a segment with a higher id has an idx: Cassandra has synced CDC data past
   it, so it is neither the segment being written nor the spare (the spare
   has the highest id and no idx). This alone also holds where link counts
   cannot be trusted;
4. it holds no entry: a valid header naming its own id (or an empty or
   all-zero file), the end of data before any entry, and only zeros after it;
5. its link count last changed ``SETTLE_SECONDS`` ago or more (its ctime):
   Cassandra's own cleanup of a replayed segment at startup deletes the
   commitlog name, then checks and deletes the cdc_raw one; the runtime keeps
   clear of that sequence.

1-3 and 5 are cheap and checked first; 4 reads the file. Such a segment holds
nothing any sink needs, so the checkpoint deletes it without waiting for a
commit past it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline_runtime.errors import SourceError
from pipeline_runtime.source.commitlog.descriptor import parse_header
from pipeline_runtime.source.commitlog.segment import SegmentReader

_CHUNK = 1 << 20
#: Rule 5: seconds since the segment's link count (ctime) last changed.
SETTLE_SECONDS = 5.0
#: Bytes read for the header check: 20 fixed bytes + up to 65535 bytes of params.
_HEADER_READ = 20 + 65535 + 4


@dataclass(frozen=True, slots=True)
class OrphanFacts:
    """What the directory listing says about one segment (rules 1-3)."""

    has_index: bool
    links: int
    #: Rule 3: a segment with a higher id has a ``_cdc.idx``.
    newer_segment: bool
    #: Rule 5: the inode's ctime is at least ``SETTLE_SECONDS`` old.
    settled: bool = True


def may_reclaim(facts: OrphanFacts, holds_no_entries: Callable[[], bool]) -> bool:
    """Rules 1-5; ``holds_no_entries`` (which reads the file) runs only when the others hold."""
    return not facts.has_index and facts.links == 1 and facts.newer_segment and facts.settled and holds_no_entries()


def _zeros_from(path: Path, offset: int) -> bool:
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(_CHUNK):
            if chunk.count(0) != len(chunk):
                return False
    return True


def holds_no_entries(path: Path, segment_id: int) -> bool:
    """True when the segment file provably holds no mutation (rule 4); False when it holds one or cannot be read.

    Empty and all-zero files hold nothing. Otherwise the header must be valid
    and name ``segment_id``, reading must reach the end of data (or of the
    file) without an entry, and every byte after that point must be zero.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_READ)
        if head.count(0) == len(head):
            return _zeros_from(path, len(head))
        if parse_header(head, path.name).segment_id != segment_id:
            return False
        reader = SegmentReader(path)
        for _entry in reader.read():
            return False
        return _zeros_from(path, reader.physical_position)
    except (OSError, SourceError):
        return False


def link_count(path: Path) -> int:
    """Hard links of ``path`` (0 when it is gone)."""
    try:
        return os.stat(path).st_nlink
    except FileNotFoundError:
        return 0
