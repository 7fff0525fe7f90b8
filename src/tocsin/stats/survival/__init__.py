"""Survival analysis of a patient table: Kaplan–Meier, log-rank, reverse-KM follow-up, restricted mean,
Cox regression and competing risks (Aalen–Johansen, Gray's test).

Each estimator lives in its own module and returns a frozen result with a ``summary`` Polars frame; the
column checks they rely on are in :mod:`tocsin.stats.survival.inputs` (event/censor coding) and
:mod:`tocsin.stats.survival.competing_events` (status codes of competing events). See docs/survival.md and
docs/competing_risks.md.
"""

from tocsin.stats.survival.follow_up import FollowUpResult, reverse_km_follow_up
from tocsin.stats.survival.inputs import SurvivalInputError, SurvivalInputs, survival_inputs
from tocsin.stats.survival.kaplan_meier import CONFIDENCE_TYPES, ConfidenceType, KaplanMeierResult, kaplan_meier
from tocsin.stats.survival.logrank import LogRankResult, logrank_test
from tocsin.stats.survival.rmst import RestrictedMeanResult, restricted_mean_survival

__all__ = [
    "CONFIDENCE_TYPES",
    "ConfidenceType",
    "FollowUpResult",
    "KaplanMeierResult",
    "LogRankResult",
    "RestrictedMeanResult",
    "SurvivalInputError",
    "SurvivalInputs",
    "kaplan_meier",
    "logrank_test",
    "restricted_mean_survival",
    "reverse_km_follow_up",
    "survival_inputs",
]
