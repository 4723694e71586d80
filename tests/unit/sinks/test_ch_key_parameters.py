"""Key arrays for the ClickHouse read-back: integer arrays go as literal text, others as lists."""

from __future__ import annotations

import uuid

from pipeline_runtime.sinks.clickhouse.sql import ArrayLiteral, key_parameters


def test_integer_keys_are_bound_as_literal_text() -> None:
    parameters = key_parameters([(1, "a", True), (-2, "b", False)], 3)
    assert isinstance(parameters["k0"], ArrayLiteral)
    assert str(parameters["k0"]) == "[1,-2]"
    assert parameters["k1"] == ["a", "b"]
    assert parameters["k2"] == [True, False]  # bool is not bound as an integer literal


def test_other_keys_keep_clickhouse_connect_formatting() -> None:
    ids = [uuid.UUID(int=1), uuid.UUID(int=2)]
    assert key_parameters([(ids[0],), (ids[1],)], 1) == {"k0": ids}
    assert key_parameters([], 2) == {"k0": [], "k1": []}
