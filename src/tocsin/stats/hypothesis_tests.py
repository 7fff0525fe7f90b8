"""Two-group and k-group tests for a comparison table, each matching the R function researchers check against.

Every test returns a :class:`HypothesisTestResult` (name, statistic, df, exact P, and how P was obtained).
scipy does the arithmetic where it agrees with R; what is written here by hand is what scipy lacks:

* **Fisher's exact test for r×c tables** (Fisher–Freeman–Halton). ``scipy.stats.fisher_exact`` 1.17 is exact
  for 2×2 only; for larger tables its default is Monte-Carlo. :func:`fisher_exact` sums over every table
  with the observed margins along Mehta & Patel's network (column by column, partial tables merged by
  remaining row totals and probability so far, whole sub-networks counted or dropped by bounds, the last
  2×2 in closed form), with a work limit checked before each column. The same code serves 2×2, so one
  definition of "as or more extreme" holds for all shapes.
* **R's tolerance in "as or more extreme"**: R ``fisher.test`` counts the tables whose probability is at most
  the observed one times ``1 + 1e-7`` (``relErr``); scipy uses ``1 + 1e-14``. Ties between tables of equal
  probability computed in floating point are therefore counted as R counts them.
* **R's choice of exact vs normal Wilcoxon**: ``wilcox.test`` is exact when both samples have fewer than 50
  values, otherwise normal with continuity correction; scipy's ``method="auto"`` switches at 8 values, so
  :func:`wilcoxon_rank_sum` chooses explicitly. Tied small samples: normal before R 4.6.0, exact
  conditional from R 4.6.0 — scipy has no exact tied distribution, so that one is counted here.

References:
    Fisher RA (1935). The logic of inductive inference. J R Stat Soc 98:39-82. doi:10.2307/2342435.
    Freeman GH, Halton JH (1951). Note on an exact treatment of contingency, goodness of fit and other
    problems of significance. Biometrika 38:141-149. doi:10.1093/biomet/38.1-2.141.
    Mehta CR, Patel NR (1983). A network algorithm for performing Fisher's exact test in r×c contingency
    tables. JASA 78:427-434. doi:10.1080/01621459.1983.10477989.
    Pearson K (1900). doi:10.1080/14786440009463897; Yates F (1934). doi:10.2307/2983604.
    Mann HB, Whitney DR (1947). doi:10.1214/aoms/1177730491. Welch BL (1947). doi:10.1093/biomet/34.1-2.28.
    Kruskal WH, Wallis WA (1952). doi:10.1080/01621459.1952.10483441.
    Agresti A (2002). Categorical Data Analysis, 2nd ed., Wiley, ISBN 978-0-471-36093-3, §3.5.
    R Core Team. stats::fisher.test, chisq.test, wilcox.test, t.test, kruskal.test (R >= 4.0).

Example:
    >>> round(fisher_exact([[3, 1], [1, 3]]).p, 4)    # R: fisher.test(TeaTasting) two-sided
    0.4857
    >>> pearson_chi_square([[762, 327, 468], [484, 239, 477]]).df
    2.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
import polars as pl
from scipy import stats
from scipy.special import gammaln

R_RELATIVE_TOLERANCE = 1e-7
"""``relErr - 1`` in R's fisher.test: tables within this relative distance of the observed probability tie."""

DEFAULT_EXACT_LIMIT = 10_000_000
"""Most partial tables the exact r×c enumeration may create (a few seconds); memory stays bounded."""

DEFAULT_RESAMPLES = 2000
"""Monte-Carlo tables drawn by default, as R's ``fisher.test(simulate.p.value = TRUE)`` (``B = 2000``)."""


class TestNotApplicable(ValueError):
    """The data do not allow this test (too few groups, a constant variable, ...); the message says why."""

    __test__ = False  # not a pytest class


class ExactTestTooLarge(ValueError):
    """The exact enumeration would exceed its work limit; the message offers the Monte-Carlo alternative."""


