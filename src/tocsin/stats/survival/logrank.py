"""Log-rank test of equal survival in k groups, optionally stratified, as R ``survival::survdiff`` (rho = 0).

Implements
  * Mantel N. Evaluation of survival data and two new rank order statistics arising in its consideration.
    Cancer Chemother Rep 1966;50:163–170 (the log-rank / Mantel–Haenszel statistic).
  * Peto R, Peto J. Asymptotically efficient rank invariant test procedures. J R Stat Soc A 1972;135:185–207.
    doi:10.2307/2344317
  * The k-sample form with the hypergeometric variance matrix and, with strata, observed − expected and
    variance summed over strata (Klein JP, Moeschberger ML, *Survival Analysis*, 2nd ed., Springer 2003, §7.3
    and §7.5). As R: groups whose expected count is 0 are left out, the statistic is U' V⁻¹ U on all but
    the first remaining group, and df is their number minus one.

Written with NumPy because lifelines' ``multivariate_logrank_test`` has no strata; the unstratified
statistic is checked against lifelines in the tests. All (stratum, time) cells are built in one sort, so
100,000 patients take milliseconds.

>>> import numpy as np
>>> time = np.array([1.0, 2, 3, 4, 5, 6])
>>> result = logrank_test(time, np.ones(6, dtype=bool), np.array(["a", "a", "a", "b", "b", "b"]))
>>> (result.name, result.df, round(result.statistic, 2))
('log-rank', 1, 5.05)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import chi2

from tocsin.stats.survival.kaplan_meier import group_codes

#: Relative tolerance below which an eigenvalue of the log-rank variance counts as 0 (rank and inverse).
_RANK_TOLERANCE = 1e-10


@dataclass(frozen=True)
class LogRankResult:
    """The test (``name``: "log-rank" or "stratified log-rank"), its chi-square ``statistic``, ``df`` and
    ``p_value``; ``summary`` has one row per group: group, n, observed, expected (summed over strata)."""

    name: str
    statistic: float
    df: int
    p_value: float
    summary: pl.DataFrame


def logrank_test(
    time: np.ndarray, event: np.ndarray, group: np.ndarray, strata: np.ndarray | None = None
) -> LogRankResult:
    """Compare the survival of the groups in ``group`` (labels per patient), within ``strata`` if given."""
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=bool)
    labels, codes = group_codes(group, len(time))
    if len(labels) < 2:
        raise ValueError(f"a log-rank test compares groups, but all patients are in group {labels[0]!s}")
    _, stratum = group_codes(strata, len(time))
    n_groups = len(labels)

    order = np.lexsort((time, stratum))
    t, s, g, e = time[order], stratum[order], codes[order], event[order]
    new = np.ones(len(t), dtype=bool)
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    cell = np.cumsum(new) - 1
    n_cells = int(cell[-1]) + 1
    flat = cell * n_groups + g
    deaths = np.bincount(flat, weights=e.astype(np.float64), minlength=n_cells * n_groups).reshape(-1, n_groups)
    leaving = np.bincount(flat, minlength=n_cells * n_groups).reshape(-1, n_groups).astype(np.float64)

    # at risk in a cell = everyone in the same stratum who leaves at this cell or later
    cell_stratum = s[new]
    stratum_end = np.searchsorted(cell_stratum, cell_stratum, side="right")
    from_end = np.vstack((np.cumsum(leaving[::-1], axis=0)[::-1], np.zeros((1, n_groups))))
    at_risk = from_end[:-1] - from_end[stratum_end]

    d = deaths.sum(axis=1)
    n = at_risk.sum(axis=1)
    share = at_risk / n[:, None]
    expected = (d[:, None] * share).sum(axis=0)
    observed = deaths.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(n > 1, d * (n - d) / (n - 1), 0.0)
    variance = np.diag((weight[:, None] * share).sum(axis=0)) - (share * weight[:, None]).T @ share

    compared = np.flatnonzero(expected > 0)
    statistic, df = 0.0, 0
    if len(compared) >= 2:
        # U' V⁻ U with a generalised inverse and df = rank(V) (as SAS PROC LIFETEST): equal to R's U' V⁻¹ U on
        # all but the first group whenever that V is invertible, and unlike it independent of the group order
        # when a group is never at risk beside another (R then stops on a singular system or not, by order).
        difference = (observed - expected)[compared]
        block = variance[np.ix_(compared, compared)]
        # V's rows sum to 0, so its rank is at most k - 1; rounding leaves a tiny last eigenvalue, hence the
        # relative tolerance.
        scale = float(np.abs(block).max())
        df = int(np.linalg.matrix_rank(block, tol=scale * _RANK_TOLERANCE, hermitian=True)) if scale > 0 else 0
        if df == 0:
            raise ValueError(
                "the groups cannot be compared: at no event time were patients of different groups at risk "
                "together (within a stratum); check the grouping and strata columns"
            )
        statistic = float(difference @ np.linalg.pinv(block, rcond=_RANK_TOLERANCE, hermitian=True) @ difference)
    summary = pl.DataFrame(
        {
            "group": [str(label) for label in labels],
            "n": np.bincount(codes, minlength=n_groups).astype(np.int64),
            "observed": observed.astype(np.int64),
            "expected": expected,
        }
    )
    return LogRankResult(
        name="stratified log-rank" if strata is not None else "log-rank",
        statistic=statistic,
        df=df,
        p_value=float(chi2.sf(statistic, df)) if df >= 1 else float("nan"),
        summary=summary,
    )
