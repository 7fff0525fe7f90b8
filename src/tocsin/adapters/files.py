"""Read long-format event files (CSV, Parquet, JSON Lines) into one raw frame with file and line numbers.

Every value is read as text (CSV, JSON Lines) so that validation, not the reader, decides what a value
means and can name the row that is wrong. ``line`` is the 1-based line of the file for CSV (header = 1)
and JSON Lines, and the 1-based row number for Parquet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

REQUIRED = ("patient_id", "item", "value")
KNOWN = ("patient_id", "time", "day", "item", "value", "unit", "lln", "uln", "lloq", "route", "source", "note")


class InputFileError(ValueError):
    """The file itself cannot be read as events (missing columns, unknown format, unreadable)."""


def _with_position(df: pl.DataFrame, path: Path, first_line: int) -> pl.DataFrame:
    return df.with_columns(
        pl.lit(str(path)).cast(pl.Categorical).alias("file"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_line).alias("line"),
    )


def _check_columns(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    lowered = {c: c.strip().lower() for c in df.columns}
    df = df.rename(lowered)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputFileError(
            f"{path}: missing column(s) {', '.join(missing)}; an event file needs "
            f"patient_id, time or day, item, value (and unit)"
        )
    if "time" not in df.columns and "day" not in df.columns:
        raise InputFileError(f"{path}: needs a 'time' (ISO 8601) or 'day' (days since infusion) column")
    extra = [c for c in df.columns if c not in KNOWN]
    return df.drop(extra)


def read_event_file(path: Path) -> pl.DataFrame:
    """Read one event file; the format follows the extension (.csv, .parquet, .jsonl/.ndjson)."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            df = pl.read_csv(path, infer_schema=False, comment_prefix="#", truncate_ragged_lines=False)
            first_line = 2
        elif suffix in (".parquet", ".pq"):
            df = pl.read_parquet(path)
            first_line = 1
        elif suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(path, infer_schema_length=None)
            df = df.with_columns(pl.col(c).cast(pl.Utf8) for c in df.columns if c != "day")
            first_line = 1
        else:
            raise InputFileError(f"{path}: unknown format '{suffix}'; use .csv, .parquet or .jsonl")
    except InputFileError:
        raise
    except Exception as exc:  # the readers raise many exception types for malformed files
        raise InputFileError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})") from exc
    return _with_position(_check_columns(df, path), path, first_line)


def read_event_files(paths: Sequence[Path]) -> pl.DataFrame:
    """Read several files into one raw frame (columns missing in some files are null there)."""
    if not paths:
        raise InputFileError("no event files given")
    frames = [read_event_file(Path(p)) for p in paths]
    return pl.concat(frames, how="diagonal_relaxed")
