"""Time ``tocsin cohort derive`` from a ``tocsin batch --cohort`` directory at registry scale.

Usage: python benchmarks/bench_cohort_derive.py [--graded N] [--copies K] [--seed S]

Grades N synthetic patients once (``tocsin.synth``), then writes their cohort tables K times under new
patient ids as a batch directory of N-patient parts (what ``tocsin batch --cohort`` writes), so N x K
patients derive without grading N x K courses first. Prints the wall-clock and CPU time of reading the
parts, of the derivation and of the atomic Parquet write.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from tocsin.adapters.cohort_sources import read_batch_tables
from tocsin.adapters.patient_table import write_patient_table
from tocsin.cohort.derive import REQUIRED_TABLES, derive_patients
from tocsin.cohort.sources import cohort_tables
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import normalise_events
from tocsin.synth import generate_cohort
from tocsin.vocabulary import load_vocabulary


def graded_tables(n: int, seed: int) -> dict[str, pl.DataFrame]:
    events = generate_cohort(n, seed).events
    raw = events.with_columns(pl.lit("synthetic").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
    vocabulary = load_vocabulary()
    normalised = normalise_events(raw, vocabulary)
    tables = cohort_tables(normalised, grade_normalised(normalised, GradingConfig(), vocabulary), vocabulary)
    return {name: tables[name] for name in REQUIRED_TABLES}


def write_copies(tables: dict[str, pl.DataFrame], copies: int, folder: Path) -> None:
    for copy in range(copies):
        for name, table in tables.items():
            renamed = table.with_columns(pl.col("patient_id").cast(pl.Utf8) + f"-{copy:04d}")
            (folder / name).mkdir(parents=True, exist_ok=True)
            renamed.write_parquet(folder / name / f"part-{copy:05d}.parquet")


def timed(label: str, work):
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    print(f"{label:<28} {time.perf_counter() - wall:7.2f} s wall {time.process_time() - cpu:7.2f} s CPU")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graded", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tables = timed(f"grade {args.graded:,} (once)", lambda: graded_tables(args.graded, args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "graded"
        write_copies(tables, args.copies, folder)
        read = timed(f"read {args.copies} parts x {len(tables)}", lambda: read_batch_tables([folder]))
        derived = timed(f"derive {args.graded * args.copies:,} patients", lambda: derive_patients(read))
        timed("write patients.parquet", lambda: write_patient_table(derived.table, Path(tmp) / "patients.parquet"))
        print(f"{derived.table.height:,} rows x {derived.table.width} columns")


if __name__ == "__main__":
    main()
