"""Dead letters: events a sink rejected, kept with the reason and source position.

Nothing is dropped without a record. The JSONL store appends one line per
event and fsyncs before returning, so the checkpoint that follows never
passes an event that is not on disk. Events reach a store already
transformed, so masked values stay masked here too.

The file is bounded (``runtime.deadLetters.maxSize``): it may sit on
Cassandra's data volume, which it must never fill. Letters that would pass the
bound are refused with a retryable ``DeadLettersFullError``: their batch is not
committed, the runtime stalls and says why, and it goes on once the file is
handled (moved away or emptied) or the bound raised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from pipeline_runtime.errors import DeadLettersFullError
from pipeline_runtime.events import ChangeEvent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected event and why."""

    sink: str
    reason: str
    event: ChangeEvent

    def record(self) -> dict[str, Any]:
        source = self.event.source
        return {
            "sink": self.sink,
            "reason": self.reason,
            "node": source.node,
            "segment_id": source.position.segment_id,
            "offset": source.position.offset,
            "keyspace": self.event.keyspace,
            "table": self.event.table,
            "op": str(self.event.op),
            "event": plain(self.event),
            "rejected_at": dt.datetime.now(dt.UTC).isoformat(),
        }


class DeadLetterStore(Protocol):
    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Store the letters durably before returning."""


def plain(value: Any) -> Any:
    """A JSON-able rendering of an event or any driver value (for humans, not for replay)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (Decimal, uuid.UUID, dt.date, dt.time, dt.datetime)):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return [[plain(k), plain(v)] for k, v in value.items()]
    if isinstance(value, (list, tuple, set, frozenset)) or hasattr(value, "__iter__"):
        return [plain(v) for v in value]
    return str(value)


class JsonlDeadLetters:
    """Appends dead letters to a local JSON-lines file of at most ``max_bytes`` (None: unbounded)."""

    def __init__(self, path: Path, max_bytes: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._counted: tuple[int, int] | None = None  # (file size, letters) when last counted or written
        self._lock = asyncio.Lock()  # the sinks of a pipeline write their letters concurrently

    @property
    def count(self) -> int:
        """Letters in the file now, including those written before this process started.

        Counted again whenever the file's size changed behind this process's back (a user moved the
        file away or emptied it after handling the letters).
        """
        return self._count_at(self.size())

    def _count_at(self, size: int) -> int:
        if self._counted is None or self._counted[0] != size:
            try:
                with self.path.open("rb") as handle:
                    letters = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            except FileNotFoundError:
                letters = 0
            self._counted = (size, letters)
        return self._counted[1]

    def size(self) -> int:
        """Bytes in the file now."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters`` whole, or refuse them all when the file holds letters and they would pass the bound.

        Into an empty file a batch's letters always go, even past the bound: refusing them there could
        never end (a single batch's letters are at most its batch size).
        """
        if not letters:
            return
        lines = "".join(json.dumps(letter.record(), sort_keys=True) + "\n" for letter in letters)
        adding = len(lines.encode())
        async with self._lock:
            size = self.size()
            before = self._count_at(size)
            if self.max_bytes is not None and size > 0 and size + adding > self.max_bytes:
                raise DeadLettersFullError(
                    f"dead letters full: {len(letters)} rejected events ({adding} bytes) do not fit in {self.path} "
                    f"({size} of runtime.deadLetters.maxSize {self.max_bytes} bytes used); the batch waits. "
                    "Handle the letters and move the file away, or raise maxSize"
                )
            await asyncio.to_thread(self._append, lines)
            self._counted = (size + adding, before + len(letters))

    def _append(self, lines: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
