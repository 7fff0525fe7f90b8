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

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tocsin.core.arrays import patient_positions
from tocsin.core.segments import compiled

if TYPE_CHECKING:
    from tocsin.core.timeline import Assessments

PID = "patient_id"
HOURS_PER_DAY = 24.0


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The episodes: per stretch (a run of rows of one patient with stretch number > 0) that reached grade 1,
    its first row, number within the patient, onset (first grade >= 1), peak grade and its first day, the day
    it resolved (quiet since, at the first resolved row) and the patient's last time. Grades are -1 where null."""
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
    return start[keep], number, onset[keep], peak[keep], peak_day[keep], resolved_day[keep], last_t[keep]


def _timeline_arrays(timeline: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's patient start flag, time and grade (-1 = null) of a timeline frame."""
    code = timeline.get_column(PID).to_physical().to_numpy()
    first = np.ones(code.shape[0], dtype=np.bool_)
    first[1:] = code[1:] != code[:-1]
    grade = timeline.get_column("grade").fill_null(-1).to_numpy()
    return first, timeline.get_column("t").to_numpy(), grade


def episodes_from_timeline(timeline: pl.DataFrame) -> pl.DataFrame:
    """One row per episode: patient, number, onset/peak/resolution days, duration, ongoing, recurrence.

    Each patient's rows are adjacent and in time order, so an episode is a run of rows and one compiled pass
    finds them all (as a group-by and a join, seven operations)."""
    first, t, grade = _timeline_arrays(timeline)
    start, number, onset, peak, peak_day, resolved_day, last_t = compiled(_episodes_loop)(
        first,
        t,
        grade,
        timeline.get_column("stretch").to_numpy(),
        timeline.get_column("quiet_since").fill_null(np.nan).to_numpy(),
        timeline.get_column("resolved_row").to_numpy(),
    )
    ongoing = np.isnan(resolved_day)
    return pl.DataFrame(
        [
            timeline.get_column(PID).gather(start),
            pl.Series("episode", number),
            pl.Series("onset_day", onset),
            pl.Series("peak_grade", peak),
            pl.Series("peak_day", peak_day),
            pl.Series("resolved_day", resolved_day),
            pl.Series("duration_days", np.where(ongoing, last_t, resolved_day) - onset).round(4),
            pl.Series("ongoing", ongoing),
            pl.Series("recurrence", number > 1),
        ]
    ).with_columns(pl.col("resolved_day").fill_nan(None))


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


def patient_summary(timeline: pl.DataFrame, episodes: pl.DataFrame, max_grade: int = 5) -> pl.DataFrame:
    """Per patient: max grade, time to first onset, number of episodes, calendar days at each grade.

    Days at a grade count the study days (day 0 = infusion day) whose highest grade was that grade; a patient
    without a graded row has null counts and grade."""
    first, t, grade = _timeline_arrays(timeline)
    days, highest = compiled(_days_loop)(first, np.floor(t).astype(np.int32), grade, max_grade + 1)
    patients = timeline.get_column(PID).filter(pl.Series(first))
    episode_patient = patient_positions(episodes.get_column(PID), patients)
    n_episodes = np.bincount(episode_patient, minlength=patients.len()).astype(np.int32)
    onset = np.full(patients.len(), np.nan)
    np.fmin.at(onset, episode_patient, episodes.get_column("onset_day").to_numpy())
    graded = highest >= 0
    counts = [
        pl.Series(f"days_grade_{g}", days[:, g]).scatter(np.flatnonzero(~graded), None) for g in range(max_grade + 1)
    ]
    return pl.DataFrame(
        [
            patients,
            *counts,
            pl.Series("max_grade", highest).scatter(np.flatnonzero(~graded), None),
            pl.Series("onset_day", onset).fill_nan(None),
            pl.Series("n_episodes", n_episodes),
        ]
    )


def daily_max(timeline: pl.DataFrame) -> pl.DataFrame:
    """Highest grade per patient and study day (the way the source papers report a daily grade)."""
    return (
        timeline.with_columns(pl.col("t").floor().cast(pl.Int32).alias("study_day"))
        .group_by([PID, "study_day"], maintain_order=True)
        .agg(pl.col("grade").max().alias("grade"), pl.col("grade").is_null().all().alias("ungraded"))
    )
