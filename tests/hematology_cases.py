"""Shared input building for the hematology conformance runners (ICAHT, prolonged cytopenia).

Turns a case's ``events`` (``[day, item, value, unit]`` or ``[day, item, value, unit, lln]``) and ``series``
(``[first_day, last_day, item, value, unit]``: one row on every day of the range) into raw event rows as
the file readers give them (all text, with file and line), runs the production ingest, and compares
output rows with expected values. Nothing here grades.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from tocsin.core.events import NormalisedEvents, normalise_events
from tocsin.vocabulary import load_vocabulary

VOCAB = load_vocabulary()
TOLERANCE = 1e-6
RAW_COLUMNS = ["patient_id", "day", "item", "value", "unit", "lln"]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def case_events(case: dict) -> list[list]:
    """The case's rows: ``events`` plus the expanded ``series``."""
    rows = [list(e) for e in case.get("events") or []]
    for first, last, item, value, unit in case.get("series") or []:
        rows += [[day, item, value, unit] for day in range(int(first), int(last) + 1)]
    return rows


def raw_frame(patients: dict[str, list[list]], file: str = "cases.csv") -> pl.DataFrame:
    """Raw rows for several patients: an infusion row at day 0 each, then their rows."""
    rows: list[tuple] = []
    for patient_id, events in patients.items():
        rows.append((patient_id, "0", "infusion", "axi-cel", "", None))
        for event in events:
            assert len(event) in (4, 5), f"{patient_id}: event {event!r} is not [day, item, value, unit(, lln)]"
            day, item, value, unit, *lln = event
            rows.append((patient_id, repr(float(day)), item, _text(value), _text(unit), _text(lln[0]) if lln else None))
    return pl.DataFrame(rows, orient="row", schema={c: pl.Utf8 for c in RAW_COLUMNS}).with_columns(
        pl.lit(file).alias("file"), pl.int_range(2, len(rows) + 2, dtype=pl.Int64).alias("line")
    )


def normalised(patients: dict[str, list[list]]) -> NormalisedEvents:
    result = normalise_events(raw_frame(patients), VOCAB)
    refused = result.problems
    assert refused.height == 0, f"input rows refused: {refused.to_dicts()}"
    return result


def same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(actual), float(expected), abs_tol=TOLERANCE)
    return actual == expected


def check_row(row: dict, case: dict) -> list[str]:
    """Differences between a patient's output row and the case's ``expect`` / ``reason_contains``."""
    problems = []
    for key, expected in (case.get("expect") or {}).items():
        assert key in row, f"{case['id']}: no output column {key!r}"
        if not same(row[key], expected):
            problems.append(f"{case['id']}: {key} = {row[key]!r}, expected {expected!r}")
    for key, parts in (case.get("reason_contains") or {}).items():
        assert key in row, f"{case['id']}: no output column {key!r}"
        for part in parts:
            if part not in (row[key] or ""):
                problems.append(f"{case['id']}: {key} = {row[key]!r} does not contain {part!r}")
    if problems:
        problems.append(f"    row: {row}")
    return problems
