"""Cox proportional-hazards regression with the hazard ratios, tests and term coding of R ``survival::coxph``.

Fitting is lifelines' :class:`~lifelines.CoxPHFitter` (Newton–Raphson on the partial likelihood with
Efron's approximation for tied times, which is also R's default ``ties = "efron"``; Efron 1977, JASA
72:557, doi:10.1080/01621459.1977.10480613). This module adds what lifelines does not give in R's form:

* categorical covariates expanded to 0/1 indicators against a declared reference level (default: the
  first level in sorted order, as R's ``factor``), terms named ``variable=level``;
* the three global tests of ``summary(coxph)``: likelihood ratio, Wald and score ("logrank") test. The
  score test at beta = 0 is computed here with Efron's weighting of tied deaths (lifelines has none);
* rows with a missing time, event or covariate are dropped and counted, as R's default ``na.omit``.

Reference: Therneau & Grambsch, *Modeling Survival Data: Extending the Cox Model*, Springer 2000, ch. 3.

Example:
    >>> import polars as pl
    >>> table = pl.DataFrame({"t": [5, 8, 3, 9, 4, 7, 2, 6], "e": [1, 1, 1, 0, 1, 0, 1, 1],
    ...                       "arm": ["a", "b", "a", "b", "a", "b", "a", "b"]})
    >>> fit = cox_regression(table, time="t", event="e", covariates=["arm"])
    >>> fit.summary.get_column("term").to_list()
    ['arm=b']
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy.linalg import LinAlgWarning
from scipy.stats import chi2, norm

from tocsin.stats.design_matrix import DesignColumns, indicators, level_text
from tocsin.stats.input_checks import StatsInputError, check_conf_level, require_columns, rows_text

BOOL_LABELS = ("False", "True")
CATEGORICAL_DTYPES = (pl.String, pl.Categorical, pl.Enum, pl.Boolean)
SUMMARY_COLUMNS = (
    "term",
    "variable",
    "level",
    "reference",
    "coef",
    "hazard_ratio",
    "std_err",
    "z",
    "p",
    "lower",
    "upper",
)


class CoxInputError(StatsInputError):
    """The table cannot be fitted as given; the message names the column, rows or level and the fix."""


@dataclass(frozen=True)
class GlobalTest:
    """One of the three tests that all coefficients are zero."""

    name: str
    statistic: float
    df: int
    p: float


@dataclass(frozen=True)
class Design:
    """The model matrix: one column per term, and which covariate each term belongs to."""

    matrix: np.ndarray
    time: np.ndarray
    event: np.ndarray
    terms: tuple[str, ...]
    term_variable: tuple[str, ...]
    term_level: tuple[str | None, ...]
    references: dict[str, str]
    n_dropped: int


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model.

    ``summary`` has one row per term: ``term, variable, level, reference, coef, hazard_ratio, std_err, z,
    p, lower, upper`` (Wald P and CI, as R's ``summary(coxph)``). ``tests`` are the likelihood-ratio, Wald
    and score tests, in that order. ``design`` keeps the model matrix for diagnostics (e.g. the
    proportional-hazards test). ``warnings`` are lifelines' convergence warnings (e.g. a covariate that
    separates events, R's "coefficient may be infinite"), in term names.
    """

    summary: pl.DataFrame
    tests: tuple[GlobalTest, ...]
    n: int
    n_events: int
    n_dropped: int
    log_likelihood: float
    conf_level: float
    design: Design
    coefficients: np.ndarray
    warnings: tuple[str, ...] = ()

    def test(self, name: str) -> GlobalTest:
        """The global test called ``name``: ``likelihood_ratio``, ``wald`` or ``score``."""
        return next(t for t in self.tests if t.name == name)


