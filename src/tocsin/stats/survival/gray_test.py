"""Gray's test: do the cumulative incidences of one cause differ between groups?

Gray RJ. A class of K-sample tests for comparing the cumulative incidence of a competing risk.
Ann Stat 1988;16:1141–1154 (doi:10.1214/aos/1176350951). The statistic compares weighted averages of the
subdistribution hazards of the cause; it is ``s' V^-1 s`` over the first ``G - 1`` groups, referred to
chi-square with ``G - 1`` degrees of freedom. Stratified tests add the scores and variances over strata.

This is a port of the reference implementation, R. Gray's Fortran routine ``crstm``/``crst`` in the R
package cmprsk (``src/crstm.f``), which ``cmprsk::cuminc(ftime, fstatus, group, strata, rho)`` calls for
each cause; no Python library offers the test. ``rho`` is the power of the weight ``(1 - F(t-))^rho``
(cmprsk's default 0). As in cmprsk, a singular variance gives no statistic.

Example:
    >>> result = gray_test([1, 2, 3, 4, 5, 6], [1, 1, 2, 1, 2, 0], ["a", "a", "a", "b", "b", "b"],
    ...                    event_codes=[1, 2], censor_codes=[0], cause=1)
    >>> result.df
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import chi2

from tocsin.stats.survival.competing_events import CompetingEvents, CompetingRisksInputError, prepare_competing_events


@dataclass(frozen=True)
class GrayTestResult:
    """Gray's test of one cause across groups: ``statistic``, ``df``, ``p`` (None when the variance is singular).

    ``summary`` is a one-row frame ``cause, statistic, df, p, rho, n_groups, n_strata``.
    """

    cause: object
    statistic: float | None
    df: int
    p: float | None
    rho: float
    n_groups: int
    n_strata: int

    @property
    def summary(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "cause": self.cause,
                    "statistic": self.statistic,
                    "df": self.df,
                    "p": self.p,
                    "rho": self.rho,
                    "n_groups": self.n_groups,
                    "n_strata": self.n_strata,
                }
            ]
        )


def _stratum_scores(
    time: np.ndarray, status: np.ndarray, group: np.ndarray, n_groups: int, rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the first ``G - 1`` groups and their covariance in one stratum (cmprsk ``crst``).

    ``status`` is 0 censored, 1 the cause tested, 2 any other cause. Names follow the Fortran: ``skmm`` and
    ``f1m`` are the left-continuous Kaplan–Meier and cumulative incidence of each group, ``tr`` and ``tq``
    the sums over groups of ``R_r / S_r(t-)`` and ``R_r (1 - F_r(t-)) / S_r(t-)``.
    """
    g1 = n_groups - 1
    order = np.argsort(time, kind="stable")
    time, status, group = time[order], status[order], group[order]
    distinct, first, counts = np.unique(time, return_index=True, return_counts=True)
    slot = np.repeat(np.arange(distinct.size), counts)
    # d[j, c, g]: at distinct time j, the number in group g with status c.
    d = np.zeros((distinct.size, 3, n_groups))
    np.add.at(d, (slot, status, group), 1.0)
    leaving = d.sum(axis=1)
    at_risk = leaving[::-1].cumsum(axis=0)[::-1]

    s = np.zeros(g1)
    v = np.zeros((g1, g1))
    c = np.zeros((n_groups, n_groups))
    v2 = np.zeros((g1, n_groups))
    v3 = np.zeros(n_groups)
    skmm = np.ones(n_groups)
    f1m = np.zeros(n_groups)
    fm = 0.0
    for j in range(distinct.size):
        d1, d2, rs = d[j, 1], d[j, 2], at_risk[j]
        nd1, nd2 = d1.sum(), d2.sum()
        if nd1 == 0 and nd2 == 0:
            continue
        present = rs > 0
        safe_rs = np.where(present, rs, 1.0)
        skm = np.where(present, skmm * (rs - d1 - d2) / safe_rs, skmm)
        f1 = np.where(present, f1m + skmm * d1 / safe_rs, f1m)
        ratio = np.divide(rs, skmm, out=np.zeros(n_groups), where=present)
        tr = ratio.sum()
        tq = (ratio * (1.0 - f1m)).sum()
        f = fm + nd1 / tr
        fb = (1.0 - fm) ** rho
        a = -fb * np.outer(ratio, ratio) / tr
        np.fill_diagonal(a, fb * ratio * (1.0 - ratio / tr))
        a[~present, :] = 0.0
        a[:, ~present] = 0.0
        c += a * nd1 / (tr * (1.0 - fm))
        s += np.where(present[:g1], fb * (d1[:g1] - nd1 * ratio[:g1] * (1.0 - f1m[:g1]) / tq), 0.0)
        if nd1 > 0:
            t4 = np.where(skm > 0, 1.0 - (1.0 - f) / np.where(skm > 0, skm, 1.0), 1.0)
            t5 = np.ones(n_groups)
            if nd1 > 1:
                t5 = 1.0 - np.divide(nd1 - 1.0, tr * skmm - 1.0, out=np.zeros(n_groups), where=present)
            t3 = np.where(present, t5 * skmm * nd1 / (tr * safe_rs), 0.0)
            v3 += t4 * t4 * t3
            t1 = a[:g1, :] - t4 * c[:g1, :]
            v2 += t1 * t4 * t3
            v += (t1 * t3) @ t1.T
        if nd2 > 0:
            counted = (skm > 0) & (d2 > 0)
            t4 = np.where(counted, (1.0 - f) / np.where(skm > 0, skm, 1.0), 0.0)
            t5 = np.where(d2 > 1, 1.0 - (d2 - 1.0) / np.where(rs > 1, rs - 1.0, 1.0), 1.0)
            t3 = np.where(counted, t5 * skmm**2 * d2 / safe_rs**2, 0.0)
            v3 += t4 * t4 * t3
            t1 = t4 * c[:g1, :]
            v2 -= t1 * t4 * t3
            v += (t1 * t3) @ t1.T
        fm = f
        f1m = f1
        skmm = skm
    cv2 = c[:g1, :] @ v2.T
    v += (c[:g1, :] * v3) @ c[:g1, :].T + cv2 + cv2.T
    return s, v


