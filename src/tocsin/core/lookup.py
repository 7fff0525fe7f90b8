"""Bringing one-row-per-patient values to every row of a batch without joining millions of rows."""

from __future__ import annotations

import polars as pl


def per_patient(table: pl.DataFrame, *columns: str) -> list[pl.Expr]:
    """Columns of a one-row-per-patient table brought to every row by the patient's category code
    (a lookup, not a join of millions of rows)."""
    if table.height == 0:  # gathering from an empty column is not defined: every row gets null
        return [pl.lit(None, table.schema[c]).alias(c) for c in columns]
    code = pl.col("patient_id").to_physical()
    codes = table.get_column("patient_id").to_physical().to_list()
    position = code.replace_strict(
        dict(zip(codes, range(len(codes)), strict=True)), default=None, return_dtype=pl.Int64
    )
    return [pl.lit(table.get_column(c)).gather(position).alias(c) for c in columns]
