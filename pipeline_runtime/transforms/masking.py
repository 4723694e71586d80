"""Column masking, applied before any sink write and before any log line.

``hash`` is HMAC-SHA256 over the value's UTF-8 text: a text (varchar, ascii)
value's own characters, and for every other type its canonical text
(``cql/canonical.py``: the same text for the same Cassandra value, whatever the
driver's Python type), keyed by a
secret read from a mounted file or an environment variable: deterministic,
so joins across tables and sinks still work, and allowed on key columns.
``redact`` writes a constant, ``null`` removes the value, ``truncate`` keeps
a prefix and ``partial`` keeps a suffix (``****1234``). Every strategy but
``null`` turns the column into text. Multi-cell columns are masked element
by element (set elements and map keys too), becoming collections of text.
Tombstones stay tombstones: a delete of a masked value is still a delete.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_runtime.config.model import MaskRule, MaskStrategy
from pipeline_runtime.cql.canonical import canonical_text
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.events import Cell, CollectionChange, ElementCell

TEXT = CqlType(Kind.TEXT)


def read_hash_key(path: Path | None = None, env: str | None = None) -> bytes:
    """The HMAC key from a mounted Secret file or an environment variable; never logged."""
    if path is not None and path.exists():
        key = path.read_bytes().strip()
    elif env is not None and os.environ.get(env):
        key = os.environ[env].encode()
    else:
        where = " or ".join(str(w) for w in (path, f"${env}" if env else None) if w)
        raise ConfigError(f"masking strategy hash needs a key; none found in {where or 'no location given'}")
    if len(key) < 16:
        raise ConfigError("the masking hash key is shorter than 16 bytes; use a longer random secret")
    return key


@dataclass(frozen=True, slots=True)
class Masker:
    """Masks the values of one column by one rule."""

    rule: MaskRule
    column_type: CqlType
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.rule.strategy is MaskStrategy.HASH and not self.key:
            raise ConfigError(
                f"masking {self.rule.table}.{self.rule.column}: strategy hash needs transforms.hashKeySecret"
            )

    @property
    def output_type(self) -> CqlType:
        """The column's type after masking."""
        if self.rule.strategy is MaskStrategy.NULL:
            return self.column_type
        t = self.column_type
        if not t.multi_cell:
            return TEXT
        if t.kind is Kind.UDT:
            return CqlType(Kind.UDT, tuple(TEXT for _ in t.args), udt_name=t.udt_name, field_names=t.field_names)
        return CqlType(t.kind, tuple(TEXT for _ in t.args))

    def value(self, value: Any, cql_type: CqlType | None = None) -> Any:
        """One masked value (None stays None)."""
        if value is None:
            return None
        rule = self.rule
        strategy = rule.strategy
        if strategy is MaskStrategy.NULL:
            return None
        if strategy is MaskStrategy.REDACT:
            return rule.replacement
        text = value if isinstance(value, str) else canonical_text(value, cql_type or self.column_type)
        if strategy is MaskStrategy.HASH:
            assert self.key is not None
            return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
        length = rule.length or 0
        if strategy is MaskStrategy.TRUNCATE:
            return text[:length]
        mask = (rule.replacement or "*")[0]
        kept = text[-length:] if length else ""
        return mask * (len(text) - len(kept)) + kept

    def change(self, change: Cell | CollectionChange) -> Cell | CollectionChange:
        """A masked copy of a column change."""
        if isinstance(change, Cell):
            if change.deleted or change.value is None:
                return change
            return Cell(self.value(change.value), change.timestamp, change.ttl, change.local_deletion_time)
        if self.rule.strategy is MaskStrategy.NULL:
            # A nulled collection keeps only its deletions, so deletes still apply.
            return CollectionChange(change.deletion, tuple(e for e in change.elements if e.deleted))
        return CollectionChange(change.deletion, tuple(self._element(e) for e in change.elements))

    def _element(self, element: ElementCell) -> ElementCell:
        t = self.column_type
        path = element.path
        value = element.value
        if t.kind in (Kind.SET, Kind.MAP):
            path = self.value(path, t.args[0])
        if t.kind is Kind.MAP:
            value = self.value(value, t.args[1])
        elif t.kind is Kind.LIST:
            value = self.value(value, t.args[0])
        elif t.kind is Kind.UDT:
            name = t.field_names[path] if isinstance(path, int) else str(path)
            value = self.value(value, t.args[t.field_names.index(name)])
        return ElementCell(path, value, element.timestamp, element.ttl, element.local_deletion_time, element.deleted)
