"""Benchmark: ingest alone (read a chunk, validate, convert, normalise), for a batch chunk and for one course.

    POLARS_MAX_THREADS=1 python benchmarks/bench_ingest.py --patients 1000 --repeats 5

* Chunk: ``_read_chunk`` + ``normalise_events`` on all patients of a synthetic cohort, read the way the
  batch adapter reads one chunk (a batch worker runs one Polars thread: set ``POLARS_MAX_THREADS=1``).
* One course: ``normalise_events`` on the first patient's rows in a warm process.

Medians of the CPU time of repeated runs (the machine is shared); the cohort file is cached under ``benchmarks/_data``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import polars as pl

from tocsin.adapters.batch import _Chunk, _read_chunk
from tocsin.core.events import IngestLimits, normalise_events
from tocsin.synth import generate_cohort
from tocsin.vocabulary import load_vocabulary

HERE = Path(__file__).resolve().parent


def cohort_file(patients: int, seed: int) -> Path:
    folder = HERE / "_data"
    folder.mkdir(exist_ok=True)
    path = folder / f"synth_{patients}_{seed}.parquet"
    if not path.exists():
        generate_cohort(patients, seed).events.write_parquet(path, row_group_size=250_000)
    return path


def median_seconds(run, repeats: int) -> float:
    """Median CPU time of ``run``: with one Polars thread it is the work done, and it varies less than wall
    time on a machine shared with other jobs."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--course-repeats", type=int, default=30)
    args = parser.parse_args()

    path = cohort_file(args.patients, args.seed)
    vocabulary = load_vocabulary()
    limits = IngestLimits()
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    chunk = _Chunk([], (0, rows))
    raw = _read_chunk(path, chunk)
    normalise_events(raw, vocabulary, limits)  # warm: unit table, vocabulary tables
    read = median_seconds(lambda: _read_chunk(path, chunk), args.repeats)
    ingest = median_seconds(lambda: normalise_events(raw, vocabulary, limits), args.repeats)

    first = raw.get_column("patient_id")[0]
    one = raw.filter(pl.col("patient_id") == first)
    normalise_events(one, vocabulary, limits)
    course = median_seconds(lambda: normalise_events(one, vocabulary, limits), args.course_repeats)
    print(
        f"| chunk read ({rows:,} events) | {read:.3f} s |\n"
        f"| chunk normalise | {ingest:.3f} s = {rows / ingest / 1e6:.2f} M events/s |\n"
        f"| one course ({one.height:,} events) normalise | {course * 1000:.1f} ms |"
    )


if __name__ == "__main__":
    main()
