"""``headrace decode``'s records: the events as ``dataclasses.asdict`` shows them, printed the same."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections import namedtuple
from decimal import Decimal

from pipeline_runtime.events import (
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    Position,
    SourcePosition,
)
from pipeline_runtime.source.dump import event_record

SOURCE = SourcePosition("n1", Position(7, 120))
Udt = namedtuple("Udt", ["a", "b"])


def _old_record(event: ChangeEvent) -> dict[str, object]:
    record = dataclasses.asdict(event)
    record["source"] = {"node": event.source.node, "position": str(event.source.position)}
    return record


def test_records_print_as_the_deep_copied_ones_did() -> None:
    events = [
        ChangeEvent(
            Op.UPSERT, "ks", "t", {"k": 1}, SOURCE,
            clustering_key={"c": uuid.UUID(int=5)},
            cells={
                "v": Cell("x", 10, 60, 1_700_000_060),
                "m": CollectionChange(
                    Deletion(9, 1), (ElementCell("a", Decimal("1.50"), 10), ElementCell("b", None, 11, deleted=True))
                ),
                "u": Cell(Udt(1, dt.datetime(2024, 1, 1)), 12),
            },
            liveness=Liveness(10, 60, 1_700_000_060),
        ),
        ChangeEvent(Op.DELETE_RANGE, "ks", "t", {"k": 2}, SOURCE, deletion=Deletion(20, 2),
                    range_start=Bound((1, "x"), True), range_end=Bound((5,), False)),
        ChangeEvent(Op.DELETE_PARTITION, "ks", "t", {"k": 3}, SOURCE, deletion=Deletion(30, 3)),
    ]  # fmt: skip
    for event in events:
        new = json.dumps(event_record(event), default=str)
        assert new == json.dumps(_old_record(event), default=str)
    assert '"op": "upsert"' in json.dumps(event_record(events[0]), default=str)
    assert '"position": "7:120"' in json.dumps(event_record(events[1]), default=str)
