"""Kaplan–Meier against published R output, lifelines' log-log band, R's median rule, and invariants."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter

from survival_references import cases, dataset
from tocsin.stats.survival.inputs import survival_inputs
from tocsin.stats.survival.kaplan_meier import kaplan_meier

PRINTED_TIME = 0.5  # R prints medians as whole days / weeks in these outputs


def fit(case: dict, conf_type: str | None = None):
    table = dataset(case["data"])
    inputs = survival_inputs(table, case["time"], case["event"], group=case["by"])
    return kaplan_meier(inputs.time, inputs.event, inputs.group, conf_type=conf_type or case["conf_type"])


@pytest.mark.parametrize("case", cases("kaplan_meier"), ids=lambda c: c["id"])
def test_medians_match_r(case):
    groups = {row["group"]: row for row in fit(case).groups.to_dicts()}
    assert set(groups) == set(case["groups"])
    for label, expected in case["groups"].items():
        got = groups[label]
        assert (got["n"], got["events"]) == (expected["n"], expected["events"])
        for key in ("median", "median_lower", "median_upper"):
            if expected[key] is None:
                assert got[key] is None, (label, key)
            else:
                assert got[key] == pytest.approx(expected[key], abs=PRINTED_TIME), (label, key)


@pytest.mark.parametrize("case", cases("survival_at"), ids=lambda c: c["id"])
def test_survival_at_times_matches_r_summary(case):
    times = [point["time"] for point in case["points"]]
    got = {row["time"]: row for row in fit(case).survival_at(times).to_dicts()}
    for point in case["points"]:
        row = got[point["time"]]
        assert row["n_risk"] == point["n_risk"]
        for key, tolerance in case["tolerance"].items():
            assert row[key] == pytest.approx(point[key], abs=tolerance), (point["time"], key)


@pytest.mark.parametrize("case", cases("curve_rows"), ids=lambda c: c["id"])
def test_curve_rows_match_r_summary(case):
    summary = fit(case).summary
    for expected in case["rows"]:
        row = summary.filter((pl.col("group") == expected["group"]) & (pl.col("time") == expected["time"])).row(
            0, named=True
        )
        assert (row["n_risk"], row["n_event"]) == (expected["n_risk"], expected["n_event"])
        for key, tolerance in case["tolerance"].items():
            assert row[key] == pytest.approx(expected[key], abs=tolerance), (expected["time"], key)


def test_summary_columns_are_the_agreed_plotting_frame():
    summary = fit(cases("kaplan_meier")[0]).summary
    assert summary.columns == [
        "group", "time", "n_risk", "n_event", "n_censor", "survival", "std_err", "lower", "upper"
    ]


@pytest.mark.parametrize("name", ["lung", "gehan"])
def test_log_log_band_matches_lifelines_exponential_greenwood(name):
    case = next(c for c in cases("kaplan_meier") if c["data"] == name)
    table = dataset(name)
    inputs = survival_inputs(table, case["time"], case["event"])
    ours = kaplan_meier(inputs.time, inputs.event, conf_type="log-log").summary.filter(
        (pl.col("survival") < 1) & (pl.col("survival") > 0)
    )
    reference = KaplanMeierFitter().fit(inputs.time, inputs.event)
    band = reference.confidence_interval_.loc[ours.get_column("time").to_numpy()]
    np.testing.assert_allclose(ours.get_column("lower").to_numpy(), band.iloc[:, 0].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(ours.get_column("upper").to_numpy(), band.iloc[:, 1].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        ours.get_column("survival").to_numpy(),
        reference.survival_function_.loc[ours.get_column("time").to_numpy()].iloc[:, 0].to_numpy(),
        rtol=1e-12,
    )


def test_median_on_an_exact_half_flat_is_the_midpoint_as_r_quantile_survfit():
    # survival R/quantile.survfit.R (findq): a flat exactly at p takes the midpoint to the next drop
    result = kaplan_meier(np.array([1.0, 2, 3, 4]), np.ones(4, dtype=bool), conf_type="log")
    assert result.groups.get_column("median").item() == 2.5


def test_median_on_a_half_flat_that_ends_the_curve_runs_to_the_last_follow_up():
    # findq: "a flat at the end of the curve" uses the midpoint with the last time of the curve
    result = kaplan_meier(np.array([1.0, 2, 5, 9]), np.array([True, True, False, False]), conf_type="log")
    assert result.groups.get_column("median").item() == pytest.approx((2 + 9) / 2)


def test_survival_after_the_last_follow_up_is_undefined_not_carried():
    result = kaplan_meier(np.array([1.0, 2, 3]), np.array([True, False, False]))
    row = result.survival_at([10.0]).row(0, named=True)
    assert row["survival"] is None and row["n_risk"] == 0


def test_log_log_band_is_undefined_where_survival_is_one_or_zero_as_r():
    result = kaplan_meier(np.array([1.0, 2, 3]), np.array([False, True, True]), conf_type="log-log")
    rows = result.summary.to_dicts()
    assert rows[0]["survival"] == 1.0 and rows[0]["lower"] is None
    assert rows[-1]["survival"] == 0.0 and rows[-1]["std_err"] is None and rows[-1]["upper"] is None


def test_unknown_confidence_type_is_refused():
    with pytest.raises(ValueError, match="log-log, log, plain"):
        kaplan_meier(np.array([1.0]), np.array([True]), conf_type="arcsin")


def test_hundred_thousand_patients_in_well_under_a_second():
    import time

    rng = np.random.default_rng(5)
    n = 100_000
    times = np.round(rng.exponential(400, n))
    events = rng.random(n) < 0.7
    groups = rng.choice(np.array(["axi-cel", "tisa-cel", "liso-cel"]), n)
    start = time.perf_counter()
    result = kaplan_meier(times, events, groups)
    result.survival_at([365, 730])
    elapsed = time.perf_counter() - start
    assert result.groups.height == 3
    assert elapsed < 1.0, elapsed


courses = st.lists(
    st.tuples(st.integers(0, 60), st.booleans(), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(courses, st.randoms(use_true_random=False))
def test_row_order_never_matters(rows, random):
    shuffled = rows[:]
    random.shuffle(shuffled)

    def summary(data):
        t, e, g = (np.array(column) for column in zip(*data, strict=True))
        return kaplan_meier(t.astype(float), e.astype(bool), g).summary

    assert summary(rows).equals(summary(shuffled))


@settings(max_examples=60, deadline=None)
@given(courses, st.integers(0, 39), st.integers(1, 30))
def test_longer_follow_up_of_a_censored_patient_never_changes_earlier_estimates(rows, pick, extra):
    # The wording ("adding a censored patient after the last event never changes earlier estimates")
    # cannot hold: the new patient is at risk at every earlier time (events at 1 and 2 give S(1) = 1/2; a
    # third patient censored at 3 gives S(1) = 2/3). What does hold: following a censored patient longer
    # (c -> c + extra, still censored) leaves every estimate up to c unchanged.
    censored = [i for i, (_, event, _) in enumerate(rows) if not event]
    if not censored:
        return
    index = censored[pick % len(censored)]
    old_time = rows[index][0]
    longer = rows[:]
    longer[index] = (old_time + extra, False, rows[index][2])

    def curve(data):
        t, e, g = (np.array(column) for column in zip(*data, strict=True))
        return kaplan_meier(t.astype(float), e.astype(bool), g).summary.filter(pl.col("time") < old_time)

    before, after = curve(rows), curve(longer)
    assert before.drop("n_censor").equals(after.drop("n_censor"))


@settings(max_examples=60, deadline=None)
@given(courses, st.integers(1, 30))
def test_a_patient_censored_after_everyone_else_leaves_event_counts_and_shape_intact(rows, extra):
    # The supportable half of the property: the steps stay at the same times with the same events,
    # and the curve still never rises.
    last = max(t for t, _, _ in rows)
    extended = rows + [(last + extra, False, rows[0][2])]

    def events(data):
        t, e, g = (np.array(column) for column in zip(*data, strict=True))
        return kaplan_meier(t.astype(float), e.astype(bool), g).summary

    before, after = events(rows), events(extended)
    kept = after.filter(pl.col("time") <= last)
    assert kept.select("group", "time", "n_event").equals(before.select("group", "time", "n_event"))
    for _, curve in after.group_by("group"):
        assert np.all(np.diff(curve.get_column("survival").to_numpy()) <= 0)
