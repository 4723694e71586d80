"""Personal-data validation: columns whose names look like personal data need a rule.

A name matches when one of its words (split on ``_`` and camelCase) is a
known personal-data term, or it contains a known compound (``birthdate``,
``cardnumber``). False positives are cheap (add a rule or exclude the column);
false negatives leak data, so the list leans wide.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline_runtime.config.model import ValidationPolicy
from pipeline_runtime.errors import ConfigError

log = logging.getLogger(__name__)

WORDS = frozenset(
    {
        "email",
        "mail",
        "phone",
        "mobile",
        "msisdn",
        "ssn",
        "sin",
        "nino",
        "birth",
        "birthday",
        "dob",
        "address",
        "street",
        "zip",
        "postcode",
        "postal",
        "card",
        "pan",
        "cvv",
        "iban",
        "passport",
        "surname",
        "firstname",
        "lastname",
        "fullname",
        "tax",
        "salary",
        "ip",
    }
)
COMPOUNDS = ("birthdate", "dateofbirth", "cardnumber", "creditcard", "socialsecurity", "nationalid", "emailaddress")


def looks_personal(column: str) -> bool:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column).lower()
    words = {w for w in re.split(r"[^a-z0-9]+", spaced) if w}
    squashed = re.sub(r"[^a-z0-9]", "", column.lower())
    return bool(words & WORDS) or any(c in squashed for c in COMPOUNDS)


@dataclass(frozen=True, slots=True)
class Finding:
    table: str
    column: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


def check(policy: ValidationPolicy, unmasked: Iterable[Finding]) -> list[Finding]:
    """Warn about (or, under ``block``, refuse) personal-data columns without a masking rule."""
    findings = sorted(set(unmasked), key=str)
    if policy is ValidationPolicy.OFF or not findings:
        return findings
    listed = ", ".join(str(f) for f in findings)
    if policy is ValidationPolicy.BLOCK:
        raise ConfigError(
            f"columns that look like personal data have no masking rule: {listed}; "
            "add transforms.masking rules, exclude the columns, or set transforms.validation to warn"
        )
    log.warning("columns that look like personal data have no masking rule: %s", listed)
    return findings
