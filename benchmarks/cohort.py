"""Benchmark: cohort analytics at registry scale (derive, Table 1, Kaplan–Meier, log-rank) against pandas + lifelines.

Target (issue 5, item 7): derive + Table 1 + KM + log-rank for 100,000 synthetic patients "in seconds" on this
machine, with the ratio against the same analysis written with plain pandas + scipy + lifelines.

    python benchmarks/cohort.py --graded 1000 --copies 100 --seed 1 --repeat 5

Input (set up once, not timed): ``--graded`` synthetic patients (``tocsin.synth``, with follow-up, progression
and death) are graded once and their cohort tables are written ``--copies`` times under new patient ids as a
``tocsin batch --cohort`` directory (one part per copy, as ``benchmarks/bench_cohort_derive.py``). The graded
tables are cached in ``benchmarks/_data``. Copies repeat each course's times, so the 100,000 patients have
about as many distinct OS times as a registry that records whole days.

Each repetition runs both paths, each in a fresh subprocess, one after the other (the order alternates), and
times each stage (wall and CPU of the process, all threads) and samples its resident memory every 10 ms:

* **Tocsin**: ``read_batch_tables`` (every part of the 12 tables) → ``derive_patients`` (all 71 columns) →
  ``table1`` by product over the :data:`CONTINUOUS` and :data:`CATEGORICAL` variables with the default tests
  → ``survival_inputs`` + ``kaplan_meier`` (log-log CIs, medians with CIs, survival at 1 year) of OS and PFS
  by product → ``logrank_test`` of OS and PFS.
* **Baseline**: ``pandas.read_parquet`` of each table's folder (only the columns it uses) → pandas
  merges/group-bys for the columns Table 1 and the KM use (:data:`SHARED_COLUMNS`) → per variable
  ``groupby().describe()`` / ``crosstab`` + ``scipy.stats`` (``kruskal``/``mannwhitneyu``,
  ``chi2_contingency``/``fisher_exact`` by the same default rule) with formatted cells → lifelines
  ``KaplanMeierFitter`` per group (median, ``median_survival_times`` of the CI, survival at 1 year) →
  ``multivariate_logrank_test``.

After the runs the numbers both paths produce are compared (the derived columns patient by patient, n per
group, Table 1 statistics and P values, KM medians and CIs, survival at 1 year, log-rank statistics) and the
agreement is printed: the ratio is of the same work. Figures: medians over the repetitions; the ratio is
baseline / Tocsin of the median analysis totals (imports excluded; they are reported). Results go to
``benchmarks/results/cohort.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
RESULTS = HERE / "results" / "cohort.json"

GROUP = "product"
CONTINUOUS = (
    "age_years",
    "weight_kg",
    "baseline_anc",
    "baseline_plt",
    "baseline_hgb",
    "baseline_crp",
    "baseline_ferritin",
    "baseline_ldh",
    "baseline_creatinine",
    "easix",
    "crs_onset_day",
    "crs_duration_days",
    "icans_duration_days",
    "tocilizumab_total_mg",
    "steroid_mp_equivalent_mg",
    "g_csf_days",
    "anc_recovery_day",
    "cmax",
    "auc_0_28",
)
CATEGORICAL = (
    "sex",
    "disease",
    "car_hematotox_risk",
    "crs_max_grade",
    "icans_max_grade",
    "tocilizumab_doses",
    "icaht_early_grade",
    "pht_day28",
    "response_day28",
)
VARIABLES = (*CONTINUOUS, *CATEGORICAL)
ENDPOINTS = {"OS": ("os_days", "os_event"), "PFS": ("pfs_days", "pfs_event")}
LANDMARK_DAYS = 365.25
SHARED_COLUMNS = (
    GROUP,
    *VARIABLES,
    "death_day",
    "progression_day",
    "last_follow_up_day",
    *(column for pair in ENDPOINTS.values() for column in pair),
)
STAGES = ("import", "read", "derive", "table1", "km", "logrank")
ANALYSIS = STAGES[1:]


# --------------------------------------------------------------------------------------------------------------
# measurement inside a child process


class Stages:
    """Wall and CPU time and sampled peak resident memory of each stage of one process."""

    def __init__(self, interval: float = 0.01) -> None:
        self.figures: dict[str, dict[str, float]] = {}
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._peak = max(self._peak, self._rss())

    @contextlib.contextmanager
    def stage(self, name: str):
        self._peak = self._rss()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self._peak = max(self._peak, self._rss())
        self.figures[name] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": self._peak / 2**20}

    def close(self) -> dict:
        self._stop.set()
        self._thread.join()
        # VmHWM: the kernel's high-water mark of this process (ru_maxrss would include the parent's, kept by fork)
        with open("/proc/self/status") as status:
            hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        return {"stages": self.figures, "max_rss_mb": hwm / 1024}


def _number(value) -> float | None:
    """JSON-safe float: None for missing, not reached (inf) or NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


