"""One runtime per cdc_raw: an exclusive claim, so no two runtimes delete each other's segments.

A runtime deletes the segments its own sinks committed. A second runtime on the
same ``cdc_raw`` (another pipeline, or the same one started twice) would delete
segments the first has not read: data lost without a trace. The claim is an
exclusive ``flock`` on ``cdc_raw/.headrace.lock``, held for the life of the
process; the kernel drops it when the process ends, however it ends, so a
crashed runtime never leaves a stale claim. The file names its holder
(pipeline, node, pid, host) for the error the second runtime stops with.

Cassandra counts every file in ``cdc_raw`` towards ``cdc_total_space``; the
claim file holds one short line. Segment listings match segment names only,
so it is never taken for a segment.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from pipeline_runtime.errors import SourceError
from pipeline_runtime.source.errors import CdcRawUnavailableError

CLAIM_FILE = ".headrace.lock"


class CdcRawClaimedError(SourceError):
    """Another runtime holds ``cdc_raw``: fatal, two runtimes on one cdc_raw lose data."""

    retryable = False


class CdcRawClaim:
    """The exclusive claim of one runtime on one ``cdc_raw``."""

    def __init__(self, cdc_raw: Path, pipeline: str, node: str) -> None:
        self.path = cdc_raw / CLAIM_FILE
        self.holder = {"pipeline": pipeline, "node": node, "pid": os.getpid(), "host": socket.gethostname()}
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self) -> bool:
        """Take the claim; False while ``cdc_raw`` does not exist yet (nothing to delete there either).

        Raises ``CdcRawClaimedError`` naming the holder when another process holds it.
        """
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CdcRawUnavailableError(f"cdc_raw {self.path.parent}: cannot open {CLAIM_FILE}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise CdcRawClaimedError(
                f"cdc_raw {self.path.parent} is read by another runtime ({holder}); each runtime deletes the "
                "segments its own sinks committed, so two on one cdc_raw lose data. Stop the other runtime, or "
                "write both sets of sinks from one pipeline"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise CdcRawUnavailableError(f"cdc_raw {self.path.parent}: cannot lock {CLAIM_FILE}: {exc}") from exc
        line = json.dumps(self.holder | {"since": round(time.time())}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the claim up (also done by the kernel when the process ends)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not isinstance(holder, dict) or not holder:
        return "holder unknown"
    return ", ".join(f"{key} {holder[key]}" for key in ("pipeline", "node", "pid", "host") if key in holder)
