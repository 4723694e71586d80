from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline_runtime.config.quantity import quantity_bytes, quantity_value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("1.5Ki", 1536),
        ("1e3", 1000),
        ("2E2", 200),
        ("500", 500),
        ("1500m", 2),  # 1.5 bytes rounds up
        ("0.1", 1),
        (".5k", 500),
        ("2000n", 1),
        ("3000000u", 3),
    ],
)
def test_quantities_in_bytes(text: str, value: int) -> None:
    assert quantity_bytes(text) == value


def test_milli_and_exponents_keep_their_exact_value() -> None:
    assert quantity_value("250m") == Decimal("0.250")
    assert quantity_value("1e-3") == Decimal("0.001")


@pytest.mark.parametrize("text", ["lots", "1 Gi", "Gi", "1gi", "1Gib", "", "1e2.5"])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        quantity_value(text)


def test_exponents_beyond_any_size_are_refused_not_computed() -> None:
    with pytest.raises(ValueError, match="out of range"):
        quantity_value("1e1000000")
