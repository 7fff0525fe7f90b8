"""Compiled passes of prolonged hematologic toxicity (PHT): each lineage's daily values with their grades and
support flags (:func:`daily_series`), their recovery, second fall, nadir and landmark (:func:`summarise_series`),
and each patient's columns (:func:`patient_columns`).

As Polars expressions one course took 97 operations (an as-of join per support item, shifted columns for the
consecutive values of each recovery definition, a group-by and two de-duplications for the summary), some
14 ms; as NumPy around the series pass, some 300 calls. These loops read the rows, then each series of daily
values, once; :mod:`tocsin.core.prolonged_cytopenia` holds the clinical rules and gives them as tables. A
series is one patient's daily values of one lineage, at positions ``offsets[s]:offsets[s + 1]``, in day order.

Conventions: a missing day or row is -1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tocsin.core.segments import compiled


class SeriesSummary(NamedTuple):
    """Per series (definitions x series for ``recovery_day``); -1 where there is none."""

    recovery_day: np.ndarray  # first day a recovery of the definition starts
    recovery_after_landmark_day: np.ndarray  # first start of the chosen definition on or after the landmark
    second_fall_day: np.ndarray  # first fall after the chosen definition's first recovery run
    nadir_row: np.ndarray  # first row of the lowest value
    landmark_row: np.ndarray  # row nearest to the landmark day within the window (then lower, then earlier)


def _series_loop(
    offsets: np.ndarray,
    day: np.ndarray,
    value: np.ndarray,
    grade: np.ndarray,
    meets: np.ndarray,
    consecutive: np.ndarray,
    chosen: int,
    second_fall_min_grade: int,
    landmark_day: int,
    landmark_window_days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_series, n_definitions = offsets.shape[0] - 1, meets.shape[0]
    recovery_day = np.full((n_definitions, n_series), -1, dtype=np.int64)
    after_landmark = np.full(n_series, -1, dtype=np.int64)
    second_fall = np.full(n_series, -1, dtype=np.int64)
    nadir_row = np.full(n_series, -1, dtype=np.int64)
    landmark_row = np.full(n_series, -1, dtype=np.int64)
    for s in range(n_series):
        start, stop = offsets[s], offsets[s + 1]
        if start == stop:
            continue
        nadir = start
        nearest, nearest_distance = -1, 0
        for row in range(start, stop):
            if value[row] < value[nadir]:
                nadir = row
            distance = abs(day[row] - landmark_day)
            if distance <= landmark_window_days and (
                nearest < 0
                or distance < nearest_distance
                or (distance == nearest_distance and value[row] < value[nearest])
            ):
                nearest, nearest_distance = row, distance
        nadir_row[s], landmark_row[s] = nadir, nearest
        run_end_day = -1
        for d in range(n_definitions):
            needed = consecutive[d, s]
            missed_before = False
            for row in range(start, stop):
                # A recovery starts where the needed run of values meets, after one that did not.
                if needed > 0 and missed_before and row + needed <= stop:
                    run = True
                    for k in range(row, row + needed):
                        if not meets[d, k]:
                            run = False
                            break
                    if run:
                        if recovery_day[d, s] < 0:
                            recovery_day[d, s] = day[row]
                            if d == chosen:
                                run_end_day = day[row + needed - 1]
                        if d == chosen and day[row] >= landmark_day and after_landmark[s] < 0:
                            after_landmark[s] = day[row]
                if not meets[d, row]:
                    missed_before = True
        if recovery_day[chosen, s] >= 0:
            for row in range(start, stop):
                if day[row] > run_end_day and not meets[chosen, row] and grade[row] >= second_fall_min_grade:
                    second_fall[s] = day[row]
                    break
    return recovery_day, after_landmark, second_fall, nadir_row, landmark_row


def summarise_series(
    offsets: np.ndarray,
    day: np.ndarray,
    value: np.ndarray,
    grade: np.ndarray,
    meets: np.ndarray,
    consecutive: np.ndarray,
    chosen: int,
    second_fall_min_grade: int,
    landmark_day: int,
    landmark_window_days: int,
) -> SeriesSummary:
    """Recovery days, second fall, nadir and landmark rows of every series.

    ``meets`` (definitions x rows) says whether a daily value meets each recovery definition; a recovery of
    definition ``d`` starts at a row when it and the next ``consecutive[d, s] - 1`` values of its series meet
    (0: the definition does not apply) and an earlier value of the series did not. After the first recovery run
    of definition ``chosen`` (from its last day on), a value that does not meet it with at least
    ``second_fall_min_grade`` is a second fall. The landmark row is the nearest to ``landmark_day`` within
    ``landmark_window_days``, then the lower value, then the earlier row.
    """
    return SeriesSummary(
        *compiled(_series_loop)(
            offsets.astype(np.int64, copy=False),
            day.astype(np.int64, copy=False),
            value.astype(np.float64, copy=False),
            grade.astype(np.int8, copy=False),
            meets.astype(np.bool_, copy=False),
            consecutive.astype(np.int64, copy=False),
            int(chosen),
            int(second_fall_min_grade),
            int(landmark_day),
            int(landmark_window_days),
        )
    )


class DailySeries(NamedTuple):
    """The daily values of every series (see :func:`daily_series`): series ``s`` at ``offsets[s]:offsets[s + 1]``,
    series by lineage, then by patient."""

    offsets: np.ndarray
    series_patient: np.ndarray
    series_lineage: np.ndarray
    day: np.ndarray
    value: np.ndarray
    grade: np.ndarray  # int8: the CTCAE v5.0 grade of the day's value
    meets: np.ndarray  # bool (definitions x days): the value meets the recovery definition
    landmark_supported: np.ndarray  # bool: a support of the lineage's landmark rule before the value
    consecutive: np.ndarray  # int64 (definitions x series): the values a recovery needs (0: does not apply)
    support_days: np.ndarray  # int64 (supports x patients): days given from day 0 to the end of observation
    support_days_after_landmark: np.ndarray  # of them, those after the landmark day


def _daily_series_loop(
    patient: np.ndarray,
    t: np.ndarray,
    num: np.ndarray,
    lln: np.ndarray,
    slot: np.ndarray,
    n_patients: int,
    slot_lineage: np.ndarray,
    slot_support: np.ndarray,
    slot_ends: np.ndarray,
    configured_lln: np.ndarray,
    band_grade: np.ndarray,
    band_below: np.ndarray,
    level: np.ndarray,
    at_lln: np.ndarray,
    free_days: np.ndarray,
    needed: np.ndarray,
    landmark_day: int,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray,
]:  # fmt: skip
    n_rows, n_lineages = patient.shape[0], configured_lln.shape[0]
    n_definitions, n_supports = level.shape[0], free_days.shape[1]
    # Each patient's rows (adjacent, in time order) and the end of its observation: its first row that ends it.
    first_row = np.full(n_patients + 1, n_rows, dtype=np.int64)
    for row in range(n_rows - 1, -1, -1):
        first_row[patient[row]] = row
    for p in range(n_patients - 1, -1, -1):
        first_row[p] = min(first_row[p], first_row[p + 1])
    end_t = np.full(n_patients, np.nan)
    for p in range(n_patients):
        for row in range(first_row[p], first_row[p + 1]):
            if slot_ends[slot[row]]:
                end_t[p] = t[row]
                break
    offsets = np.zeros(n_lineages * n_patients + 1, dtype=np.int64)
    series_patient = np.empty(n_lineages * n_patients, dtype=np.int64)
    series_lineage = np.empty(n_lineages * n_patients, dtype=np.int64)
    day_of = np.empty(n_rows, dtype=np.int64)
    value_of, lln_of = np.empty(n_rows), np.empty(n_rows)
    n_days, n_series = 0, 0
    for ln in range(n_lineages):
        for p in range(n_patients):
            start_days = n_days
            for row in range(first_row[p], first_row[p + 1]):
                # A count from day 0 to the end of observation (all when it does not end), with a value.
                if slot_lineage[slot[row]] != ln or not t[row] >= 0 or t[row] > end_t[p] or np.isnan(num[row]):
                    continue
                day = int(np.floor(t[row]))
                if n_days > start_days and day_of[n_days - 1] == day:
                    value_of[n_days - 1] = min(value_of[n_days - 1], num[row])
                    lln_of[n_days - 1] = np.fmax(lln_of[n_days - 1], lln[row])
                else:
                    day_of[n_days], value_of[n_days], lln_of[n_days] = day, num[row], lln[row]
                    n_days += 1
            if n_days > start_days:
                series_patient[n_series], series_lineage[n_series] = p, ln
                n_series += 1
                offsets[n_series] = n_days
    grade = np.zeros(n_days, dtype=np.int8)
    meets = np.zeros((n_definitions, n_days), dtype=np.bool_)
    landmark_supported = np.zeros(n_days, dtype=np.bool_)
    consecutive = np.zeros((n_definitions, n_series), dtype=np.int64)
    latest = np.empty(n_supports, dtype=np.int64)  # the latest day each support was given (-2**62: never)
    supported = np.empty(n_definitions + 1, dtype=np.bool_)
    for s in range(n_series):
        p, ln = series_patient[s], series_lineage[s]
        for d in range(n_definitions):
            consecutive[d, s] = needed[d, ln]
        latest[:] = -(2**62)
        row = first_row[p]
        for k in range(offsets[s], offsets[s + 1]):
            if np.isnan(lln_of[k]):
                lln_of[k] = configured_lln[ln]
            # Any row of a support counts, before day 0 or after the end of observation too.
            while row < first_row[p + 1] and np.floor(t[row]) <= day_of[k]:
                if slot_support[slot[row]] >= 0:
                    latest[slot_support[slot[row]]] = int(np.floor(t[row]))
                row += 1
            for r in range(n_definitions + 1):
                supported[r] = False
                for i in range(n_supports):
                    if latest[i] > -(2**62) and day_of[k] - latest[i] <= free_days[r, i, ln]:
                        supported[r] = True
            x = value_of[k]
            grade[k] = 1 if x < lln_of[k] else 0
            for b in range(band_grade.shape[1]):
                if x < band_below[ln, b]:  # NaN: no band
                    grade[k] = band_grade[ln, b]
                    break
            for d in range(n_definitions):
                meets[d, k] = x >= (lln_of[k] if at_lln[d] else level[d, ln]) and not supported[d]
            landmark_supported[k] = supported[n_definitions]
    # Support days (once a day) from day 0 to the end of observation, and those after the landmark day.
    days = np.zeros((n_supports, n_patients), dtype=np.int64)
    after = np.zeros((n_supports, n_patients), dtype=np.int64)
    last = np.empty(n_supports, dtype=np.int64)
    for p in range(n_patients):
        last[:] = -(2**62)
        for row in range(first_row[p], first_row[p + 1]):
            i = slot_support[slot[row]]
            if i < 0 or not t[row] >= 0 or t[row] > end_t[p]:
                continue
            day = int(np.floor(t[row]))
            if day != last[i]:
                days[i, p] += 1
                if day > landmark_day:
                    after[i, p] += 1
                last[i] = day
    return (
        offsets[: n_series + 1], series_patient[:n_series], series_lineage[:n_series], day_of[:n_days],
        value_of[:n_days], grade, meets, landmark_supported, consecutive, days, after,
    )  # fmt: skip


def daily_series(
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_patients: int,
    slots: tuple[np.ndarray, np.ndarray, np.ndarray],
    configured_lln: np.ndarray,
    bands: tuple[np.ndarray, np.ndarray],
    recovery: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    landmark_day: int,
) -> DailySeries:
    """The daily lowest value of each patient's counts of each lineage (day = ``floor(t)``) from day 0 to the end
    of observation, with what the recovery and the landmark read of each, in one pass over the rows.

    ``rows``: ``(patient, t, num, lln, slot)`` of the rows read (a patient's rows adjacent, in time order; NaN
    where null). ``slots``, per slot: its lineage (-1: not a count), its support item (-1: none), whether it
    ends the observation (the first such row of a patient ends it). A day's LLN is its rows' highest, else
    ``configured_lln[lineage]``. ``bands``: per lineage the CTCAE v5.0 ``(grades, below)`` worst first (NaN
    pads; grade 1 is below the LLN). ``recovery``: per definition and lineage the ``level`` to reach (NaN: does
    not apply) or the LLN where ``at_lln[definition]``; ``free_days`` (rules x supports x lineages: the
    definitions, then the landmark rule; -inf where the item is not in the rule): a value is supported when a
    support was given at most that many days before it; ``needed`` (definitions x lineages) consecutive
    values. As NumPy this was some 150 calls for one course.
    """
    level, at_lln, free_days, needed = recovery
    return DailySeries(
        *compiled(_daily_series_loop)(
            *rows, n_patients, *slots, configured_lln, *bands, level, at_lln, free_days, needed, int(landmark_day)
        )
    )


#: Rows of each lineage's block of :func:`patient_columns` (the order of the lineage columns of PHT).
(
    LANDMARK_DAY,
    LANDMARK_VALUE,
    LANDMARK_GRADE,
    LANDMARK_SUPPORTED,
    CYTOPENIC,
    NADIR,
    NADIR_DAY,
    RECOVERY_DAY,  # one row per definition from here
) = range(8)
#: Rows of the per-patient summary of :func:`patient_columns`.
PHT, PHT_RULE, PHT_COUNT, PHT_PATTERN, CYTOPENIC_LINEAGES, UNKNOWN_LINEAGES, BIPHASIC, BIPHASIC_LINEAGES = range(8)


def _patient_columns_loop(
    n_patients: int,
    n_lineages: int,
    series_patient: np.ndarray,
    series_lineage: np.ndarray,
    day: np.ndarray,
    value: np.ndarray,
    grade: np.ndarray,
    landmark_supported: np.ndarray,
    recovery_day: np.ndarray,
    recovery_after_landmark_day: np.ndarray,
    second_fall_day: np.ndarray,
    nadir_row: np.ndarray,
    landmark_row: np.ndarray,
    chosen: int,
    min_grade: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_definitions = recovery_day.shape[0]
    n_rows = RECOVERY_DAY + n_definitions + 4
    ints = np.full((n_lineages, n_rows, n_patients), -1, dtype=np.int64)
    floats = np.full((n_lineages, n_rows, n_patients), np.nan)
    for s in range(series_patient.shape[0]):
        p, ln = series_patient[s], series_lineage[s]
        at, nadir = landmark_row[s], nadir_row[s]
        if at >= 0:
            ints[ln, LANDMARK_DAY, p], floats[ln, LANDMARK_VALUE, p] = day[at], value[at]
            ints[ln, LANDMARK_GRADE, p], ints[ln, LANDMARK_SUPPORTED, p] = grade[at], landmark_supported[at]
            ints[ln, CYTOPENIC, p] = grade[at] >= min_grade
        floats[ln, NADIR, p], ints[ln, NADIR_DAY, p] = value[nadir], day[nadir]
        for d in range(n_definitions):
            ints[ln, RECOVERY_DAY + d, p] = recovery_day[d, s]
        row = RECOVERY_DAY + n_definitions  # recovered, the recovery after the landmark, second fall, biphasic
        ints[ln, row, p] = recovery_day[chosen, s] >= 0
        ints[ln, row + 1, p] = recovery_after_landmark_day[s]
        ints[ln, row + 2, p] = second_fall_day[s]
        ints[ln, row + 3, p] = second_fall_day[s] >= 0
    patients = np.zeros((8, n_patients), dtype=np.int64)
    biphasic_row = RECOVERY_DAY + n_definitions + 3
    for p in range(n_patients):
        count, unknown = 0, 0
        for ln in range(n_lineages):
            if ints[ln, CYTOPENIC, p] == 1:
                count += 1
                patients[CYTOPENIC_LINEAGES, p] |= 1 << ln
            if ints[ln, LANDMARK_GRADE, p] < 0:
                unknown += 1
                patients[UNKNOWN_LINEAGES, p] |= 1 << ln
            if ints[ln, biphasic_row, p] == 1:
                patients[BIPHASIC, p] = 1
                patients[BIPHASIC_LINEAGES, p] |= 1 << ln
        known = count > 0 or unknown == 0
        patients[PHT, p] = (count > 0) if known else -1
        patients[PHT_RULE, p] = 0 if count > 0 else (1 if unknown == 0 else 2)
        patients[PHT_COUNT, p], patients[PHT_PATTERN, p] = count, count if known else -1
    return ints, floats, patients


def patient_columns(
    n_patients: int, n_lineages: int, series: DailySeries, summary: SeriesSummary, chosen: int, min_grade: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each patient's columns of PHT from its series (:func:`daily_series`, :func:`summarise_series`).

    Returns ``ints`` and ``floats`` (lineages x rows x patients; -1 / NaN = null, as a patient without a value
    of the lineage has): rows ``LANDMARK_DAY``..., one ``RECOVERY_DAY`` per definition, then recovered (of
    definition ``chosen``), the recovery after the landmark, the second fall and biphasic; a value is cytopenic
    at its landmark when its grade is at least ``min_grade``. And the summary (rows ``PHT``...): PHT (-1: cannot
    be excluded, a lineage without a landmark value and none cytopenic), its rule (0 PHT, 1 none, 2 unknown),
    the number of cytopenic lineages, the pattern (that number, -1 when unknown), biphasic, and the lineages
    cytopenic, without a landmark grade and biphasic as bits (lineage ``l``: ``1 << l``).
    """
    return compiled(_patient_columns_loop)(
        n_patients, n_lineages, series.series_patient, series.series_lineage, series.day, series.value,
        series.grade, series.landmark_supported, *summary, int(chosen), int(min_grade),
    )  # fmt: skip
