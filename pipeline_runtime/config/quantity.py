"""Kubernetes quantities (``resource.Quantity``) as numbers: ``512Mi``, ``1G``, ``1e3``, ``250m``."""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIXES: dict[str, int | Decimal] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|([KMGTPE]i|[numkMGTPE])?)$")
#: Exponents beyond Kubernetes' own range (it refuses quantities above 2^63 - 1) are refused, not computed.
_MAX_EXPONENT = 30


def quantity_value(text: str) -> Decimal:
    """The number a quantity stands for (``ValueError`` when it is not one)."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity such as 512Mi or 1G")
    number, exponent, suffix = match.groups()
    if exponent is not None:
        if abs(int(exponent[1:])) > _MAX_EXPONENT:
            raise ValueError(f"{text!r} is out of range")
        return Decimal(number + exponent)
    return Decimal(number) * _SUFFIXES[suffix or ""]


def quantity_bytes(text: str) -> int:
    """A quantity of bytes, rounded up to a whole byte as Kubernetes does."""
    value = quantity_value(text)
    whole = int(value)
    return whole + (1 if value > whole else 0)
