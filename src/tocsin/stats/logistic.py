"""Logistic regression for predictors of a binary outcome (e.g. grade >= 3 CRS): odds ratios with Wald and
profile-likelihood confidence intervals, the rows used and dropped, and separation refused.

The model is fitted by statsmodels ``GLM`` (binomial family, logit link; IRLS, as R ``glm``), so estimates,
standard errors, z and P (normal reference, as R ``summary.glm`` for the binomial family) match R. Two CIs
are reported and labelled, because R users meet both:

* **Wald** = R ``confint.default``: ``beta ± z · SE``.
* **Profile likelihood** = R ``confint`` on a ``glm`` (MASS ``confint.glm``): the values of each coefficient at
  which the deviance of the model refitted with that coefficient fixed (as an offset) rises by the chi-square
  quantile. statsmodels has no profile interval for a GLM, so it is solved here with ``scipy.optimize.brentq``
  on exact refits; R interpolates a spline through a grid of profile points, so the two agree to about 4
  significant digits, not to the last printed one. SAS ``PROC LOGISTIC / CLODDS=PL`` computes the same interval.

Categorical predictors become dummy columns against a reference level: the declared one, otherwise the first
level in sorted order (R's default factor ordering for text and numbers alike). Rows with a missing outcome or
predictor are dropped (R ``na.omit``) and reported. Complete or quasi-complete separation, where the maximum
likelihood estimate does not exist and a fit only returns an arbitrary huge OR, is detected before fitting with
Konis' linear program and raised as an error naming the predictors involved.

References:
    Venzon DJ, Moolgavkar SH (1988). A method for computing profile-likelihood-based confidence intervals.
    Appl Stat 37:87–94. doi:10.2307/2347496
    Albert A, Anderson JA (1984). On the existence of maximum likelihood estimates in logistic regression
    models. Biometrika 71:1–10. doi:10.1093/biomet/71.1.1
    Konis K (2007). Linear programming algorithms for detecting separated data in binary logistic regression
    models. DPhil thesis, University of Oxford.
    Venables WN, Ripley BD (2002). Modern Applied Statistics with S, 4th ed., Springer (profile CIs, MASS).

Example:
    >>> import polars as pl
    >>> table = pl.DataFrame({"patient_id": [str(i) for i in range(8)],
    ...                       "crs_max_grade": [0, 3, 1, 4, 3, 0, 3, 1],
    ...                       "easix": [1.0, 2.0, 4.0, 8.0, 1.5, 0.5, 6.0, 3.0]})
    >>> fit = logistic_regression(table, "crs_max_grade", ["easix"], threshold=3, profile=False)
    >>> fit.n_used, fit.n_events, fit.summary.get_column("term").to_list()
    (8, 4, ['(Intercept)', 'easix'])
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy.optimize import brentq, linprog, root_scalar
from scipy.stats import chi2, norm
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from tocsin.stats.design_matrix import DesignColumns, indicators
from tocsin.stats.input_checks import StatsInputError, check_conf_level, flag_column, numeric_column, require_columns

INTERCEPT = "(Intercept)"
_SEPARATION_TOLERANCE = 1e-7


class SeparationError(StatsInputError):
    """The outcome is (quasi-)completely separated by the predictors: the odds ratio is infinite, not estimable."""


@dataclass(frozen=True)
class LogisticResult:
    """A fitted logistic regression: one ``summary`` row per model term, and what data it used."""

    summary: pl.DataFrame
    outcome: str
    outcome_definition: str
    n_used: int
    n_events: int
    n_dropped: int
    dropped_ids: tuple[str, ...]
    missing_by_column: dict[str, int]
    reference_levels: dict[str, str]
    log_likelihood: float
    deviance: float
    null_deviance: float
    aic: float
    confidence: float
    profile: bool


@dataclass(frozen=True)
class _Design:
    matrix: np.ndarray
    terms: list[str]
    variables: list[str]
    levels: list[str | None]
    references: dict[str, str]


def _outcome(table: pl.DataFrame, outcome: str, threshold: float | None, id_column: str) -> tuple[pl.Series, str]:
    series = table.get_column(outcome)
    if threshold is not None:
        values = numeric_column(table, outcome, id_column, "--threshold needs a numeric outcome")
        return (values >= threshold).cast(pl.Float64), f"{outcome} >= {threshold:g}"
    if series.dtype.is_numeric():
        bad = series.is_not_null() & ~series.cast(pl.Float64).is_in([0.0, 1.0])
        if bad.any():
            raise StatsInputError(
                f"outcome {outcome!r} has values other than 0 and 1 (e.g. {series.filter(bad)[0]:g}); "
                f"give a threshold to model '{outcome} >= threshold' (e.g. --threshold 3)"
            )
    return flag_column(table, outcome, id_column).cast(pl.Float64), f"{outcome} is true (1)"


MAX_LEVELS = 50


def _is_categorical(frame: pl.DataFrame, name: str, declared: bool, id_column: str) -> bool:
    series = frame.get_column(name)
    if declared or series.dtype == pl.Boolean:
        return True
    if series.dtype.is_numeric():
        return False
    as_number = series.cast(pl.Float64, strict=False)
    stray = as_number.is_null() & series.is_not_null()
    if stray.any() and as_number.is_not_null().sum() >= stray.sum():
        index = int(stray.arg_true()[0])
        raise StatsInputError(
            f"predictor {name!r} is mostly numbers but patient {frame.get_column(id_column)[index]!r} has "
            f"{series[index]!r}; fix the value (empty if unknown), or declare the column categorical"
        )
    return not as_number.is_not_null().all()


def _design(
    frame: pl.DataFrame, predictors: Sequence[str], categorical: set[str], reference: Mapping[str, str],
    id_column: str,
) -> _Design:
    design = DesignColumns()
    design.add_numeric(INTERCEPT, np.ones(frame.height))
    for name in predictors:
        series = frame.get_column(name)
        if _is_categorical(frame, name, name in categorical or name in reference, id_column):
            design.add_factor(indicators(
                series, name, reference.get(name), what="predictor", error=StatsInputError, max_levels=MAX_LEVELS
            ))
        else:
            design.add_numeric(name, numeric_column(frame, name, id_column, "use a number").to_numpy())
    return _Design(design.matrix, design.terms, design.variables, design.levels, design.references)


def _separating_terms(matrix: np.ndarray, y: np.ndarray, terms: list[str]) -> list[str]:
    """Konis' LP: a direction b with s_i x_i'b >= 0 for all rows and some > 0 exists iff the data are separated."""
    scale = np.maximum(np.abs(matrix).max(axis=0), 1e-300)
    signed = matrix / scale * np.where(y > 0.5, 1.0, -1.0)[:, None]
    result = linprog(
        c=-signed.sum(axis=0),
        A_ub=-signed,
        b_ub=np.zeros(signed.shape[0]),
        bounds=[(-1.0, 1.0)] * signed.shape[1],
        method="highs",
    )
    if result.status != 0 or -result.fun <= _SEPARATION_TOLERANCE * signed.shape[0]:
        return []
    return [t for t, b in zip(terms, result.x, strict=True) if abs(b) > 1e-6 and t != INTERCEPT] or [INTERCEPT]


def _fit(y: np.ndarray, matrix: np.ndarray) -> sm.GLM:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        return sm.GLM(y, matrix, family=sm.families.Binomial()).fit()


def _constrained_deviance(y: np.ndarray, others: np.ndarray, offset: np.ndarray, start: np.ndarray) -> tuple[
        float, np.ndarray]:
    """Deviance of the logit model with one coefficient fixed (as ``offset``), by Newton–Raphson from ``start``.

    The same iteration statsmodels' IRLS runs, written out because a profile needs ~100 refits from nearby
    starting points and ``GLM.fit`` costs about a second per refit on 100,000 rows.
    """
    beta = start.copy()

    def deviance_at(b: np.ndarray) -> tuple[float, np.ndarray]:
        eta = others @ b + offset
        # -2 log L for 0/1 outcomes, computed without overflow: log p = -log(1 + e^-eta).
        return float(2.0 * np.sum(np.logaddexp(0.0, np.where(y > 0.5, -eta, eta)))), eta

    deviance, eta = deviance_at(beta)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * eta))
        weights = p * (1.0 - p)
        step = np.linalg.lstsq(others.T @ (others * weights[:, None]), others.T @ (y - p), rcond=None)[0]
        for _halving in range(30):
            candidate = beta + step
            new_deviance, new_eta = deviance_at(candidate)
            if new_deviance <= deviance + 1e-12 * max(1.0, deviance):
                break
            step = step / 2.0
        converged = abs(deviance - new_deviance) <= 1e-10 * max(1.0, new_deviance)
        beta, deviance, eta = candidate, new_deviance, new_eta
        if converged:
            break
    return deviance, beta


def _profile_limits(
    y: np.ndarray, matrix: np.ndarray, fitted: sm.GLM, j: int, term: str, confidence: float
) -> tuple[float, float]:
    """Where the signed root of the deviance rise, r(b) = sign(b - beta) sqrt(D(b) - D(beta)), equals ±z.

    r is close to linear in b (exactly so for a quadratic log-likelihood), so a secant search from the Wald
    limit needs three or four refits; if it wanders, the limit is bracketed and Brent's method finishes.
    """
    z = float(np.sqrt(chi2.ppf(confidence, 1)))
    others = np.delete(matrix, j, axis=1)
    beta, se = float(fitted.params[j]), float(fitted.bse[j])
    warm = np.delete(np.asarray(fitted.params), j)
    seen: dict[float, float] = {}

    def signed_root(value: float) -> float:
        nonlocal warm
        if value not in seen:
            deviance, warm = _constrained_deviance(y, others, value * matrix[:, j], warm)
            seen[value] = float(np.sign(value - beta) * np.sqrt(max(deviance - fitted.deviance, 0.0)))
        return seen[value]

    def limit(target: float) -> float:
        wald = beta + target * se
        reached = signed_root(wald)
        guess = beta + (wald - beta) * target / reached if reached * target > 0 else beta + 2.0 * (wald - beta)
        secant = root_scalar(lambda v: signed_root(v) - target, x0=wald, x1=guess, method="secant",
                             xtol=1e-9 * se, maxiter=12)
        if secant.converged and np.isfinite(secant.root) and (secant.root - beta) * target > 0:
            return float(secant.root)
        near, far = beta, wald
        for _ in range(40):
            if abs(signed_root(far)) >= z:
                return float(brentq(lambda v: signed_root(v) - target, *sorted((near, far)), xtol=1e-9 * se))
            near, far = far, beta + 2.0 * (far - beta)
        raise StatsInputError(
            f"the profile likelihood of {term} does not close; use the Wald interval (--no-profile)"
        )

    return limit(-z), limit(z)


def logistic_regression(
    table: pl.DataFrame,
    outcome: str,
    predictors: Sequence[str],
    threshold: float | None = None,
    categorical: Sequence[str] = (),
    reference: Mapping[str, str] | None = None,
    confidence: float = 0.95,
    profile: bool = True,
    id_column: str = "patient_id",
) -> LogisticResult:
    """Fit ``logit P(outcome) = b0 + sum b_k x_k``; ``threshold`` models ``outcome >= threshold``.

    ``categorical`` forces numeric columns (e.g. a rank 1–4) to be treated as categories; text and boolean
    columns always are. ``reference`` maps a categorical predictor to its reference level (as text).
    Raises :class:`StatsInputError` for unusable input and :class:`SeparationError` when the MLE does not exist.
    """
    reference = dict(reference or {})
    if not predictors:
        raise StatsInputError("no predictor given; name at least one (e.g. --predictor easix)")
    if outcome in predictors:
        raise StatsInputError(f"{outcome!r} is both the outcome and a predictor")
    require_columns(table, [outcome, *predictors])
    unknown = sorted(set(reference) - set(predictors))
    if unknown:
        raise StatsInputError(f"reference given for {', '.join(unknown)}, which is not a predictor")
    check_conf_level(confidence, "confidence")
    y_series, definition = _outcome(table, outcome, threshold, id_column)
    frame = table.select(predictors).with_columns(y_series.alias("__outcome__"))
    if id_column in table.columns:
        frame = frame.with_columns(table.get_column(id_column).cast(pl.String).alias("__id__"))
    else:
        frame = frame.with_row_index("__id__", offset=1).with_columns(pl.col("__id__").cast(pl.String))
    missing_by_column = {outcome: int(y_series.null_count())}
    missing_by_column.update({c: int(frame.get_column(c).null_count()) for c in predictors})
    complete = frame.drop_nulls(subset=["__outcome__", *predictors])
    dropped_ids = tuple(frame.filter(~frame.get_column("__id__").is_in(complete.get_column("__id__").implode()))
                        .get_column("__id__").to_list()) if complete.height < frame.height else ()
    y = complete.get_column("__outcome__").to_numpy()
    if complete.height == 0:
        raise StatsInputError("no row has the outcome and every predictor; check the columns for empty cells")
    n_events = int(y.sum())
    if n_events in (0, complete.height):
        raise StatsInputError(
            f"every one of the {complete.height} rows used has outcome {'1' if n_events else '0'} "
            f"({definition}); a logistic model needs both outcomes"
        )
    design = _design(complete, predictors, set(categorical), reference, "__id__")
    rank = np.linalg.matrix_rank(design.matrix)
    if rank < design.matrix.shape[1]:
        raise StatsInputError(
            f"the predictors are collinear (rank {rank} of {design.matrix.shape[1]} terms: "
            f"{', '.join(design.terms)}); drop a predictor or merge levels"
        )
    if complete.height <= design.matrix.shape[1]:
        raise StatsInputError(
            f"{complete.height} rows cannot fit {design.matrix.shape[1]} terms; add rows or drop terms"
        )
    separating = _separating_terms(design.matrix, y, design.terms)
    if separating:
        raise SeparationError(
            f"{definition} is perfectly (or quasi-perfectly) separated by {', '.join(separating)}: the odds "
            "ratio is infinite and no maximum-likelihood estimate exists; drop or merge those predictors "
            "(levels), or use a penalised (Firth) model"
        )
    try:
        fitted = _fit(y, design.matrix)
    except PerfectSeparationWarning as exc:
        raise SeparationError(
            f"{definition}: fitted probabilities reach 0 or 1 ({exc}); the odds ratios are not estimable; "
            "drop or merge predictors (levels), or use a penalised (Firth) model"
        ) from exc
    if not fitted.converged:
        raise StatsInputError(f"the model of {definition} did not converge; check for extreme or collinear predictors")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    params, bse = np.asarray(fitted.params), np.asarray(fitted.bse)
    statistic = params / bse
    p_values = 2.0 * norm.sf(np.abs(statistic))
    if profile:
        limits = [_profile_limits(y, design.matrix, fitted, j, term, confidence)
                  for j, term in enumerate(design.terms)]
        profile_lower = np.array([lo for lo, _ in limits])
        profile_upper = np.array([hi for _, hi in limits])
    else:
        profile_lower = profile_upper = np.full(params.size, np.nan)
    summary = pl.DataFrame(
        {
            "term": design.terms,
            "variable": design.variables,
            "level": design.levels,
            "reference_level": [design.references.get(v) if lvl is not None else None
                                for v, lvl in zip(design.variables, design.levels, strict=True)],
            "estimate": params,
            "std_error": bse,
            "z": statistic,
            "p": p_values,
            "odds_ratio": np.exp(params),
            "wald_lower": np.exp(params - z * bse),
            "wald_upper": np.exp(params + z * bse),
            "profile_lower": np.exp(profile_lower),
            "profile_upper": np.exp(profile_upper),
        },
        schema_overrides={"level": pl.String, "reference_level": pl.String},
    )
    return LogisticResult(
        summary=summary,
        outcome=outcome,
        outcome_definition=definition,
        n_used=complete.height,
        n_events=n_events,
        n_dropped=frame.height - complete.height,
        dropped_ids=dropped_ids,
        missing_by_column=missing_by_column,
        reference_levels=design.references,
        log_likelihood=float(fitted.llf),
        deviance=float(fitted.deviance),
        null_deviance=float(fitted.null_deviance),
        aic=float(fitted.aic),
        confidence=confidence,
        profile=profile,
    )


