"""Per-group descriptive statistics for one column: counts and percentages, or median, quartiles, range, mean, SD.

All groups are summarised in one Polars ``group_by`` (no Python loop over rows or patients). Percentages
are of the non-missing values in the group (gtsummary's default, ``percent = "column"``); missing values are
counted separately. SD is the sample SD (n − 1), as R ``sd``.

Quartiles: ``type2`` (default) is Hyndman & Fan's type 2 — the inverse empirical CDF, averaging at
discontinuities — which is SAS's default (PROC UNIVARIATE ``PCTLDEF=5``) and what gtsummary documents for
``{p25}``/``{p75}``; ``type7`` is R's ``quantile()`` default (linear interpolation). The median is the same
under both.

Reference: Hyndman RJ, Fan Y (1996). Sample quantiles in statistical packages. Am Stat 50:361-365.
doi:10.1080/00031305.1996.10473566.

Example:
    >>> import polars as pl
    >>> frame = pl.DataFrame({"arm": ["a", "a", "a", "a", "b"], "age": [1.0, 2.0, 3.0, 4.0, None]})
    >>> continuous_summary(frame, "age", "arm").row(0, named=True)["q1"]   # type 2: (x1 + x2) / 2
    1.5
"""

from __future__ import annotations

from typing import Literal

import polars as pl

QuantileDefinition = Literal["type2", "type7"]
GROUP = "group"


def _type2_quantile(column: str, probability: float) -> pl.Expr:
    """Hyndman–Fan type 2 within a group of values sorted beforehand: x[np] and x[np+1] averaged when np is
    whole, else x[ceil(np)]."""
    present = pl.col(column).drop_nulls()
    position = present.len().cast(pl.Float64) * probability
    whole = position.floor()
    lower = present.get((whole - 1).clip(0, None).cast(pl.Int64), null_on_oob=True)
    upper = present.get(whole.cast(pl.Int64), null_on_oob=True)
    return pl.when(position == whole).then((lower + upper.fill_null(lower)) / 2).otherwise(upper)


def _quantile(column: str, probability: float, definition: QuantileDefinition) -> pl.Expr:
    if definition == "type2":
        return _type2_quantile(column, probability)
    return pl.col(column).quantile(probability, interpolation="linear")


def continuous_summary(
    frame: pl.DataFrame, column: str, by: str, quantiles: QuantileDefinition = "type2"
) -> pl.DataFrame:
    """One row per group (``group`` = the ``by`` value): n, missing, mean, sd, median, q1, q3, min, max."""
    values = pl.col(column).cast(pl.Float64)
    return (
        frame.lazy()
        .select(pl.col(by).alias(GROUP), values.alias(column))
        .sort(column, nulls_last=True)  # one sort; group_by keeps row order within each group
        .group_by(GROUP)
        .agg(
            n=pl.col(column).count(),
            missing=pl.col(column).null_count(),
            mean=pl.col(column).mean(),
            sd=pl.col(column).std(ddof=1),
            median=pl.col(column).median(),
            q1=_quantile(column, 0.25, quantiles),
            q3=_quantile(column, 0.75, quantiles),
            min=pl.col(column).min(),
            max=pl.col(column).max(),
        )
        .sort(GROUP)
        .collect()
    )


def categorical_summary(frame: pl.DataFrame, column: str, by: str) -> pl.DataFrame:
    """One row per (group, level) with ``n`` and ``percent`` of the group's non-missing values.

    Levels absent from a group appear with n = 0, so every group has every level. Missing values are not a
    level: :func:`missing_counts` reports them.
    """
    present = frame.select(pl.col(by).alias(GROUP), pl.col(column).alias("level")).drop_nulls("level")
    counts = present.group_by(GROUP, "level").len("n")
    grid = (
        present.select(GROUP)
        .unique()
        .join(present.select("level").unique(), how="cross")
        .join(counts, on=[GROUP, "level"], how="left")
        .with_columns(pl.col("n").fill_null(0).cast(pl.Int64))
    )
    return grid.with_columns(percent=100.0 * pl.col("n") / pl.col("n").sum().over(GROUP)).sort(GROUP, "level")


def missing_counts(frame: pl.DataFrame, column: str, by: str) -> pl.DataFrame:
    """One row per group: ``total`` rows and ``missing`` (null) values of ``column``."""
    return frame.group_by(pl.col(by).alias(GROUP)).agg(total=pl.len(), missing=pl.col(column).null_count()).sort(GROUP)
