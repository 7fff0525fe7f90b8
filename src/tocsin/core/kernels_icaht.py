"""Compiled passes of ICAHT and T-ICAHT over each patient's daily grid (days 0 to the end of observation).

As Polars expressions a grade took some 160 operations for one course: forward and backward fills for the
interpolation, run bounds for the bridging and for every stretch, a group-by per reading of the unknown days,
each at its fixed cost of 20-500 µs. Here each pass reads the patients' days once, in a loop compiled by Numba
(imported on first use, compiled once and cached next to this module, see :func:`tocsin.core.segments.compiled`),
and :mod:`tocsin.core.icaht` does the rest with NumPy on whole columns. Patient ``p``'s days are the positions
``offsets[p]:offsets[p + 1]`` of every per-day array, day 0 first.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tocsin.core.segments import compiled

#: A day's state against a threshold: above it, below it, or unknown (no count, not interpolated).
ABOVE, BELOW, UNKNOWN = 0, 1, -1


class DayGrid(NamedTuple):
    """Each patient's days 0 to the end of observation, from the daily values (see :func:`day_grid`)."""

    level: np.ndarray  # float64: the day's value, interpolated or carried; NaN where unknown
    interpolated: np.ndarray  # bool: level interpolated between two values (to be rounded)
    observed: np.ndarray  # bool: the day has a value of its own
    bracketed: np.ndarray  # bool: a value on or before the day and one on or after it (from day -lead)
    masked: np.ndarray  # bool: within the masking days after a support day (a transfusion)


