"""Log-rank against published survdiff output, lifelines, statsmodels' Cox score, and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.statistics import multivariate_logrank_test
from statsmodels.duration.hazard_regression import PHReg

from survival_references import cases, dataset
from tocsin.stats.survival.inputs import survival_inputs
from tocsin.stats.survival.logrank import logrank_test


@pytest.mark.parametrize("case", cases("logrank"), ids=lambda c: c["id"])
def test_logrank_matches_published_survdiff(case):
    inputs = survival_inputs(dataset(case["data"]), case["time"], case["event"], group=case["by"])
    result = logrank_test(inputs.time, inputs.event, inputs.group)
    assert result.name == "log-rank"
    assert result.df == case["df"]
    assert result.statistic == pytest.approx(case["statistic"], abs=case["statistic_tolerance"])
    assert result.p_value == pytest.approx(case["p"], abs=case["p_tolerance"])
    expected = dict(zip(result.summary["group"], result.summary["expected"], strict=True))
    for label, value in case["expected"].items():
        assert expected[label] == pytest.approx(value, abs=case["expected_tolerance"])


def lung_with_ecog():
    table = dataset("lung").drop_nulls("ph.ecog")
    return table, survival_inputs(table, "time", "status", group="ph.ecog", strata="sex")


def test_four_groups_match_lifelines_multivariate_logrank():
    _, inputs = lung_with_ecog()
    ours = logrank_test(inputs.time, inputs.event, inputs.group)
    theirs = multivariate_logrank_test(inputs.time, inputs.group, inputs.event)
    assert ours.df == theirs.degrees_of_freedom == 3
    assert ours.statistic == pytest.approx(theirs.test_statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-8)


def test_stratified_observed_minus_expected_is_the_stratified_cox_score():
    # Under H0 the stratified Cox partial-likelihood score for a 0/1 covariate is Σ (O − E) of the group coded 1
    # (Klein & Moeschberger §7.5); statsmodels computes it independently.
    table, _ = lung_with_ecog()
    inputs = survival_inputs(table, "time", "status", group="sex", strata="ph.ecog")
    result = logrank_test(inputs.time, inputs.event, inputs.group, inputs.strata)
    female = result.summary.row(1, named=True)
    model = PHReg(
        inputs.time, (inputs.group == 2).astype(float)[:, None], status=inputs.event.astype(float),
        strata=inputs.strata, ties="breslow",
    )
    assert female["observed"] - female["expected"] == pytest.approx(model.score(np.zeros(1))[0], rel=1e-10)
    assert result.name == "stratified log-rank"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4))
def test_without_ties_the_stratified_test_is_the_stratified_cox_score_test(seed, n_strata):
    # With distinct event times the hypergeometric variance equals the Cox information at β = 0, so the
    # stratified log-rank chi-square is statsmodels' stratified score test.
    rng = np.random.default_rng(seed)
    n = 60
    time = rng.permutation(np.arange(1, n + 1)).astype(float)
    event = rng.random(n) < 0.7
    event[:2] = True
    group = np.tile([0, 1], n // 2)
    strata = rng.integers(0, n_strata, n)
    result = logrank_test(time, event, group, strata)
    model = PHReg(time, group.astype(float)[:, None], status=event.astype(float), strata=strata, ties="breslow")
    score = model.score(np.zeros(1))
    information = -model.hessian(np.zeros(1))
    if information[0, 0] < 1e-9:
        return
    assert result.statistic == pytest.approx(float(score @ np.linalg.solve(information, score)), rel=1e-9)


survival_rows = st.lists(
    st.tuples(st.integers(0, 40), st.booleans(), st.sampled_from([0, 1, 2]), st.sampled_from(["x", "y"])),
    min_size=4,
    max_size=50,
)


def columns(rows):
    t, e, g, s = (np.array(column) for column in zip(*rows, strict=True))
    return t.astype(float), e.astype(bool), g, s


def outcome(*arguments):
    """The test's (statistic, df, p), or the refusal message when the groups cannot be compared."""
    try:
        result = logrank_test(*arguments)
    except ValueError as exc:
        return str(exc)
    return result.statistic, result.df, result.p_value


def same(first, second):
    if isinstance(first, str) or isinstance(second, str):
        return first == second
    return first[1] == second[1] and np.allclose(first[::2], second[::2], rtol=1e-9, atol=1e-12, equal_nan=True)


@settings(max_examples=80, deadline=None)
@given(survival_rows, st.permutations(["north", "south", "west"]))
def test_relabelling_groups_never_changes_the_p_value(rows, new_names):
    t, e, g, s = columns(rows)
    if len(set(g.tolist())) < 2:
        return
    renamed = np.array([new_names[code] for code in g])
    for strata in (None, s):
        assert same(outcome(t, e, g, strata), outcome(t, e, renamed, strata))


@settings(max_examples=60, deadline=None)
@given(survival_rows, st.randoms(use_true_random=False))
def test_row_order_never_changes_the_test(rows, random):
    shuffled = rows[:]
    random.shuffle(shuffled)
    t, e, g, s = columns(rows)
    if len(set(g.tolist())) < 2:
        return
    assert same(outcome(t, e, g, s), outcome(*columns(shuffled)))


@settings(max_examples=40, deadline=None)
@given(survival_rows)
def test_one_stratum_is_the_unstratified_test(rows):
    t, e, g, _ = columns(rows)
    if len(set(g.tolist())) < 2:
        return
    assert same(outcome(t, e, g), outcome(t, e, g, np.zeros(len(t), dtype=int)))


def test_one_group_is_refused():
    with pytest.raises(ValueError, match="compares groups"):
        logrank_test(np.array([1.0, 2.0]), np.array([True, True]), np.array(["a", "a"]))


@pytest.mark.parametrize("labels", [[1, 2, 0, 0], ["west", "north", "south", "south"]])
def test_a_group_never_at_risk_beside_another_counts_for_no_degree_of_freedom(labels) -> None:
    # Found by the relabelling property: group 2 ('north') is alone in its stratum, so its variance is 0.
    # R's survdiff drops the first group and then stops on a singular matrix, or not, by the labels' order;
    # U' V⁻ U with df = rank(V) gives one answer: the comparison of the other two groups in stratum y.
    time = np.array([0.0, 0.0, 1.0, 1.0])
    event = np.array([True, True, False, True])
    result = logrank_test(time, event, np.array(labels), strata=np.array(["y", "x", "y", "y"]))
    # stratum y at t = 0: 3 at risk (1 of the first group, 2 of the other), 1 death in the first group:
    # O - E = 1 - 1/3, V = 1 * 2/3 * 1/3 * (3 - 1)/(3 - 1) = 2/9 -> chi-square (2/3)^2 / (2/9) = 2
    assert result.df == 1
    assert result.statistic == pytest.approx(2.0)
