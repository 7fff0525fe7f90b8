"""The names of interval methods the estimators accept, apart from the arithmetic.

Kept free of NumPy, scipy and statsmodels (as :mod:`tocsin.stats.table1_vocabulary`) so that the command line
can offer the choices without importing them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class CIMethod(StrEnum):
    """How the interval for a proportion is computed; the value is the name the CLI and JSON use."""

    CLOPPER_PEARSON = "clopper-pearson"
    WILSON = "wilson"
    WILSON_CC = "wilson-cc"


CI_METHOD_LABEL = {
    CIMethod.CLOPPER_PEARSON: "exact Clopper-Pearson (R binom.test)",
    CIMethod.WILSON: "Wilson score (R prop.test, correct = FALSE)",
    CIMethod.WILSON_CC: "Wilson score with continuity correction (Newcombe 1998, method 4)",
}

#: Transform of a Kaplan–Meier confidence interval.
SurvivalConfidenceType = Literal["log-log", "log", "plain"]
SURVIVAL_CONFIDENCE_TYPES: tuple[SurvivalConfidenceType, ...] = ("log-log", "log", "plain")
#: Transform of a cumulative-incidence confidence interval.
CumincConfidenceType = Literal["log-log", "plain"]
