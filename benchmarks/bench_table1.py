"""Time Table 1 (tocsin.stats.table1) on a synthetic one-row-per-patient table.

Usage: python benchmarks/bench_table1.py [N_PATIENTS ...] [--seed S] [--repeat R]

The table has the shape of `tocsin cohort derive` output: 4 products, 15 continuous columns (5 % missing)
summarised by median (Q1, Q3) and mean (SD), 10 four-level text columns and 5 grade columns (0–4, with a
rare grade 4 so that some defaults are Fisher's exact test). Prints, per cohort size, the best wall-clock
and CPU time of R runs and which tests the defaults chose.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import polars as pl

from tocsin.stats.table1 import Table1Options, table1


def patients(n: int, seed: int) -> pl.DataFrame:
    """``n`` synthetic patients, built column-wise."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {
        "patient_id": np.arange(n),
        "product": rng.choice(["axi-cel", "tisa-cel", "liso-cel", "cilta-cel"], n),
    }
    for i in range(15):
        values = rng.normal(50, 10, n)
        values[rng.random(n) < 0.05] = np.nan
        columns[f"lab_{i}"] = values
    for i in range(10):
        columns[f"category_{i}"] = rng.choice(["a", "b", "c", "d"], n)
    for i in range(5):
        columns[f"grade_{i}"] = rng.choice(5, n, p=[0.5, 0.3, 0.15, 0.049, 0.001])
    return pl.DataFrame(columns).with_columns(pl.col(f"lab_{i}").fill_nan(None) for i in range(15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    options = Table1Options(continuous_statistics=("median-iqr", "mean-sd"))
    for size in arguments.sizes:
        frame = patients(size, arguments.seed)
        wall, cpu = [], []
        for _ in range(arguments.repeat):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            result = table1(frame, "product", options=options)
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
        chosen = Counter(v.result.name if v.result else "not computed" for v in result.variables)
        print(
            f"{size:>8,} patients × {len(result.variables)} variables: best {min(wall):.2f} s wall, "
            f"{min(cpu):.2f} s CPU; " + ", ".join(f"{name} × {count}" for name, count in sorted(chosen.items()))
        )


if __name__ == "__main__":
    main()
