"""The transform step: column selection, renames and masking, for schemas and events.

Built once from ``TransformSpec``; the wiring calls ``schema()`` for every
table before ``Sink.ensure_table`` and ``event()`` for every change event
before any sink or log sees it. Rules name columns by their Cassandra names;
masking happens before renames. Primary-key columns are always kept and may
only be masked with ``hash`` (deterministic, so keys stay unique and joins
work); anything else on a key would merge distinct rows, and is refused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from typing import Any

from pipeline_runtime.config.model import ColumnSelection, MaskRule, MaskStrategy, TransformSpec
from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.events import Bound, ChangeEvent
from pipeline_runtime.transforms.masking import Masker
from pipeline_runtime.transforms.validation import Finding, check, looks_personal

_KEY_KINDS = (ColumnKind.PARTITION_KEY, ColumnKind.CLUSTERING)


def _matches(pattern: str, qualified: str) -> bool:
    return fnmatch.fnmatchcase(qualified, pattern)


@dataclasses.dataclass(frozen=True)
class TablePlan:
    """What happens to one table's columns."""

    keep: frozenset[str]
    rename: Mapping[str, str]
    maskers: Mapping[str, Masker]
    clustering: tuple[str, ...] = ()
    #: Every column kept, none renamed or masked: events pass unchanged (and uncopied).
    identity: bool = False

    def name(self, column: str) -> str:
        return self.rename.get(column, column)


class Transformer:
    """Applies a ``TransformSpec`` to table schemas and change events."""

    def __init__(self, spec: TransformSpec, hash_key: bytes | None = None) -> None:
        self.spec = spec
        self.hash_key = hash_key
        self._plans: dict[str, TablePlan] = {}

    def plan(self, schema: TableSchema) -> TablePlan:
        """Build (and check) the plan for a table; cached by table name."""
        qualified = schema.qualified_name
        selections = [s for s in self.spec.columns if _matches(s.table, qualified)]
        rules = {r.column: r for r in self.spec.masking if _matches(r.table, qualified)}
        keep = self._kept(schema, selections)
        rename: dict[str, str] = {}
        for selection in selections:
            rename.update(selection.rename)
        maskers = {name: self._masker(schema, rule) for name, rule in rules.items() if name in keep}
        identity = (
            not maskers and keep == {c.name for c in schema.columns} and all(old == new for old, new in rename.items())
        )
        plan = TablePlan(frozenset(keep), rename, maskers, tuple(c.name for c in schema.clustering), identity)
        self._plans[qualified] = plan
        return plan

    def planned(self, qualified: str) -> TablePlan | None:
        """The plan made for a table (``keyspace.table``), if any."""
        return self._plans.get(qualified)

    def _kept(self, schema: TableSchema, selections: list[ColumnSelection]) -> set[str]:
        keys = {c.name for c in schema.primary_key}
        keep = {c.name for c in schema.columns}
        for selection in selections:
            if selection.include is not None:
                keep &= set(selection.include) | keys
            excluded_keys = keys & set(selection.exclude)
            if excluded_keys:
                listed = ", ".join(sorted(excluded_keys))
                raise ConfigError(f"{schema.qualified_name}: primary-key columns cannot be excluded: {listed}")
            keep -= set(selection.exclude)
        return keep

    def _masker(self, schema: TableSchema, rule: MaskRule) -> Masker:
        column = schema.column(rule.column)
        if column is None:
            raise ConfigError(f"masking rule for {rule.table}.{rule.column}: no such column in {schema.qualified_name}")
        if column.kind in _KEY_KINDS and rule.strategy is not MaskStrategy.HASH:
            raise ConfigError(
                f"masking {schema.qualified_name}.{column.name}: key columns allow only strategy hash, "
                f"not {rule.strategy}"
            )
        return Masker(rule, column.type, self.hash_key)

    def validate(self, schema: TableSchema) -> list[Finding]:
        """Personal-data columns kept without a masking rule, handled by the spec's policy."""
        plan = self._plans.get(schema.qualified_name) or self.plan(schema)
        unmasked = [
            Finding(schema.qualified_name, name)
            for name in sorted(plan.keep)
            if name not in plan.maskers and looks_personal(name)
        ]
        return check(self.spec.validation, unmasked)

    def schema(self, schema: TableSchema) -> TableSchema:
        """The table as the sinks see it: kept columns, masked types, new names."""
        plan = self.plan(schema)
        columns = []
        for column in schema.columns:
            if column.name not in plan.keep:
                continue
            masker = plan.maskers.get(column.name)
            new_type = masker.output_type if masker else column.type
            columns.append(dataclasses.replace(column, name=plan.name(column.name), type=new_type))
        return dataclasses.replace(schema, columns=tuple(columns), dropped={})

    def event(self, event: ChangeEvent) -> ChangeEvent:
        """A transformed copy of the event (the original is never changed; returned as is when nothing applies)."""
        plan = self._plans.get(event.qualified_table)
        if plan is None:
            raise ConfigError(f"{event.qualified_table}: transformer has no plan; call schema() for the table first")
        if plan.identity:
            return event
        cells = {
            plan.name(name): (plan.maskers[name].change(change) if name in plan.maskers else change)
            for name, change in event.cells.items()
            if name in plan.keep
        }
        return dataclasses.replace(
            event,
            partition_key=self._keys(plan, event.partition_key),
            clustering_key=self._keys(plan, event.clustering_key),
            cells=cells,
            range_start=self._bound(plan, event.range_start),
            range_end=self._bound(plan, event.range_end),
        )

    def _keys(self, plan: TablePlan, values: Mapping[str, Any]) -> dict[str, Any]:
        return {plan.name(k): (plan.maskers[k].value(v) if k in plan.maskers else v) for k, v in values.items()}

    def _bound(self, plan: TablePlan, bound: Bound | None) -> Bound | None:
        # Bound values are clustering values in order; hashing keeps equality, not order (docs/sinks.md).
        if bound is None or not plan.maskers:
            return bound
        values = tuple(
            plan.maskers[n].value(v) if n in plan.maskers else v
            for n, v in zip(plan.clustering, bound.values, strict=False)
        )
        return Bound(values, bound.inclusive)


__all__ = ["TablePlan", "Transformer"]
