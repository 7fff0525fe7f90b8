"""Binomial proportion CIs (``tocsin.stats.proportions``) against published R output, and their invariants.

Reference values: ``tests/fixtures/stats/binom_*.yaml`` (each case names the R call and where its printed
output was found). Properties: each interval contains its point estimate and lies in [0, 1]; a higher
confidence level gives a wider interval containing the narrower one; the continuity-corrected Wilson interval
contains the uncorrected one (it is the same score-test set with the acceptance region widened by 1/(2n)).
"""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tocsin.stats import proportions
from tocsin.stats.proportions import CIMethod, proportion_ci

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stats"
CLOPPER_PEARSON = yaml.safe_load((FIXTURES / "binom_clopper_pearson.yaml").read_text())
WILSON = yaml.safe_load((FIXTURES / "binom_wilson.yaml").read_text())


def _close(actual: float, expected: float, case: dict) -> bool:
    if "relative" in case:
        return abs(actual - expected) <= case["relative"] * abs(expected)
    return abs(actual - expected) <= 0.5 * 10.0 ** -case["decimals"] + 1e-12


@pytest.mark.parametrize("case", CLOPPER_PEARSON["cases"], ids=lambda c: f"{c['events']}/{c['n']}")
def test_clopper_pearson_matches_r_binom_test(case: dict) -> None:
    ci = proportion_ci([case["events"]], [case["n"]], CIMethod.CLOPPER_PEARSON, case["confidence"])
    assert _close(float(ci.lower[0]), case["lower"], case), (float(ci.lower[0]), case["source"])
    assert _close(float(ci.upper[0]), case["upper"], case), (float(ci.upper[0]), case["source"])


@pytest.mark.parametrize("case", WILSON["cases"], ids=lambda c: f"{c['method']}-{c['events']}/{c['n']}")
def test_wilson_matches_r_prop_test(case: dict) -> None:
    ci = proportion_ci([case["events"]], [case["n"]], case["method"], 0.95)
    assert _close(float(ci.lower[0]), case["lower"], case), (float(ci.lower[0]), case["source"])
    assert _close(float(ci.upper[0]), case["upper"], case), (float(ci.upper[0]), case["source"])


def test_vectorised_equals_one_at_a_time_and_summary_has_every_row() -> None:
    events, n = [0, 3, 7, 10], [10, 10, 10, 10]
    together = proportion_ci(events, n, CIMethod.WILSON_CC)
    for i, (x, m) in enumerate(zip(events, n, strict=True)):
        alone = proportion_ci([x], [m], CIMethod.WILSON_CC)
        assert together.lower[i] == alone.lower[0] and together.upper[i] == alone.upper[0]
    assert together.summary.columns == ["events", "n", "estimate", "lower", "upper"]
    assert together.summary.height == 4


def test_edges_zero_and_all_events() -> None:
    for method in CIMethod:
        ci = proportion_ci([0, 10], [10, 10], method)
        assert ci.lower[0] == 0.0 and ci.upper[1] == 1.0


def test_no_patient_gives_nan_not_an_error() -> None:
    ci = proportion_ci([0], [0])
    assert np.isnan(ci.estimate[0]) and np.isnan(ci.lower[0]) and np.isnan(ci.upper[0])


@pytest.mark.parametrize(
    ("events", "n", "confidence", "message"),
    [([3], [2], 0.95, "0 <= events <= n"), ([-1], [5], 0.95, "0 <= events <= n"),
     ([1.5], [5], 0.95, "whole numbers"), ([1], [5], 1.0, "confidence"), ([1, 2], [5], 0.95, "length")],
)
def test_bad_counts_are_refused(events: list, n: list, confidence: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        proportion_ci(events, n, confidence=confidence)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError):
        proportion_ci([1], [2], "agresti")


counts = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@given(counts, st.sampled_from(list(CIMethod)))
def test_interval_contains_estimate_and_stays_in_unit_range(count: tuple[int, int], method: CIMethod) -> None:
    x, n = count
    ci = proportion_ci([x], [n], method)
    assert 0.0 <= ci.lower[0] <= x / n <= ci.upper[0] <= 1.0


@given(counts, st.sampled_from(list(CIMethod)))
def test_higher_confidence_gives_an_interval_containing_the_lower_one(count: tuple[int, int], method) -> None:
    x, n = count
    narrow = proportion_ci([x], [n], method, 0.90)
    wide = proportion_ci([x], [n], method, 0.99)
    assert wide.lower[0] <= narrow.lower[0] + 1e-12 and narrow.upper[0] <= wide.upper[0] + 1e-12


@given(counts)
def test_continuity_correction_only_widens_the_wilson_interval(count: tuple[int, int]) -> None:
    x, n = count
    plain = proportion_ci([x], [n], CIMethod.WILSON)
    corrected = proportion_ci([x], [n], CIMethod.WILSON_CC)
    assert corrected.lower[0] <= plain.lower[0] + 1e-12 and plain.upper[0] <= corrected.upper[0] + 1e-12


def test_docstring_example() -> None:
    failures, _ = doctest.testmod(proportions)
    assert failures == 0
