"""Bringing one-row-per-patient values to every row of a batch without joining millions of rows."""

from __future__ import annotations

import polars as pl


def per_patient(table: pl.DataFrame, *columns: str, rows: int) -> list[pl.Expr]:
    """Columns of a one-row-per-patient table brought to every row (of a frame of ``rows`` rows) by the
    patient's category code: each column laid out densely by code and gathered once, when the codes are
    not much larger than the frame, else a hash lookup. (Category codes are global to the process, so a
    long-lived process grading small batches has codes far larger than its frames.) A column that is null
    for every patient is null for every row, without a gather."""
    codes = table.get_column("patient_id").to_physical()
    code = pl.col("patient_id").to_physical()
    top = int(codes.max()) if table.height else 0
    dense = top < 4 * rows + 65_536
    if dense:
        # One gather per column straight from the code (a code -> position array gathered again cost
        # twice as much); codes beyond the table's are patients it does not list.
        known, clipped = code <= top, code.clip(upper_bound=top)
    else:
        mapping = dict(zip(codes.to_list(), range(table.height), strict=True))
        position = code.replace_strict(mapping, default=None, return_dtype=pl.Int64)

    def brought(column: str) -> pl.Expr:
        values = table.get_column(column)
        if values.null_count() == table.height:  # also an empty table: gathering from it is not defined
            return pl.lit(None, values.dtype)
        if dense:
            by_code = pl.repeat(None, top + 1, dtype=values.dtype, eager=True).scatter(codes, values)
            return pl.when(known).then(pl.lit(by_code).gather(clipped))
        return pl.lit(values).gather(position)

    return [brought(c).alias(c) for c in columns]
