"""Incidence of each toxicity by grade (any grade, grade >= 3, each grade), overall and per group, with CIs.

For each grade column (e.g. ``crs_max_grade``, ``icans_max_grade``, ``icaht_early_grade``) and each group, the
denominator is the patients whose grade is known (0 counts as known: no event); the patients with an unknown
grade are reported beside it, never silently counted as grade 0. Counting is one Polars ``group_by`` per
column, so 100,000 patients take milliseconds; the intervals are computed for all rows at once
(:func:`tocsin.stats.proportions.proportion_ci`).

Rows of :attr:`IncidenceResult.summary`: ``toxicity`` (the column), ``group`` (``None`` for the whole cohort),
``kind`` (``"at_least"`` or ``"exactly"``), ``grade``, ``events``, ``n_known``, ``n_unknown``, ``estimate``,
``lower``, ``upper``. "Any grade" is ``kind="at_least", grade=1``. Each grade from 1 to the highest grade
seen (at least 4, so an absent grade 4 is reported as 0) is listed.

References: the proportions and their intervals as in :mod:`tocsin.stats.proportions`; grading scales per
Lee DW et al. (2019) ASTCT consensus grading for CRS and neurologic toxicity, Biol Blood Marrow Transplant
25:625–638, doi:10.1016/j.bbmt.2018.12.758, and Rejeski K et al. (2023) ICAHT, Blood 142:865–877,
doi:10.1182/blood.2023020578.

Example:
    >>> import polars as pl
    >>> table = pl.DataFrame({"patient_id": ["a", "b", "c", "d"], "crs_max_grade": [0, 1, 3, None]})
    >>> result = incidence(table, ["crs_max_grade"])
    >>> row = result.summary.filter(kind="at_least", grade=1).row(0, named=True)
    >>> row["events"], row["n_known"], row["n_unknown"]
    (2, 3, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from tocsin.stats.input_checks import StatsInputError, grade_column, require_columns
from tocsin.stats.proportions import CIMethod, proportion_ci

AT_LEAST = "at_least"
EXACTLY = "exactly"
DEFAULT_AT_LEAST = (1, 3)
LOWEST_TOP_GRADE = 4


@dataclass(frozen=True)
class IncidenceResult:
    """Incidence rows for every toxicity, group and grade category, with the interval method used."""

    summary: pl.DataFrame
    toxicities: tuple[str, ...]
    group_column: str | None
    method: CIMethod
    confidence: float


def _counts(grades: pl.DataFrame, column: str, by: str | None, at_least: Sequence[int], top: int) -> pl.DataFrame:
    grade = pl.col(column)
    aggregations = [
        grade.is_not_null().sum().alias("n_known"),
        grade.is_null().sum().alias("n_unknown"),
        *[(grade >= k).sum().alias(f"{AT_LEAST}:{k}") for k in at_least],
        *[(grade == k).sum().alias(f"{EXACTLY}:{k}") for k in range(1, top + 1)],
    ]
    overall = grades.select(aggregations).with_columns(pl.lit(None, dtype=pl.String).alias("group"))
    frames = [overall]
    if by is not None:
        per_group = (
            grades.filter(pl.col(by).is_not_null())
            .group_by(by)
            .agg(aggregations)
            .sort(by)
            .with_columns(pl.col(by).cast(pl.String).alias("group"))
            .drop(by)
        )
        frames.append(per_group)
    wide = pl.concat(frames, how="vertical_relaxed").with_row_index("group_order")
    long = wide.unpivot(
        index=["group_order", "group", "n_known", "n_unknown"], variable_name="category", value_name="events"
    )
    return long.with_columns(
        pl.lit(column).alias("toxicity"),
        pl.col("category").str.split_exact(":", 1).struct.rename_fields(["kind", "grade"]).alias("parts"),
    ).unnest("parts").with_columns(pl.col("grade").cast(pl.Int64))


def incidence(
    table: pl.DataFrame,
    grade_columns: Sequence[str],
    by: str | None = None,
    method: CIMethod | str = CIMethod.CLOPPER_PEARSON,
    confidence: float = 0.95,
    at_least: Sequence[int] = DEFAULT_AT_LEAST,
    id_column: str = "patient_id",
) -> IncidenceResult:
    """Incidence of each grade column's toxicity, overall and per value of ``by`` (patients with no group are
    counted in the overall rows only).

    Raises :class:`StatsInputError` naming the column and the first patient when a grade is not a whole number
    from 0 to 5, or when a column does not exist.
    """
    if not grade_columns:
        raise StatsInputError("no grade column to count; name at least one (e.g. crs_max_grade)")
    require_columns(table, [*grade_columns, *([by] if by else [])])
    if by in grade_columns:
        raise StatsInputError(f"column {by!r} is both a grade column and the group; choose another group")
    bad_thresholds = [k for k in at_least if k not in range(1, 6)]
    if bad_thresholds:
        raise StatsInputError(f"grade thresholds must be 1 to 5, got {bad_thresholds}")
    pieces = []
    for column in grade_columns:
        grades = pl.DataFrame({column: grade_column(table, column, id_column)})
        if by is not None:
            grades = grades.with_columns(table.get_column(by))
        highest = grades.get_column(column).max()
        top = max(LOWEST_TOP_GRADE, int(highest) if highest is not None else 0)
        pieces.append(_counts(grades, column, by, sorted(set(at_least)), top))
    counts = (
        pl.concat(pieces, how="vertical_relaxed")
        .with_columns(pl.col("toxicity").replace_strict(list(grade_columns), range(len(grade_columns))).alias("order"))
        .sort("order", "group_order", pl.col("kind") != AT_LEAST, "grade")
    )
    ci = proportion_ci(counts.get_column("events").to_numpy(), counts.get_column("n_known").to_numpy(), method,
                       confidence)
    summary = counts.select(
        "toxicity", "group", "kind", "grade", pl.col("events").cast(pl.Int64), pl.col("n_known").cast(pl.Int64),
        pl.col("n_unknown").cast(pl.Int64),
    ).with_columns(
        pl.Series("estimate", ci.estimate), pl.Series("lower", ci.lower), pl.Series("upper", ci.upper)
    )
    return IncidenceResult(
        summary=summary,
        toxicities=tuple(grade_columns),
        group_column=by,
        method=ci.method,
        confidence=confidence,
    )
