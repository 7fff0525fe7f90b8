"""The compiled score passes agree with plain Polars (or Python) statements of what they compute, on random batches."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from tocsin.core.kernels_scores import ascending_in_runs, first_times, last_kept_rows, patient_runs, picked_fields
from tocsin.core.arrays import patient_codes, patient_codes_of
from tocsin.core.scores.baseline import Step, gathered, lab_rows, ladders, pick_values, picked_rows, points_of

ITEMS = pl.Enum(["anc", "crp", "ferritin", "ldh", "plt"])
PICKS = {"anc": "min", "crp": "max", "ferritin": "last", "ldh": "max", "plt": "last"}
_US_PER_DAY = 86_400_000_000


def _random_events(rng: random.Random, grouped: bool) -> pl.DataFrame:
    n = rng.randint(0, 50)
    patients = [f"P{rng.randint(0, 3)}" for _ in range(n)]
    if grouped:
        patients.sort()
    return pl.DataFrame(
        {
            "patient_id": pl.Series(patients, dtype=pl.Utf8).cast(pl.Categorical),
            "item": pl.Series([rng.choice(ITEMS.categories.to_list()) for _ in range(n)], dtype=ITEMS),
            "t": [rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 7.0, rng.uniform(-5, 10)]) for _ in range(n)],
            "num": [None if rng.random() < 0.1 else float(rng.choice([0, 1, 2, 2, 3, 5])) for _ in range(n)],
            "lln": [float(rng.randint(0, 3)) for _ in range(n)],
            "uln": [float(rng.randint(0, 3)) for _ in range(n)],
        },
        schema_overrides={"num": pl.Float64},
    )


def _reference_pick(events: pl.DataFrame, windows: pl.DataFrame, period: float, closed: str) -> pl.DataFrame:
    """Each window and item by a cross join: rows of the patient and item inside the window, best one last."""
    span = max(1, round(period * _US_PER_DAY))
    stamp = (pl.col("t") * _US_PER_DAY).round().cast(pl.Int64)
    end = (pl.col("at") * _US_PER_DAY).round().cast(pl.Int64)
    lower = stamp >= end - span if closed in ("both", "left") else stamp > end - span
    upper = stamp <= end if closed in ("both", "right") else stamp < end
    key = pl.when(pl.col("item") == "ferritin").then(pl.col("t")).when(pl.col("item") == "plt").then(pl.col("t"))
    key = key.when(pl.col("item") == "anc").then(-pl.col("num")).otherwise(pl.col("num"))
    rows = events.filter(pl.col("num").is_not_null()).with_row_index("order").with_columns(key.alias("key"))
    ends = windows.unique(maintain_order=True).with_row_index("w")
    probes = ends.join(pl.DataFrame({"item": pl.Series(list(PICKS), dtype=ITEMS)}).with_row_index("k"), how="cross")
    best = (
        probes.join(rows, on=["patient_id", "item"], how="inner")
        .filter(lower & upper)
        .sort("key", "t", "order")
        .group_by("w", "k")
        .agg(pl.col("num").last().alias("value"), pl.col("t").last().alias("day"), pl.col("lln", "uln").last())
    )
    return (
        probes.join(best, on=["w", "k"], how="left")
        .sort("w", "k")
        .select("patient_id", "at", "item", "value", "day", "lln", "uln")
    )


@pytest.mark.parametrize("seed", range(40))
def test_pick_values_matches_a_cross_join(seed: int) -> None:
    rng = random.Random(seed)
    events = _random_events(rng, grouped=seed % 2 == 0)
    patients = [f"P{rng.randint(0, 4)}" for _ in range(rng.randint(0, 5))]
    windows = pl.DataFrame(
        {
            "patient_id": pl.Series(patients, dtype=pl.Utf8).cast(pl.Categorical),
            "at": [rng.choice([0.0, 1.0, 2.5, 3.0, 7.0]) for _ in patients],
        },
        schema_overrides={"at": pl.Float64},
    )
    for closed in ("both", "left", "right", "none"):
        period = rng.choice([0.5, 1.0, 2.0, 7.0])
        got = pick_values(events, windows, PICKS, period, closed)  # type: ignore[arg-type]
        assert got.equals(_reference_pick(events, windows, period, closed)), (closed, period)


@pytest.mark.parametrize("seed", range(40))
def test_picks_of_rows_in_time_by_a_search_match_a_cross_join(seed: int) -> None:
    # Each patient's rows in time order, as canonical events hold them: a window's rows are found by a search.
    rng = random.Random(seed)
    events = _random_events(rng, grouped=True).with_row_index("order")
    events = events.sort(pl.col("patient_id").cast(pl.Utf8), "t", "order").drop("order")
    assert lab_rows(events, list(PICKS)).in_time
    windows = pl.DataFrame(
        {"patient_id": pl.Series(["P0", "P1", "P2", "P3", "P1"], dtype=pl.Categorical),
         "at": [rng.choice([-2.0, 0.0, 1.0, 2.5, 3.0, 7.0, 20.0]) for _ in range(5)]},
    )  # fmt: skip
    for closed in ("both", "left", "right", "none"):
        period = rng.choice([0.5, 1.0, 2.0, 7.0, 100.0])
        got = pick_values(events, windows, PICKS, period, closed)  # type: ignore[arg-type]
        assert got.equals(_reference_pick(events, windows, period, closed)), (closed, period)


@pytest.mark.parametrize("seed", range(20))
def test_ascending_in_runs_is_no_decrease_between_rows_of_a_patient(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 30))
    patient = np.sort(rng.integers(0, 3, size=n)) if seed % 2 else rng.integers(0, 3, size=n)
    stamp = rng.integers(0, 4, size=n)
    if seed % 3 == 0:  # ascending within each patient's run
        stamp = np.concatenate([np.sort(part) for part in np.split(stamp, np.flatnonzero(np.diff(patient)) + 1)])
    expected = not np.any((stamp[1:] < stamp[:-1]) & (patient[1:] == patient[:-1]))
    assert ascending_in_runs(patient, stamp) is expected


@pytest.mark.parametrize("seed", range(20))
def test_last_kept_rows_is_the_last_kept_row_of_each_run(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(0, 40)
    patient = np.array([rng.randint(0, 3) for _ in range(n)], dtype=np.uint32)
    if seed % 2 == 0:
        patient.sort()
    item = np.array([rng.randint(0, 4) for _ in range(n)], dtype=np.int64)
    kept_items = np.array([rng.random() < 0.6 for _ in range(5)], dtype=bool)
    keep = kept_items[item]
    kept = pl.DataFrame({"p": patient, "k": keep}, schema={"p": pl.UInt32, "k": pl.Boolean})
    kept = kept.with_row_index("row").filter("k")
    expected = kept.filter((pl.col("p") != pl.col("p").shift(-1)).fill_null(True)).get_column("row").to_numpy()
    assert np.array_equal(last_kept_rows(patient, item, kept_items), expected)


def _windows(events: pl.DataFrame, patients: list[str], at: list[float]) -> np.ndarray:
    labs = lab_rows(events, list(PICKS))
    codes = patient_codes(pl.Series(patients, dtype=pl.Categorical))
    return picked_rows(labs, codes, np.array(at, dtype=np.float64), PICKS, 2.0, "both")  # type: ignore[arg-type]


def test_picks_of_an_empty_batch_are_all_missing() -> None:
    empty = _random_events(random.Random(0), grouped=True).head(0)
    assert _windows(empty, ["P0", "P1"], [1.0, 2.0]).tolist() == [[-1] * len(PICKS)] * 2
    assert _windows(empty, [], []).shape == (0, len(PICKS))


def test_a_patient_without_rows_and_a_single_row() -> None:
    one = pl.DataFrame(
        {"patient_id": ["P0"], "item": ["crp"], "t": [1.0], "num": [4.0], "lln": [None], "uln": [None]},
        schema_overrides={"patient_id": pl.Categorical, "item": ITEMS, "lln": pl.Float64, "uln": pl.Float64},
    )
    rows = _windows(one, ["P0", "P9", "P0"], [1.0, 1.0, 5.0])
    crp = list(PICKS).index("crp")
    assert rows[:, crp].tolist() == [0, -1, -1]  # in its window; another patient; too old for a 2-day window
    assert (np.delete(rows, crp, axis=1) == -1).all()


def test_a_row_without_a_number_is_never_picked() -> None:
    rows = pl.DataFrame(
        {"patient_id": ["P0"] * 2, "item": ["anc"] * 2, "t": [0.5, 1.0], "num": [3.0, None]},
        schema_overrides={"patient_id": pl.Categorical, "item": ITEMS},
    ).with_columns(pl.lit(None, pl.Float64).alias("lln"), pl.lit(None, pl.Float64).alias("uln"))
    assert _windows(rows, ["P0"], [1.0])[0, list(PICKS).index("anc")] == 0


def test_patient_codes_of_several_series_are_their_patient_codes() -> None:
    events = pl.Series("patient_id", ["P1", "P0", "P1", "P2"], dtype=pl.Categorical)
    table = pl.Series("patient_id", ["P2", "P9"])  # text ids, and one the events do not hold
    codes = patient_codes_of(events, table, table.head(0))
    assert [c.tolist() for c in codes] == [patient_codes(events).tolist(), patient_codes(table).tolist(), []]


def _reference_points(
    values: np.ndarray, steps: list[list[tuple[str, float, int]]], otherwise: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each input's ladder step by step in plain Python, and the least and most totals of each column."""
    compare = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    points = np.full(values.shape, np.nan)
    least, most = np.zeros(values.shape[1]), np.zeros(values.shape[1])
    for i, rungs in enumerate(steps):
        given = [p for _, _, p in rungs] + [otherwise[i]]
        for w, value in enumerate(values[i].tolist()):
            if np.isnan(value):
                least[w] += min(given)
                most[w] += max(given)
                continue
            points[i, w] = next((p for op, t, p in rungs if compare[op](value, t)), otherwise[i])
            least[w] += points[i, w]
            most[w] += points[i, w]
    return points, least, most


