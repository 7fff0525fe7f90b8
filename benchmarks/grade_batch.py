"""Benchmark: grading synthetic 30-day courses end to end, against a scalar per-time-point baseline.

Targets (issue "Core"): 10,000 courses from Parquet at >= 2 million events/s with peak memory < 4 GB;
one course in-process in < 10 ms; >= 20x the scalar baseline, measured in the same run.

    python benchmarks/grade_batch.py --patients 10000 --baseline-patients 300 --rounds 3

* Tocsin batch: ``tocsin.adapters.batch.grade_parquet_to_directory`` (read, validate, convert, timeline,
  grade CRS and ICANS, episodes, summaries, write Parquet) in a fresh subprocess, so its wall time and
  peak resident memory are its own, set up as ``tocsin batch`` sets up its own process.
* Baseline: ``benchmarks/scalar_baseline.py`` — read the same Parquet, loop over rows in Python, convert
  units, call the scalar CRS and ICANS functions at every time point — on the first N patients.
* Single course: ``grade_events`` on one patient's rows in a warm process (median of repeated runs), and
  apart its ingest (``normalise_events``) and its grading (``grade_normalised``).

Results are printed as Markdown and written to ``benchmarks/results/grade_batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scalar_baseline import grade_rows  # noqa: E402

from tocsin.config import GradingConfig  # noqa: E402
from tocsin.core import engine  # noqa: E402
from tocsin.core.engine import grade_events, grade_normalised  # noqa: E402
from tocsin.core.events import IngestLimits, normalise_events  # noqa: E402
from tocsin.synth import generate_cohort  # noqa: E402
from tocsin.vocabulary import load_vocabulary  # noqa: E402

# The batch runs in the process ``tocsin batch --workers N`` runs in: the command sets its thread counts and Polars'
# allocator options before Polars' import (tocsin.cli_process), and so does this child. (Until the nineteenth session
# the child kept Polars' defaults: with two Polars threads in the process that grades chunks beside its workers, a
# run took ~12 % longer; docs/benchmarks.md.)
CHILD = """
import os, sys, time, json
from tocsin.adapters.worker_environment import calling_process_environment
os.environ.update(calling_process_environment(["batch", "--workers", sys.argv[4]], os.environ))
from pathlib import Path
from tocsin.adapters.batch import grade_parquet_to_directory
from tocsin.config import GradingConfig
start = time.perf_counter()
stats = grade_parquet_to_directory(Path(sys.argv[1]), Path(sys.argv[2]), GradingConfig(), int(sys.argv[3]),
                                   workers=int(sys.argv[4]))
