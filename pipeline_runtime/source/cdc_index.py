"""``CommitLog-<v>-<id>_cdc.idx``: how far a cdc_raw segment is durable, and whether it is closed.

Cassandra rewrites the file on every sync (``CommitLogSegment.writeCDCIndexFile``:
truncate, write the decimal offset, and ``\\nCOMPLETED`` once the segment is
closed). A reader racing a rewrite can see an empty file or a prefix of it,
so an unreadable file is retried before it counts as an error; a prefix of
the digits only gives a smaller, still durable, offset.
"""

from __future__ import annotations

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


def parse_index(text: str) -> IndexState | None:
    """The state the text says, or None when it is empty or not (yet) an offset."""
    lines = text.split("\n")
    first = lines[0].strip()
    if not first.isdigit():
        return None
    completed = len(lines) > 1 and lines[1].strip() == COMPLETED
    return IndexState(int(first), completed)


def read_index(path: Path, attempts: int = 20, delay: float = 0.005) -> IndexState | None:
    """Read ``path``, retrying while it is empty or half-written.

    Returns None when the file does not exist (not written yet, or removed);
    raises IndexFileError naming the file when it stays unreadable.
    """
    text = ""
    for attempt in range(attempts):
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IndexFileError(f"{path}: cannot read: {exc}") from exc
        state = parse_index(text)
        if state is not None:
            return state
        if attempt + 1 < attempts:
            time.sleep(delay)
    raise IndexFileError(f"{path}: holds {text[:40]!r}, not an offset, after {attempts} reads")
