"""Turn the time, event, group and stratum columns of a patient table into checked arrays.

Every estimator in :mod:`tocsin.stats.survival` takes the arrays this module returns, so the rules for
what an event column may hold live in one place. The rules refuse anything a reader could take two ways:

* times must be numbers, present, finite and not negative;
* an event column holds 0/1 or true/false (as numbers, booleans or the words ``true``/``false``); any other
  code (R's ``lung`` data code death as 2 and censoring as 1; registries write ``dead``) is refused
  unless the caller names the event and censoring codes explicitly;
* a group or stratum must be present for every patient.

Each refusal names the rows (1-based, in the order of the table) and the patient, and says how to fix it.

>>> import polars as pl
>>> table = pl.DataFrame({"patient_id": ["a", "b"], "os_days": [10.0, 20.0], "os_event": [1, 0]})
>>> survival_inputs(table, "os_days", "os_event").event.tolist()
[True, False]
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import polars as pl

from tocsin.stats.input_checks import SHOWN_ROWS, StatsInputError, and_more, require_columns

TRUE_WORDS = frozenset({"1", "true"})
FALSE_WORDS = frozenset({"0", "false"})


class SurvivalInputError(StatsInputError):
    """A survival column cannot be used as it is; the message names the rows, the column and the fix."""


@dataclass(frozen=True)
class SurvivalInputs:
    """Checked columns, one entry per patient: times (float), events (bool), optional group and stratum labels."""

    time: np.ndarray
    event: np.ndarray
    group: np.ndarray | None
    strata: np.ndarray | None


def survival_inputs(
    table: pl.DataFrame,
    time: str,
    event: str,
    *,
    group: str | None = None,
    strata: str | None = None,
    event_codes: Collection[str] = (),
    censor_codes: Collection[str] = (),
    id_column: str = "patient_id",
) -> SurvivalInputs:
    """Check and convert the named columns of ``table`` (see the module docstring for the rules).

    ``event_codes`` / ``censor_codes`` (compared as text, e.g. ``{"2"}`` / ``{"1"}`` for R's ``lung``) replace
    the 0/1, true/false default; given either, every value must be one of them.
    """
    require_columns(table, [c for c in (time, event, group, strata) if c is not None], SurvivalInputError)
    if table.height == 0:
        raise SurvivalInputError("the table has no patients; a survival analysis needs at least one row")
    ids = table.get_column(id_column) if id_column in table.columns else None
    return SurvivalInputs(
        time=_times(table.get_column(time), ids),
        event=_events(table.get_column(event), ids, set(event_codes), set(censor_codes)),
        group=_labels(table.get_column(group), ids, "group") if group else None,
        strata=_labels(table.get_column(strata), ids, "stratum") if strata else None,
    )


def _where(rows: np.ndarray, values: pl.Series, ids: pl.Series | None) -> str:
    """'row 3 (patient P03) = -2, row 9 (patient P09) = -1 and 4 more' for the first offending rows."""
    shown = []
    for row in rows[:SHOWN_ROWS].tolist():
        patient = f" (patient {ids[row]})" if ids is not None else ""
        shown.append(f"row {row + 1}{patient} = {values[row]!r}")
    return ", ".join(shown) + and_more(len(rows))


def _rows(mask: pl.Series | np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask, dtype=bool))


def _times(column: pl.Series, ids: pl.Series | None) -> np.ndarray:
    name = column.name
    if column.dtype == pl.Boolean or not (column.dtype.is_numeric() or column.dtype == pl.String):
        raise SurvivalInputError(f"column '{name}' holds {column.dtype}, not times; give a column of numbers")
    numbers = column.cast(pl.Float64, strict=False)
    unreadable = _rows(numbers.is_null() & column.is_not_null())
    if unreadable.size:
        raise SurvivalInputError(
            f"column '{name}': {_where(unreadable, column, ids)} is not a number; write the time as a number "
            "(days since infusion)"
        )
    absent = _rows(numbers.is_null())
    if absent.size:
        raise SurvivalInputError(
            f"column '{name}': {_where(absent, column, ids)} has no time; every patient needs a follow-up time "
            "(the last contact for a censored patient) — fill it in or leave the patient out of the table"
        )
    values = numbers.to_numpy()
    bad = _rows(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise SurvivalInputError(
            f"column '{name}': {_where(bad, column, ids)} is negative or not finite; a time counts from day 0 "
            "(the infusion) and cannot be negative — check the dates the time was computed from"
        )
    return values.astype(np.float64)


def _events(column: pl.Series, ids: pl.Series | None, event_codes: set[str], censor_codes: set[str]) -> np.ndarray:
    name = column.name
    absent = _rows(column.is_null())
    if absent.size:
        raise SurvivalInputError(
            f"column '{name}': {_where(absent, column, ids)} has no event status; write 1 (event) or 0 "
            "(censored) for every patient"
        )
    text = column.cast(pl.String).str.to_lowercase()
    if column.dtype.is_float():
        # a code column read as floats (1.0, 2.0) still compares as the codes 1 and 2
        text = text.str.replace(r"\.0$", "")
    if event_codes or censor_codes:
        overlap = event_codes & censor_codes
        if overlap:
            raise SurvivalInputError(f"code(s) {sorted(overlap)} are given as both event and censoring codes")
        is_event = text.is_in(sorted(event_codes))
        unknown = _rows(~is_event & ~text.is_in(sorted(censor_codes)))
        if unknown.size:
            raise SurvivalInputError(
                f"column '{name}': {_where(unknown, column, ids)} is neither an event code "
                f"({', '.join(sorted(event_codes)) or 'none given'}) nor a censoring code "
                f"({', '.join(sorted(censor_codes)) or 'none given'}); name every code with --event-code and "
                "--censor-code"
            )
        return is_event.to_numpy().astype(bool)
    is_event = text.is_in(sorted(TRUE_WORDS))
    unknown = _rows(~is_event & ~text.is_in(sorted(FALSE_WORDS)))
    if unknown.size:
        raise SurvivalInputError(
            f"column '{name}': {_where(unknown, column, ids)} is not 0/1 or true/false; an event column says "
            "1 = event, 0 = censored. If the column uses other codes (R's lung data: 2 = dead, 1 = censored), "
            "name them: --event-code 2 --censor-code 1"
        )
    return is_event.to_numpy().astype(bool)


def _labels(column: pl.Series, ids: pl.Series | None, what: str) -> np.ndarray:
    absent = _rows(column.is_null())
    if absent.size:
        raise SurvivalInputError(
            f"column '{column.name}': {_where(absent, column, ids)} has no {what}; fill it in, or leave those "
            "patients out of the table"
        )
    return column.to_numpy()
