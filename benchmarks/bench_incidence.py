"""Time incidence, durations and logistic regression on a synthetic one-row-per-patient table.

Usage: python benchmarks/bench_incidence.py [N_PATIENTS ...] [--seed S] [--repeat R]

The table has the agreed cohort columns the commands read by default: crs_max_grade (5 % unknown),
icans_max_grade, icaht_early_grade, crs_duration_days / crs_ongoing, easix, age_years and product (4 levels).
Prints the best wall-clock and CPU time of R runs of: incidence of the three grade columns by product (Clopper-Pearson),
durations of CRS by grade and product, and logistic regression of grade >= 3 CRS on easix, age and product
with and without profile-likelihood intervals.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import polars as pl

from timing import best_of

from tocsin.stats.durations import duration_summary
from tocsin.stats.incidence import incidence
from tocsin.stats.logistic import logistic_regression


def cohort(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    easix = rng.lognormal(0.0, 0.8, n)
    age = rng.integers(20, 85, n)
    product = rng.choice(["axi-cel", "tisa-cel", "liso-cel", "brexu-cel"], n)
    severity = 0.5 + 0.6 * np.log(easix) + 0.01 * (age - 60) + np.where(product == "axi-cel", 0.5, 0.0)
    crs = np.clip(np.round(rng.normal(1.0 + severity, 1.0)), 0, 4)
    crs_known = pl.Series(crs).set(pl.Series(rng.random(n) < 0.05), None)
    duration = np.where(crs >= 1, rng.integers(1, 15, n), np.nan)
    ongoing = np.where(crs >= 1, rng.random(n) < 0.1, False)
    return pl.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "product": product,
        "age_years": age,
        "easix": easix,
        "crs_max_grade": crs_known,
        "icans_max_grade": rng.integers(0, 5, n),
        "icaht_early_grade": rng.integers(0, 5, n),
        "crs_duration_days": pl.Series(duration).fill_nan(None),
        "crs_ongoing": pl.Series(ongoing).set(pl.Series(crs < 1), None),
    })


def best(run: Callable[[], object], repeat: int) -> str:
    """Best wall-clock and CPU seconds of ``repeat`` runs, as 'wall (cpu)'."""
    timing = best_of(run, repeat)
    return f"{timing.wall:.3f} ({timing.cpu:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patients", nargs="*", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("seconds, best wall-clock (CPU)")
    print(f"{'patients':>9}  {'incidence':>15}  {'durations':>15}  {'logit Wald':>15}  {'logit +profile':>15}")
    for n in args.patients:
        table = cohort(n, args.seed)
        grades = ["crs_max_grade", "icans_max_grade", "icaht_early_grade"]
        timings = [
            best(lambda: incidence(table, grades, by="product"), args.repeat),  # noqa: B023
            best(lambda: duration_summary(table, "crs_duration_days", "crs_ongoing", grade="crs_max_grade",  # noqa: B023
                                          by="product"), args.repeat),
            best(lambda: logistic_regression(table, "crs_max_grade", ["easix", "age_years", "product"],  # noqa: B023
                                             threshold=3, profile=False), args.repeat),
            best(lambda: logistic_regression(table, "crs_max_grade", ["easix", "age_years", "product"],  # noqa: B023
                                             threshold=3), 1),
        ]
        print(f"{n:>9,}  " + "  ".join(f"{t:>15}" for t in timings))


if __name__ == "__main__":
    main()
