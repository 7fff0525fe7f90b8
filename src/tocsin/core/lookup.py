"""Bringing one-row-per-patient values to every row of a batch without joining millions of rows."""

from __future__ import annotations

import polars as pl


def per_patient(table: pl.DataFrame, *columns: str, rows: int) -> list[pl.Expr]:
    """Columns of a one-row-per-patient table brought to every row (of a frame of ``rows`` rows) by the
    patient's category code: a dense code -> position array and gathers when the codes are not much
    larger than the frame, else a hash lookup. (Category codes are global to the process, so a
    long-lived process grading small batches has codes far larger than its frames.)"""
    if table.height == 0:  # gathering from an empty column is not defined: every row gets null
        return [pl.lit(None, table.schema[c]).alias(c) for c in columns]
    codes = table.get_column("patient_id").to_physical()
    code = pl.col("patient_id").to_physical()
    top = int(codes.max())
    if top < 4 * rows + 65_536:
        dense = pl.repeat(None, top + 1, dtype=pl.Int64, eager=True)
        dense.scatter(codes, pl.int_range(table.height, dtype=pl.Int64, eager=True))
        position = pl.when(code <= top).then(pl.lit(dense).gather(code.clip(upper_bound=top)))
    else:
        mapping = dict(zip(codes.to_list(), range(table.height), strict=True))
        position = code.replace_strict(mapping, default=None, return_dtype=pl.Int64)
    return [pl.lit(table.get_column(c)).gather(position).alias(c) for c in columns]
