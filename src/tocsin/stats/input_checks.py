"""Checks that the statistics modules share: a column exists, holds numbers, holds whole grades, holds flags.

Errors name the column, the first offending patient (or row) and the value, and say what would be accepted;
callers that know the file name prefix it. Every input error of :mod:`tocsin.stats` is a
:class:`StatsInputError` (the estimators' own classes, e.g. ``CoxInputError``, derive from it), so a caller
can catch one class.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

#: Offending rows named in a message; the rest are counted ("and 3 more").
SHOWN_ROWS = 5


class StatsInputError(ValueError):
    """The table cannot be analysed as asked; the message names the column, the patient or row, and the fix."""


def and_more(count: int) -> str:
    """`` and 3 more`` when ``count`` rows are at fault and only :data:`SHOWN_ROWS` are named."""
    return f" and {count - SHOWN_ROWS} more" if count > SHOWN_ROWS else ""


def rows_text(rows: Sequence[int], row_names: Sequence[str] | None = None) -> str:
    """``row(s) 3, 7`` (0-based positions) or, with ``row_names``, e.g. ``patient P3, P7``; at most five shown."""
    rows = list(rows)
    shown = ", ".join(row_names[r] if row_names is not None else str(r) for r in rows[:SHOWN_ROWS])
    return f"{shown}{and_more(len(rows))}" if row_names is not None else f"row(s) {shown}{and_more(len(rows))}"


def _where(table: pl.DataFrame, bad: pl.Series, id_column: str) -> str:
    index = int(bad.arg_true()[0])
    if id_column in table.columns:
        return f"patient {table.get_column(id_column)[index]!r} (row {index + 1})"
    return f"row {index + 1}"


def check_conf_level(level: float, name: str = "conf_level", error: type[StatsInputError] = StatsInputError) -> None:
    """A confidence level is strictly between 0 and 1 (0.95, not 95); ``name`` is the argument's name."""
    if not 0 < level < 1:
        raise error(f"{name} {level}: give a confidence level between 0 and 1 (exclusive), e.g. 0.95")


def require_columns(
    table: pl.DataFrame, columns: Sequence[str], error: type[StatsInputError] = StatsInputError
) -> None:
    """Every column must exist; the error (``error``, a :class:`StatsInputError`) lists the columns the table has."""
    missing = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if missing:
        raise error(
            f"no column(s) {', '.join(repr(c) for c in missing)}; the table has {', '.join(table.columns)}"
        )


def numeric_column(table: pl.DataFrame, column: str, id_column: str, what: str) -> pl.Series:
    """The column as Float64 (NaN read as missing); text that is not a number is refused with the first patient
    that holds it."""
    series = table.get_column(column)
    if series.dtype == pl.Boolean or series.dtype.is_numeric():
        return series.cast(pl.Float64).fill_nan(None)
    converted = series.cast(pl.Float64, strict=False)
    bad = converted.is_null() & series.is_not_null()
    if bad.any():
        value = series.filter(bad)[0]
        raise StatsInputError(
            f"column {column!r}: {_where(table, bad, id_column)} has {value!r}, which is not a number; "
            f"{what} (leave the cell empty if unknown)"
        )
    return converted


def grade_column(table: pl.DataFrame, column: str, id_column: str) -> pl.Series:
    """A toxicity grade column as Int64: whole numbers from 0 to 5, empty when unknown."""
    values = numeric_column(table, column, id_column, "a grade is a whole number from 0 to 5")
    bad = values.is_not_null() & ((values < 0) | (values > 5) | (values != values.round(0)))
    if bad.any():
        raise StatsInputError(
            f"column {column!r}: {_where(table, bad, id_column)} has grade {values.filter(bad)[0]:g}; "
            "a grade is a whole number from 0 to 5 (leave the cell empty if unknown)"
        )
    return values.cast(pl.Int64)


def flag_column(table: pl.DataFrame, column: str, id_column: str) -> pl.Series:
    """A yes/no column as Boolean: true/false or 1/0 (text 'true'/'false' accepted), empty when unknown."""
    series = table.get_column(column)
    if series.dtype == pl.Boolean:
        return series
    if series.dtype == pl.String:
        lowered = series.str.to_lowercase().str.strip_chars()
        mapped = lowered.replace_strict(
            {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False},
            default=None,
            return_dtype=pl.Boolean,
        )
        bad = mapped.is_null() & series.is_not_null()
    else:
        values = numeric_column(table, column, id_column, "use true/false or 1/0")
        mapped = values.cast(pl.Boolean)
        bad = values.is_not_null() & ~values.is_in([0.0, 1.0])
    if bad.any():
        raise StatsInputError(
            f"column {column!r}: {_where(table, bad, id_column)} has {series.filter(bad)[0]!r}; "
            "use true/false or 1/0 (leave the cell empty if unknown)"
        )
    return mapped
