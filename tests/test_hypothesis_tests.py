"""tocsin.stats.hypothesis_tests and multiplicity against published R outputs (tests/fixtures/stats/).

Expected values come from the cited sources in ``r_reference.yaml``; properties check what must hold for any
data: relabelling (permuting rows/columns of a table, swapping groups) never changes a P value, exact
probabilities over all tables sum to one, and the Monte-Carlo P is reproducible by seed.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tocsin.stats.hypothesis_tests import (
    ExactTestTooLarge,
    TestNotApplicable,
    fisher_exact,
    fisher_monte_carlo,
    kruskal_wallis,
    pearson_chi_square,
    t_test,
    wilcoxon_rank_sum,
)
from tocsin.stats.multiplicity import adjust_p_values

FIXTURES = Path(__file__).parent / "fixtures" / "stats"
REFERENCE = yaml.safe_load((FIXTURES / "r_reference.yaml").read_text())


def _ids(section: str) -> list[str]:
    return [case["id"] for case in REFERENCE[section]]


def _samples(case: dict) -> dict[int, np.ndarray]:
    frame = pl.read_csv(FIXTURES / case["data"], null_values=[""]).drop_nulls(case["value"])
    return {
        int(month): group.get_column(case["value"]).to_numpy()
        for (month,), group in frame.group_by(case["group"], maintain_order=True)
    }


@pytest.mark.parametrize("case", REFERENCE["fisher"], ids=_ids("fisher"))
def test_fisher_matches_r(case: dict) -> None:
    result = fisher_exact(case["table"])
    assert result.p == pytest.approx(case["p"], abs=case["tolerance"])
    if "odds_ratio" in case:
        assert result.details["odds_ratio"] == pytest.approx(case["odds_ratio"], abs=case["odds_ratio_tolerance"])
        assert result.details["odds_ratio_low"] == pytest.approx(case["odds_ratio_low"], abs=case["interval_tolerance"])
        assert result.details["odds_ratio_high"] == pytest.approx(
            case["odds_ratio_high"], abs=case["interval_tolerance"]
        )


@pytest.mark.parametrize("case", REFERENCE["chisq"], ids=_ids("chisq"))
def test_chi_square_matches_r(case: dict) -> None:
    result = pearson_chi_square(case["table"])
    assert result.statistic == pytest.approx(case["statistic"], abs=case["statistic_tolerance"])
    assert result.df == case["df"]
    assert result.p == pytest.approx(case["p"], rel=case["p_relative_tolerance"])


@pytest.mark.parametrize("case", REFERENCE["wilcoxon"], ids=_ids("wilcoxon"))
def test_wilcoxon_matches_r(case: dict) -> None:
    result = wilcoxon_rank_sum(case["x"], case["y"])
    assert result.statistic == case["statistic"]
    assert result.p == pytest.approx(case["p"], abs=case["tolerance"])
    assert result.method.startswith("exact" if case["method"] == "exact" else "normal")


@pytest.mark.parametrize("case", REFERENCE["t_test"], ids=_ids("t_test"))
def test_t_test_matches_r(case: dict) -> None:
    result = t_test(case["x"], case["y"], equal_variance=case["equal_variance"])
    assert result.statistic == pytest.approx(case["statistic"], abs=case["statistic_tolerance"])
    assert result.df == pytest.approx(case["df"], abs=case["df_tolerance"])
    assert result.p == pytest.approx(case["p"], abs=case["tolerance"])


@pytest.mark.parametrize("case", REFERENCE["kruskal"], ids=_ids("kruskal"))
def test_kruskal_matches_r(case: dict) -> None:
    result = kruskal_wallis(list(_samples(case).values()))
    assert result.statistic == pytest.approx(case["statistic"], abs=case["statistic_tolerance"])
    assert result.df == case["df"]
    assert result.p == pytest.approx(case["p"], rel=case["p_relative_tolerance"])


@pytest.mark.parametrize("case", REFERENCE["holm_pairwise_wilcoxon"], ids=_ids("holm_pairwise_wilcoxon"))
def test_holm_over_pairwise_wilcoxon_matches_r(case: dict) -> None:
    samples = _samples(case)
    pairs = list(case["adjusted"])
    raw = []
    for pair in pairs:
        second, first = (int(m) for m in pair.split("-"))
        raw.append(wilcoxon_rank_sum(samples[second], samples[first]).p)
    adjusted = adjust_p_values(raw, "holm")
    for pair, value in zip(pairs, adjusted, strict=True):
        assert value == pytest.approx(case["adjusted"][pair], abs=case["tolerance"]), pair


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=6),
    st.lists(st.integers(0, 4), min_size=1, max_size=6),
)
def test_tied_exact_p_follows_r_4_6_rule_by_enumerating_every_split(x: list[int], y: list[int]) -> None:
    """R >= 4.6.0 (stats/R/wilcox.test.R, .wilcox_test_two_pval_exact with .pwilcox on the tied ranks):
    above the centre 2·P(W > W_obs − 1), else 2·P(W ≤ W_obs); here by listing all C(m+n, m) splits."""
    if len(set(x + y)) < 2:
        return
    ranks = stats.rankdata(x + y)
    m, n = len(x), len(y)
    splits = np.array([ranks[list(c)].sum() for c in itertools.combinations(range(m + n), m)]) - m * (m + 1) / 2
    observed = ranks[:m].sum() - m * (m + 1) / 2
    tail = (splits > observed - 1 + 1e-9).mean() if observed > m * n / 2 else (splits < observed + 1e-9).mean()
    assert wilcoxon_rank_sum(x, y, ties="exact").p == pytest.approx(min(1.0, 2 * tail), rel=1e-12, abs=1e-15)


def test_ties_rule_changes_only_tied_small_samples() -> None:
    untied = ([0.8, 0.83, 1.89, 1.04, 1.45], [1.15, 0.88, 0.9, 0.74, 1.21])
    assert wilcoxon_rank_sum(*untied, ties="exact").p == wilcoxon_rank_sum(*untied).p
    sleep = REFERENCE["wilcoxon"][2]
    normal, exact = wilcoxon_rank_sum(sleep["x"], sleep["y"]), wilcoxon_rank_sum(sleep["x"], sleep["y"], ties="exact")
    assert normal.method.startswith("normal") and exact.method.startswith("exact permutation")
    assert normal.statistic == exact.statistic == 25.5


def test_wilcoxon_is_exact_below_50_without_ties_and_normal_from_50() -> None:
    small = wilcoxon_rank_sum(np.arange(49), np.arange(49) + 0.5)
    large = wilcoxon_rank_sum(np.arange(50), np.arange(49) + 0.5)
    assert small.method.startswith("exact") and large.method.startswith("normal")
    assert "50 or more" in large.method


def test_yates_only_for_2x2_and_never_larger_than_uncorrected() -> None:
    table = [[12, 5], [7, 14]]
    assert pearson_chi_square(table, yates=True).statistic < pearson_chi_square(table).statistic
    with pytest.raises(TestNotApplicable, match="2×2"):
        pearson_chi_square([[1, 2, 3], [4, 5, 6]], yates=True)


def test_exact_limit_is_a_clear_error_and_monte_carlo_is_the_way_out() -> None:
    job = [[1, 3, 10, 6], [2, 3, 10, 7], [1, 6, 14, 12], [0, 1, 9, 11]]
    with pytest.raises(ExactTestTooLarge, match="partial tables"):
        fisher_exact(job, limit=1000)
    first, again = fisher_monte_carlo(job, seed=7), fisher_monte_carlo(job, seed=7)
    assert first.p == again.p
    assert abs(first.p - 0.7827) < 0.05  # 2000 draws: SE ≈ 0.009
    assert "seed 7" in first.method


def test_a_large_sparse_table_is_refused_at_once() -> None:
    # CRS grade 0-4 by four products in 10,000 patients with a rare grade 4: far too many tables
    table = [[1250, 1240, 1260, 1250], [750, 760, 740, 750], [375, 370, 380, 375], [123, 128, 119, 124], [2, 2, 1, 1]]
    with pytest.raises(ExactTestTooLarge, match="more than 10,000,000 partial tables"):
        fisher_exact(table)


def test_degenerate_inputs_say_why() -> None:
    with pytest.raises(TestNotApplicable, match="empty"):
        fisher_exact([[0, 0], [1, 2]])
    with pytest.raises(TestNotApplicable, match="same"):
        wilcoxon_rank_sum([1, 1], [1, 1, 1])
    with pytest.raises(TestNotApplicable, match="at least 2"):
        kruskal_wallis([[1, 2, 3]])
    with pytest.raises(ValueError, match="non-negative whole"):
        fisher_exact([[1.5, 2], [3, 4]])


def _tables(max_rows: int = 3, max_cols: int = 4, max_cell: int = 6) -> st.SearchStrategy[np.ndarray]:
    return st.tuples(st.integers(2, max_rows), st.integers(2, max_cols)).flatmap(
        lambda shape: st.lists(
            st.integers(0, max_cell), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]
        ).map(lambda cells: np.array(cells).reshape(shape))
    ).filter(lambda t: t.sum(axis=0).all() and t.sum(axis=1).all())


@settings(max_examples=60, deadline=None)
@given(_tables(), st.randoms(use_true_random=False))
def test_relabelling_rows_or_columns_never_changes_p(table: np.ndarray, random) -> None:
    rows = list(range(table.shape[0]))
    cols = list(range(table.shape[1]))
    random.shuffle(rows)
    random.shuffle(cols)
    shuffled = table[rows][:, cols]
    assert fisher_exact(shuffled).p == pytest.approx(fisher_exact(table).p, rel=1e-9)
    assert fisher_exact(table.T).p == pytest.approx(fisher_exact(table).p, rel=1e-9)
    assert pearson_chi_square(shuffled).p == pytest.approx(pearson_chi_square(table).p, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(_tables(max_rows=3, max_cols=3, max_cell=4))
def test_exact_p_equals_brute_force_sum_over_every_table(table: np.ndarray) -> None:
    """Independent check: list every table with these margins by brute force, sum R's definition of P."""
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    n = int(table.sum())

    def log_probability(t: np.ndarray) -> float:
        return float(
            sum(math.lgamma(r + 1) for r in rows) + sum(math.lgamma(c + 1) for c in cols) - math.lgamma(n + 1)
            - sum(math.lgamma(x + 1) for x in t.ravel())
        )

    free = [range(int(min(rows[i], cols[j])) + 1) for i in range(len(rows) - 1) for j in range(len(cols) - 1)]
    observed = log_probability(table)
    total = p = 0.0
    for cells in itertools.product(*free):
        inner = np.array(cells).reshape(len(rows) - 1, len(cols) - 1)
        last_col = rows[:-1] - inner.sum(axis=1)
        last_row = cols - np.append(inner, last_col[:, None], axis=1).sum(axis=0)
        full = np.vstack([np.append(inner, last_col[:, None], axis=1), last_row])
        if (full < 0).any():
            continue
        probability = math.exp(log_probability(full))
        total += probability
        if log_probability(full) <= observed + math.log1p(1e-7):
            p += probability
    assert total == pytest.approx(1.0, rel=1e-9)
    assert fisher_exact(table).p == pytest.approx(min(p, 1.0), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_two_row_tables_with_large_counts_match_brute_force(seed: int) -> None:
    """2×4 tables with counts up to ~40 (where the closed-form tails of the last two columns are used)."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 40, size=(2, 4))
    table[:, table.sum(axis=0) == 0] = 1
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    n = int(table.sum())
    log_fact = np.array([math.lgamma(k + 1) for k in range(n + 1)])
    grids = np.meshgrid(*[np.arange(c + 1) for c in cols[:-1]], indexing="ij")
    first = np.stack([g.ravel() for g in grids], axis=1)
    last = rows[0] - first.sum(axis=1)
    feasible = (last >= 0) & (last <= cols[-1])
    first = np.column_stack([first[feasible], last[feasible]])
    log_p = (
        log_fact[rows].sum() + log_fact[cols].sum() - log_fact[n]
        - log_fact[first].sum(axis=1) - log_fact[cols - first].sum(axis=1)
    )
    observed = log_fact[rows].sum() + log_fact[cols].sum() - log_fact[n] - log_fact[table].sum()
    expected = np.exp(log_p[log_p <= observed + math.log1p(1e-7)]).sum()
    assert fisher_exact(table).p == pytest.approx(min(1.0, expected), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("seed", range(4))
def test_three_by_four_tables_match_brute_force(seed: int) -> None:
    """3×4 tables with counts up to 7: every table listed by brute force (6 free cells), R's definition of P."""
    rng = np.random.default_rng(100 + seed)
    table = rng.integers(0, 8, size=(3, 4))
    table[:, table.sum(axis=0) == 0] = 1
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    n = int(table.sum())
    log_fact = np.array([math.lgamma(k + 1) for k in range(n + 1)])
    ranges = [np.arange(min(rows[i], cols[j]) + 1) for i in range(2) for j in range(3)]
    free = np.stack([g.ravel() for g in np.meshgrid(*ranges, indexing="ij")], axis=1).reshape(-1, 2, 3)
    top = np.concatenate([free, (rows[None, :2] - free.sum(axis=2))[:, :, None]], axis=2)
    full = np.concatenate([top, (cols[None, :] - top.sum(axis=1))[:, None, :]], axis=1)
    full = full[(full >= 0).all(axis=(1, 2))]
    constant = log_fact[rows].sum() + log_fact[cols].sum() - log_fact[n]
    log_p = constant - log_fact[full].sum(axis=(1, 2))
    observed = constant - log_fact[table].sum()
    assert np.exp(log_p).sum() == pytest.approx(1.0, rel=1e-9)
    expected = np.exp(log_p[log_p <= observed + math.log1p(1e-7)]).sum()
    assert fisher_exact(table).p == pytest.approx(min(1.0, expected), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Precision loss occurred")
@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30),
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30),
)
def test_swapping_the_two_groups_never_changes_p(x: list[float], y: list[float]) -> None:
    if len(set(x + y)) < 2:
        return
    assert wilcoxon_rank_sum(x, y).p == pytest.approx(wilcoxon_rank_sum(y, x).p, rel=1e-12)
    if np.var(x) + np.var(y) > 0:
        for equal in (False, True):
            assert t_test(x, y, equal).p == pytest.approx(t_test(y, x, equal).p, rel=1e-9, abs=1e-15)
    assert kruskal_wallis([x, y]).p == pytest.approx(kruskal_wallis([y, x]).p, rel=1e-12)


def test_two_by_two_agrees_with_scipy_where_scipy_is_exact() -> None:
    for table in ([[8, 2], [1, 5]], [[2, 15], [10, 3]], [[43, 9], [44, 4]], [[10, 0], [3, 7]]):
        assert fisher_exact(table).p == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)
