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
    first: np.ndarray,
    t: np.ndarray,
    day: np.ndarray,
    grade: np.ndarray,
    stretch: np.ndarray,
    quiet_since: np.ndarray,
    resolved: np.ndarray,
    n_grades: int,
) -> tuple[np.ndarray, ...]:
    """The episodes and the per-patient summary in one pass over the rows (a patient's rows adjacent, in time
    order; grades -1 where null).

    Episodes: per stretch (a run of rows of one patient with stretch number > 0) that reached grade 1, its first
    row, its number within the patient, onset (first grade >= 1), peak grade and its first day, the day it
    resolved (quiet since, at the first resolved row) and the patient's last time. Summary, per patient (in order
    of first rows): its first row, the number of study days (``day``) whose highest grade is each grade (-1 for a
    patient without a graded row), the highest grade (-1: none), the first onset (NaN: none) and the number of
    episodes."""
    rows = t.shape[0]
    patients = 0
    for row in range(rows):
        patients += first[row]
    heads = np.empty(patients, dtype=np.int64)
    days = np.zeros((n_grades, patients), dtype=np.int32)
    highest = np.full(patients, -1, dtype=np.int8)
    first_onset = np.full(patients, np.nan)
    n_episodes = np.zeros(patients, dtype=np.int32)
    start = np.empty(rows, dtype=np.int64)
    owner = np.empty(rows, dtype=np.int64)
    onset, peak_day, resolved_day, last_t = np.empty(rows), np.empty(rows), np.empty(rows), np.empty(rows)
    peak = np.empty(rows, dtype=np.int8)
    n, patient, patient_first, day_max, current_day = -1, -1, 0, -1, 0
    for row in range(rows):
        if first[row]:
            if patient >= 0 and day_max >= 0:
                days[day_max, patient] += 1
            patient, patient_first, day_max = patient + 1, n + 1, -1
            heads[patient] = row
        g = grade[row]
        if stretch[row] > 0:
            if first[row] or stretch[row] != stretch[row - 1]:
                n += 1
                start[n], owner[n], peak[n] = row, patient, -1
                onset[n], peak_day[n], resolved_day[n] = np.nan, np.nan, np.nan
            if g >= 1 and np.isnan(onset[n]):
                onset[n] = t[row]
            if g > peak[n]:
                peak[n], peak_day[n] = g, t[row]
            if resolved[row] and np.isnan(resolved_day[n]):
                resolved_day[n] = quiet_since[row]
        if g >= 0:
            if day_max >= 0 and day[row] != current_day:
                days[day_max, patient] += 1
                day_max = -1
            current_day = day[row]
            day_max = max(day_max, g)
            highest[patient] = max(highest[patient], g)
        if row == rows - 1 or first[row + 1]:
            last_t[patient_first : n + 1] = t[row]
    if patient >= 0 and day_max >= 0:
        days[day_max, patient] += 1
    for p in range(patients):
        if highest[p] < 0:
            days[:, p] = -1
    # The stretches that reached grade 1, moved to the front (in place: an episode only moves forward), numbered
    # among the patient's episodes.
    number = np.empty(n + 1, dtype=np.int64)
    kept = 0
    for m in range(n + 1):
        if peak[m] < 1:
            continue
        p = owner[m]
        start[kept], owner[kept], onset[kept], peak[kept] = start[m], p, onset[m], peak[m]
        peak_day[kept], resolved_day[kept], last_t[kept] = peak_day[m], resolved_day[m], last_t[m]
        n_episodes[p] += 1
        number[kept] = n_episodes[p]
        if not np.isnan(onset[kept]) and (np.isnan(first_onset[p]) or onset[kept] < first_onset[p]):
            first_onset[p] = onset[kept]  # np.fmin
        kept += 1
    return (
        heads, days, highest, first_onset, n_episodes,
        start[:kept], number[:kept], onset[:kept], peak[:kept], peak_day[:kept], resolved_day[:kept], last_t[:kept],
    )


def episodes_and_summary(timeline: Assessments, max_grade: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The episodes (one row each: patient, number, onset/peak/resolution days, duration, ongoing, recurrence)
    and the per-patient summary (calendar days at each grade, max grade, first onset and number of episodes) of a
    graded timeline.

    Each patient's rows are adjacent and in time order, so an episode is a run of rows and one compiled pass
    finds them all, and the summary with them (as a group-by and a join, seven operations). Days at a grade count
    the study days (day 0 = infusion day) whose highest grade was that grade; a patient without a graded row has
    null counts and grade."""
    heads, days, highest, first_onset, n_episodes, start, number, onset, peak, peak_day, resolved_day, last_t = (
        compiled(_episodes_loop)(
            timeline.first,
            timeline.t,
            np.floor(timeline.t).astype(np.int32),
            timeline["grade"],
            timeline["stretch"],
            timeline["quiet_since"],
            timeline["resolved_row"],
            max_grade + 1,
        )
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
    summary = frame_of(
        {
            PID: Text(patient_ids.source, patient_ids.index[heads]),
            **{f"days_grade_{g}": NullableInt(counts, pl.Int32) for g, counts in enumerate(days)},
            "max_grade": NullableInt(highest),
            "onset_day": first_onset,
            "n_episodes": n_episodes,
        }
    )
    return episodes, summary


def daily_max(timeline: pl.DataFrame) -> pl.DataFrame:
    """Highest grade per patient and study day (the way the source papers report a daily grade)."""
    return (
        timeline.with_columns(pl.col("t").floor().cast(pl.Int32).alias("study_day"))
        .group_by([PID, "study_day"], maintain_order=True)
        .agg(pl.col("grade").max().alias("grade"), pl.col("grade").is_null().all().alias("ungraded"))
    )
