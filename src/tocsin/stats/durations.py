"""Episode durations (e.g. CRS duration by grade and product, as seed 001 reports) with ongoing episodes handled.

Two summaries per stratum (grade × group), because the literature reports both and they answer different
questions:

* **Resolved episodes only**: median, quartiles (R ``quantile()`` default, type 7 = NumPy/Polars "linear";
  SAS PROC UNIVARIATE's default definition 5 can differ in small samples) and range of the durations of the
  episodes that ended. Leaving the ongoing ones out biases the median downwards.
* **Product-limit (Kaplan–Meier) median**, treating an ongoing episode as censored at its last observed
  duration, with :func:`tocsin.stats.survival.kaplan_meier.kaplan_meier` (``tocsin cohort survival`` gives
  the same curve with confidence intervals) and so R ``survival``'s median rule: the first duration at which the
  estimated probability of still being in the episode is <= 0.5, and the midpoint of the flat stretch when
  the curve sits exactly at 0.5 (so with no ongoing episode it equals the ordinary median). When the curve
  never reaches 0.5 the median is undefined (``None``), as in R.

An episode is a row with a duration. With a grade column, rows of grade 0 are not episodes and rows of grade
>= 1 without a duration are counted as ``n_unknown``; rows with a duration but an unknown ongoing flag are
counted as ``n_unknown`` too and left out of both summaries.

References:
    Kaplan EL, Meier P (1958). Nonparametric estimation from incomplete observations. JASA 53:457–481.
    doi:10.1080/01621459.1958.10501452
    Hyndman RJ, Fan Y (1996). Sample quantiles in statistical packages. Am Stat 50:361–365.
    doi:10.1080/00031305.1996.10473566 (type 7)
    Therneau TM. survival: quantile.survfit (midpoint rule for a flat stretch at the quantile).

Example:
    >>> km_median([6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35],
    ...           [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    23.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tocsin.stats.input_checks import StatsInputError, flag_column, grade_column, numeric_column, require_columns
from tocsin.stats.survival.kaplan_meier import kaplan_meier

def km_median(durations: Sequence[float] | np.ndarray, resolved: Sequence[bool | int] | np.ndarray) -> float | None:
    """Product-limit median duration, ongoing episodes censored (R ``survival`` rule); None when not reached."""
    times = np.asarray(durations, dtype=float)
    ended = np.asarray(resolved, dtype=bool)
    if times.shape != ended.shape:
        raise StatsInputError(f"durations and flags differ in length ({times.size} vs {ended.size})")
    if times.size == 0:
        return None
    return kaplan_meier(times, ended).groups.get_column("median")[0]


@dataclass(frozen=True)
class DurationResult:
    """Duration summaries per stratum; ``summary`` has one row per (group, grade), ``grade`` None = all grades."""

    summary: pl.DataFrame
    duration_column: str
    ongoing_column: str
    grade_column: str | None
    group_column: str | None


def duration_summary(
    table: pl.DataFrame,
    duration: str,
    ongoing: str,
    grade: str | None = None,
    by: str | None = None,
    id_column: str = "patient_id",
) -> DurationResult:
    """Durations of the episodes in ``duration`` (ongoing flag in ``ongoing``), per grade of ``grade`` and per
    value of ``by``, plus the all-grades and whole-cohort rows.

    Summary columns: ``group``, ``grade``, ``n_episodes``, ``n_resolved``, ``n_ongoing``, ``n_unknown``,
    ``resolved_median``, ``resolved_q1``, ``resolved_q3``, ``resolved_min``, ``resolved_max``, ``km_median``.
    """
    require_columns(table, [duration, ongoing, *([grade] if grade else []), *([by] if by else [])])
    days = numeric_column(table, duration, id_column, "a duration is a number of days")
    negative = days.is_not_null() & (days < 0)
    if negative.any():
        index = int(negative.arg_true()[0])
        who = table.get_column(id_column)[index] if id_column in table.columns else f"row {index + 1}"
        raise StatsInputError(f"column {duration!r}: {who!r} has a negative duration {days[index]:g}; fix the value")
    frame = pl.DataFrame({"days": days, "ongoing": flag_column(table, ongoing, id_column)})
    frame = frame.with_columns(
        (grade_column(table, grade, id_column) if grade else pl.Series([None] * table.height, dtype=pl.Int64))
        .alias("grade"),
        (table.get_column(by).cast(pl.String) if by else pl.Series([None] * table.height, dtype=pl.String))
        .alias("group"),
    )
    if grade:
        frame = frame.filter(pl.col("grade") >= 1)
    else:
        frame = frame.filter(pl.col("days").is_not_null())
    strata = [frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("grade"), pl.lit(None, dtype=pl.String)
                                 .alias("group"))]
    if grade:
        strata.append(frame.with_columns(pl.lit(None, dtype=pl.String).alias("group")))
    if by:
        grouped = frame.filter(pl.col("group").is_not_null())
        strata.append(grouped.with_columns(pl.lit(None, dtype=pl.Int64).alias("grade")))
        if grade:
            strata.append(grouped)
    stacked = pl.concat(strata)
    usable = pl.col("days").is_not_null() & pl.col("ongoing").is_not_null()
    resolved_days = pl.col("days").filter(usable & ~pl.col("ongoing"))
    summary = (
        stacked.group_by("group", "grade", maintain_order=True)
        .agg(
            usable.sum().cast(pl.Int64).alias("n_episodes"),
            (usable & ~pl.col("ongoing")).sum().cast(pl.Int64).alias("n_resolved"),
            (usable & pl.col("ongoing")).sum().cast(pl.Int64).alias("n_ongoing"),
            (~usable).sum().cast(pl.Int64).alias("n_unknown"),
            resolved_days.median().alias("resolved_median"),
            resolved_days.quantile(0.25, interpolation="linear").alias("resolved_q1"),
            resolved_days.quantile(0.75, interpolation="linear").alias("resolved_q3"),
            resolved_days.min().alias("resolved_min"),
            resolved_days.max().alias("resolved_max"),
            pl.col("days").filter(usable).alias("_days"),
            (~pl.col("ongoing")).filter(usable).alias("_ended"),
        )
        .sort(pl.col("group").is_not_null(), "group", pl.col("grade").is_not_null(), "grade")
    )
    medians = [
        km_median(days_, ended) if len(days_) else None
        for days_, ended in zip(summary.get_column("_days").to_list(), summary.get_column("_ended").to_list(),
                                strict=True)
    ]
    summary = summary.drop("_days", "_ended").with_columns(pl.Series("km_median", medians, dtype=pl.Float64))
    return DurationResult(summary=summary, duration_column=duration, ongoing_column=ongoing, grade_column=grade,
                          group_column=by)
