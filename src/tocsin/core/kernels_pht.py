"""Compiled pass of prolonged hematologic toxicity (PHT): recovery, second fall, nadir and landmark of each
lineage's daily values.

As Polars expressions one course took 97 operations (an as-of join per support item, shifted columns for the
consecutive values of each recovery definition, a group-by and two de-duplications for the summary), some
14 ms. This loop reads each series of daily values once; :mod:`tocsin.core.prolonged_cytopenia` builds the
daily values and their support flags with NumPy on whole columns and holds the clinical rules. A series is
one patient's daily values of one lineage, at positions ``offsets[s]:offsets[s + 1]``, in day order.

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