# --------------------------------------------------------------------------------------------------------------
# the Tocsin path


def run_tocsin(folder: Path, stages: Stages, dump: Path | None) -> dict:
    with stages.stage("import"):
        from tocsin.adapters.cohort_sources import read_batch_tables
        from tocsin.cohort.derive import derive_patients
        from tocsin.stats.survival.inputs import survival_inputs
        from tocsin.stats.survival.kaplan_meier import kaplan_meier
        from tocsin.stats.survival.logrank import logrank_test
        from tocsin.stats.table1 import table1
    with stages.stage("read"):
        tables = read_batch_tables([folder])
    with stages.stage("derive"):
        patients = derive_patients(tables).table
    del tables
    with stages.stage("table1"):
        comparison = table1(patients, GROUP, VARIABLES)
    with stages.stage("km"):
        inputs, curves = {}, {}
        for endpoint, (time_column, event_column) in ENDPOINTS.items():
            inputs[endpoint] = survival_inputs(patients, time_column, event_column, group=GROUP)
            fit = kaplan_meier(inputs[endpoint].time, inputs[endpoint].event, inputs[endpoint].group)
            curves[endpoint] = (fit, fit.survival_at([LANDMARK_DAYS]))
    with stages.stage("logrank"):
        tests = {e: logrank_test(i.time, i.event, i.group) for e, i in inputs.items()}

    if dump is not None:
        patients.select("patient_id", *SHARED_COLUMNS).write_parquet(dump)
    shared = {"groups": {g.label: g.n for g in comparison.groups}, "table1": {}, "km": {}, "logrank": {}}
    for variable in comparison.variables:
        result = variable.result
        entry = {
            "test": result.test if result else None,
            "statistic": _number(result.statistic) if result else None,
            "df": _number(result.df) if result else None,
            "p": _number(result.p) if result else None,
            "missing": {k: v for k, v in variable.missing.items() if k in shared["groups"]},
            "choice": variable.test_choice,
            "note": variable.note,
        }
        stats = variable.statistics.filter(variable.statistics["group"].is_in(list(shared["groups"])))
        if variable.kind == "continuous":
            entry["median"] = {row["group"]: _number(row["median"]) for row in stats.iter_rows(named=True)}
        else:
            entry["counts"] = {f"{row['group']}|{row['level']}": row["n"] for row in stats.iter_rows(named=True)}
        shared["table1"][variable.variable] = entry
    for endpoint, (fit, at) in curves.items():
        shared["km"][endpoint] = {
            row["group"]: {
                "n": row["n"],
                "events": row["events"],
                "median": _number(row["median"]),
                "median_lower": _number(row["median_lower"]),
                "median_upper": _number(row["median_upper"]),
            }
            for row in fit.groups.iter_rows(named=True)
        }
        for row in at.iter_rows(named=True):
            shared["km"][endpoint][row["group"]].update(
                landmark=_number(row["survival"]),
                landmark_lower=_number(row["lower"]),
                landmark_upper=_number(row["upper"]),
            )
    for endpoint, test in tests.items():
        shared["logrank"][endpoint] = {"statistic": test.statistic, "df": test.df, "p": _number(test.p_value)}
    shared["patients"] = patients.height
    shared["columns"] = patients.width
    return shared


# --------------------------------------------------------------------------------------------------------------
# the baseline: what an analyst writes with pandas + scipy + lifelines

