"""Edge cases of the compiled kinetics passes (``tocsin.core.kernels_kinetics``), through ``kinetics_nca``.

An empty batch, a batch without kinetics rows, a series with one sample, only pre-infusion samples, only BLQ
samples, replicates (Kahan-summed mean, as Polars' grouped mean), a patient the patient table does not list,
and the sums' bits against an independent Kahan sum of the same segments.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tocsin.config import KineticsConfig
from tocsin.core.events import normalise_events
from tocsin.core.kernels_kinetics import _collapse_replicates_loop
from tocsin.core.kinetics import _texts, expansion_phase, kinetics_nca
from tocsin.core.segments import compiled
from tocsin.core.timeline import frame_of
from tocsin.vocabulary import load_vocabulary

VOCAB = load_vocabulary()
UNIT = "{copies}/ug"


def _normalised(patients: dict[str, list[tuple]]):
    rows = []
    for pid, events in patients.items():
        rows.append((pid, "0", "infusion", "axi-cel", "", None))
        for day, value, *lloq in events:
            rows.append((pid, repr(float(day)), "car_t_copies", str(value), UNIT, str(lloq[0]) if lloq else None))
    raw = pl.DataFrame(rows, orient="row", schema=["patient_id", "day", "item", "value", "unit", "lloq"])
    raw = raw.with_columns(pl.lit("k.csv").alias("file"), pl.int_range(2, len(rows) + 2, dtype=pl.Int64).alias("line"))
    normalised = normalise_events(raw, VOCAB)
    assert normalised.errors.height == 0, normalised.errors.to_dicts()
    return normalised


def _kahan(values: list[float]) -> float:
    total = compensation = 0.0
    for value in values:
        y = value - compensation
        s = total + y
        compensation = (s - total) - y
        total = s
    return total


def test_empty_batch_and_batch_without_levels_keep_the_schema() -> None:
    normalised = _normalised({"P": [(7, 100)]})
    full = kinetics_nca(normalised.events, normalised.patients, KineticsConfig())
    empty = kinetics_nca(normalised.events.head(0), normalised.patients.head(0), KineticsConfig())
    no_levels = kinetics_nca(
        normalised.events.filter(pl.col("item") != "car_t_copies"), normalised.patients, KineticsConfig()
    )
    assert empty.height == no_levels.height == 0
    assert empty.schema == no_levels.schema == full.schema


def test_one_sample() -> None:
    normalised = _normalised({"P": [(7, 100)]})
    row = kinetics_nca(normalised.events, normalised.patients, KineticsConfig()).row(0, named=True)
    assert (row["n_samples"], row["cmax"], row["tmax_day"], row["peak_confirmed"]) == (1, 100.0, 7.0, False)
    assert row["auc_0_28"] is None and row["auc_0_28_reason"].startswith("sampling ends at day 7.0")
    assert row["auc_0_tlast"] == 100 / 2 * 7
    assert row["half_life_points"] is None
    assert row["half_life_reason"] == "0 quantifiable points after Tmax; at least 3 are needed"


def test_only_pre_infusion_samples_give_no_row_and_only_blq_gives_no_peak() -> None:
    normalised = _normalised({"PRE": [(-3, 50)], "BLQ": [(-1, 40), (7, "BLQ", 5), (30, "BLQ", 5)]})
    nca = kinetics_nca(normalised.events, normalised.patients, KineticsConfig())
    assert nca.get_column("patient_id").cast(pl.Utf8).to_list() == ["BLQ"]
    row = nca.row(0, named=True)
    assert (row["n_samples"], row["n_quantifiable"], row["day0_value"], row["day0_from_sample"]) == (2, 0, 40.0, True)
    assert row["cmax"] is None and row["tmax_day"] is None and row["peak_confirmed"] is False
    # Before any peak a BLQ counts as 0: 0-7 (40 + 0)/2 x 7, then flat at 0, interpolated to day 28.
    assert row["auc_0_28"] == 140.0
    assert row["half_life_reason"] == "no quantifiable level"


def test_replicates_are_a_kahan_mean_and_the_higher_limit() -> None:
    values = [0.1, 1e16, -1e16, 0.3]
    starts = np.array([0, 4])
    mean, limit = compiled(_collapse_replicates_loop)(starts, np.array(values), np.array([np.nan, 2.0, 5.0, np.nan]))
    assert mean[0] == _kahan(values) / 4 and limit[0] == 5.0
    mean, limit = compiled(_collapse_replicates_loop)(starts, np.full(4, np.nan), np.full(4, np.nan))
    assert np.isnan(mean[0]) and np.isnan(limit[0])
    assert compiled(_collapse_replicates_loop)(np.array([0]), np.zeros(0), np.zeros(0))[0].size == 0


def test_replicates_at_one_time_are_averaged() -> None:
    normalised = _normalised({"P": [(7, 100), (7, 300), (14, "BLQ", 5), (14, 50)]})
    row = kinetics_nca(normalised.events, normalised.patients, KineticsConfig()).row(0, named=True)
    assert (row["n_samples"], row["n_quantifiable"], row["cmax"], row["clast"]) == (2, 2, 200.0, 50.0)


def test_area_is_the_kahan_sum_of_the_segments() -> None:
    days, levels = (
        [1.5, 3.25, 7.0, 10.125, 14.0, 21.5, 27.0, 35.0],
        [3.0, 990.0, 7200.0, 5100.0, 800.0, 650.0, 77.0, 9.0],
    )
    normalised = _normalised({"P": list(zip(days, levels))})
    row = kinetics_nca(normalised.events, normalised.patients, KineticsConfig()).row(0, named=True)
    t, c = [0.0, *days], [0.0, *levels]

    def area(t1: float, c1: float, t2: float, c2: float) -> float:
        if c2 < c1 and c2 > 0:
            return (c1 - c2) * (t2 - t1) / math.log(c1 / c2)
        return (c1 + c2) / 2 * (t2 - t1)

    segments = [area(t[k], c[k], t[k + 1], c[k + 1]) for k in range(len(days))]
    fraction = (28.0 - 27.0) / (35.0 - 27.0)
    at_28 = 77.0 * math.exp(math.log(9.0 / 77.0) * fraction)
    assert row["auc_0_tlast"] == _kahan(segments)
    assert row["auc_0_28"] == _kahan([*segments[:-1], area(27.0, 77.0, 28.0, at_28)])


def test_patient_missing_from_the_patient_table_has_no_product() -> None:
    normalised = _normalised({"A": [(7, 100)], "B": [(7, 100)]})
    patients = normalised.patients.filter(pl.col("patient_id") == "A")
    nca = kinetics_nca(normalised.events, patients, KineticsConfig())
    assert nca.get_column("product").to_list() == ["axi-cel", None]


@pytest.mark.parametrize("known_at_t", [False, True])
def test_expansion_phase_of_a_batch_without_levels(known_at_t: bool) -> None:
    normalised = _normalised({"P": [(7, 100)]})
    events = normalised.events.filter(pl.col("item") != "car_t_copies")
    got = expansion_phase(
        events, pl.DataFrame({"patient_id": ["P"], "t": [3.0]}), KineticsConfig(), known_at_t=known_at_t
    )
    assert got.get_column("phase").to_list() == [None]


def test_texts_of_values_keep_order_and_nulls() -> None:
    frame = frame_of({"reason": _texts(["b", None, "a", "b"]), "none": _texts([None, None, None, None])})
    assert frame.rows() == [("b", None), (None, None), ("a", None), ("b", None)]
    assert frame.dtypes == [pl.Utf8, pl.Utf8]
