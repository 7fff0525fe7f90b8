"""Cumulative incidence of competing events (Aalen–Johansen), with variances as R ``cmprsk::cuminc``.

For cause *k* the estimate is ``F_k(t) = sum_{t_j <= t} S(t_j-) d_kj / n_j`` where ``S`` is the all-cause
Kaplan–Meier estimate, ``d_kj`` the cause-*k* events and ``n_j`` the number at risk at ``t_j`` (Kalbfleisch
& Prentice 2002, *The Statistical Analysis of Failure Time Data*, 2nd ed., §8.2; Aalen & Johansen 1978,
Scand J Stat 5:141). Ties are handled as cmprsk does: all events at one time share that time's risk set,
and censorings at an event time count as at risk for it. Nothing is jittered, so the estimate is
deterministic (lifelines' ``AalenJohansenFitter`` adds random noise to tied times by default; that is why
this module exists).

The variance is the one cmprsk's Fortran routine ``cinc`` computes (R. Gray; cmprsk ``src/cincsub.f``),
an asymptotic (delta-method, Aalen-type) estimator with cmprsk's correction for tied events
``1 - (d - 1)/(n - 1)``. As in cmprsk, the variance changes only at the times of the cause itself.
Pointwise confidence limits are not part of cmprsk; the default here is the log(-log) transformation
``F^exp(±z·se/(F·log F))`` used by ``tidycmprsk`` (citing Pintilie 2006, *Competing Risks: A Practical
Perspective*, Wiley), which keeps the limits inside (0, 1); ``"plain"`` gives ``F ± z·se`` clipped to [0, 1].

Example:
    >>> fit = cumulative_incidence([1, 2, 2, 3, 4], [1, 2, 1, 0, 1], event_codes=[1, 2], censor_codes=[0])
    >>> fit.at([2.0]).select("cause", "cuminc").rows()
    [(1, 0.4), (2, 0.2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.stats import norm

from tocsin.stats.input_checks import check_conf_level
from tocsin.stats.methods import CumincConfidenceType
from tocsin.stats.survival.competing_events import CompetingEvents, CompetingRisksInputError, prepare_competing_events

ConfidenceType = CumincConfidenceType
SUMMARY_COLUMNS = ("group", "cause", "time", "n_risk", "cuminc", "std_err", "lower", "upper")


@dataclass(frozen=True)
class CumulativeIncidence:
    """Step functions of the cumulative incidence of each cause in each group.

    ``summary`` has one row per group, cause and time where the estimate may change: time 0 and every time
    with an event of that cause (columns ``group, cause, time, n_risk, cuminc, std_err, lower, upper``;
    ``n_risk`` is the number at risk just before the time). ``last_follow_up`` is each group's largest
    observed time; beyond it the estimate is undefined (cmprsk's ``timepoints`` gives NA there).
    ``follow_up_times`` holds each group's sorted follow-up times (for the numbers at risk of :meth:`at`).
    """

    summary: pl.DataFrame
    event_codes: tuple[object, ...]
    group_labels: tuple[object, ...]
    last_follow_up: dict[object, float]
    conf_level: float
    conf_type: ConfidenceType
    follow_up_times: dict[object, np.ndarray] = field(repr=False, compare=False)

    def at(self, times: Sequence[float]) -> pl.DataFrame:
        """The estimates at ``times`` (as cmprsk ``timepoints``): the last step at or before each time.

        ``n_risk`` is the number still at risk at the time (follow-up >= time). Times after a group's last
        follow-up give nulls.
        """
        wanted = sorted({float(t) for t in times})
        if any(t < 0 for t in wanted):
            raise CompetingRisksInputError("times must be >= 0")
        rows = []
        for (group, cause), steps in self.summary.group_by(["group", "cause"], maintain_order=True):
            step_times = steps.get_column("time").to_numpy()
            for t in wanted:
                index = int(np.searchsorted(step_times, t, side="right")) - 1
                row = steps.row(index, named=True)
                beyond = t > self.last_follow_up[group]
                rows.append(
                    {
                        "group": group,
                        "cause": cause,
                        "time": t,
                        "n_risk": None if beyond else self._at_risk(group, t),
                        **{k: None if beyond else row[k] for k in ("cuminc", "std_err", "lower", "upper")},
                    }
                )
        return pl.DataFrame(rows, schema=self.summary.schema)

    def _at_risk(self, group: object, t: float) -> int:
        times = self.follow_up_times[group]
        return int(times.size - np.searchsorted(times, t, side="left"))


def _cause_steps(
    time: np.ndarray, cause: np.ndarray, n_causes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct times, number at risk, events of each cause (times x causes) and all-cause KM before each time."""
    order = np.argsort(time, kind="stable")
    time, cause = time[order], cause[order]
    distinct, first, counts = np.unique(time, return_index=True, return_counts=True)
    n_risk = time.size - first
    events = np.zeros((distinct.size, n_causes), dtype=float)
    slot = np.repeat(np.arange(distinct.size), counts)
    has_event = cause > 0
    np.add.at(events, (slot[has_event], cause[has_event] - 1), 1.0)
    total = events.sum(axis=1)
    survival_after = np.cumprod(1.0 - total / n_risk)
    survival_before = np.concatenate(([1.0], survival_after[:-1]))
    return distinct, n_risk.astype(float), events, survival_before


def _tie_factor(d: np.ndarray, n: np.ndarray) -> np.ndarray:
    """cmprsk's correction for ``d > 1`` tied events among ``n`` at risk: ``1 - (d - 1)/(n - 1)``."""
    factor = np.ones_like(d)
    tied = d > 1
    factor[tied] = 1.0 - (d[tied] - 1.0) / (n[tied] - 1.0)
    return factor


def _one_cause(
    events: np.ndarray, n_risk: np.ndarray, survival_before: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative incidence and cmprsk's variance of cause ``k`` after each distinct time."""
    d_cause = events[:, k]
    d_other = events.sum(axis=1) - d_cause
    survival_after = survival_before * (n_risk - d_cause - d_other) / n_risk
    cuminc = np.cumsum(survival_before * d_cause / n_risk)
    inverse_after = np.divide(1.0, survival_after, out=np.zeros_like(survival_after), where=survival_after > 0)
    # Increments of the three running sums of cinc (v1, v2, v3), from competing events then from the cause.
    weight_other = np.where(
        (d_other > 0) & (survival_after > 0),
        survival_before**2 * _tie_factor(d_other, n_risk) * d_other / n_risk**2,
        0.0,
    )
    weight_cause = np.where(d_cause > 0, survival_before**2 * _tie_factor(d_cause, n_risk) * d_cause / n_risk**2, 0.0)
    t4_other = cuminc * inverse_after
    t4_cause = 1.0 + inverse_after * cuminc
    v1 = np.cumsum(t4_other**2 * weight_other + t4_cause**2 * weight_cause)
    v2 = np.cumsum(inverse_after * t4_other * weight_other + inverse_after * t4_cause * weight_cause)
    v3 = np.cumsum(inverse_after**2 * (weight_other + weight_cause))
    variance = v1 + cuminc**2 * v3 - 2.0 * cuminc * v2
    return cuminc, np.maximum(variance, 0.0)


def _limits(
    cuminc: np.ndarray, std_err: np.ndarray, conf_level: float, conf_type: ConfidenceType
) -> tuple[np.ndarray, np.ndarray]:
    z = float(norm.ppf(0.5 + conf_level / 2.0))
    if conf_type == "plain":
        return np.clip(cuminc - z * std_err, 0.0, 1.0), np.clip(cuminc + z * std_err, 0.0, 1.0)
    lower = np.full_like(cuminc, np.nan)
    upper = np.full_like(cuminc, np.nan)
    inside = (cuminc > 0) & (cuminc < 1)
    f, se = cuminc[inside], std_err[inside]
    scale = z * se / (f * np.log(f))
    # With F near 1 the scale is huge: exp overflows to inf and F ** inf = 0, F ** 0 = 1, the limits of
    # the transform; the overflow is expected, not an error.
    with np.errstate(over="ignore"):
        lower[inside] = f ** np.exp(-scale)
        upper[inside] = f ** np.exp(scale)
    return lower, upper


def cumulative_incidence_from(
    data: CompetingEvents, conf_level: float = 0.95, conf_type: ConfidenceType = "log-log"
) -> CumulativeIncidence:
    """:func:`cumulative_incidence` on already validated columns."""
    check_conf_level(conf_level, error=CompetingRisksInputError)
    n_causes = len(data.event_codes)
    frames = []
    sorted_times: dict[object, np.ndarray] = {}
    last_follow_up: dict[object, float] = {}
    for g, label in enumerate(data.group_labels):
        in_group = data.group == g
        time, cause = data.time[in_group], data.cause[in_group]
        sorted_times[label] = np.sort(time)
        last_follow_up[label] = float(time.max())
        distinct, n_risk, events, survival_before = _cause_steps(time, cause, n_causes)
        for k, code in enumerate(data.event_codes):
            cuminc, variance = _one_cause(events, n_risk, survival_before, k)
            steps = events[:, k] > 0
            estimate = np.concatenate(([0.0], cuminc[steps]))
            std_err = np.sqrt(np.concatenate(([0.0], variance[steps])))
            lower, upper = _limits(estimate, std_err, conf_level, conf_type)
            lower[0] = upper[0] = 0.0
            frames.append(
                pl.DataFrame(
                    {
                        "group": [label] * estimate.size,
                        "cause": [code] * estimate.size,
                        "time": np.concatenate(([0.0], distinct[steps])),
                        "n_risk": np.concatenate(([float(time.size)], n_risk[steps])).astype(np.int64),
                        "cuminc": estimate,
                        "std_err": std_err,
                        "lower": lower,
                        "upper": upper,
                    },
                    strict=False,
                ).with_columns(pl.col("lower", "upper").fill_nan(None))
            )
    return CumulativeIncidence(
        pl.concat(frames, how="vertical_relaxed").select(SUMMARY_COLUMNS),
        data.event_codes,
        data.group_labels,
        last_follow_up,
        conf_level,
        conf_type,
        sorted_times,
    )


def cumulative_incidence(
    time: Sequence[float] | np.ndarray,
    status: Sequence[object] | np.ndarray,
    event_codes: Sequence[object],
    censor_codes: Sequence[object],
    group: Sequence[object] | np.ndarray | None = None,
    conf_level: float = 0.95,
    conf_type: ConfidenceType = "log-log",
    row_names: Sequence[str] | None = None,
) -> CumulativeIncidence:
    """Aalen–Johansen cumulative incidence of each declared event code, overall or in each group.

    ``event_codes`` lists every event (the cause of interest and its competitors: each gets a curve);
    ``censor_codes`` lists the codes meaning "event-free at last follow-up". Any other status is an error.
    Equivalent R: ``cmprsk::cuminc(time, status, group, cencode = 0)`` for the estimates and variances.
    ``row_names`` name the rows in error messages (see :func:`prepare_competing_events`).
    """
    data = prepare_competing_events(time, status, event_codes, censor_codes, group, row_names)
    return cumulative_incidence_from(data, conf_level, conf_type)
