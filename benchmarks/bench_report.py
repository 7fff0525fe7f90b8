"""Time one patient's report: grading a batch of one, the course figure, and the HTML and PDF renderings.

Usage: python benchmarks/bench_report.py [--seed S] [--repeat R]

The course is the first patient of a deterministic synthetic cohort (``tocsin.synth``, 30 days, about
3,000 events). Prints the best wall-clock and CPU time of R runs per step.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from timing import best_of

from tocsin.adapters.patient_report import render_html, report_content, write_patient_report
from tocsin.adapters.plots.course_figure import course_figure
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import IngestLimits, normalise_events
from tocsin.synth import generate_cohort
from tocsin.vocabulary import load_vocabulary


def best(step: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    timing = best_of(step, repeat)
    return timing.wall, timing.cpu, timing.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = generate_cohort(1, seed=args.seed).events
    raw = events.with_columns(pl.lit("synthetic").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
    vocabulary = load_vocabulary()
    patient = str(raw["patient_id"][0])
    out = Path(tempfile.mkdtemp())

    def grade() -> tuple:
        normalised = normalise_events(raw, vocabulary, IngestLimits(earliest_day=-30))
        return normalised, grade_normalised(normalised, GradingConfig(), vocabulary)

    wall, cpu, (normalised, result) = best(grade, args.repeat)
    print(f"{raw.height:,} events, patient {patient}")
    print(f"{'grade (batch of one)':<28} wall {wall:6.2f} s  cpu {cpu:6.2f} s")
    content = report_content(result, normalised.events, patient)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("course figure", lambda: course_figure(content.course)),
        ("figure + HTML (SVG)", lambda: render_html(content, course_figure(content.course))),
        ("write HTML report", lambda: write_patient_report(result, normalised.events, patient, out / "r.html")),
        ("write PDF report", lambda: write_patient_report(result, normalised.events, patient, out / "r.pdf")),
    ]
    for name, step in steps:
        wall, cpu, _ = best(step, args.repeat)
        print(f"{name:<28} wall {wall:6.2f} s  cpu {cpu:6.2f} s")


if __name__ == "__main__":
    main()