BASELINE_COLUMNS = {
    "cohort_patients": ["patient_id", "product", "age_years", "sex", "disease", "weight", "last_event_day"],
    "cohort_events": ["patient_id", "t", "item", "num", "cat", "route"],
    "car_hematotox": [
        "patient_id",
        "category",
        *(f"{lab}_{part}" for lab in ("anc", "plt", "hgb", "crp", "ferritin") for part in ("value", "unit")),
    ],
    "easix": ["patient_id", "easix", "ldh_value", "ldh_unit", "creatinine_value", "creatinine_unit"],
    "crs_astct2019_summary": ["patient_id", "max_grade", "onset_day"],
    "crs_astct2019_episodes": ["patient_id", "duration_days"],
    "icans_summary": ["patient_id", "max_grade"],
    "icans_episodes": ["patient_id", "duration_days"],
    "icaht": ["patient_id", "early_grade"],
    "pht": [
        "patient_id",
        "pht",
        "g_csf_days",
        "recovery_definition",
        "anc_recovery_day_threshold",
        "anc_recovery_day_grade_le_2",
        "anc_recovery_day_normal",
    ],
    "kinetics": ["patient_id", "item", "cmax", "auc_0_28"],
}
# the patient table's units (scores report CRP in mg/dL, the paper tables in mg/L)
TO_TABLE_UNIT = {
    "anc": {"10*9/L": 1.0},
    "plt": {"10*9/L": 1.0},
    "hgb": {"g/dL": 1.0},
    "crp": {"mg/dL": 10.0, "mg/L": 1.0},
    "ferritin": {"ng/mL": 1.0},
    "ldh": {"U/L": 1.0},
    "creatinine": {"mg/dL": 1.0},
}
# methylprednisolone-equivalent mg per mg (MP 4 = dexamethasone 0.75 = prednisone 5 = hydrocortisone 20 mg)
MP_FACTORS = {
    "hydrocortisone": 4 / 20,
    "cortisone": 4 / 25,
    "prednisone": 4 / 5,
    "prednisolone": 4 / 5,
    "methylprednisolone": 1.0,
    "dexamethasone": 4 / 0.75,
}
NOT_SYSTEMIC = ("intrathecal", "topical", "inhaled")
KINETICS_ASSAYS = ("car_t_copies", "car_t_cells", "car_t_percent")


