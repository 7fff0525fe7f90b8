"""Competing-risks input: times, one status code per patient, and the codes that say what each status means.

Registries code competing outcomes in one status column (e.g. ``0`` censored, ``1`` relapse, ``2`` death
without relapse). Which code is censoring is never guessed: the caller declares the censoring codes and
the event codes, and a status that is neither is refused with the rows that carry it, because silently
treating an unknown code as censoring (cmprsk's behaviour for anything that is not ``cencode`` is to make
it a cause of its own) changes every estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tocsin.stats.input_checks import StatsInputError, rows_text

__all__ = ["CompetingEvents", "CompetingRisksInputError", "prepare_competing_events", "rows_text"]


class CompetingRisksInputError(StatsInputError):
    """The data cannot be analysed as given; ``rows`` are the 0-based row positions at fault."""

    def __init__(self, message: str, rows: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.rows = list(rows)


@dataclass(frozen=True)
class CompetingEvents:
    """Validated columns, in the caller's row order.

    ``cause`` is 0 for a censored row and ``k`` (1-based) for the k-th declared event code.
    ``group`` holds the index of each row's group in ``group_labels`` (all 0 without groups).
    """

    time: np.ndarray
    cause: np.ndarray
    event_codes: tuple[object, ...]
    group: np.ndarray
    group_labels: tuple[object, ...]


def _sorted_labels(values: Sequence[object]) -> tuple[object, ...]:
    """Distinct labels in sorted order (as R's factor levels), numbers before text when mixed."""
    return tuple(sorted(set(values), key=lambda v: (isinstance(v, str), v)))


def prepare_competing_events(
    time: Sequence[float] | np.ndarray,
    status: Sequence[object] | np.ndarray,
    event_codes: Sequence[object],
    censor_codes: Sequence[object],
    group: Sequence[object] | np.ndarray | None = None,
    row_names: Sequence[str] | None = None,
) -> CompetingEvents:
    """Check the columns and code the status as 0 (censored) or 1..K (the declared events, in order).

    Raises :class:`CompetingRisksInputError` naming the rows for a missing or negative time, a missing
    status, a status that is neither an event nor a censoring code, a missing group, or codes declared twice.
    ``row_names`` (e.g. ``"patient P3"``) name the rows in messages instead of their 0-based positions.
    """
    times = np.asarray(time, dtype=float)
    statuses = list(status)
    if times.ndim != 1 or times.size != len(statuses):
        raise CompetingRisksInputError("time and status must be columns of the same length")
    if times.size == 0:
        raise CompetingRisksInputError("no rows to analyse")
    if not event_codes:
        raise CompetingRisksInputError("declare at least one event code")
    declared = [_normalised_code(c) for c in [*event_codes, *censor_codes]]
    if len(set(declared)) != len(declared):
        raise CompetingRisksInputError(
            f"event codes {list(event_codes)} and censoring codes {list(censor_codes)} overlap or repeat; "
            "each status code must mean exactly one thing"
        )
    bad_time = np.flatnonzero(~np.isfinite(times) | (times < 0))
    if bad_time.size:
        raise CompetingRisksInputError(
            f"{rows_text(bad_time.tolist(), row_names)}: time is missing or negative; "
            "give every patient a follow-up time >= 0 or drop the row",
            bad_time.tolist(),
        )
    code_of = {_normalised_code(code): k + 1 for k, code in enumerate(event_codes)}
    code_of |= {_normalised_code(code): 0 for code in censor_codes}
    cause = np.empty(times.size, dtype=np.int64)
    unknown: list[int] = []
    for row, value in enumerate(statuses):
        key = _normalised_code(value)
        if key is None or key not in code_of:
            unknown.append(row)
        else:
            cause[row] = code_of[key]
    if unknown:
        found = sorted({str(statuses[r]) for r in unknown})
        raise CompetingRisksInputError(
            f"{rows_text(unknown, row_names)}: status {', '.join(found)} is none of the declared codes "
            f"(events {list(event_codes)}, censored {list(censor_codes)}); declare it with --event-code, "
            "--competing-code or --censor-code, or correct the rows",
            unknown,
        )
    if group is None:
        return CompetingEvents(times, cause, tuple(event_codes), np.zeros(times.size, dtype=np.int64), ("all",))
    groups = list(group)
    if len(groups) != times.size:
        raise CompetingRisksInputError("group must be a column of the same length as time")
    missing_group = np.asarray([r for r, g in enumerate(groups) if g is None], dtype=np.int64)
    if missing_group.size:
        raise CompetingRisksInputError(
            f"{rows_text(missing_group.tolist(), row_names)}: group is missing; fill it in or drop the row",
            missing_group.tolist(),
        )
    labels = _sorted_labels(groups)
    index = {label: k for k, label in enumerate(labels)}
    return CompetingEvents(
        times, cause, tuple(event_codes), np.asarray([index[g] for g in groups], dtype=np.int64), labels
    )


def _normalised_code(value: object) -> object:
    """1 and 1.0 are the same code (CSV readers may type a status column as float); text codes stay text."""
    if value is None:
        return None
    if isinstance(value, float):
        if not np.isfinite(value):
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, np.generic):
        return _normalised_code(value.item())
    return value