def build_design(
    table: pl.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    references: Mapping[str, str] | None = None,
    row_names: Sequence[str] | None = None,
) -> Design:
    """Check the columns and build the model matrix (indicators for categorical covariates).

    A covariate is categorical when its column holds text or booleans, or when a reference level is
    declared for it (so a numerically coded ``sex`` becomes a factor with ``references={"sex": "1"}``).
    ``row_names`` (e.g. ``"patient P3"``) name the rows in messages instead of their 0-based positions.
    """
    references = dict(references or {})
    if not covariates:
        raise CoxInputError("name at least one covariate (--covariate COLUMN)")
    if len(set(covariates)) != len(covariates):
        raise CoxInputError(f"covariates {list(covariates)} name a column twice")
    require_columns(table, [time, event, *covariates], CoxInputError)
    unknown = [v for v in references if v not in covariates]
    if unknown:
        raise CoxInputError(f"reference level given for {unknown}, which are not covariates {list(covariates)}")
    for name in (time, event):
        if not table.schema[name].is_numeric() and table.schema[name] != pl.Boolean:
            raise CoxInputError(f"column {name!r} must be numeric (it holds {table.schema[name]})")
    used = table.select([time, event, *covariates]).with_row_index("_row")
    complete = used.drop_nulls()
    original_row = complete.get_column("_row").to_list()
    if complete.height == 0:
        raise CoxInputError(f"no row has {', '.join([time, event, *covariates])} all filled in")
    times = complete.get_column(time).cast(pl.Float64).to_numpy()
    events = complete.get_column(event).cast(pl.Float64).to_numpy()
    bad_time = np.flatnonzero(~np.isfinite(times) | (times < 0))
    if bad_time.size:
        where = rows_text([original_row[r] for r in bad_time], row_names)
        raise CoxInputError(f"{where}: column {time!r} is negative or not finite; give a follow-up time >= 0")
    bad_event = np.flatnonzero(~np.isin(events, (0.0, 1.0)))
    if bad_event.size:
        found = sorted({level_text(v) for v in events[bad_event]})
        where = rows_text([original_row[r] for r in bad_event], row_names)
        raise CoxInputError(
            f"{where}: column {event!r} must be 0 (censored) or 1 (event); found {', '.join(found)}. For a status with "
            "competing events use `tocsin cohort cuminc`, or recode the column"
        )
    design = DesignColumns()
    for name in covariates:
        series = complete.get_column(name)
        if name in references or series.dtype in CATEGORICAL_DTYPES:
            # booleans are named as Python prints them (female=True), as this module has always done
            design.add_factor(indicators(
                series, name, references.get(name), what="covariate", error=CoxInputError, bool_labels=BOOL_LABELS
            ))
        elif series.dtype.is_numeric():
            design.add_numeric(name, series.cast(pl.Float64).to_numpy())
        else:
            raise CoxInputError(f"covariate {name!r} holds {series.dtype}; give a number, text or a boolean")
    return Design(
        design.matrix,
        times,
        events,
        tuple(design.terms),
        tuple(design.variables),
        tuple(design.levels),
        design.references,
        table.height - complete.height,
    )


@dataclass(frozen=True)
class RiskSetTerms:
    """Per death-time pieces of the Efron partial likelihood at given coefficients.

    ``score[j]`` is the sum of the Schoenfeld residuals at the j-th distinct death time ``times[j]`` and
    ``information[j]`` the Efron-weighted covariance of the covariates over its risk set.
    """

    times: np.ndarray
    score: np.ndarray
    information: np.ndarray


def efron_risk_set_terms(time: np.ndarray, event: np.ndarray, matrix: np.ndarray, beta: np.ndarray) -> RiskSetTerms:
    """Score and information contributions of each distinct death time, with Efron's handling of ties.

    For ``d`` deaths at a time, the l-th (l = 0..d-1) removes the fraction ``l/d`` of the dying set from the
    risk-set sums (Therneau & Grambsch 2000, §3.3); this is what R's ``coxph`` uses for its score test.
    """
    order = np.argsort(time, kind="stable")
    t, e, x = time[order], event[order], matrix[order]
    weight = np.exp(x @ beta)
    wx = weight[:, None] * x
    wxx = wx[:, :, None] * x[:, None, :]
    # Sums over everyone with time >= t: reverse cumulative sums read at the first row of each time.
    distinct, first = np.unique(t, return_index=True)
    s0_risk = np.cumsum(weight[::-1])[::-1][first]
    s1_risk = np.cumsum(wx[::-1], axis=0)[::-1][first]
    s2_risk = np.cumsum(wxx[::-1], axis=0)[::-1][first]
    slot = np.searchsorted(distinct, t)
    dead = e > 0
    n_dead = np.bincount(slot[dead], minlength=distinct.size)
    s0_dead = np.bincount(slot[dead], weights=weight[dead], minlength=distinct.size)
    s1_dead = np.zeros_like(s1_risk)
    s2_dead = np.zeros_like(s2_risk)
    x_dead = np.zeros_like(s1_risk)
    np.add.at(s1_dead, slot[dead], wx[dead])
    np.add.at(s2_dead, slot[dead], wxx[dead])
    np.add.at(x_dead, slot[dead], x[dead])
    with_deaths = np.flatnonzero(n_dead > 0)
    # One row per death: its death time and its Efron fraction l/d.
    death_slot = np.repeat(with_deaths, n_dead[with_deaths])
    offsets = np.concatenate([np.arange(d) for d in n_dead[with_deaths]])
    fraction = offsets / n_dead[death_slot]
    s0 = s0_risk[death_slot] - fraction * s0_dead[death_slot]
    mean = (s1_risk[death_slot] - fraction[:, None] * s1_dead[death_slot]) / s0[:, None]
    second = (s2_risk[death_slot] - fraction[:, None, None] * s2_dead[death_slot]) / s0[:, None, None]
    covariance = second - mean[:, :, None] * mean[:, None, :]
    position = np.searchsorted(with_deaths, death_slot)
    score = x_dead[with_deaths].copy()
    information = np.zeros((with_deaths.size, x.shape[1], x.shape[1]))
    np.add.at(score, position, -mean)
    np.add.at(information, position, covariance)
    return RiskSetTerms(distinct[with_deaths], score, information)