def baseline_derive(tables: dict, pd, np):
    pid = "patient_id"
    patients = tables["cohort_patients"].rename(columns={"weight": "weight_kg", "last_event_day": "last_follow_up_day"})

    def labs(frame, names):
        out = frame[[pid]].copy()
        for lab in names:
            factor = frame[f"{lab}_unit"].map(TO_TABLE_UNIT[lab])
            out[f"baseline_{lab}"] = (frame[f"{lab}_value"] * factor).round(10)
        return out

    hematotox = labs(tables["car_hematotox"], ("anc", "plt", "hgb", "crp", "ferritin"))
    hematotox["car_hematotox_risk"] = tables["car_hematotox"]["category"]
    easix = labs(tables["easix"], ("ldh", "creatinine"))
    easix["easix"] = tables["easix"]["easix"]

    crs = tables["crs_astct2019_summary"].rename(columns={"max_grade": "crs_max_grade", "onset_day": "crs_onset_day"})
    crs_duration = tables["crs_astct2019_episodes"].groupby(pid)["duration_days"].sum().rename("crs_duration_days")
    icans = tables["icans_summary"].rename(columns={"max_grade": "icans_max_grade"})
    icans_duration = tables["icans_episodes"].groupby(pid)["duration_days"].sum().rename("icans_duration_days")

    events = tables["cohort_events"]
    after = events[events["t"] >= 0]
    tocilizumab = (
        after[after["item"] == "tocilizumab"]
        .groupby(pid)
        .agg(tocilizumab_doses=("t", "size"), mg=("num", "sum"), with_mg=("num", "count"))
    )
    tocilizumab["tocilizumab_total_mg"] = tocilizumab["mg"].where(
        tocilizumab["with_mg"] == tocilizumab["tocilizumab_doses"]
    )
    steroid = after[after["item"].isin(list(MP_FACTORS)) & ~after["route"].isin(NOT_SYSTEMIC)]
    steroid = (
        steroid.assign(mp=steroid["num"] * steroid["item"].map(MP_FACTORS))
        .groupby(pid)
        .agg(doses=("t", "size"), mp=("mp", "sum"), with_mg=("num", "count"))
    )
    steroid_mp = steroid["mp"].where(steroid["with_mg"] == steroid["doses"]).rename("steroid_mp_equivalent_mg")

    icaht = tables["icaht"].rename(columns={"early_grade": "icaht_early_grade"})
    pht = tables["pht"]
    pht = pd.DataFrame(
        {
            pid: pht[pid],
            "pht_day28": pht["pht"],
            "g_csf_days": pht["g_csf_days"],
            "anc_recovery_day": np.select(
                [pht["recovery_definition"] == d for d in ("threshold", "grade_le_2", "normal")],
                [pht[f"anc_recovery_day_{d}"] for d in ("threshold", "grade_le_2", "normal")],
                np.nan,
            ),
        }
    )
    kinetics = tables["kinetics"]
    kinetics = (
        kinetics[kinetics["item"].isin(KINETICS_ASSAYS)]
        .assign(rank=lambda k: k["item"].map({a: i for i, a in enumerate(KINETICS_ASSAYS)}))
        .sort_values([pid, "rank"])
        .drop_duplicates(pid)[[pid, "cmax", "auc_0_28"]]
    )

    response = events[events["item"] == "response"].assign(distance=lambda r: (r["t"] - 28.0).abs())
    response = (
        response[response["distance"] <= 7.0]
        .sort_values([pid, "distance", "t"])
        .drop_duplicates(pid)
        .set_index(pid)["cat"]
        .rename("response_day28")
    )
    death = (
        events[events["item"] == "death"]
        .sort_values([pid, "t"])
        .drop_duplicates(pid)
        .set_index(pid)["t"]
        .rename("death_day")
    )
    progressed = (events["t"] > 0) & (
        (events["item"] == "progression") | ((events["item"] == "response") & (events["cat"] == "PD"))
    )
    progression = events[progressed].groupby(pid)["t"].min().rename("progression_day")

    parts = [
        hematotox,
        easix,
        crs[[pid, "crs_max_grade", "crs_onset_day"]],
        crs_duration,
        icans[[pid, "icans_max_grade"]],
        icans_duration,
        tocilizumab[["tocilizumab_doses", "tocilizumab_total_mg"]],
        steroid_mp,
        icaht[[pid, "icaht_early_grade"]],
        pht,
        kinetics,
        response,
        death,
        progression,
    ]
    # one join of every part on the patient index (much faster than a chain of merges on the id column)
    indexed = [part.to_frame() if isinstance(part, pd.Series) else part for part in parts]
    indexed = [part.set_index(pid) if pid in part.columns else part for part in indexed]
    table = patients.set_index(pid).join(indexed, how="left").reset_index()
    table["tocilizumab_doses"] = table["tocilizumab_doses"].fillna(0).astype("int64")
    table["tocilizumab_total_mg"] = table["tocilizumab_total_mg"].where(table["tocilizumab_doses"] > 0, 0.0)
    table["steroid_mp_equivalent_mg"] = table["steroid_mp_equivalent_mg"].fillna(0.0)
    died, progressed = table["death_day"].notna(), table["progression_day"].notna()
    followed = table["last_follow_up_day"].notna()
    table["os_days"] = table["death_day"].where(died, table["last_follow_up_day"])
    table["os_event"] = np.where(died, 1.0, np.where(followed, 0.0, np.nan))
    table["pfs_days"] = (
        table[["progression_day", "death_day"]].min(axis=1).where(died | progressed, table["last_follow_up_day"])
    )
    table["pfs_event"] = np.where(died | progressed, 1.0, np.where(followed, 0.0, np.nan))
    return table.sort_values(pid, ignore_index=True)


