"""Test of the proportional-hazards assumption of a Cox model, as R ``survival::cox.zph`` (version >= 3.0).

For each term the test asks whether its coefficient drifts with a function ``g(t)`` of time: it is the
score test of ``gamma = 0`` in the model with the extra covariates ``x * g(t)``, at the fitted
coefficients (Grambsch & Therneau 1994, Biometrika 81:515, doi:10.1093/biomet/81.3.515; the exact score
form is the one R's ``cox.zph`` has used since survival 3.0, 2019). A covariate coded by several
indicators is tested as one term with that many degrees of freedom, and ``GLOBAL`` tests all at once.

lifelines' ``proportional_hazard_test`` implements the approximation R used before 3.0 (its own docstring
says so), which gives a different statistic (2.76 instead of R's 2.86 for ``sex`` in the lung data), so
the test is computed here from the Efron risk-set terms of :mod:`tocsin.stats.survival.cox`.

``transform="km"`` (R's default) uses ``g(t) = 1 - KM(t-)``, the left-continuous Kaplan–Meier estimate of
all subjects; ``"rank"``, ``"identity"`` and ``"log"`` are R's other choices.

Example:
    >>> import polars as pl
    >>> from tocsin.stats.survival.cox import cox_regression
    >>> table = pl.DataFrame({"t": [5, 8, 3, 9, 4, 7, 2, 6], "e": [1, 1, 1, 0, 1, 0, 1, 1],
    ...                       "arm": ["a", "b", "a", "b", "a", "b", "a", "b"]})
    >>> zph = proportional_hazards_test(cox_regression(table, "t", "e", ["arm"]))
    >>> zph.summary.get_column("term").to_list()
    ['arm', 'GLOBAL']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from scipy.stats import chi2, rankdata

from tocsin.stats.survival.cox import CoxResult, efron_risk_set_terms

TimeTransform = Literal["km", "rank", "identity", "log"]


@dataclass(frozen=True)
class ProportionalHazardsTest:
    """``summary``: one row per covariate and a final ``GLOBAL`` row, with ``term, chisq, df, p``."""

    summary: pl.DataFrame
    transform: TimeTransform


def _left_km(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """All-subject Kaplan–Meier estimate just before each time in ``at``."""
    distinct, first = np.unique(np.sort(time), return_index=True)
    n_risk = time.size - first
    deaths = np.bincount(np.searchsorted(distinct, time[event > 0]), minlength=distinct.size)
    survival = np.cumprod(1.0 - deaths / n_risk)
    before = np.searchsorted(distinct, at, side="left")
    return np.concatenate(([1.0], survival))[before]


def _transformed_times(fit: CoxResult, death_times: np.ndarray, transform: TimeTransform) -> np.ndarray:
    time, event = fit.design.time, fit.design.event
    if transform == "km":
        return 1.0 - _left_km(time, event, death_times)
    if transform == "identity":
        return death_times
    if transform == "log":
        return np.log(death_times)
    # R ranks the event times of all deaths (ties get the average rank); each distinct time takes that rank.
    all_deaths = np.sort(time[event > 0])
    ranks = rankdata(all_deaths)
    return ranks[np.searchsorted(all_deaths, death_times)]


def proportional_hazards_test(fit: CoxResult, transform: TimeTransform = "km") -> ProportionalHazardsTest:
    """Score test per covariate and globally that the hazard ratios do not change with ``g(t)``."""
    design = fit.design
    terms = efron_risk_set_terms(design.time, design.event, design.matrix, fit.coefficients)
    g = _transformed_times(fit, terms.times, transform)
    g = g - g.mean()
    p = design.matrix.shape[1]
    u_gamma = (g[:, None] * terms.score).sum(axis=0)
    i_bb = terms.information.sum(axis=0)
    i_bg = (g[:, None, None] * terms.information).sum(axis=0)
    i_gg = ((g**2)[:, None, None] * terms.information).sum(axis=0)
    information = np.block([[i_bb, i_bg], [i_bg.T, i_gg]])
    # The score for beta is zero at the fitted coefficients, so only the gamma block enters the test.
    rows = []
    variables = list(dict.fromkeys(design.term_variable))
    for variable in variables:
        index = [k for k, v in enumerate(design.term_variable) if v == variable]
        keep = list(range(p)) + [p + k for k in index]
        score = np.concatenate((np.zeros(p), u_gamma[index]))
        statistic = float(score @ np.linalg.solve(information[np.ix_(keep, keep)], score))
        rows.append(
            {"term": variable, "chisq": statistic, "df": len(index), "p": float(chi2.sf(statistic, len(index)))}
        )
    score = np.concatenate((np.zeros(p), u_gamma))
    statistic = float(score @ np.linalg.solve(information, score))
    rows.append({"term": "GLOBAL", "chisq": statistic, "df": p, "p": float(chi2.sf(statistic, p))})
    return ProportionalHazardsTest(pl.DataFrame(rows), transform)
