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

from tocsin.core.segments import compiled, distinct_in_runs, first_rows, nulls_at, run_number
from tocsin.core.timeline import HOURS_PER_DAY, PID


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


def mark_stretches(df: pl.DataFrame, active: pl.Expr, hold_hours: float) -> pl.DataFrame:
    """Add ``active``, ``stretch`` (0 before the first active row), ``quiet_since``, ``resolved_row``
    (quiet for at least ``hold_hours``) and ``in_episode`` (in a stretch and not yet resolved).

    One compiled pass over the rows (patients' rows adjacent, in time order): as column expressions the
    stretches took eight operations, each filling or summing within the patient."""
    df = df.with_columns(active.fill_null(False).alias("active"))
    quiet_since, resolved, stretch = compiled(_stretches_loop)(
        first_rows(df.get_column(PID)),
        df.get_column("t").to_numpy(),
        df.get_column("active").to_numpy(),
        hold_hours,
    )
    return df.with_columns(
        nulls_at(quiet_since, np.nan).alias("quiet_since"),
        pl.Series("resolved_row", resolved),
        pl.Series("stretch", stretch),
        pl.Series("in_episode", (stretch > 0) & ~resolved),
    )


def episodes_from_timeline(timeline: pl.DataFrame) -> pl.DataFrame:
    """One row per episode: patient, number, onset/peak/resolution days, duration, ongoing, recurrence."""
    # Each patient's rows are adjacent and in time order: the last time seen is the patient's last row, and
    # an episode a run of rows (grouped by run number on the sorted path, instead of hashing the keys).
    pid = pl.col(PID).to_physical()
    last_seen = timeline.select(PID, pl.col("t").alias("last_t")).filter((pid != pid.shift(-1)).fill_null(True))
    graded = pl.col("grade") >= 1
    episodes = (
        timeline.select(PID, "t", "grade", "stretch", "quiet_since", "resolved_row")
        .filter(pl.col("stretch") > 0)
        .group_by(run_number(pid, pl.col("stretch")).alias("_episode_run"), maintain_order=True)
        .agg(
            pl.col(PID).first(),
            pl.col("t").filter(graded).first().alias("onset_day"),
            pl.col("grade").max().alias("peak_grade"),
            pl.col("t").filter(pl.col("grade") == pl.col("grade").max()).first().alias("peak_day"),
            pl.col("quiet_since").filter(pl.col("resolved_row")).first().alias("resolved_day"),
        )
        .filter(pl.col("peak_grade") >= 1)
        .join(last_seen, on=PID, how="left")
        .with_columns(pl.int_range(1, pl.len() + 1).over(PID).alias("episode"))
    )
    return episodes.with_columns(
        pl.col("resolved_day").is_null().alias("ongoing"),
        (pl.coalesce("resolved_day", "last_t") - pl.col("onset_day")).round(4).alias("duration_days"),
        (pl.col("episode") > 1).alias("recurrence"),
    ).select(
        PID, "episode", "onset_day", "peak_grade", "peak_day", "resolved_day", "duration_days", "ongoing", "recurrence"
    )


def patient_summary(timeline: pl.DataFrame, episodes: pl.DataFrame, max_grade: int = 5) -> pl.DataFrame:
    """Per patient: max grade, time to first onset, number of episodes, calendar days at each grade.

    Days at a grade count the study days (day 0 = infusion day) whose highest grade was that grade.
    """
    study_day = pl.col("t").floor().cast(pl.Int32)
    daily = (
        timeline.select(PID, "t", "grade")  # a filter of the whole timeline would copy every state column
        .filter(pl.col("grade").is_not_null())
        .group_by(run_number(pl.col(PID).to_physical(), study_day).alias("_day"), maintain_order=True)
        .agg(pl.col(PID).first(), pl.col("grade").max())
    )
    counts = daily.group_by(PID).agg(
        *[(pl.col("grade") == g).sum().cast(pl.Int32).alias(f"days_grade_{g}") for g in range(max_grade + 1)],
        pl.col("grade").max().alias("max_grade"),
    )
    first = episodes.group_by(PID).agg(
        pl.col("onset_day").min().alias("onset_day"), pl.len().cast(pl.Int32).alias("n_episodes")
    )
    patients = distinct_in_runs(timeline, PID)
    return (
        patients.join(counts, on=PID, how="left")
        .join(first, on=PID, how="left")
        .with_columns(pl.col("n_episodes").fill_null(0))
    )


def daily_max(timeline: pl.DataFrame) -> pl.DataFrame:
    """Highest grade per patient and study day (the way the source papers report a daily grade)."""
    return (
        timeline.with_columns(pl.col("t").floor().cast(pl.Int32).alias("study_day"))
        .group_by([PID, "study_day"], maintain_order=True)
        .agg(pl.col("grade").max().alias("grade"), pl.col("grade").is_null().all().alias("ungraded"))
    )