def baseline_table1(table, stats, np, pd) -> dict:
    groups = sorted(table[GROUP].dropna().unique())
    data = table[table[GROUP].notna()]
    by = data.groupby(GROUP)
    display, results = [], {}
    for variable in CONTINUOUS:
        summary = by[variable].describe()
        overall = data[variable].describe()
        missing = data[variable].isna().groupby(data[GROUP]).sum()
        cells = {
            g: f"{summary.at[g, '50%']:.1f} ({summary.at[g, '25%']:.1f}, {summary.at[g, '75%']:.1f})" for g in groups
        }
        cells["Overall"] = f"{overall['50%']:.1f} ({overall['25%']:.1f}, {overall['75%']:.1f})"
        samples = [s.dropna().to_numpy() for _, s in by[variable]]
        if len(samples) == 2:
            test = stats.mannwhitneyu(*samples, alternative="two-sided", use_continuity=True, method="asymptotic")
            name, df = "wilcoxon", None
        else:
            test = stats.kruskal(*samples)
            name, df = "kruskal", len(samples) - 1
        display.append((variable, "Median (Q1, Q3)", cells, f"{test.pvalue:.3g}"))
        if missing.any():
            display.append((variable, "Missing", {g: str(missing[g]) for g in groups}, ""))
        results[variable] = {
            "test": name,
            "statistic": float(test.statistic),
            "df": df,
            "p": float(test.pvalue),
            "median": {g: _number(summary.at[g, "50%"]) for g in groups},
            "missing": {g: int(missing[g]) for g in groups},
        }
    for variable in CATEGORICAL:
        counts = pd.crosstab(data[variable], data[GROUP])
        percent = counts / counts.sum() * 100
        overall = data[variable].value_counts()
        missing = data[variable].isna().groupby(data[GROUP]).sum()
        for level in counts.index:
            cells = {g: f"{counts.at[level, g]} ({percent.at[level, g]:.1f}%)" for g in counts.columns}
            cells["Overall"] = f"{overall[level]} ({100 * overall[level] / overall.sum():.1f}%)"
            display.append((variable, str(level), cells, ""))
        tested = counts.loc[counts.sum(axis=1) > 0, counts.sum(axis=0) > 0]
        name = statistic = df = p = None
        if tested.shape[0] >= 2 and tested.shape[1] >= 2:
            statistic, p, df, expected = stats.chi2_contingency(tested, correction=False)
            name = "chisq"
            if expected.min() < 5:  # the usual rule: small expected counts → Fisher's exact test
                if tested.shape == (2, 2):
                    statistic, p = stats.fisher_exact(tested)
                    name, statistic, df = "fisher", None, None
                else:  # scipy has no exact r×c test: the analyst has no P here
                    name = statistic = df = p = None
        results[variable] = {
            "test": name,
            "statistic": _number(statistic),
            "df": _number(df),
            "p": _number(p),
            "counts": {f"{g}|{level}": int(counts.at[level, g]) for g in counts.columns for level in counts.index},
            "missing": {g: int(missing[g]) for g in groups},
        }
    return {"groups": {g: int(n) for g, n in data[GROUP].value_counts().items()}, "table1": results, "rows": display}


def _r_median(curve, median: float) -> float | None:
    """The median by R's rule (``quantile.survfit``): where the curve is exactly 0.5 over an interval, the
    midpoint of that interval. lifelines reports the interval's start; used only to explain a difference."""
    if not math.isfinite(median) or abs(curve.loc[median] - 0.5) > 1e-8:
        return _number(median)
    later = curve[(curve.index > median) & (curve < 0.5 - 1e-8)]
    return (median + float(later.index[0] if len(later) else curve.index[-1])) / 2


def run_baseline(folder: Path, stages: Stages, dump: Path | None) -> dict:
    with stages.stage("import"):
        import numpy as np
        import pandas as pd
        from lifelines import KaplanMeierFitter
        from lifelines.statistics import multivariate_logrank_test
        from lifelines.utils import median_survival_times
        from scipy import stats
    with stages.stage("read"):
        tables = {name: pd.read_parquet(folder / name, columns=columns) for name, columns in BASELINE_COLUMNS.items()}
    with stages.stage("derive"):
        table = baseline_derive(tables, pd, np)
    del tables
    with stages.stage("table1"):
        shared = baseline_table1(table, stats, np, pd)
    with stages.stage("km"):
        shared["km"] = {}
        for endpoint, (time_column, event_column) in ENDPOINTS.items():
            per_group = {}
            for group, rows in table.groupby(GROUP):
                fitter = KaplanMeierFitter().fit(rows[time_column], rows[event_column], label=group)
                interval = median_survival_times(fitter.confidence_interval_)
                band = fitter.confidence_interval_.loc[:LANDMARK_DAYS].iloc[-1]
                curve = fitter.survival_function_.iloc[:, 0]
                per_group[group] = {
                    "n": int(len(rows)),
                    "events": int(rows[event_column].sum()),
                    "median": _number(fitter.median_survival_time_),
                    "median_lower": _number(interval.iloc[0, 0]),
                    "median_upper": _number(interval.iloc[0, 1]),
                    "landmark": _number(fitter.survival_function_at_times(LANDMARK_DAYS).iloc[0]),
                    "landmark_lower": _number(band.iloc[0]),
                    "landmark_upper": _number(band.iloc[1]),
                    "median_r_rule": _r_median(curve, fitter.median_survival_time_),
                }
            shared["km"][endpoint] = per_group
    with stages.stage("logrank"):
        shared["logrank"] = {}
        for endpoint, (time_column, event_column) in ENDPOINTS.items():
            test = multivariate_logrank_test(table[time_column], table[GROUP], table[event_column])
            shared["logrank"][endpoint] = {
                "statistic": float(test.test_statistic),
                "df": int(test.degrees_of_freedom),
                "p": _number(test.p_value),
            }
    if dump is not None:
        table[["patient_id", *SHARED_COLUMNS]].to_parquet(dump)
    shared.pop("rows")
    shared["patients"] = len(table)
    shared["columns"] = len(table.columns)
    return shared


