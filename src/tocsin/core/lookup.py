"""Bringing one-row-per-patient values to every row of a batch without joining millions of rows."""

from __future__ import annotations

import polars as pl


def per_patient(table: pl.DataFrame, *columns: str, rows: int) -> list[pl.Expr]:
    """Columns of a one-row-per-patient table brought to every row (of a frame of ``rows`` rows) by the
    patient's category code: each column laid out densely by code and gathered once, when the codes are
    not much larger than the frame, else a hash lookup. (Category codes are global to the process, so a
    long-lived process grading small batches has codes far larger than its frames.)"""
    if table.height == 0:  # gathering from an empty column is not defined: every row gets null
        return [pl.lit(None, table.schema[c]).alias(c) for c in columns]
    if any(table.get_column(c).null_count() == table.height for c in columns):  # a column of nulls needs no gather
        known = [c for c in columns if table.get_column(c).null_count() < table.height]
        nulls = [pl.lit(None, table.schema[c]).alias(c) for c in columns if c not in known]
        return [*nulls, *(per_patient(table, *known, rows=rows) if known else [])]
    codes = table.get_column("patient_id").to_physical()
    code = pl.col("patient_id").to_physical()
    top = int(codes.max())
    if top < 4 * rows + 65_536:
        # One gather per column straight from the code (a code -> position array gathered again cost
        # twice as much); codes beyond the table's are patients it does not list.
        known = code <= top
        clipped = code.clip(upper_bound=top)
        return [pl.when(known).then(pl.lit(_by_code(table, c, codes, top)).gather(clipped)).alias(c) for c in columns]
    mapping = dict(zip(codes.to_list(), range(table.height), strict=True))
    position = code.replace_strict(mapping, default=None, return_dtype=pl.Int64)
    return [pl.lit(table.get_column(c)).gather(position).alias(c) for c in columns]


def _by_code(table: pl.DataFrame, column: str, codes: pl.Series, top: int) -> pl.Series:
    """``column`` of ``table`` at the position of each patient code (null where no patient has that code)."""
    dense = pl.repeat(None, top + 1, dtype=table.schema[column], eager=True)
    return dense.scatter(codes, table.get_column(column))
