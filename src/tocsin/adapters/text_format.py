"""How the cohort renderers show a value that may be missing: one dash in tables, ``null`` in JSON.

NaN (what NumPy gives for an estimate that does not exist, e.g. a median never reached) is missing too.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"


def is_missing(value: object) -> bool:
    """``None`` or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def formatted(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or the dash for a missing value."""
    return MISSING if is_missing(value) else format(value, spec)


def fixed(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals, or the dash for a missing value."""
    return formatted(value, f".{digits}f")


def json_value(value: Any) -> Any:
    """The value for a JSON document: NaN becomes ``null`` (JSON has no NaN), anything else is kept."""
    return None if isinstance(value, float) and math.isnan(value) else value