def child(path: str, folder: Path, out: Path, dump: Path | None) -> None:
    stages = Stages()
    shared = (run_tocsin if path == "tocsin" else run_baseline)(folder, stages, dump)
    out.write_text(json.dumps({**stages.close(), "shared": shared}))


# --------------------------------------------------------------------------------------------------------------
# set-up, repetitions, agreement, report


def prepare(graded: int, copies: int, seed: int, folder: Path) -> dict:
    """Grade (or load the cached grading of) ``graded`` synthetic patients; write ``copies`` batch parts."""
    import polars as pl

    sys.path.insert(0, str(HERE))
    from bench_cohort_derive import graded_tables, write_copies

    cache = DATA / f"cohort_graded_{graded}_{seed}"
    start = time.perf_counter()
    from tocsin.cohort.derive import REQUIRED_TABLES

    if all((cache / f"{name}.parquet").exists() for name in REQUIRED_TABLES):
        tables = {name: pl.read_parquet(cache / f"{name}.parquet") for name in REQUIRED_TABLES}
        how = "cached"
    else:
        tables = graded_tables(graded, seed)
        cache.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            frame.write_parquet(cache / f"{name}.parquet")
        how = "graded"
    grading = time.perf_counter() - start
    write_copies(tables, copies, folder)
    return {
        "graded": graded,
        "copies": copies,
        "patients": graded * copies,
        "seed": seed,
        "grading": how,
        "grading_s": grading,
        "rows": {name: frame.height * copies for name, frame in tables.items()},
        "bytes_on_disk": sum(p.stat().st_size for p in folder.rglob("*.parquet")),
    }


def run_child(path: str, folder: Path, out: Path, dump: Path | None) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        path,
        "--folder",
        str(folder),
        "--out",
        str(out),
    ]
    if dump is not None:
        command += ["--dump", str(dump)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=os.environ.copy())
    figures = json.loads(out.read_text())
    figures["process_wall_s"] = time.perf_counter() - start
    return figures


def _close(a, b, rel: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b)) if rel else a == b


