"""Time the CAR-T kinetics NCA (kinetics_nca) and the expansion phase on a synthetic cohort.

Usage: python benchmarks/bench_kinetics.py [N_PATIENTS ...] [--seed S] [--repeat R]

Each patient has two assays (copies and CAR+ cells) sampled on 15 days from day 1 to day 365: a linear
rise to a peak on day 7, 10 or 14, an exponential decline with a 5-30 day half-life, log-normal noise,
and values under 5 written as '<5'. Prints, per cohort size, the best wall-clock and CPU time of R runs
of kinetics_nca and of expansion_phase (3 query times per patient, both views).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import polars as pl

from timing import best_of

from tocsin.config import KineticsConfig
from tocsin.core.events import normalise_events
from tocsin.core.kinetics import expansion_phase, kinetics_nca
from tocsin.vocabulary import load_vocabulary

DAYS = np.array([1, 3, 5, 7, 10, 14, 21, 28, 42, 60, 90, 120, 180, 270, 365], dtype=float)
ASSAYS = (("car_t_copies", "{copies}/ug", 1.0), ("car_t_cells", "/uL", 0.01))


def cohort(n: int, seed: int) -> pl.DataFrame:
    """Raw event rows (as the file readers give them) for ``n`` synthetic patients, built column-wise."""
    rng = np.random.default_rng(seed)
    peak = rng.choice([7.0, 10.0, 14.0], n)[:, None]
    cmax = 10 ** rng.uniform(2, 5, n)[:, None]
    half_life = rng.uniform(5, 30, n)[:, None]
    shape = np.where(DAYS < peak, DAYS / peak, np.exp(-(DAYS - peak) * np.log(2) / half_life))
    frames = [
        pl.DataFrame(
            {"patient_id": [f"P{p}" for p in range(n)], "day": "0", "item": "infusion", "value": "axi-cel"}
        ).with_columns(unit=pl.lit(""))
    ]
    for item, unit, scale in ASSAYS:
        levels = (cmax * shape * scale * rng.lognormal(0, 0.2, shape.shape)).ravel()
        frames.append(
            pl.DataFrame(
                {
                    "patient_id": np.repeat([f"P{p}" for p in range(n)], DAYS.size),
                    "day": np.tile(DAYS, n).astype(str),
                    "item": item,
                    "value": np.where(levels < 5, "<5", np.round(levels, 2).astype(str)),
                    "unit": unit,
                }
            )
        )
    raw = pl.concat(frames).sort("patient_id", maintain_order=True)
    return raw.with_columns(file=pl.lit("bench.csv"), line=pl.int_range(2, raw.height + 2))


def best(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    timing = best_of(run, repeat)
    return timing.wall, timing.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patients", nargs="*", type=int, default=[10_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = KineticsConfig()
    for n in args.patients:
        events = normalise_events(cohort(n, args.seed), load_vocabulary())
        assert events.ok, events.problems.head()
        levels = events.events.filter(pl.col("item").cast(pl.Utf8).str.starts_with("car_t")).height
        queries = pl.DataFrame({"patient_id": np.repeat([f"P{p}" for p in range(n)], 3), "t": [9.0, 12.0, 30.0] * n})
        timings = {
            "kinetics_nca": best(args.repeat, lambda: kinetics_nca(events.events, events.patients, config)),
            "expansion_phase": best(args.repeat, lambda: expansion_phase(events.events, queries, config)),
            "expansion_phase known_at_t": best(
                args.repeat, lambda: expansion_phase(events.events, queries, config, known_at_t=True)
            ),
        }
        print(f"{n:>7,} patients, {levels:,} level rows, {queries.height:,} phase queries:")
        for name, (wall, cpu) in timings.items():
            print(f"    {name:<28} best {wall:6.3f} s wall, {cpu:6.3f} s CPU")


if __name__ == "__main__":
    main()
