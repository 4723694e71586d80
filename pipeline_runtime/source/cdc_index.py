"""``CommitLog-<v>-<id>_cdc.idx``: how far a cdc_raw segment is durable, and whether it is closed.

Cassandra rewrites the file on every sync (``CommitLogSegment.writeCDCIndexFile``:
truncate, write the decimal offset, and ``\\nCOMPLETED`` once the segment is
closed). A reader racing a rewrite can see an empty file or a prefix of it:
measured against Cassandra 5.0 syncing every 50 ms, the file read empty about
2.5 times a second, for up to 190 ms at a stretch. So an empty or half-written
file is *not yet known*, never an error: ``probe_index`` says so
(``IndexPending``) and the source keeps the last offset it read and looks again
at its next poll. A prefix of the digits only gives a smaller, still durable,
offset.

The file's modification time is when Cassandra last synced the segment:
``IndexState.mtime`` carries it, and the source uses it as the wall-clock time
at which the entries the offset newly covers became durable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline_runtime.source.errors import IndexFileError

COMPLETED = "COMPLETED"


@dataclass(frozen=True, slots=True)
class IndexState:
    """Durable logical offset of the segment, and whether Cassandra closed it."""

    offset: int
    completed: bool
    #: Modification time of the idx file at this read (seconds since the epoch): the sync that wrote ``offset``.
    mtime: float | None = None


@dataclass(frozen=True, slots=True)
class IndexPending:
    """The idx file exists but holds no offset yet: empty or caught mid-rewrite. Look again later."""

    text: str = ""


def parse_index(text: str) -> IndexState | None:
    """The state the text says, or None when it is empty or not (yet) an offset."""
    lines = text.split("\n")
    first = lines[0].strip()
    if not first.isdigit():
        return None
    completed = len(lines) > 1 and lines[1].strip() == COMPLETED
    return IndexState(int(first), completed)


def probe_index(path: Path) -> IndexState | IndexPending | None:
    """Read ``path`` once: its state, ``IndexPending`` when it holds no offset (yet), None when it does not exist.

    Never retries and never waits. Raises ``OSError`` other than
    FileNotFoundError (permissions, I/O errors) for the caller to translate.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(256)
            mtime = os.fstat(handle.fileno()).st_mtime
    except FileNotFoundError:
        return None
    text = data.decode("ascii", errors="replace")
    state = parse_index(text)
    if state is None:
        return IndexPending(text[:40])
    return IndexState(state.offset, state.completed, mtime)


def read_index(path: Path, attempts: int = 20, delay: float = 0.005) -> IndexState | None:
    """For tools that wait on a quiet node (fixture recording, the benchmark corpus); the source uses ``probe_index``.

    Retries while the file is empty or half-written; returns None when the
    file does not exist and raises IndexFileError (retryable) naming the file
    when it stays unreadable.
    """
    probe: IndexState | IndexPending | None = IndexPending()
    for attempt in range(attempts):
        try:
            probe = probe_index(path)
        except OSError as exc:
            raise IndexFileError(f"{path}: cannot read: {exc}") from exc
        if not isinstance(probe, IndexPending):
            return probe
        if attempt + 1 < attempts:
            time.sleep(delay)
    text = probe.text if isinstance(probe, IndexPending) else ""
    raise IndexFileError(f"{path}: holds {text!r}, not an offset, after {attempts} reads")