def agreement(tocsin: dict, baseline: dict, dumps: tuple[Path, Path]) -> dict:
    """Every number both paths report, compared; the derived columns patient by patient."""
    import polars as pl

    checks: list[tuple[str, bool, str]] = []

    def check(what: str, a, b, rel: float = 1e-9) -> None:
        ok = _close(a, b, rel)
        checks.append((what, ok, "" if ok else f"tocsin {a!r} vs baseline {b!r}"))

    ours, theirs = (pl.read_parquet(p) for p in dumps)
    joined = ours.join(theirs, on="patient_id", how="full", suffix="_baseline", coalesce=True)
    differing = {}
    for column in SHARED_COLUMNS:
        a, b = joined.get_column(column), joined.get_column(f"{column}_baseline")
        if a.dtype.is_numeric() or a.dtype == pl.Boolean:
            a, b = a.cast(pl.Float64), b.cast(pl.Float64)
            same = (a.is_null() & b.is_null()) | ((a - b).abs() <= 1e-9 * a.abs().clip(1.0, None))
        else:
            same = (a.is_null() & b.is_null()) | (a.cast(pl.String) == b.cast(pl.String))
        bad = joined.height - int(same.fill_null(False).sum())
        if bad:
            differing[column] = bad
    checks.append(
        (
            f"derived columns ({len(SHARED_COLUMNS)}) on {joined.height:,} patients",
            not differing and ours.height == theirs.height,
            ", ".join(f"{c}: {n} patients differ" for c, n in differing.items()),
        )
    )
    for group, n in tocsin["groups"].items():
        check(f"n {group}", n, baseline["groups"].get(group), 0)
    untested = []
    for variable, ours_t1 in tocsin["table1"].items():
        theirs_t1 = baseline["table1"][variable]
        if ours_t1["test"] is None and theirs_t1["test"] is None:
            # neither path has a P: not an agreement of numbers, listed apart (small cohorts: exact r×c)
            untested.append(f"{variable}: Tocsin {ours_t1['note'] or ours_t1['choice']}; baseline: no test")
        elif ours_t1["test"] == "fisher" and theirs_t1["test"] is None:
            untested.append(f"{variable}: Tocsin exact r×c Fisher P {ours_t1['p']:.4g}; scipy has no r×c exact test")
        else:
            check(f"Table 1 {variable}: test", ours_t1["test"], theirs_t1["test"], 0)
            check(f"Table 1 {variable}: statistic", ours_t1["statistic"], theirs_t1["statistic"], 1e-8)
            check(f"Table 1 {variable}: P", ours_t1["p"], theirs_t1["p"], 1e-8)
        check(f"Table 1 {variable}: missing", ours_t1["missing"], theirs_t1["missing"], 0)
        if "median" in ours_t1:
            for group, value in ours_t1["median"].items():
                check(f"Table 1 {variable}: median {group}", value, theirs_t1["median"].get(group))
        else:
            # levels are labelled as text by Tocsin (true/false, 1) and by pandas' value (True, 1.0)
            theirs_counts = {_level_key(k): v for k, v in theirs_t1["counts"].items()}
            ours_counts = {_level_key(k): v for k, v in ours_t1["counts"].items()}
            check(f"Table 1 {variable}: counts", ours_counts, theirs_counts, 0)
    explained = []
    for endpoint, groups in tocsin["km"].items():
        for group, ours_km in groups.items():
            theirs_km = baseline["km"][endpoint][group]
            for key, value in ours_km.items():
                if (
                    key == "median"
                    and not _close(value, theirs_km[key], 1e-9)
                    and _close(value, theirs_km["median_r_rule"], 1e-9)
                ):
                    explained.append(
                        f"KM {endpoint} {group}: median {value:.2f} (R's rule: the curve is exactly 0.5 from "
                        f"{theirs_km[key]:.2f}, the midpoint of that flat) vs lifelines {theirs_km[key]:.2f} "
                        "(its start)"
                    )
                    continue
                check(f"KM {endpoint} {group}: {key}", value, theirs_km[key], 1e-9)
    for endpoint, ours_lr in tocsin["logrank"].items():
        for key in ("statistic", "df", "p"):
            check(f"log-rank {endpoint}: {key}", ours_lr[key], baseline["logrank"][endpoint][key], 1e-8)
    failed = [(what, detail) for what, ok, detail in checks if not ok]
    return {
        "checks": len(checks) + len(explained),  # P values neither path computed are not counted
        "agree": len(checks) - len(failed),
        "disagree": failed,
        "explained": explained,
        "not_compared": untested,
    }


def _level_key(key: str) -> str:
    group, level = key.split("|", 1)
    level = {"True": "true", "False": "false"}.get(level, level)
    with contextlib.suppress(ValueError):
        number = float(level)
        level = str(int(number)) if number.is_integer() else str(number)
    return f"{group}|{level}"


