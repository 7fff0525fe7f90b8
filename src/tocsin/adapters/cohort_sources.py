"""Read the tables of a ``tocsin batch --cohort`` output directory for ``tocsin cohort derive``.

Each table is a folder of part files (``<out>/<table>/part-*.parquet``, see :mod:`tocsin.adapters.batch`);
the parts are read one by one with ``patient_id`` as text (each part has its own categorical codes) and
stacked. Hidden temporary parts of an interrupted run (``.part-*.tmp``) are never read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from tocsin.cohort.derive import REQUIRED_TABLES
from tocsin.cohort.sources import PID


class BatchDirectoryError(ValueError):
    """A batch directory lacks tables or parts; the message names the folder and the fix."""


def read_batch_tables(
    folders: Sequence[Path],
    on_table: Callable[[str], None] | None = None,
    names: Sequence[str] = REQUIRED_TABLES,
) -> dict[str, pl.DataFrame]:
    """The tables ``names`` (default: those :func:`tocsin.cohort.derive.derive_patients` reads), stacked over
    every folder given."""
    for folder in folders:
        absent = [name for name in names if not sorted((folder / name).glob("part-*.parquet"))]
        if absent:
            raise BatchDirectoryError(
                f"{folder}: not a `tocsin batch --cohort` output (no {', '.join(absent)}); "
                "re-run `tocsin batch EVENTS.parquet --out DIR --cohort`, or give the event files themselves"
            )
    tables = {}
    for name in names:
        parts = [p for folder in folders for p in sorted((folder / name).glob("part-*.parquet"))]
        try:
            frames = [pl.read_parquet(p).with_columns(pl.col(PID).cast(pl.Utf8)) for p in parts]
        except (pl.exceptions.ComputeError, OSError) as exc:
            raise BatchDirectoryError(f"{name}: a part cannot be read ({exc}); re-run `tocsin batch --cohort`") from exc
        tables[name] = pl.concat(frames, how="vertical_relaxed")
        if on_table is not None:
            on_table(name)
    return tables