def _term_names(message: str, terms: Sequence[str]) -> str:
    """lifelines' first line about its columns x0, x1, ... with the term names instead."""
    first = message.strip().splitlines()[0]
    return re.sub(r"\bx(\d+)\b", lambda m: repr(terms[int(m.group(1))]), first)


def _score_test(design: Design) -> float:
    terms = efron_risk_set_terms(design.time, design.event, design.matrix, np.zeros(design.matrix.shape[1]))
    score = terms.score.sum(axis=0)
    return float(score @ np.linalg.solve(terms.information.sum(axis=0), score))


def cox_regression(
    table: pl.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    references: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
    row_names: Sequence[str] | None = None,
) -> CoxResult:
    """Fit ``Surv(time, event) ~ covariates`` (Efron ties) and report HR, CI, Wald P and the global tests.

    Equivalent R: ``summary(coxph(Surv(time, event) ~ x1 + factor(x2), data, ties = "efron"))`` with
    ``relevel(x2, ref = reference)``. ``row_names`` name the rows in error messages.
    """
    check_conf_level(conf_level, error=CoxInputError)
    design = build_design(table, time, event, covariates, references, row_names)
    if design.event.sum() == 0:
        raise CoxInputError(f"column {event!r} has no events (all 0); a Cox model needs at least one event")
    names = [f"x{k}" for k in range(len(design.terms))]
    frame = {"_time": design.time, "_event": design.event} | dict(zip(names, design.matrix.T, strict=True))
    fitter = CoxPHFitter(alpha=1.0 - conf_level)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            warnings.simplefilter("ignore", LinAlgWarning)  # an ill-conditioned step ends in ConvergenceError
            # lifelines starts with damped Newton steps (0.95) and stops on R's criterion (relative change of
            # the log-likelihood < 1e-9) short of the maximum: lung age + sex ends 1.6e-6 from R's coefficient.
            # Full steps, as R's coxph takes, and a finer stop reach R's printed digits.
            fitter.fit(
                pd.DataFrame(frame),
                duration_col="_time",
                event_col="_event",
                fit_options={"step_size": 1.0, "precision": 1e-12, "r_precision": 1e-15},
            )
    except (ConvergenceError, np.linalg.LinAlgError) as exc:
        raise CoxInputError(
            "the Cox model does not converge (a covariate may separate events perfectly, or two covariates "
            f"may be collinear; drop or merge them): {_term_names(str(exc), design.terms)}"
        ) from exc
    # Like R's "coefficient may be infinite", lifelines' separation and variance checks are warnings: the fit
    # is reported with them.
    fit_warnings = tuple(
        dict.fromkeys(_term_names(str(w.message), design.terms) for w in caught if w.category is ConvergenceWarning)
    )
    coef = fitter.params_.to_numpy()
    std_err = fitter.standard_errors_.to_numpy()
    z = coef / std_err
    quantile = float(norm.ppf(0.5 + conf_level / 2.0))
    with np.errstate(over="ignore"):  # a separating covariate: the upper limit is infinite, as in R
        hazard_ratio = np.exp(coef)
        lower = np.exp(coef - quantile * std_err)
        upper = np.exp(coef + quantile * std_err)
    summary = pl.DataFrame(
        {
            "term": list(design.terms),
            "variable": list(design.term_variable),
            "level": list(design.term_level),
            "reference": [design.references.get(v) for v in design.term_variable],
            "coef": coef,
            "hazard_ratio": hazard_ratio,
            "std_err": std_err,
            "z": z,
            "p": 2.0 * norm.sf(np.abs(z)),
            "lower": lower,
            "upper": upper,
        },
        schema_overrides={"level": pl.String, "reference": pl.String},
    ).select(SUMMARY_COLUMNS)
    df = len(design.terms)
    likelihood_ratio = float(fitter.log_likelihood_ratio_test().test_statistic)
    wald = float(coef @ np.linalg.solve(fitter.variance_matrix_.to_numpy(), coef))
    score = _score_test(design)
    tests = tuple(
        GlobalTest(name, value, df, float(chi2.sf(value, df)))
        for name, value in (("likelihood_ratio", likelihood_ratio), ("wald", wald), ("score", score))
    )
    return CoxResult(
        summary,
        tests,
        int(design.time.size),
        int(design.event.sum()),
        design.n_dropped,
        float(fitter.log_likelihood_),
        conf_level,
        design,
        coef,
        fit_warnings,
    )