def _day_grid_loop(
    offsets: np.ndarray,
    end_day: np.ndarray,
    value_offsets: np.ndarray,
    value_day: np.ndarray,
    value: np.ndarray,
    support_offsets: np.ndarray,
    support_day: np.ndarray,
    lead: int,
    max_gap: int,
    masking_days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_days = offsets[-1]
    level = np.full(n_days, np.nan)
    interpolated = np.zeros(n_days, dtype=np.bool_)
    observed = np.zeros(n_days, dtype=np.bool_)
    bracketed = np.zeros(n_days, dtype=np.bool_)
    masked = np.zeros(n_days, dtype=np.bool_)
    for p in range(end_day.shape[0]):
        following, stop = value_offsets[p], value_offsets[p + 1]
        preceding = -1  # the patient's latest daily value before the day
        support, support_stop = support_offsets[p], support_offsets[p + 1]
        last_support = -1
        has_support = False
        # From day -lead: values before the infusion anchor the interpolation, supports before it mask day 0 on.
        for day in range(-lead, end_day[p] + 1):
            while following < stop and value_day[following] < day:
                preceding = following
                following += 1
            while support < support_stop and support_day[support] <= day:
                if support_day[support] >= -lead:
                    last_support, has_support = support_day[support], True
                support += 1
            if day < 0:
                continue
            cell = offsets[p] + day
            masked[cell] = masking_days >= 0 and has_support and day - last_support <= masking_days
            has_next, has_previous = following < stop, preceding >= 0
            if has_next and value_day[following] == day:
                level[cell], observed[cell], bracketed[cell] = value[following], True, True
            elif has_next and has_previous:
                bracketed[cell] = True
                d0, d1 = value_day[preceding], value_day[following]
                if d1 - d0 - 1 <= max_gap:
                    v0 = value[preceding]
                    level[cell] = v0 + (value[following] - v0) / (d1 - d0) * (day - d0)
                    interpolated[cell] = True
            elif has_next and value_day[following] - day <= max_gap:
                level[cell] = value[following]
            elif has_previous and day - value_day[preceding] <= max_gap:
                level[cell] = value[preceding]
    return level, interpolated, observed, bracketed, masked


def day_grid(
    offsets: np.ndarray,
    end_day: np.ndarray,
    value_offsets: np.ndarray,
    value_day: np.ndarray,
    value: np.ndarray,
    support_offsets: np.ndarray,
    support_day: np.ndarray,
    lead: int,
    max_gap: int,
    masking_days: int,
) -> DayGrid:
    """The daily grid of every patient: days ``0..end_day[p]`` at positions ``offsets[p]:offsets[p + 1]``.

    ``value_day`` / ``value`` are the daily values of patient ``p`` at ``value_offsets[p]:value_offsets[p + 1]``
    (by day, one per day, days ``-lead..end_day[p]``). A day without a value is interpolated linearly when the
    gap it lies in has at most ``max_gap`` missing days; before the first value or after the last, the nearest
    value is carried for ``max_gap`` days (Liang's ``na.approx(rule = 2)``, bounded). ``support_day`` (by day,
    patient ``p`` at ``support_offsets[p]:support_offsets[p + 1]``) masks the day of a support from day ``-lead``
    and the ``masking_days`` after it (-1: never masks). The interpolated levels are returned unrounded.
    """
    return DayGrid(
        *compiled(_day_grid_loop)(
            offsets.astype(np.int64, copy=False),
            end_day.astype(np.int64, copy=False),
            value_offsets.astype(np.int64, copy=False),
            value_day.astype(np.int64, copy=False),
            value.astype(np.float64, copy=False),
            support_offsets.astype(np.int64, copy=False),
            support_day.astype(np.int64, copy=False),
            int(lead),
            int(max_gap),
            int(masking_days),
        )
    )


class GridWindows(NamedTuple):
    """Per day of the grid (see :func:`grid_windows`)."""

    early: np.ndarray  # bool: in the early window
    late: np.ndarray  # bool: in the late window
    unknown: np.ndarray  # bool: no level, not masked, and in an open window
    undetermined: np.ndarray  # bool: no level and not masked


def _grid_windows_loop(
    offsets: np.ndarray,
    level: np.ndarray,
    observed: np.ndarray,
    bracketed: np.ndarray,
    masked: np.ndarray,
    early_end: int,
    late_start: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_days = level.shape[0]
    early, late = np.zeros(n_days, dtype=np.bool_), np.zeros(n_days, dtype=np.bool_)
    unknown, undetermined = np.zeros(n_days, dtype=np.bool_), np.zeros(n_days, dtype=np.bool_)
    for p in range(offsets.shape[0] - 1):
        for cell in range(offsets[p], offsets[p + 1]):
            day = cell - offsets[p]
            early[cell], late[cell] = day <= early_end, day >= late_start
            if late[cell] and not bracketed[cell] and not observed[cell]:
                level[cell] = np.nan
            undetermined[cell] = np.isnan(level[cell]) and not masked[cell]
            unknown[cell] = undetermined[cell] and (early[cell] or bracketed[cell])
    return early, late, unknown, undetermined


def grid_windows(
    offsets: np.ndarray,
    level: np.ndarray,
    observed: np.ndarray,
    bracketed: np.ndarray,
    masked: np.ndarray,
    early_end: int,
    late_start: int,
) -> GridWindows:
    """The windows of each day of a :func:`day_grid` (days ``0..early_end`` early, from ``late_start`` late) and
    its unknown days, in one pass. A late day without a count of its own and not ``bracketed`` by counts gets
    no level: ``level`` (float64) is changed in place. Liang carries the end values outward on the day 0-30
    grid only, and only unknown days inside the measured course could change a late grade."""
    if level.dtype != np.float64:
        raise TypeError("grid_windows changes the levels in place: they must be float64")
    return GridWindows(
        *compiled(_grid_windows_loop)(
            offsets.astype(np.int64, copy=False),
            level,
            observed.astype(np.bool_, copy=False),
            bracketed.astype(np.bool_, copy=False),
            masked.astype(np.bool_, copy=False),
            int(early_end),
            int(late_start),
        )
    )


def _threshold_states_loop(
    level: np.ndarray,
    masked: np.ndarray,
    unknown: np.ndarray,
    undetermined: np.ndarray,
    limits: np.ndarray,
    inclusive: np.ndarray,
    never: int,
) -> np.ndarray:
    n_thresholds = limits.shape[0]
    states = np.empty((2 * n_thresholds + (1 if never >= 0 else 0), level.shape[0]), dtype=np.int8)
    for cell in range(level.shape[0]):
        value, row = level[cell], 0
        for k in range(n_thresholds):
            below = masked[cell] or (value <= limits[k] if inclusive[k] else value < limits[k])  # NaN: not below
            states[row, cell] = BELOW if below else ABOVE
            states[row + 1, cell] = BELOW if below or unknown[cell] else ABOVE
            row += 2
            if k == never:
                states[row, cell] = BELOW if below else (UNKNOWN if undetermined[cell] else ABOVE)
                row += 1
    return states


def threshold_states(
    level: np.ndarray,
    masked: np.ndarray,
    unknown: np.ndarray,
    undetermined: np.ndarray,
    limits: np.ndarray,
    inclusive: np.ndarray,
    never: int,
) -> np.ndarray:
    """Each day's state (``ABOVE`` / ``BELOW`` / ``UNKNOWN``) against each threshold (``limits``, at or below
    where ``inclusive``), one row per reading of the unknown days, threshold by threshold: the best case (a
    masked day is below, an unknown one above), the worst case (an ``unknown`` day is below too) and, after the
    threshold numbered ``never`` only (-1: none), the observed one (an ``undetermined`` day stays unknown).
    One pass over the grid for the rows :func:`bridged` reads (as NumPy, three or four calls per threshold)."""
    return compiled(_threshold_states_loop)(
        level.astype(np.float64, copy=False),
        masked.astype(np.bool_, copy=False),
        unknown.astype(np.bool_, copy=False),
        undetermined.astype(np.bool_, copy=False),
        limits.astype(np.float64, copy=False),
        inclusive.astype(np.bool_, copy=False),
        int(never),
    )


def _bridged_loop(states: np.ndarray, offsets: np.ndarray, stable_days: int) -> np.ndarray:
    below = np.zeros(states.shape, dtype=np.bool_)
    for s in range(states.shape[0]):
        for p in range(offsets.shape[0] - 1):
            start, stop = offsets[p], offsets[p + 1]
            first = start
            while first < stop:
                state = states[s, first]
                end = first + 1
                while end < stop and states[s, end] == state:
                    end += 1
                if state == BELOW:
                    below[s, first:end] = True
                elif (
                    state == ABOVE
                    and end - first < stable_days
                    and first > start
                    and end < stop
                    and states[s, first - 1] == BELOW
                    and states[s, end] == BELOW
                ):
                    below[s, first:end] = True
                first = end
    return below


def bridged(states: np.ndarray, offsets: np.ndarray, stable_days: int) -> np.ndarray:
    """Below the threshold after bridging, for each row of ``states`` (``ABOVE`` / ``BELOW`` / ``UNKNOWN`` per
    day): a run of days above it shorter than ``stable_days`` with a day below on both sides (a non-stable
    recovery) counts as below; an unknown day is on neither side, so it stops a bridge."""
    return compiled(_bridged_loop)(
        states.astype(np.int8, copy=False), offsets.astype(np.int64, copy=False), stable_days
    )


class Runs(NamedTuple):
    """Per flag row and patient (arrays of shape (flags, patients)); days since day 0, -1 where there is none."""

    count: np.ndarray  # days flagged
    first: np.ndarray  # first flagged day
    last: np.ndarray  # last flagged day
    longest: np.ndarray  # length of the longest run of consecutive flagged days (0 when none)
    longest_start: np.ndarray  # first day of the first run of that length
    last_start: np.ndarray  # first day of the last run


def _runs_loop(
    flags: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    shape = (flags.shape[0], offsets.shape[0] - 1)
    count, longest = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    first, last = np.full(shape, -1, dtype=np.int64), np.full(shape, -1, dtype=np.int64)
    longest_start, last_start = np.full(shape, -1, dtype=np.int64), np.full(shape, -1, dtype=np.int64)
    for f in range(shape[0]):
        for p in range(shape[1]):
            run_start = -1
            for cell in range(offsets[p], offsets[p + 1]):
                if not flags[f, cell]:
                    run_start = -1
                    continue
                day = cell - offsets[p]
                if run_start < 0:
                    run_start = day
                count[f, p] += 1
                if first[f, p] < 0:
                    first[f, p] = day
                last[f, p], last_start[f, p] = day, run_start
                if day - run_start + 1 > longest[f, p]:
                    longest[f, p], longest_start[f, p] = day - run_start + 1, run_start
    return count, first, last, longest, longest_start, last_start


def runs(flags: np.ndarray, offsets: np.ndarray) -> Runs:
    """Counts, first and last days and runs of each row of the boolean matrix ``flags`` (flags x days), per
    patient: one pass for every duration, stretch and unknown-day count of a lineage."""
    return Runs(*compiled(_runs_loop)(flags.astype(np.bool_, copy=False), offsets.astype(np.int64, copy=False)))


class LateValues(NamedTuple):
    """Per patient, its daily values from the late window's first day on (-1 / NaN where there is none)."""

    n: np.ndarray  # how many
    nadir: np.ndarray  # the lowest
    nadir_day: np.ndarray  # the first day of the lowest
    second: np.ndarray  # the second-lowest (the nadir's value again when two days share it)
    first_day: np.ndarray
    last_day: np.ndarray


def _late_values_loop(
    offsets: np.ndarray, day: np.ndarray, value: np.ndarray, late_start: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_patients = offsets.shape[0] - 1
    count = np.zeros(n_patients, dtype=np.int64)
    nadir, second = np.full(n_patients, np.nan), np.full(n_patients, np.nan)
    nadir_day = np.full(n_patients, -1, dtype=np.int64)
    first_day, last_day = np.full(n_patients, -1, dtype=np.int64), np.full(n_patients, -1, dtype=np.int64)
    for p in range(n_patients):
        lowest, next_lowest = -1, -1
        for k in range(offsets[p], offsets[p + 1]):
            if day[k] < late_start:
                continue
            count[p] += 1
            if first_day[p] < 0:
                first_day[p] = day[k]
            last_day[p] = day[k]
            # Strictly lower only: among equal values the earlier day ranks first.
            if lowest < 0 or value[k] < value[lowest]:
                lowest, next_lowest = k, lowest
            elif next_lowest < 0 or value[k] < value[next_lowest]:
                next_lowest = k
        if lowest >= 0:
            nadir[p], nadir_day[p] = value[lowest], day[lowest]
        if next_lowest >= 0:
            second[p] = value[next_lowest]
    return count, nadir, nadir_day, second, first_day, last_day


def late_values(offsets: np.ndarray, day: np.ndarray, value: np.ndarray, late_start: int) -> LateValues:
    """The lowest and second-lowest daily values of each patient from day ``late_start`` on, and their count and
    first and last days, in one pass (as NumPy, a sort and some twenty calls of ~1-5 µs for one course).
    ``day`` / ``value``: patient ``p``'s daily values (by day, no NaN) at ``offsets[p]:offsets[p + 1]``."""
    return LateValues(
        *compiled(_late_values_loop)(
            offsets.astype(np.int64, copy=False),
            day.astype(np.int64, copy=False),
            value.astype(np.float64, copy=False),
            int(late_start),
        )
    )


class SupportDays(NamedTuple):
    """Per patient, its support days (one per day given) in the early and late windows, and its first from day 0."""

    early: np.ndarray
    late: np.ndarray
    first: np.ndarray  # -1 where none


def _support_days_loop(
    offsets: np.ndarray, day: np.ndarray, early_end: np.ndarray, late_start: int, late_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_patients = offsets.shape[0] - 1
    early, late = np.zeros(n_patients, dtype=np.int64), np.zeros(n_patients, dtype=np.int64)
    first = np.full(n_patients, -1, dtype=np.int64)
    for p in range(n_patients):
        for k in range(offsets[p], offsets[p + 1]):
            if day[k] < 0:
                continue
            if first[p] < 0:
                first[p] = day[k]
            if day[k] <= early_end[p]:
                early[p] += 1
            if late_start <= day[k] <= late_end[p]:
                late[p] += 1
    return early, late, first


def support_days(
    offsets: np.ndarray, day: np.ndarray, early_end: np.ndarray, late_start: int, late_end: np.ndarray
) -> SupportDays:
    """Per patient, how many of its support days (``day``, by day, patient ``p`` at ``offsets[p]:offsets[p + 1]``)
    lie in days ``0..early_end[p]`` and ``late_start..late_end[p]``, and its first support day from day 0."""
    return SupportDays(
        *compiled(_support_days_loop)(
            offsets.astype(np.int64, copy=False),
            day.astype(np.int64, copy=False),
            early_end.astype(np.int64, copy=False),
            int(late_start),
            late_end.astype(np.int64, copy=False),
        )
    )
