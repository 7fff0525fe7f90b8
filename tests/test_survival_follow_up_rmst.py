"""Reverse-KM median follow-up and restricted mean survival against published R output."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from survival_references import cases, dataset
from tocsin.stats.survival.follow_up import reverse_km_follow_up
from tocsin.stats.survival.inputs import survival_inputs
from tocsin.stats.survival.rmst import restricted_mean_survival


@pytest.mark.parametrize("case", cases("follow_up"), ids=lambda c: c["id"])
def test_reverse_km_follow_up_matches_r(case):
    inputs = survival_inputs(dataset(case["data"]), case["time"], case["event"], group=case["by"])
    result = reverse_km_follow_up(inputs.time, inputs.event, inputs.group, conf_type=case["conf_type"])
    got = {row["group"]: row for row in result.summary.to_dicts()}
    for label, expected in case["groups"].items():
        for key, value in expected.items():
            assert got[label][key] == (pytest.approx(value, abs=0.5) if value is not None else None), (label, key)


@pytest.mark.parametrize("case", cases("rmst"), ids=lambda c: c["id"])
def test_rmst_matches_r_print_survfit_rmean(case):
    inputs = survival_inputs(dataset(case["data"]), case["time"], case["event"], group=case["by"])
    result = restricted_mean_survival(inputs.time, inputs.event, inputs.group, horizon=case["horizon"])
    got = {row["group"]: row for row in result.summary.to_dicts()}
    for label, expected in case["groups"].items():
        for key, tolerance in case["tolerance"].items():
            assert got[label][key] == pytest.approx(expected[key], abs=tolerance), (label, key)
    # sex=2's longest follow-up is shorter than 1022 days: R carries its curve flat to the common limit
    assert got["2"]["beyond_follow_up"] and not got["1"]["beyond_follow_up"]


def test_rmst_without_events_is_the_horizon_with_no_uncertainty():
    result = restricted_mean_survival(np.array([10.0, 20.0]), np.array([False, False]), horizon=5)
    row = result.summary.row(0, named=True)
    assert (row["rmst"], row["std_err"]) == (5.0, 0.0)


def test_rmst_horizon_must_be_positive():
    with pytest.raises(ValueError, match="after day 0"):
        restricted_mean_survival(np.array([1.0]), np.array([True]), horizon=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1, max_size=40),
    st.floats(0.5, 60),
    st.floats(0.1, 20),
)
def test_rmst_grows_with_the_horizon_but_never_faster_than_time(rows, horizon, more):
    t, e = (np.array(column) for column in zip(*rows, strict=True))
    short = restricted_mean_survival(t.astype(float), e.astype(bool), horizon=horizon).summary["rmst"].item()
    long = restricted_mean_survival(t.astype(float), e.astype(bool), horizon=horizon + more).summary["rmst"].item()
    assert short <= long + 1e-9
    assert long - short <= more + 1e-9
    assert 0 <= short <= horizon + 1e-9
