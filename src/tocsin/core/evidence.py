"""Evidence: the observations (item, day, value) behind a grade, built as a list column."""

from __future__ import annotations

import polars as pl

EVIDENCE_DTYPE = pl.List(pl.Struct({"item": pl.Utf8, "day": pl.Float64, "value": pl.Utf8}))


def observation(item: str | pl.Expr, day: str | pl.Expr, value: str | pl.Expr, condition: pl.Expr,
                unit: str = "") -> pl.Expr:
    """One evidence entry where ``condition`` holds (null otherwise)."""
    item_expr = pl.lit(item) if isinstance(item, str) else item
    day_expr = pl.col(day) if isinstance(day, str) else day
    value_expr = pl.col(value) if isinstance(value, str) else value
    text = value_expr.cast(pl.Utf8)
    if unit:
        text = pl.concat_str([text, pl.lit(" " + unit)])
    return pl.when(condition).then(pl.struct(item=item_expr.cast(pl.Utf8), day=day_expr.round(4),
                                             value=text))


def evidence_list(entries: list[pl.Expr]) -> pl.Expr:
    return pl.concat_list(entries).list.drop_nulls().alias("evidence")


def missing_list(entries: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """Names of the data still needed, where each condition holds."""
    return pl.concat_list([pl.when(cond).then(pl.lit(name)) for cond, name in entries]) \
        .list.drop_nulls().alias("missing")