print(json.dumps({"seconds": time.perf_counter() - start, "events": stats.events, "patients": stats.patients}))
"""


def cohort_file(patients: int, seed: int) -> tuple[Path, Path]:
    folder = HERE / "_data"
    folder.mkdir(exist_ok=True)
    events, labels = folder / f"synth_{patients}_{seed}.parquet", folder / f"synth_{patients}_{seed}_labels.parquet"
    if not events.exists():
        cohort = generate_cohort(patients, seed)
        cohort.events.write_parquet(events, row_group_size=250_000)
        cohort.labels.write_parquet(labels)
    return events, labels


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), in kB. The tree is walked through each
    thread's ``children`` file, so a sample reads a few files: reading every process's ``status`` took ~2 ms of the
    cores the batch runs on, every 50 ms (~2 % of the run)."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
            for thread in Path(f"/proc/{pid}/task").iterdir():
                stack.extend(int(child) for child in (thread / "children").read_text().split())
        except (OSError, ValueError):  # the process (or thread) ended meanwhile
            continue
    return total


def run_tocsin_batch(events: Path, chunk: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(events), out, str(chunk), str(workers)], stdout=subprocess.PIPE, text=True
        )
        peak_kb = 0
        while child.poll() is None:  # sample the whole process tree: workers are separate processes
            peak_kb = max(peak_kb, _tree_rss_kb(child.pid))
            time.sleep(0.05)
        stdout = child.stdout.read() if child.stdout else ""
        if child.returncode != 0:
            raise RuntimeError(f"batch grading failed with exit code {child.returncode}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_rss_mb"] = peak_kb / 1024
    figures["workers"] = workers
    figures["events_per_second"] = figures["events"] / figures["seconds"]
    return figures


def run_baseline(events: Path, patients: int) -> dict:
    """The baseline on the file's first ``patients`` patients, reading only their rows (until the sixth session it
    read the whole 10,000-patient file first: ~1.8 s of its ~4.7 s, which made it look slower than it is)."""
    start = time.perf_counter()
    ids = pl.scan_parquet(events).select(pl.col("patient_id").unique(maintain_order=True).head(patients)).collect()
    frame = (
        pl.scan_parquet(events)
        .filter(pl.col("patient_id").is_in(ids.to_series().implode()))
        .select("patient_id", "day", "item", "value", "unit")
        .collect()
    )
    graded = grade_rows(frame.iter_rows())
    seconds = time.perf_counter() - start
    n_events = frame.height
    return {
        "seconds": seconds,
        "events": n_events,
        "patients": len(graded),
        "events_per_second": n_events / seconds,
        "graded": graded,
    }


def _median_round(rounds: list[dict]) -> dict:
    """The round of median duration (of an odd number; the faster middle one of an even number), with the
    highest peak memory of all rounds: memory is a limit, so its worst round is the one reported."""
    ordered = sorted(rounds, key=lambda r: r["seconds"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    if "peak_rss_mb" in median:
        median["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    return median


def _timed(work: Callable[[], object], repeats: int) -> dict:
    work()  # warm: imports, vocabulary, criteria, unit table, compiled kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}


def run_single_course(events: Path, repeats: int) -> dict:
    """``grade_events`` on one course, and its two halves apart: ingest (``normalise_events``) and grading
    (``grade_normalised`` on the already normalised course), each timed on its own."""
    # Only this course's rows are read (until the eighteenth session the whole 28-million-row file was, and held
    # while the course was timed: 4.5-5.7 ms in a process of its own, ~10 ms beside it).
    first = pl.scan_parquet(events).select(pl.col("patient_id").first()).collect().item()
    one = (
        pl.scan_parquet(events)
        .filter(pl.col("patient_id") == first)
        .collect()
        .with_columns(pl.lit("course").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
    )
    config, vocabulary = GradingConfig(), load_vocabulary()
    limits = IngestLimits(earliest_day=config.earliest_day)
    normalised = normalise_events(one, vocabulary, limits)
    events, patients = normalised.events.select(engine.GRADED_COLUMNS), normalised.patients
    parts: dict[str, Callable[[], object]] = {
        "ingest": lambda: normalise_events(one, vocabulary, limits),
        "grading": lambda: grade_normalised(normalised, config, vocabulary),
        "crs": lambda: engine.grade_crs(events, patients, config, vocabulary),
        "icans": lambda: engine.grade_icans(events, patients, config),
        "hematology": lambda: engine.grade_hematology(events, patients, config),
        "scores": lambda: engine.score_patients(events, patients, config, vocabulary),
        "kinetics": lambda: engine.kinetics_nca(events, patients, config.kinetics),
    }
    figures = {"events": one.height, **_timed(lambda: grade_events(one, config, limits, vocabulary), repeats)}
    for name, work in parts.items():
        timed = _timed(work, repeats)
        figures |= {f"{name}_median_ms": timed["median_ms"], f"{name}_min_ms": timed["min_ms"]}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--baseline-patients", type=int, default=300)
    parser.add_argument("--chunk-patients", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of the batch and the baseline")
    args = parser.parse_args()

    events, labels = cohort_file(args.patients, args.seed)
    # The VM's speed drifts by tens of percent within minutes: the batch and the baseline are run in alternation,
    # ``--rounds`` times each, and each is reported by its median round (the ratio from the two medians).
    batches, baselines = [], []
    for _ in range(args.rounds):
        batches.append(run_tocsin_batch(events, args.chunk_patients, args.workers))
        baselines.append(run_baseline(events, args.baseline_patients))
    batch, baseline = _median_round(batches), _median_round(baselines)
    single = run_single_course(events, args.repeats)
    truth = pl.read_parquet(labels)
    graded = baseline.pop("graded")
    for other in baselines:
        other.pop("graded", None)

    def agreement(position: int, label: str) -> float:
        """Share of the baseline's patients whose result at ``position`` equals the synthetic label."""
        rows = [r for r in truth.iter_rows(named=True) if r["patient_id"] in graded]
        return sum(graded[r["patient_id"]][position] == r[label] for r in rows) / max(len(rows), 1)

    agree = agreement(0, "crs_max_grade")
    agree_icaht = agreement(2, "icaht_early_grade")
    result = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}, cores={len(os.sched_getaffinity(0))}",
        "patients": args.patients,
        "tocsin_batch": batch,
        "baseline": baseline,
        "baseline_crs_agreement": agree,
        "baseline_icaht_agreement": agree_icaht,
        "single_course": single,
        "ratio_vs_baseline": batch["events_per_second"] / baseline["events_per_second"],
        "rounds": {
            "tocsin_batch_seconds": [round(b["seconds"], 3) for b in batches],
            "tocsin_batch_peak_rss_mb": [round(b["peak_rss_mb"]) for b in batches],
            "baseline_seconds": [round(b["seconds"], 3) for b in baselines],
            "ratio_of_each_round": [
                round(b["events_per_second"] / r["events_per_second"], 2) for b, r in zip(batches, baselines)
            ],
        },
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "grade_batch.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| measure | value | target |\n|---|---|---|\n"
        f"| Tocsin batch, {batch['patients']:,} courses, {batch['events']:,} events, {batch['workers']} worker(s) | "
        f"{batch['seconds']:.1f} s = {batch['events_per_second'] / 1e6:.2f} M events/s | >= 2 M events/s |\n"
        f"| Tocsin batch peak memory (whole process tree) | {batch['peak_rss_mb']:.0f} MB | < 4096 MB |\n"
        f"| Scalar baseline, {baseline['patients']} courses, {baseline['events']:,} events | "
        f"{baseline['events_per_second'] / 1e6:.3f} M events/s (CRS max grade = label in {agree:.0%}, "
        f"early ICAHT in {agree_icaht:.0%}) | — |\n"
        f"| Ratio Tocsin / baseline (median rounds) | {result['ratio_vs_baseline']:.1f}x | >= 20x |\n"
        f"| — each round: batch s, baseline s, ratio | "
        + "; ".join(
            f"{b:.1f} s, {r:.1f} s, {q:.1f}x"
            for b, r, q in zip(
                result["rounds"]["tocsin_batch_seconds"], result["rounds"]["baseline_seconds"],
                result["rounds"]["ratio_of_each_round"], strict=True,
            )
        )
        + " | |\n"
        f"| One course ({single['events']:,} events) in-process | median {single['median_ms']:.1f} ms "
        f"(min {single['min_ms']:.1f}) | < 10 ms |\n"
        f"| — of which ingest (`normalise_events`) | median {single['ingest_median_ms']:.1f} ms "
        f"(min {single['ingest_min_ms']:.1f}) | |\n"
        f"| — of which grading (`grade_normalised`) | median {single['grading_median_ms']:.1f} ms "
        f"(min {single['grading_min_ms']:.1f}) | |\n"
        + "\n".join(
            f"| — grading module `{m}` alone | median {single[f'{m}_median_ms']:.2f} ms "
            f"(min {single[f'{m}_min_ms']:.2f}) | |"
            for m in ("crs", "icans", "hematology", "scores", "kinetics")
        )
    )


if __name__ == "__main__":
    main()