@pytest.mark.parametrize("seed", range(30))
def test_ladder_points_match_the_ladders_step_by_step(seed: int) -> None:
    rng = random.Random(seed)
    n_inputs, height = rng.randint(0, 4), rng.choice([0, 1, 2, 9])
    ops = ["<", "<=", ">", ">="]
    steps = [
        [(rng.choice(ops), float(rng.randint(0, 4)), rng.randint(-1, 5)) for _ in range(rng.randint(0, 3))]
        for _ in range(n_inputs)
    ]
    otherwise = [rng.randint(0, 3) for _ in range(n_inputs)]
    values = np.array(
        [[rng.choice([0.0, 1.0, 2.0, 2.5, 3.0, 4.0, np.nan]) for _ in range(height)] for _ in range(n_inputs)]
    ).reshape(n_inputs, height)
    got = points_of(values, ladders([[Step(*step) for step in rungs] for rungs in steps], otherwise))
    for actual, expected in zip(got, _reference_points(values, steps, otherwise)):
        assert np.array_equal(actual, expected, equal_nan=True)


def test_a_ladder_with_an_unknown_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown comparison '=='"):
        ladders([[Step("==", 1.0, 1)]], [0])  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(20))
def test_first_times_are_the_least_time_of_the_item_per_patient(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([0, 1, rng.randint(2, 40)])
    patient = sorted(rng.randint(0, 4) for _ in range(n))
    item = np.array([rng.randint(0, 2) for _ in range(n)], dtype=np.int64)
    t = np.array([rng.choice([-3.0, -1.0, 0.0, 2.5, np.nan, np.inf]) for _ in range(n)])
    run_code, run_first = np.unique(np.array(patient, dtype=np.int64), return_index=True)
    run_end = np.append(run_first[1:], n)
    codes = np.array([rng.randint(0, 5) for _ in range(rng.randint(0, 6))], dtype=np.uint32)
    expected = []
    for code in codes.tolist():
        times = [t[row] for row in range(n) if patient[row] == code and item[row] == 1]
        least = np.minimum.reduce(times) if times else np.inf  # NaN among them stays, as np.minimum keeps it
        expected.append(least if np.isfinite(least) else np.nan)
    got = first_times(item, t, run_code, run_first, run_end, 1, codes)
    assert np.array_equal(got, np.array(expected, dtype=np.float64), equal_nan=True)


@pytest.mark.parametrize("seed", range(20))
def test_patient_runs_are_the_runs_of_equal_codes_by_code(seed: int) -> None:
    rng = random.Random(seed)
    patient = np.array([rng.randint(0, 4) for _ in range(rng.choice([0, 1, rng.randint(2, 30)]))], dtype=np.uint32)
    if seed % 2:
        patient.sort()
    starts = [row for row in range(patient.size) if row == 0 or patient[row] != patient[row - 1]]
    ends = starts[1:] + [patient.size]
    runs = sorted(zip(patient[starts].tolist(), starts, ends))
    code, first, end, grouped = patient_runs(patient)
    assert grouped == (len({c for c, _, _ in runs}) == len(runs))
    if grouped:
        assert [code.tolist(), first.tolist(), end.tolist()] == [list(column) for column in zip(*runs)] or not runs
    assert code.size == first.size == end.size == len(runs)


@pytest.mark.parametrize("n_fields", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 4), (3, 0)])
def test_picked_fields_are_the_gathered_fields(n_fields: int, shape: tuple[int, int]) -> None:
    np_rng = np.random.default_rng(n_fields * 10 + shape[0])
    n_rows = 5 if shape != (3, 0) else 0
    fields = [np_rng.choice([0.5, 2.0, np.nan], n_rows) for _ in range(n_fields)]
    rows = np_rng.integers(-1, n_rows, shape) if n_rows else np.full(shape, -1)
    expected = np.stack([gathered(field, rows.T) for field in fields], axis=1)
    assert np.array_equal(picked_fields(rows, *fields), expected, equal_nan=True)


def test_picked_fields_refuses_more_fields_than_it_reads() -> None:
    field = np.zeros(2)
    with pytest.raises(ValueError, match="1 to 4 fields"):
        picked_fields(np.zeros((1, 1), dtype=np.int64), *[field] * 5)


@pytest.mark.parametrize("seed", range(10))
def test_a_column_read_at_picked_rows_is_the_column_there(seed: int) -> None:
    rng = random.Random(seed)
    events = _random_events(rng, grouped=True)
    labs = lab_rows(events, list(PICKS))
    rows = np.array([[rng.randint(-1, labs.t.size - 1) for _ in range(3)] for _ in range(4)], dtype=np.int64)
    at_rows = labs.column_at("uln", rows)
    picked = rows[rows >= 0]
    assert at_rows.shape == labs.t.shape
    assert np.array_equal(at_rows[picked], labs.column("uln")[picked], equal_nan=True)
    assert np.isnan(np.delete(at_rows, picked)).all()
