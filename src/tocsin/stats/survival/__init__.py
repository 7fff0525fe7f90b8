"""Survival analysis of a patient table: Kaplan–Meier, log-rank, reverse-KM follow-up, restricted mean.

Each estimator lives in its own module and returns a frozen result with a ``summary`` Polars frame; the
column checks they all rely on are in :mod:`tocsin.stats.survival.inputs`.
"""

from tocsin.stats.survival.inputs import SurvivalInputError, SurvivalInputs, survival_inputs
from tocsin.stats.survival.kaplan_meier import CONFIDENCE_TYPES, ConfidenceType, KaplanMeierResult, kaplan_meier

__all__ = [
    "CONFIDENCE_TYPES",
    "ConfidenceType",
    "KaplanMeierResult",
    "SurvivalInputError",
    "SurvivalInputs",
    "kaplan_meier",
    "survival_inputs",
]
