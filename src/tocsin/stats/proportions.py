"""Binomial proportion confidence intervals: exact Clopper–Pearson, Wilson score, Wilson with continuity correction.

Clopper–Pearson and Wilson come from statsmodels' ``proportion_confint`` (methods ``"beta"`` and ``"wilson"``),
which give the same limits as R's ``binom.test`` and ``prop.test(..., correct = FALSE)``. statsmodels has no
Wilson interval with continuity correction, so that one is written here from Newcombe's closed form (his
method 4). R's ``prop.test(..., correct = TRUE)`` gives these limits too, except that R drops the correction
whenever it would exceed ``|x/n - p0|`` for the null value ``p0`` (0.5 by default), so R's "corrected"
interval for 30/60 is the uncorrected one; here the correction is always applied, as Newcombe defines it.

References:
    Clopper CJ, Pearson ES (1934). The use of confidence or fiducial limits illustrated in the case of the
    binomial. Biometrika 26:404–413. doi:10.1093/biomet/26.4.404
    Wilson EB (1927). Probable inference, the law of succession, and statistical inference. JASA 22:209–212.
    doi:10.1080/01621459.1927.10502953
    Newcombe RG (1998). Two-sided confidence intervals for the single proportion: comparison of seven methods.
    Stat Med 17:857–872. doi:10.1002/(SICI)1097-0258(19980430)17:8<857::AID-SIM777>3.0.CO;2-E

Example:
    >>> ci = proportion_ci([682], [925], method="clopper-pearson")
    >>> round(float(ci.lower[0]), 7), round(float(ci.upper[0]), 7)
    (0.7076683, 0.7654066)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from tocsin.stats.input_checks import check_conf_level
from tocsin.stats.methods import CI_METHOD_LABEL, CIMethod

__all__ = ["CI_METHOD_LABEL", "CIMethod", "ProportionCI", "proportion_ci"]



@dataclass(frozen=True)
class ProportionCI:
    """Point estimates and two-sided limits for a vector of proportions ``events / n``."""

    events: np.ndarray
    n: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    method: CIMethod
    confidence: float

    @property
    def summary(self) -> pl.DataFrame:
        """One row per proportion: events, n, estimate, lower, upper (NaN where n is 0)."""
        return pl.DataFrame(
            {
                "events": self.events,
                "n": self.n,
                "estimate": self.estimate,
                "lower": self.lower,
                "upper": self.upper,
            }
        )


def _wilson_continuity_corrected(events: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    p = events / n
    q = 1.0 - p
    denominator = 2.0 * (n + z * z)
    lower_root = np.sqrt(np.maximum(z * z - 2.0 - 1.0 / n + 4.0 * p * (n * q + 1.0), 0.0))
    upper_root = np.sqrt(np.maximum(z * z + 2.0 - 1.0 / n + 4.0 * p * (n * q - 1.0), 0.0))
    lower = (2.0 * n * p + z * z - 1.0 - z * lower_root) / denominator
    upper = (2.0 * n * p + z * z + 1.0 + z * upper_root) / denominator
    return np.maximum(lower, 0.0), np.minimum(upper, 1.0)


def proportion_ci(
    events: Sequence[int] | np.ndarray,
    n: Sequence[int] | np.ndarray,
    method: CIMethod | str = CIMethod.CLOPPER_PEARSON,
    confidence: float = 0.95,
) -> ProportionCI:
    """Two-sided ``confidence`` intervals for each proportion ``events[i] / n[i]`` (vectorised; n = 0 gives NaN).

    Raises ``ValueError`` for negative counts, events above n, non-integer counts or a confidence outside (0, 1).
    """
    method = CIMethod(method)
    check_conf_level(confidence, "confidence")
    x = np.asarray(events, dtype=float)
    m = np.asarray(n, dtype=float)
    if x.shape != m.shape:
        raise ValueError(f"events and n differ in length ({x.size} vs {m.size})")
    if np.any(x < 0) or np.any(m < 0) or np.any(x > m):
        raise ValueError("counts must satisfy 0 <= events <= n")
    if np.any(x != np.round(x)) or np.any(m != np.round(m)):
        raise ValueError("events and n must be whole numbers")
    known = m > 0
    estimate = np.full(x.shape, np.nan)
    lower = np.full(x.shape, np.nan)
    upper = np.full(x.shape, np.nan)
    if known.any():
        xk, mk = x[known], m[known]
        estimate[known] = xk / mk
        alpha = 1.0 - confidence
        if method is CIMethod.WILSON_CC:
            lo, hi = _wilson_continuity_corrected(xk, mk, float(norm.ppf(1.0 - alpha / 2.0)))
        else:
            sm_method = "beta" if method is CIMethod.CLOPPER_PEARSON else "wilson"
            lo, hi = proportion_confint(xk, mk, alpha=alpha, method=sm_method)
        # With no (every) trial an event the limit is exactly 0 (1) for all three methods; the closed forms
        # can land one rounding error away, which would put 100 % outside its own interval.
        lower[known] = np.where(xk == 0, 0.0, lo)
        upper[known] = np.where(xk == mk, 1.0, hi)
    return ProportionCI(
        events=x.astype(np.int64),
        n=m.astype(np.int64),
        estimate=estimate,
        lower=np.asarray(lower, dtype=float),
        upper=np.asarray(upper, dtype=float),
        method=method,
        confidence=confidence,
    )
