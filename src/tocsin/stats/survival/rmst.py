"""Restricted mean survival time (RMST) up to a horizon τ, with its standard error and CI, per group.

Implements
  * Irwin JO. The standard error of an estimate of expectation of life. J Hyg 1949;47:188–189.
    doi:10.1017/S0022172400014443 (the area under the Kaplan–Meier curve up to τ).
  * Royston P, Parmar MKB. Restricted mean survival time: an alternative to the hazard ratio for the design and
    analysis of randomized trials with a time-to-event outcome. BMC Med Res Methodol 2013;13:152.
    doi:10.1186/1471-2288-13-152
  * Variance: Σ over event times tᵢ ≤ τ of A(tᵢ, τ)² · dᵢ / (nᵢ (nᵢ − dᵢ)), A(tᵢ, τ) the area under the curve
    from tᵢ to τ (Klein & Moeschberger, *Survival Analysis*, 2nd ed., §4.5) — the estimate and standard error
    R prints with ``print(survfit(...), rmean = τ)`` and ``survRM2``'s ``rmst1`` computes; the CI is RMST ± z·SE
    as in ``survRM2``.

When τ is later than a group's last follow-up time the curve is carried flat to τ, as R ``print.survfit``
does (``survRM2`` refuses such a τ); ``beyond_follow_up`` marks those groups.

>>> import numpy as np
>>> fit = restricted_mean_survival(np.array([2.0, 4, 6]), np.array([True, True, True]), horizon=5)
>>> fit.summary.get_column("rmst").round(4).to_list()
[3.6667]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import norm

from tocsin.stats.survival.kaplan_meier import greenwood_terms, kaplan_meier


@dataclass(frozen=True)
class RestrictedMeanResult:
    """``summary``: one row per group — group, horizon, rmst, std_err, lower, upper, beyond_follow_up."""

    summary: pl.DataFrame
    horizon: float
    conf_level: float


def restricted_mean_survival(
    time: np.ndarray,
    event: np.ndarray,
    group: np.ndarray | None = None,
    *,
    horizon: float,
    conf_level: float = 0.95,
) -> RestrictedMeanResult:
    """Area under each group's Kaplan–Meier curve from 0 to ``horizon`` (same time unit as ``time``)."""
    if not horizon > 0:
        raise ValueError(f"RMST horizon {horizon}: give a time after day 0, e.g. 365")
    z = float(norm.ppf(1 - (1 - conf_level) / 2))
    fit = kaplan_meier(time, event, group, conf_type="log", conf_level=conf_level)
    rows = []
    for label, curve in fit.summary.group_by("group", maintain_order=True):
        times = curve.get_column("time").to_numpy()
        within = times <= horizon
        steps = times[within]
        survival = curve.get_column("survival").to_numpy()[within]
        edges = np.concatenate(([0.0], steps, [horizon]))
        levels = np.concatenate(([1.0], survival))
        pieces = np.diff(edges) * levels
        # area from each step time to the horizon, for the variance
        area_after = np.cumsum(pieces[::-1])[::-1][1:]
        terms = greenwood_terms(
            curve.get_column("n_event").to_numpy()[within], curve.get_column("n_risk").to_numpy()[within]
        )
        # an infinite term is a drop to 0, after which no area is left to be uncertain about
        variance = float(np.sum(area_after**2 * np.where(np.isfinite(terms), terms, 0.0)))
        rmst = float(pieces.sum())
        std_err = float(np.sqrt(variance))
        rows.append(
            {
                "group": label[0],
                "horizon": float(horizon),
                "rmst": rmst,
                "std_err": std_err,
                "lower": rmst - z * std_err,
                "upper": rmst + z * std_err,
                "beyond_follow_up": bool(horizon > times[-1]),
            }
        )
    return RestrictedMeanResult(summary=pl.DataFrame(rows), horizon=float(horizon), conf_level=conf_level)