def gray_test_from(
    data: CompetingEvents, cause: object, strata: np.ndarray | None = None, rho: float = 0.0
) -> GrayTestResult:
    """:func:`gray_test` on already validated columns (``strata``: one integer label per row, or None)."""
    if cause not in data.event_codes:
        raise CompetingRisksInputError(f"cause {cause!r} is not one of the event codes {list(data.event_codes)}")
    n_groups = len(data.group_labels)
    if n_groups < 2:
        raise CompetingRisksInputError("Gray's test compares groups; the data have only one group")
    k = data.event_codes.index(cause) + 1
    status = np.where(data.cause == k, 1, np.where(data.cause == 0, 0, 2))
    stratum_of = np.zeros(data.time.size, dtype=np.int64) if strata is None else np.asarray(strata)
    labels = np.unique(stratum_of)
    score = np.zeros(n_groups - 1)
    variance = np.zeros((n_groups - 1, n_groups - 1))
    for label in labels:
        rows = stratum_of == label
        s, v = _stratum_scores(data.time[rows], status[rows], data.group[rows], n_groups, rho)
        score += s
        variance += v
    df = n_groups - 1
    # Once the pooled cumulative incidence reaches 1 before the last event time, cmprsk's variance terms
    # divide by 1 - F = 0: the statistic is undefined (cmprsk prints NaN), so none is reported.
    if not (np.isfinite(variance).all() and np.isfinite(score).all()) or np.linalg.matrix_rank(variance) < df:
        return GrayTestResult(cause, None, df, None, rho, n_groups, labels.size)
    statistic = float(score @ np.linalg.solve(variance, score))
    return GrayTestResult(cause, statistic, df, float(chi2.sf(statistic, df)), rho, n_groups, labels.size)


def gray_test(
    time: Sequence[float] | np.ndarray,
    status: Sequence[object] | np.ndarray,
    group: Sequence[object] | np.ndarray,
    event_codes: Sequence[object],
    censor_codes: Sequence[object],
    cause: object,
    strata: Sequence[object] | None = None,
    rho: float = 0.0,
    row_names: Sequence[str] | None = None,
) -> GrayTestResult:
    """Gray's K-sample test of the cumulative incidence of ``cause`` across ``group`` (optionally stratified).

    Every event code other than ``cause`` is a competing event. Equivalent R:
    ``cmprsk::cuminc(time, status, group, strata, rho = rho, cencode = 0)$Tests[cause, ]``.
    """
    data = prepare_competing_events(time, status, event_codes, censor_codes, group, row_names)
    strata_index = None
    if strata is not None:
        values = list(strata)
        if len(values) != data.time.size or any(v is None for v in values):
            raise CompetingRisksInputError("strata must be a complete column of the same length as time")
        strata_index = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)[1]
    return gray_test_from(data, cause, strata_index, rho)