def median_figures(runs: list[dict]) -> dict:
    out = {}
    for stage in STAGES:
        out[stage] = {
            key: statistics.median(run["stages"][stage][key] for run in runs)
            for key in ("wall_s", "cpu_s", "peak_rss_mb")
        }
    for label, names in (("analysis", ANALYSIS), ("with_imports", STAGES)):
        out[label] = {
            key: statistics.median(sum(run["stages"][s][key] for s in names) for run in runs)
            for key in ("wall_s", "cpu_s")
        }
    out["max_rss_mb"] = statistics.median(run["max_rss_mb"] for run in runs)
    out["process_wall_s"] = statistics.median(run["process_wall_s"] for run in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graded", type=int, default=1000, help="synthetic patients graded once (default 1000)")
    parser.add_argument("--copies", type=int, default=100, help="copies written under new ids (default 100)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of both paths, interleaved (default 5)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the batch directory (default: temporary)")
    parser.add_argument("--child", choices=("tocsin", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.out, args.dump)
        return

    import tempfile

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        folder = work / "batch"
        setup = prepare(args.graded, args.copies, args.seed, folder)
        print(
            f"input: {setup['patients']:,} patients ({setup['graded']:,} graded x {setup['copies']} copies, seed "
            f"{setup['seed']}; grading {setup['grading']} in {setup['grading_s']:.1f} s), "
            f"{setup['bytes_on_disk'] / 2**20:.1f} MB of Parquet in {len(setup['rows'])} tables x {args.copies} parts"
        )
        runs: dict[str, list[dict]] = {"tocsin": [], "baseline": []}
        pair_ratios = []
        for repetition in range(args.repeat):
            order = ("tocsin", "baseline") if repetition % 2 == 0 else ("baseline", "tocsin")
            for path in order:
                dump = work / f"{path}.parquet" if repetition == 0 else None
                figures = run_child(path, folder, work / f"{path}-{repetition}.json", dump)
                runs[path].append(figures)
                total = sum(figures["stages"][s]["wall_s"] for s in ANALYSIS)
                print(
                    f"  run {repetition + 1} {path:<8} analysis {total:6.2f} s wall (imports "
                    f"{figures['stages']['import']['wall_s']:.2f} s)",
                    flush=True,
                )
            totals = {p: sum(runs[p][-1]["stages"][s]["wall_s"] for s in ANALYSIS) for p in runs}
            pair_ratios.append(totals["baseline"] / totals["tocsin"])
        agree = agreement(
            runs["tocsin"][0]["shared"],
            runs["baseline"][0]["shared"],
            (work / "tocsin.parquet", work / "baseline.parquet"),
        )
    medians = {path: median_figures(path_runs) for path, path_runs in runs.items()}
    ratio = medians["baseline"]["analysis"]["wall_s"] / medians["tocsin"]["analysis"]["wall_s"]
    ratio_with_imports = medians["baseline"]["with_imports"]["wall_s"] / medians["tocsin"]["with_imports"]["wall_s"]
    ratio_cpu = medians["baseline"]["analysis"]["cpu_s"] / medians["tocsin"]["analysis"]["cpu_s"]

    print(f"\nagreement: {agree['agree']} of {agree['checks']} shared numbers agree")
    for what in agree["not_compared"]:
        print(f"  no P to compare: {what}")
    for what in agree["explained"]:
        print(f"  documented rule difference: {what}")
    for what, detail in agree["disagree"]:
        print(f"  DIFFERS {what}: {detail}")
    print(f"\nmedians of {args.repeat} interleaved runs (wall / CPU s, peak resident MB sampled every 10 ms)\n")
    print("| stage | Tocsin wall | CPU | peak MB | baseline wall | CPU | peak MB | ratio wall | ratio CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage in (*STAGES, "analysis", "with_imports"):
        t, b = medians["tocsin"][stage], medians["baseline"][stage]
        peak_t = f"{t['peak_rss_mb']:.0f}" if "peak_rss_mb" in t else ""
        peak_b = f"{b['peak_rss_mb']:.0f}" if "peak_rss_mb" in b else ""
        print(
            f"| {stage} | {t['wall_s']:.2f} | {t['cpu_s']:.2f} | {peak_t} | {b['wall_s']:.2f} | {b['cpu_s']:.2f} | "
            f"{peak_b} | {b['wall_s'] / t['wall_s']:.1f}× | {b['cpu_s'] / t['cpu_s']:.1f}× |"
        )
    print(
        f"\nTocsin analysis {medians['tocsin']['analysis']['wall_s']:.2f} s, baseline "
        f"{medians['baseline']['analysis']['wall_s']:.2f} s: ratio {ratio:.1f}× (CPU {ratio_cpu:.1f}×; "
        "per-run wall ratios "
        f"{', '.join(f'{r:.1f}' for r in pair_ratios)}); with imports {ratio_with_imports:.1f}×; "
        f"whole-process peak resident {medians['tocsin']['max_rss_mb']:.0f} MB vs "
        f"{medians['baseline']['max_rss_mb']:.0f} MB"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tocsin_shared = runs["tocsin"][0]["shared"]
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg(),
                },
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": "python benchmarks/cohort.py " + " ".join(sys.argv[1:]),
                "input": setup,
                "variables": {"by": GROUP, "continuous": CONTINUOUS, "categorical": CATEGORICAL},
                "endpoints": ENDPOINTS,
                "tocsin_output": {"patients": tocsin_shared["patients"], "columns": tocsin_shared["columns"]},
                "medians": medians,
                "ratio_analysis_wall": ratio,
                "ratio_with_imports_wall": ratio_with_imports,
                "ratio_analysis_cpu": ratio_cpu,
                "per_run_ratios": pair_ratios,
                "agreement": agree,
                "runs": {p: [{k: v for k, v in r.items() if k != "shared"} for r in rs] for p, rs in runs.items()},
                "shared_numbers": {"tocsin": tocsin_shared, "baseline": runs["baseline"][0]["shared"]},
            },
            indent=1,
        )
    )
    print(f"written {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