@dataclass(frozen=True)
class HypothesisTestResult:
    """One test's outcome: ``test`` is the stable key, ``name`` the text a table prints."""

    test: str
    name: str
    statistic: float | None
    statistic_name: str | None
    df: float | None
    p: float
    method: str
    details: Mapping[str, float | int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def summary(self) -> pl.DataFrame:
        """One row: test, name, statistic, statistic_name, df, p, method."""
        return pl.DataFrame(
            {
                "test": [self.test],
                "name": [self.name],
                "statistic": [self.statistic],
                "statistic_name": [self.statistic_name],
                "df": [self.df],
                "p": [self.p],
                "method": [self.method],
            },
            schema={
                "test": pl.String,
                "name": pl.String,
                "statistic": pl.Float64,
                "statistic_name": pl.String,
                "df": pl.Float64,
                "p": pl.Float64,
                "method": pl.String,
            },
        )


def _contingency(table: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    counts = np.asarray(table)
    if counts.ndim != 2:
        raise ValueError("a contingency table has two dimensions (levels × groups)")
    if counts.size and (np.any(counts < 0) or np.any(counts != np.round(counts))):
        raise ValueError("a contingency table holds non-negative whole counts")
    counts = counts.astype(np.int64)
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        raise TestNotApplicable(
            f"a {counts.shape[0]}×{counts.shape[1]} table has nothing to compare (needs 2×2 or more)"
        )
    if np.any(counts.sum(axis=1) == 0) or np.any(counts.sum(axis=0) == 0):
        raise TestNotApplicable("a row or column of the table is empty; drop empty levels and groups first")
    return counts


def expected_counts(table: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Counts expected under independence (row total × column total / n), the basis of the χ²/Fisher choice."""
    return stats.contingency.expected_freq(_contingency(table))


def pearson_chi_square(table: Sequence[Sequence[int]] | np.ndarray, yates: bool = False) -> HypothesisTestResult:
    """Pearson's χ² test of independence; ``yates=True`` is R's ``chisq.test(correct = TRUE)`` (2×2 only).

    R applies the continuity correction to 2×2 tables only and never lets it exceed ``|O - E|``; scipy's
    ``chi2_contingency(correction=True)`` does the same, so scipy computes it. Asking for Yates on a
    larger table is refused instead of silently ignored.

    >>> round(pearson_chi_square([[762, 327, 468], [484, 239, 477]]).statistic, 2)   # R chisq.test(M)
    30.07
    """
    counts = _contingency(table)
    if yates and counts.shape != (2, 2):
        raise TestNotApplicable(
            f"Yates' continuity correction is defined for 2×2 tables; this one is {counts.shape[0]}×{counts.shape[1]} "
            "(use the uncorrected χ² test 'chisq')"
        )
    result = stats.chi2_contingency(counts, correction=yates)
    minimum_expected = float(result.expected_freq.min())
    return HypothesisTestResult(
        test="chisq_yates" if yates else "chisq",
        name="Pearson's χ² test with Yates' continuity correction" if yates else "Pearson's χ² test",
        statistic=float(result.statistic),
        statistic_name="X-squared",
        df=float(result.dof),
        p=float(result.pvalue),
        method="asymptotic χ² distribution" + (", continuity-corrected" if yates else ""),
        details={"minimum_expected": minimum_expected},
    )


def _log_factorials(n: int) -> np.ndarray:
    """``log k!`` for k = 0 … n, looked up by index everywhere below."""
    return gammaln(np.arange(n + 1, dtype=np.float64) + 1.0)


def _most_probable_bound(rows: np.ndarray, columns: np.ndarray, log_fact: np.ndarray) -> np.ndarray:
    """Upper bound of ``max -Σ log x!`` over the completions of each state (its most probable completion).

    Lagrangian relaxation of the margins: for any multipliers ``a_i`` (rows) and ``b_j`` (columns),
    ``max_x Σ[-log x_ij! - (a_i + b_j) x_ij] + Σ a_i R_i + Σ b_j C_j`` bounds the constrained maximum, and
    the inner maximum is separable: cell by cell, ``x = ⌊exp(-(a_i + b_j))⌋`` (capped by the margins).
    Multipliers from the independence table (``x_ij ≈ R_i C_j / N``) make the bound close.
    """
    total = columns.sum()
    with np.errstate(divide="ignore"):
        a = np.where(rows > 0, np.log(total) / 2 - np.log(np.maximum(rows, 1)), 0.0)
    b = np.log(total) / 2 - np.log(columns)
    t = a[:, :, None] + b[None, None, :]
    cap = np.minimum(rows[:, :, None], columns[None, None, :])
    x = np.minimum(cap, np.floor(np.exp(-t))).astype(np.int64)
    inner = (-log_fact[x] - t * x).sum(axis=(1, 2))
    return inner + (a * rows).sum(axis=1) + (b * columns).sum()


def _poured(rows: np.ndarray, columns: np.ndarray, log_fact: np.ndarray) -> np.ndarray:
    """``Σ log x!`` when each row is poured into the largest columns first: an upper bound of ``Σ log x!``.

    The poured vector majorises every other way to split the row under the column caps, and ``Σ log x!``
    is Schur-convex, so no completion exceeds it.
    """
    caps = np.sort(columns)[::-1]
    before = np.concatenate([[0], np.cumsum(caps)[:-1]])
    cells = np.clip(rows[:, :, None] - before[None, None, :], 0, caps[None, None, :])
    return log_fact[cells].sum(axis=(1, 2))


def _poured_columns(rows: np.ndarray, columns: np.ndarray, log_fact: np.ndarray) -> np.ndarray:
    """The same bound with the columns poured into the largest rows first."""
    caps = -np.sort(-rows, axis=1)
    before = np.concatenate([np.zeros((len(rows), 1), dtype=np.int64), np.cumsum(caps, axis=1)[:, :-1]], axis=1)
    cells = np.clip(columns[None, None, :] - before[:, :, None], 0, caps[:, :, None])
    return log_fact[cells].sum(axis=(1, 2))


def _decide(
    remaining: np.ndarray, value: np.ndarray, later: np.ndarray, log_fact: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which states surely count whole, and which surely not at all (bounds computed in chunks)."""
    all_count = np.empty(len(value), dtype=bool)
    none_count = np.empty(len(value), dtype=bool)
    chunk = max(1, _CHUNK // (remaining.shape[1] * len(later)))  # the bounds hold states × rows × columns
    for start in range(0, len(value), chunk):
        rows = slice(start, start + chunk)
        left = remaining[rows]
        most = _most_probable_bound(left, later, log_fact)
        least = -np.minimum(_poured(left, later, log_fact), _poured_columns(left, later, log_fact))
        all_count[rows] = value[rows] + most <= threshold
        none_count[rows] = value[rows] + least > threshold
    return all_count, none_count


def _two_by_two_tails(
    first: np.ndarray, second: np.ndarray, column: np.ndarray, value: np.ndarray, log_fact: np.ndarray, threshold: float
) -> np.ndarray:
    """Share of each state's completions that count, when a 2×2 sub-table is all that is left to fill.

    Rows with remainders ``first`` and ``second``; columns ``column`` and the rest. The one free cell ``x``
    is hypergeometric and its probability unimodal, so the completions that count (``value + f(x)`` at or
    below the threshold) are the two tails outside an interval around the mode; the interval's ends are
    found by bisection on each side, and the tails come from the hypergeometric CDF and survival function.
    """
    low, high = np.maximum(0, column - second), np.minimum(first, column)

    def f(x: np.ndarray) -> np.ndarray:
        return -(log_fact[x] + log_fact[first - x] + log_fact[column - x] + log_fact[second - column + x])

    mode = np.clip((first + 1) * (column + 1) // (first + second + 2), low, high)
    straddles = value + f(mode) > threshold
    left_low, left_high = low.copy(), mode.copy()  # smallest x ≤ mode above the threshold
    while np.any(left_low < left_high):
        middle = (left_low + left_high) // 2
        above = value + f(middle) > threshold
        left_high, left_low = np.where(above, middle, left_high), np.where(above, left_low, middle + 1)
    right_low, right_high = mode.copy(), high.copy()  # largest x ≥ mode above the threshold
    while np.any(right_low < right_high):
        middle = (right_low + right_high + 1) // 2
        above = value + f(middle) > threshold
        right_low, right_high = np.where(above, middle, right_low), np.where(above, right_high, middle - 1)
    total = first + second
    size = int(total.max()) + 1
    key = (first * size + second) * size + column
    nodes, node_of = np.unique(key, return_inverse=True)
    if len(nodes) > _TAIL_TABLES:
        tails = stats.hypergeom.cdf(left_low - 1, total, first, column) + stats.hypergeom.sf(
            right_low, total, first, column
        )
        return np.where(straddles, tails, 1.0)
    # few distinct sub-tables (always so with two rows): cumulative tails once per sub-table, summed from the
    # outside in so that small tails keep their precision
    lower_tails, upper_tails, offsets = [], [], [0]
    for node in nodes:
        pair, c = divmod(int(node), size)
        u, w = divmod(pair, size)
        x = np.arange(max(0, c - w), min(u, c) + 1)
        log_scale = log_fact[u] + log_fact[w] + log_fact[c] + log_fact[u + w - c] - log_fact[u + w]
        pmf = np.exp(log_scale - log_fact[x] - log_fact[u - x] - log_fact[c - x] - log_fact[w - c + x])
        lower_tails.append(np.concatenate([[0.0], np.cumsum(pmf)]))  # [k] = P(X < low + k)
        upper_tails.append(np.concatenate([np.cumsum(pmf[::-1])[::-1], [0.0]]))  # [k] = P(X ≥ low + k)
        offsets.append(offsets[-1] + len(x) + 1)
    start = np.asarray(offsets[:-1])[node_of]
    tails = (
        np.concatenate(lower_tails)[start + left_low - low] + np.concatenate(upper_tails)[start + right_low - low + 1]
    )
    return np.where(straddles, tails, 1.0)


def _enumerate_tables(counts: np.ndarray, limit: int) -> tuple[float, float]:
    """P (R's definition) and the observed table's probability, over every table with the observed margins.

    States are partial tables, filled column by column: the remaining row totals (sorted, because rows with
    equal remainders are interchangeable for every completion), ``v`` = the log of ``Π 1/x!`` over the cells
    filled so far, and how many partial tables share both (Mehta & Patel's network, with simple bounds).
    Before each column, a state whose every completion is surely as or less probable than the observed
    table is added whole, using the closed form ``Σ_completions Π 1/x! = N! / (Π R! Π C!)``; one whose
    every completion is surely more probable is dropped (bounds: :func:`_most_probable_bound`,
    :func:`_poured`). Columns are filled smallest first, so the largest is the one left determined; in
    the last free column the final 2×2 sub-table is summed in closed form (:func:`_last_column`).
    """
    if counts.shape[0] > counts.shape[1]:
        counts = counts.T
    row_totals = counts.sum(axis=1)
    column_totals = np.sort(counts.sum(axis=0))
    n = int(row_totals.sum())
    log_fact = _log_factorials(n)
    constant = log_fact[row_totals].sum() + log_fact[column_totals].sum() - log_fact[n]
    observed = -log_fact[counts].sum()
    threshold = observed + np.log1p(R_RELATIVE_TOLERANCE)

    n_rows = len(row_totals)
    budget = _Budget(limit, f"a table of {n} with margins {row_totals.tolist()} × {column_totals.tolist()}")
    remaining = np.sort(row_totals)[None, :].astype(np.int64)
    value = np.zeros(1)
    weight = np.ones(1)
    p = 0.0
    for index, column_total in enumerate(column_totals[:-1]):
        later = column_totals[index:]
        all_count, none_count = _decide(remaining, value, later, log_fact, threshold)
        completions = log_fact[remaining.sum(axis=1)] - log_fact[remaining].sum(axis=1) - log_fact[later].sum()
        p += float((weight * np.exp(constant + value + completions))[all_count].sum())
        keep = ~(all_count | none_count)
        remaining, value, weight = remaining[keep], value[keep], weight[keep]
        if not len(value):
            break
        last = index == len(column_totals) - 2
        budget.foresee(_fillings(remaining, int(column_total), n_rows - 2 if last else n_rows - 1))
        if last:
            p += _last_column(remaining, value, weight, int(column_total), log_fact, threshold, constant, budget)
            break
        outputs = _fill_column(remaining, np.full(len(value), column_total), value, weight, log_fact, budget)
        remaining, value, weight = _merge_states(outputs, n_rows)
    return min(p, 1.0), float(np.exp(constant + observed))


_CHUNK = 250_000
"""Most partial tables expanded at once; larger expansions are split, so memory stays near 20 MB."""

_TAIL_TABLES = 4096
"""Up to this many distinct 2×2 sub-tables, their tails are tabulated once; beyond, scipy computes each."""


class _Budget:
    """Counts the partial tables created, so that the enumeration stops at its work limit."""

    def __init__(self, limit: int, margins: str) -> None:
        self.limit, self.used, self.margins = limit, 0, margins

    def spend(self, amount: int) -> None:
        self.used += amount
        self.foresee(0)

    def foresee(self, amount: float) -> None:
        """Stop now if ``amount`` more partial tables would pass the limit (so a refusal comes fast)."""
        if self.used + amount > self.limit:
            raise ExactTestTooLarge(f"the exact test needs more than {self.limit:,} partial tables ({self.margins})")


def _fillings(remaining: np.ndarray, column_total: int, rows_to_fill: int) -> float:
    """How many partial tables filling the first ``rows_to_fill`` cells of the next column creates.

    Per distinct state of remaining row totals, the ways to choose those cells (each at most its row's
    remainder) so that the other rows can still take the rest of the column: coefficients of
    ``Π (1 + t + … + t^{R_i})``, multiplied in with running sums.
    """
    nodes, per_state = np.unique(remaining, axis=0, return_inverse=True)
    ways = np.zeros((len(nodes), column_total + 1))
    ways[:, 0] = 1.0
    for row in range(rows_to_fill):
        running = np.cumsum(ways, axis=1)
        below = np.arange(column_total + 1)[None, :] - (np.minimum(nodes[:, row], column_total)[:, None] + 1)
        beyond_cap = np.where(below >= 0, np.take_along_axis(running, np.maximum(below, 0), axis=1), 0.0)
        ways = running - beyond_cap
    rest = nodes[:, rows_to_fill:].sum(axis=1)
    reachable = np.arange(column_total + 1)[None, :] >= column_total - rest[:, None]
    return float((ways * reachable).sum(axis=1)[per_state.ravel()].sum())


def _expand_cells(
    remaining: np.ndarray,
    column_left: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    rows: range,
    log_fact: np.ndarray,
    budget: _Budget,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Every way to fill ``rows`` of the current column, in chunks of at most ``_CHUNK`` partial tables.

    A cell lies between what the rows below can no longer take and what its row and the column have left,
    so every partial table can be completed.
    """
    for row in rows:
        below = remaining[:, row + 1 :].sum(axis=1)
        low = np.maximum(0, column_left - below)
        choices = np.minimum(remaining[:, row], column_left) - low + 1
        total = int(choices.sum())
        if total > _CHUNK and len(value) > 1:
            half, rest = len(value) // 2, range(row, rows.stop)
            return [
                *_expand_cells(
                    remaining[:half], column_left[:half], value[:half], weight[:half], rest, log_fact, budget
                ),
                *_expand_cells(
                    remaining[half:], column_left[half:], value[half:], weight[half:], rest, log_fact, budget
                ),
            ]
        budget.spend(total)
        source = np.repeat(np.arange(len(value)), choices)
        cell = low[source] + (np.arange(total) - (np.cumsum(choices) - choices)[source])
        remaining, column_left, value, weight = remaining[source], column_left[source], value[source], weight[source]
        remaining[:, row] -= cell
        column_left = column_left - cell
        value = value - log_fact[cell]
    return [(remaining, column_left, value, weight)]


def _fill_column(
    remaining: np.ndarray,
    column_left: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    log_fact: np.ndarray,
    budget: _Budget,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every way to fill one whole column: (sorted remaining row totals, value, weight) per chunk."""
    chunks = _expand_cells(remaining, column_left, value, weight, range(remaining.shape[1] - 1), log_fact, budget)
    filled = []
    for left, column_rest, past, count in chunks:
        left[:, -1] -= column_rest  # the last cell takes what the column has left
        filled.append((np.sort(left, axis=1), past - log_fact[column_rest], count))
    return filled


def _last_column(
    remaining: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    column_total: int,
    log_fact: np.ndarray,
    threshold: float,
    constant: float,
    budget: _Budget,
) -> float:
    """P contributed by the states before the last free column (the column after it is determined).

    All but the last two cells of the column are enumerated; each such choice also fixes those rows'
    cells in the determined column (their remainders). What is left is a 2×2 sub-table, summed in closed
    form by :func:`_two_by_two_tails`.
    """
    n_rows = remaining.shape[1]
    column_left = np.full(len(value), column_total)
    chunks = _expand_cells(remaining, column_left, value, weight, range(n_rows - 2), log_fact, budget)
    p = 0.0
    for left, column_rest, past, count in chunks:
        budget.spend(len(past))
        past = past - log_fact[left[:, :-2]].sum(axis=1)
        first, second = left[:, -2], left[:, -1]
        both = first + second
        sub_total = (
            log_fact[both] - log_fact[first] - log_fact[second] - log_fact[column_rest] - log_fact[both - column_rest]
        )
        share = _two_by_two_tails(first, second, column_rest, past, log_fact, threshold)
        p += float((count * np.exp(constant + past + sub_total) * share).sum())
    return p


def _merge_states(
    outputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One state per (remaining row totals, value to 1e-9): later columns cannot tell such partial tables apart."""
    rows = [f"r{i}" for i in range(n_rows)]
    merged = (
        pl.concat(
            [
                pl.DataFrame({f"r{i}": left[:, i] for i in range(n_rows)}).with_columns(
                    key=pl.Series(np.round(value * 1e9).astype(np.int64)),
                    value=pl.Series(value),
                    weight=pl.Series(weight),
                )
                for left, value, weight in outputs
            ]
        )
        .group_by([*rows, "key"], maintain_order=True)  # same input, same order of summation, same P
        .agg(pl.col("value").first(), pl.col("weight").sum())
    )
    return (
        merged.select(rows).to_numpy().astype(np.int64),
        merged.get_column("value").to_numpy(),
        merged.get_column("weight").to_numpy(),
    )


def fisher_exact(table: Sequence[Sequence[int]] | np.ndarray, limit: int = DEFAULT_EXACT_LIMIT) -> HypothesisTestResult:
    """Fisher's exact test (2×2) or the Fisher–Freeman–Halton exact test (r×c), two-sided, as R ``fisher.test``.

    P sums the probabilities (hypergeometric, margins fixed) of every table no more probable than the one
    observed. For 2×2 tables the details carry R's conditional maximum-likelihood odds ratio and its exact
    95% CI (``scipy.stats.contingency.odds_ratio``). Past ``limit`` partial tables the enumeration stops
    with :class:`ExactTestTooLarge`; :func:`fisher_monte_carlo` is the explicit alternative.

    >>> round(fisher_exact([[1, 3, 10, 6], [2, 3, 10, 7], [1, 6, 14, 12], [0, 1, 9, 11]]).p, 4)  # R: 0.7827
    0.7827
    """
    counts = _contingency(table)
    p, observed_probability = _enumerate_tables(counts, limit)
    details: dict[str, float | int | str] = {"observed_table_probability": observed_probability}
    if counts.shape == (2, 2):
        odds = stats.contingency.odds_ratio(counts, kind="conditional")
        interval = odds.confidence_interval(0.95)
        details |= {
            "odds_ratio": float(odds.statistic),
            "odds_ratio_low": float(interval.low),
            "odds_ratio_high": float(interval.high),
        }
        name = "Fisher's exact test"
    else:
        name = "Fisher–Freeman–Halton exact test"
    return HypothesisTestResult(
        test="fisher",
        name=name,
        statistic=None,
        statistic_name=None,
        df=None,
        p=p,
        method="exact: every table with the observed margins",
        details=details,
    )


def fisher_monte_carlo(
    table: Sequence[Sequence[int]] | np.ndarray, seed: int, resamples: int = DEFAULT_RESAMPLES
) -> HypothesisTestResult:
    """Fisher–Freeman–Halton test with a Monte-Carlo P (as R ``fisher.test(simulate.p.value = TRUE, B)``).

    Tables are drawn with the observed margins (``scipy.stats.random_table`` via ``scipy.stats.fisher_exact``
    with a seeded ``MonteCarloMethod``); P = (1 + tables as or less probable) / (resamples + 1), the same
    estimator as R, so its smallest value is 1 / (resamples + 1). The same seed gives the same P.
    """
    counts = _contingency(table)
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    method = stats.MonteCarloMethod(n_resamples=resamples, rng=np.random.default_rng(seed))
    result = stats.fisher_exact(counts, method=method)
    return HypothesisTestResult(
        test="fisher_mc",
        name="Fisher–Freeman–Halton test (Monte-Carlo)",
        statistic=None,
        statistic_name=None,
        df=None,
        p=float(result.pvalue),
        method=f"Monte-Carlo: {resamples:,} random tables with the observed margins, seed {seed}",
        details={"resamples": resamples, "seed": seed},
    )


def _finite(values: Sequence[float] | np.ndarray, label: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise TestNotApplicable(f"{label} has no values")
    return array


WilcoxonTies = Literal["normal", "exact"]
"""Small tied samples: ``normal`` as R < 4.6.0 (normal approximation), ``exact`` as R >= 4.6.0 (conditional)."""


def _conditional_exact_p(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sided P of R >= 4.6.0 ``wilcox.test`` for tied samples: the permutation distribution of the ranks.

    Midranks are whole or half numbers, so twice them are integers and the number of ways each rank sum
    arises is counted exactly by a subset-sum recursion (the distribution R obtains with its
    implementation of the Streitberg–Röhmel shift algorithm; Streitberg B, Röhmel J (1986), Statistical
    Software Newsletter 12:10-17). The two-sided rule is R's, copied as it is: above the centre
    ``P = 2 · P(W > W_obs − 1)``, otherwise ``2 · P(W ≤ W_obs)``, at most 1. (With half-integer W the
    upper tail therefore also counts ``W_obs − ½``; the tied distribution is not symmetric in general.)
    """
    scores = np.rint(2 * stats.rankdata(np.concatenate([first, second]))).astype(np.int64)
    size, total = first.size, int(scores.sum())
    ways = np.zeros((size + 1, total + 1))
    ways[0, 0] = 1.0
    for score in scores:
        ways[1:, score:] = ways[1:, score:] + ways[:-1, : total + 1 - score]
    distribution = ways[size] / ways[size].sum()  # over twice the rank sum of `first`
    observed = int(scores[:size].sum())
    if observed - size * (size + 1) > size * second.size:  # 2·W_obs > n_x·n_y
        tail = distribution[observed - 1 :].sum()  # 2·W > 2·W_obs − 2
    else:
        tail = distribution[: observed + 1].sum()
    return float(min(1.0, 2 * tail))


def wilcoxon_rank_sum(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    exact: bool | None = None,
    ties: WilcoxonTies = "normal",
) -> HypothesisTestResult:
    """Wilcoxon rank-sum (Mann–Whitney U) test, two-sided, with R ``wilcox.test`` defaults.

    ``exact=None`` (R's default) is exact when both samples have fewer than 50 values, otherwise the
    normal approximation with tie-corrected variance and continuity correction. With ties in small samples
    R changed in 4.6.0: before, ties forced the normal approximation (``ties="normal"``, the default here,
    as the R versions and gtsummary tables published so far); from 4.6.0 the P is exact under the
    permutation distribution given the tied ranks (``ties="exact"``). The statistic is R's ``W`` (U of
    the first sample).

    >>> wilcoxon_rank_sum([1, 2], [3, 4, 5]).p     # 2 of the C(5, 2) = 10 equally likely arrangements
    0.2
    """
    if ties not in ("normal", "exact"):
        raise ValueError(f"ties must be 'normal' or 'exact', not {ties!r}")
    first, second = _finite(x, "the first group"), _finite(y, "the second group")
    pooled = np.concatenate([first, second])
    if np.all(pooled == pooled[0]):
        raise TestNotApplicable("every value is the same; ranks cannot differ")
    tied = np.unique(pooled).size < pooled.size
    if exact is None:
        exact = first.size < 50 and second.size < 50 and (not tied or ties == "exact")
    statistic = float(stats.mannwhitneyu(first, second, method="asymptotic").statistic)
    if exact and tied:
        p = _conditional_exact_p(first, second)
        method = "exact permutation distribution given the tied ranks (R >= 4.6.0)"
    elif exact:
        p = float(stats.mannwhitneyu(first, second, alternative="two-sided", method="exact").pvalue)
        method = "exact distribution of W (no ties, both groups < 50)"
    else:
        p = float(
            stats.mannwhitneyu(first, second, use_continuity=True, alternative="two-sided", method="asymptotic").pvalue
        )
        reason = "a group of 50 or more" if first.size >= 50 or second.size >= 50 else "ties"
        method = f"normal approximation with continuity correction ({reason})"
    return HypothesisTestResult(
        test="wilcoxon",
        name="Wilcoxon rank-sum test",
        statistic=statistic,
        statistic_name="W",
        df=None,
        p=p,
        method=method,
        details={"n_first": int(first.size), "n_second": int(second.size)},
    )


def t_test(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, equal_variance: bool = False
) -> HypothesisTestResult:
    """Two-sample t-test, two-sided: Welch (R ``t.test`` default) or pooled variance (``var.equal = TRUE``).

    >>> welch = t_test([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0],
    ...                [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])   # R's sleep data
    >>> round(welch.statistic, 4), round(welch.df, 3), round(welch.p, 5)       # R: -1.8608, 17.776, 0.07939
    (-1.8608, 17.776, 0.07939)
    """
    first, second = _finite(x, "the first group"), _finite(y, "the second group")
    if first.size < 2 or second.size < 2:
        raise TestNotApplicable("a t-test needs at least 2 values in each group")
    pooled = np.concatenate([first, second])
    if np.all(pooled == pooled[0]):
        raise TestNotApplicable("every value is the same; the t statistic is undefined")
    result = stats.ttest_ind(first, second, equal_var=equal_variance)
    return HypothesisTestResult(
        test="t_pooled" if equal_variance else "t_welch",
        name="Two-sample t-test (pooled variance)" if equal_variance else "Welch two-sample t-test",
        statistic=float(result.statistic),
        statistic_name="t",
        df=float(result.df),
        p=float(result.pvalue),
        method="t distribution, " + ("pooled variance" if equal_variance else "Welch–Satterthwaite df"),
        details={"mean_difference": float(first.mean() - second.mean())},
    )


def kruskal_wallis(samples: Sequence[Sequence[float] | np.ndarray]) -> HypothesisTestResult:
    """Kruskal–Wallis rank-sum test (ties corrected, χ² approximation), as R ``kruskal.test``.

    >>> kruskal_wallis([[2.9, 3.0, 2.5, 2.6, 3.2], [3.8, 2.7, 4.0, 2.4], [2.8, 3.4, 3.7, 2.2, 2.0]]).df
    2.0
    """
    groups = [np.asarray(s, dtype=np.float64) for s in samples]
    groups = [g[np.isfinite(g)] for g in groups]
    groups = [g for g in groups if g.size]
    if len(groups) < 2:
        raise TestNotApplicable("Kruskal–Wallis needs values in at least 2 groups")
    pooled = np.concatenate(groups)
    if np.all(pooled == pooled[0]):
        raise TestNotApplicable("every value is the same; ranks cannot differ")
    result = stats.kruskal(*groups)
    return HypothesisTestResult(
        test="kruskal",
        name="Kruskal–Wallis rank-sum test",
        statistic=float(result.statistic),
        statistic_name="Kruskal-Wallis chi-squared",
        df=float(len(groups) - 1),
        p=float(result.pvalue),
        method="asymptotic χ² distribution, ties corrected",
        details={"groups": len(groups)},
    )
