"""Median follow-up by the reverse Kaplan–Meier method (Schemper & Smith 1996), per group.

Implements
  * Schemper M, Smith TL. A note on quantifying follow-up in studies of failure time. Control Clin Trials
    1996;17:343–346. doi:10.1016/0197-2456(96)00075-X — the Kaplan–Meier estimate with the roles of event and
    censoring exchanged ("potential follow-up": a death stops observation of the event, not of follow-up).

As R ``survfit(Surv(time, 1 - status) ~ group)``: the same estimator, CI type and median rule as
:func:`tocsin.stats.survival.kaplan_meier.kaplan_meier`. A group in which nobody is censored has no
follow-up estimate (null), as in R.

>>> import numpy as np
>>> time = np.array([5.0, 10, 15, 20, 25])
>>> reverse_km_follow_up(time, np.array([True, False, True, False, False])).summary.get_column("median").to_list()
[20.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tocsin.stats.survival.kaplan_meier import ConfidenceType, kaplan_meier


@dataclass(frozen=True)
class FollowUpResult:
    """``summary``: one row per group — group, n, censored (the reverse curve's "events"), median, lower, upper."""

    summary: pl.DataFrame
    conf_type: ConfidenceType
    conf_level: float


def reverse_km_follow_up(
    time: np.ndarray,
    event: np.ndarray,
    group: np.ndarray | None = None,
    *,
    conf_type: ConfidenceType = "log-log",
    conf_level: float = 0.95,
) -> FollowUpResult:
    """Median potential follow-up with its CI: Kaplan–Meier of the censoring times (events count as censored)."""
    reverse = kaplan_meier(
        time, ~np.asarray(event, dtype=bool), group, conf_type=conf_type, conf_level=conf_level
    )
    summary = reverse.groups.select(
        "group",
        "n",
        pl.col("events").alias("censored"),
        "median",
        pl.col("median_lower").alias("lower"),
        pl.col("median_upper").alias("upper"),
    )
    return FollowUpResult(summary=summary, conf_type=conf_type, conf_level=conf_level)
