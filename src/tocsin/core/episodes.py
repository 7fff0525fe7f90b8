"""Episodes: onset, peak, resolution, duration and recurrence, from a graded timeline.

One mechanism serves CRS and ICANS. A row is *active* when the toxicity is present, or its absence is
not documented, by the configured resolution rule (for CRS by default: fever, antipyretic given,
supplemental O2, a vasopressor, or no normal temperature in the fever window; for ICANS: grade >= 1 or
an assessment that cannot be graded). Active rows belong to one *stretch* until the patient has been quiet (no active
row) for ``hold_hours``, measured from the first quiet assessment; the stretch is then resolved at that
first quiet assessment, and the next active row opens a new stretch. An episode is a stretch in which
the grade reached 1 or more. A stretch still open at the last observation is reported as ongoing.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tocsin.core.segments import compiled
from tocsin.core.timeline import HOURS_PER_DAY, PID, Assessments, NullableInt, Text, frame_of


def _stretches_loop(
    first: np.ndarray, t: np.ndarray, active: np.ndarray, hold_hours: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = t.shape[0]
    quiet_since = np.full(rows, np.nan)
    resolved = np.zeros(rows, dtype=np.bool_)
    stretch = np.zeros(rows, dtype=np.int32)
    quiet_start, n_active, current, previous_active, previous_resolved = np.nan, 0, 0, True, False
    for row in range(rows):
        if first[row]:
            quiet_start, n_active, current, previous_active, previous_resolved = np.nan, 0, 0, True, False
        if active[row]:
            n_active += 1
            if n_active == 1 or previous_resolved:
                current += 1
        else:
            if previous_active:
                quiet_start = t[row]
            quiet_since[row] = quiet_start
            resolved[row] = n_active > 0 and (t[row] - quiet_start) * HOURS_PER_DAY >= hold_hours
        stretch[row] = current
        previous_active, previous_resolved = active[row], resolved[row]
    return quiet_since, resolved, stretch


def mark_stretches(state: Assessments, active: np.ndarray, hold_hours: float) -> None:
    """Add ``active``, ``stretch`` (0 before the first active row), ``quiet_since``, ``resolved_row``
    (quiet for at least ``hold_hours``) and ``in_episode`` (in a stretch and not yet resolved).

    One compiled pass over the rows (patients' rows adjacent, in time order): as column expressions the
    stretches took eight operations, each filling or summing within the patient."""
    quiet_since, resolved, stretch = compiled(_stretches_loop)(state.first, state.t, active, hold_hours)
    state.add(
        active=active,
        quiet_since=quiet_since,
        resolved_row=resolved,
        stretch=stretch,
        in_episode=(stretch > 0) & ~resolved,
    )


def _episodes_loop(
    first: np.ndarray, t: np.ndarray, grade: np.ndarray, stretch: np.ndarray, quiet_since: np.ndarray,
    resolved: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The episodes: per stretch (a run of rows of one patient with stretch number > 0) that reached grade 1,
    its first row, its patient (number among the patients of the rows), number within the patient, onset (first
    grade >= 1), peak grade and its first day, the day it resolved (quiet since, at the first resolved row) and
    the patient's last time. Grades are -1 where null."""
    rows = t.shape[0]
    start = np.empty(rows, dtype=np.int64)
    owner = np.empty(rows, dtype=np.int64)
    onset, peak_day, resolved_day, last_t = np.empty(rows), np.empty(rows), np.empty(rows), np.empty(rows)
    peak = np.empty(rows, dtype=np.int8)
    n, patient, patient_first = -1, -1, 0
    for row in range(rows):
        if first[row]:
            patient, patient_first = patient + 1, n + 1
        if stretch[row] > 0:
            if first[row] or stretch[row] != stretch[row - 1]:
                n += 1
                start[n], owner[n], peak[n] = row, patient, -1
                onset[n], peak_day[n], resolved_day[n] = np.nan, np.nan, np.nan
            g = grade[row]
            if g >= 1 and np.isnan(onset[n]):
                onset[n] = t[row]
            if g > peak[n]:
                peak[n], peak_day[n] = g, t[row]
            if resolved[row] and np.isnan(resolved_day[n]):
                resolved_day[n] = quiet_since[row]
        if row == rows - 1 or first[row + 1]:
            last_t[patient_first : n + 1] = t[row]
    keep = np.flatnonzero(peak[: n + 1] >= 1)
    number = np.empty(keep.shape[0], dtype=np.int64)
    for k in range(keep.shape[0]):  # numbered among the patient's episodes, after the filter
        same = k > 0 and owner[keep[k]] == owner[keep[k - 1]]
        number[k] = number[k - 1] + 1 if same else 1
    return start[keep], owner[keep], number, onset[keep], peak[keep], peak_day[keep], resolved_day[keep], last_t[keep]


def episodes_and_summary(timeline: Assessments, max_grade: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The episodes (one row each: patient, number, onset/peak/resolution days, duration, ongoing, recurrence)
    and the per-patient summary (:func:`_summary`) of a graded timeline.

    Each patient's rows are adjacent and in time order, so an episode is a run of rows and one compiled pass
    finds them all (as a group-by and a join, seven operations)."""
    start, owner, number, onset, peak, peak_day, resolved_day, last_t = compiled(_episodes_loop)(
        timeline.first, timeline.t, timeline["grade"], timeline["stretch"], timeline["quiet_since"],
        timeline["resolved_row"],
    )
    ongoing = np.isnan(resolved_day)
    patient_ids = timeline.patient_ids
    episodes = frame_of(
        {
            PID: Text(patient_ids.source, patient_ids.index[start]),
            "episode": number,
            "onset_day": onset,
            "peak_grade": peak,
            "peak_day": peak_day,
            "resolved_day": resolved_day,
            # NumPy's round is Polars' (half to even, of the value times 10^4).
            "duration_days": np.round(np.where(ongoing, last_t, resolved_day) - onset, 4),
            "ongoing": ongoing,
            "recurrence": number > 1,
        }
    )
    return episodes, _summary(timeline, owner, onset, max_grade)


def _days_loop(first: np.ndarray, day: np.ndarray, grade: np.ndarray, n_grades: int) -> tuple[np.ndarray, np.ndarray]:
    """Per patient (in order of first rows): the number of study days whose highest grade is each grade, and
    the highest grade (-1 = no graded row)."""
    patients = 0
    for row in range(first.shape[0]):
        patients += first[row]
    days = np.zeros((patients, n_grades), dtype=np.int32)
    highest = np.full(patients, -1, dtype=np.int8)
    patient, day_max, current_day = -1, -1, 0
    for row in range(first.shape[0]):
        if first[row]:
            if patient >= 0 and day_max >= 0:
                days[patient, day_max] += 1
            patient, day_max = patient + 1, -1
        g = grade[row]
        if g < 0:
            continue
        if day_max >= 0 and day[row] != current_day:
            days[patient, day_max] += 1
            day_max = -1
        current_day = day[row]
        day_max = max(day_max, g)
        highest[patient] = max(highest[patient], g)
    if patient >= 0 and day_max >= 0:
        days[patient, day_max] += 1
    return days, highest


def _summary(timeline: Assessments, owner: np.ndarray, onset: np.ndarray, max_grade: int) -> pl.DataFrame:
    """Per patient of the timeline: calendar days at each grade, max grade, first onset and number of episodes
    (``owner``: the patient of each episode, ``onset``: its onset).

    Days at a grade count the study days (day 0 = infusion day) whose highest grade was that grade; a patient
    without a graded row has null counts and grade."""
    days, highest = compiled(_days_loop)(
        timeline.first, np.floor(timeline.t).astype(np.int32), timeline["grade"], max_grade + 1
    )
    heads = np.flatnonzero(timeline.first)
    first_onset = np.full(heads.shape[0], np.nan)
    np.fmin.at(first_onset, owner, onset)
    graded = highest >= 0
    patient_ids = timeline.patient_ids
    return frame_of(
        {
            PID: Text(patient_ids.source, patient_ids.index[heads]),
            **{
                f"days_grade_{g}": NullableInt(np.where(graded, days[:, g], -1), pl.Int32)
                for g in range(max_grade + 1)
            },
            "max_grade": NullableInt(highest),
            "onset_day": first_onset,
            "n_episodes": np.bincount(owner, minlength=heads.shape[0]).astype(np.int32),
        }
    )


def daily_max(timeline: pl.DataFrame) -> pl.DataFrame:
    """Highest grade per patient and study day (the way the source papers report a daily grade)."""
    return (
        timeline.with_columns(pl.col("t").floor().cast(pl.Int32).alias("study_day"))
        .group_by([PID, "study_day"], maintain_order=True)
        .agg(pl.col("grade").max().alias("grade"), pl.col("grade").is_null().all().alias("ungraded"))
    )
