"""Read and write the one-row-per-patient analysis table (CSV or Parquet) that the cohort commands share.

A patient table is what ``tocsin cohort derive`` writes, or any table a researcher brings: one row per
patient, one column per variable. Reading checks what every analysis relies on and names the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from tocsin.adapters.atomic_write import write_atomically

ID_COLUMN = "patient_id"


class PatientTableError(ValueError):
    """The patient table cannot be used as it is; the message names the file, row or column and the fix."""


def read_patient_table(path: Path, required: Sequence[str] = ()) -> pl.DataFrame:
    """Read a patient table; ``required`` columns must exist (the error lists the columns that do).

    CSV columns are typed by Polars' inference over the whole file (``NA``, ``NaN`` and empty cells are
    missing), so a column with one stray word stays text and the analysis that needs a number says so.
    """
    if not path.exists():
        raise PatientTableError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            table = pl.read_csv(path, infer_schema_length=None, null_values=["", "NA", "NaN", "na", "nan"])
        elif suffix in (".parquet", ".pq"):
            table = pl.read_parquet(path)
        else:
            raise PatientTableError(f"{path}: unknown format '{suffix}'; use .csv or .parquet")
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as exc:
        raise PatientTableError(f"{path}: cannot be read as a table ({exc})") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise PatientTableError(
            f"{path}: no column(s) {', '.join(repr(c) for c in missing)}; "
            f"the table has {', '.join(table.columns)}"
        )
    if ID_COLUMN in table.columns:
        duplicated = table.filter(pl.col(ID_COLUMN).is_duplicated()).get_column(ID_COLUMN).unique().sort()
        if duplicated.len():
            shown = ", ".join(str(v) for v in duplicated.head(5).to_list())
            raise PatientTableError(
                f"{path}: patient_id {shown} appear(s) on more than one row; a patient table has one row "
                "per patient (aggregate the rows first)"
            )
    return table


def row_names(table: pl.DataFrame) -> list[str]:
    """How messages name each row: its patient_id when the table has one, else its 1-based row number."""
    if ID_COLUMN in table.columns:
        return [f"patient {v}" for v in table.get_column(ID_COLUMN).cast(pl.String).to_list()]
    return [f"row {k + 1}" for k in range(table.height)]


def write_patient_table(table: pl.DataFrame, path: Path) -> None:
    """Write atomically (a temporary file renamed into place), so a failed write leaves the old file intact."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise PatientTableError(f"{path}: unknown format '{suffix}'; use .csv or .parquet")
    write_atomically(path, table.write_csv if suffix == ".csv" else table.write_parquet)
