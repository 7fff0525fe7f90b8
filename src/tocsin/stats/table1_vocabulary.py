"""The names a Table 1 request is written in (tests, variable kinds, statistics), apart from the arithmetic.

Kept free of scipy and statsmodels so that the command line can list the choices without importing them.
"""

from __future__ import annotations

from typing import Literal

VariableKind = Literal["categorical", "continuous"]
KINDS: tuple[VariableKind, ...] = ("categorical", "continuous")
CATEGORICAL_TESTS = ("chisq", "chisq-yates", "fisher", "fisher-mc")
LOCATION_TESTS = ("wilcoxon", "t-welch", "t-pooled", "kruskal")
TWO_GROUP_TESTS = ("wilcoxon", "t-welch", "t-pooled")
TESTS = (*CATEGORICAL_TESTS, *LOCATION_TESTS, "none")
TEST_ALIASES = {"mann-whitney": "wilcoxon", "t-test": "t-welch", "welch": "t-welch", "ffh": "fisher"}
CONTINUOUS_STATISTICS = {"median-iqr": "Median (Q1, Q3)", "median-range": "Median (min–max)", "mean-sd": "Mean (SD)"}
