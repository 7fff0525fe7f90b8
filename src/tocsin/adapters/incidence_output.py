"""Incidence, duration and logistic-regression results as Rich tables and as JSON documents with stable keys.

Shapes (keys are stable; new keys may be added)::

    incidence: {"analysis": "incidence", "ci_method", "ci_method_label", "confidence", "group_column",
                "rows": [{"toxicity", "group", "category", "kind", "grade", "events", "n_known", "n_unknown",
                          "estimate", "lower", "upper"}]}
    durations: {"analysis": "durations", "duration_column", "ongoing_column", "grade_column", "group_column",
                "km_method", "rows": [{"group", "grade", "n_episodes", "n_resolved", "n_ongoing", "n_unknown",
                                       "resolved_median", "resolved_q1", "resolved_q3", "resolved_min",
                                       "resolved_max", "km_median"}]}
    logistic:  {"analysis": "logistic", "outcome", "outcome_definition", "n_used", "n_events", "n_dropped",
                "dropped_ids", "missing_by_column", "reference_levels", "confidence", "log_likelihood",
                "deviance", "null_deviance", "aic", "ci_labels": {"wald", "profile"},
                "terms": [{"term", "variable", "level", "reference_level", "estimate", "std_error", "z", "p",
                           "odds_ratio", "wald_lower", "wald_upper", "profile_lower", "profile_upper"}]}

``group`` is ``null`` on the whole-cohort rows, ``grade`` is ``null`` on the all-grades rows; numbers that
cannot be estimated (no known patient, a median the curve never reaches) are ``null``.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from tocsin.adapters.text_format import fixed, json_value
from tocsin.stats.durations import DurationResult
from tocsin.stats.incidence import AT_LEAST, IncidenceResult
from tocsin.stats.logistic import LogisticResult
from tocsin.stats.proportions import CI_METHOD_LABEL

OVERALL = "all patients"
ALL_GRADES = "all grades"


def category_label(kind: str, grade: int) -> str:
    """Readable name of an incidence category: 'any grade', 'grade >= 3', 'grade 2'."""
    if kind == AT_LEAST:
        return "any grade" if grade == 1 else f"grade >= {grade}"
    return f"grade {grade}"


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: json_value(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def incidence_table(result: IncidenceResult) -> pl.DataFrame:
    """The summary with a readable ``category`` column, ready to write as CSV."""
    return result.summary.with_columns(
        pl.struct("kind", "grade").map_elements(lambda r: category_label(r["kind"], r["grade"]),
                                                 return_dtype=pl.String).alias("category")
    ).select("toxicity", "group", "category", "kind", "grade", "events", "n_known", "n_unknown", "estimate",
             "lower", "upper")


def incidence_document(result: IncidenceResult) -> dict[str, Any]:
    """The stable JSON document of ``tocsin cohort incidence --json``."""
    return {
        "analysis": "incidence",
        "ci_method": str(result.method),
        "ci_method_label": CI_METHOD_LABEL[result.method],
        "confidence": result.confidence,
        "group_column": result.group_column,
        "rows": _rows(incidence_table(result)),
    }


def durations_document(result: DurationResult) -> dict[str, Any]:
    """The stable JSON document of ``tocsin cohort durations --json``."""
    return {
        "analysis": "durations",
        "duration_column": result.duration_column,
        "ongoing_column": result.ongoing_column,
        "grade_column": result.grade_column,
        "group_column": result.group_column,
        "km_method": "product-limit median, ongoing episodes censored at their last observed duration",
        "rows": _rows(result.summary),
    }


def logistic_document(result: LogisticResult) -> dict[str, Any]:
    """The stable JSON document of ``tocsin cohort logistic --json``."""
    return {
        "analysis": "logistic",
        "outcome": result.outcome,
        "outcome_definition": result.outcome_definition,
        "n_used": result.n_used,
        "n_events": result.n_events,
        "n_dropped": result.n_dropped,
        "dropped_ids": list(result.dropped_ids),
        "missing_by_column": result.missing_by_column,
        "reference_levels": result.reference_levels,
        "confidence": result.confidence,
        "log_likelihood": result.log_likelihood,
        "deviance": result.deviance,
        "null_deviance": result.null_deviance,
        "aic": result.aic,
        "ci_labels": {
            "wald": "Wald, exp(beta ± z·SE) (R confint.default)",
            "profile": "profile likelihood (R confint / MASS confint.glm)" if result.profile else None,
        },
        "terms": _rows(result.summary),
    }


def _percent(estimate: float, lower: float, upper: float) -> str:
    if math.isnan(estimate):
        return "—"
    return f"{100 * estimate:.1f}% ({100 * lower:.1f}–{100 * upper:.1f})"


def _number(value: float | None, digits: int = 1) -> str:
    return fixed(value, digits)


def print_incidence(result: IncidenceResult, console: Console) -> None:
    """One table per toxicity: a row per category, a column per group (n/N and % with CI)."""
    frame = incidence_table(result)
    level = f"{100 * result.confidence:g}%"
    for toxicity in result.toxicities:
        rows = frame.filter(pl.col("toxicity") == toxicity)
        groups = rows.get_column("group").unique(maintain_order=True).to_list()
        table = Table(title=f"{toxicity}: incidence, {level} CI {CI_METHOD_LABEL[result.method]}", title_justify="left")
        table.add_column("category")
        for group in groups:
            first = rows.filter(pl.col("group").eq_missing(group)).row(0, named=True)
            table.add_column(f"{group or OVERALL}\nN = {first['n_known']} (unknown {first['n_unknown']})",
                             justify="right")
        for category in rows.get_column("category").unique(maintain_order=True).to_list():
            cells = []
            for group in groups:
                row = rows.filter(pl.col("group").eq_missing(group) & (pl.col("category") == category)).row(
                    0, named=True)
                share = _percent(row["estimate"], row["lower"], row["upper"])
                cells.append(f"{row['events']}/{row['n_known']}  {share}")
            table.add_row(category, *cells)
        console.print(table)


def print_durations(result: DurationResult, console: Console) -> None:
    """A row per stratum: counts, median (IQR) and range of resolved episodes, and the product-limit median."""
    table = Table(title=f"{result.duration_column}: duration (days); ongoing = {result.ongoing_column}",
                  title_justify="left")
    for name in ("group", "grade", "n", "resolved", "ongoing", "unknown", "median (IQR)", "range", "KM median"):
        table.add_column(name, justify="left" if name in ("group", "grade") else "right")
    for row in result.summary.iter_rows(named=True):
        resolved = row["n_resolved"] > 0
        table.add_row(
            row["group"] or OVERALL,
            ALL_GRADES if row["grade"] is None else str(row["grade"]),
            str(row["n_episodes"]), str(row["n_resolved"]), str(row["n_ongoing"]), str(row["n_unknown"]),
            f"{_number(row['resolved_median'])} ({_number(row['resolved_q1'])}–{_number(row['resolved_q3'])})"
            if resolved else "—",
            f"{_number(row['resolved_min'])}–{_number(row['resolved_max'])}" if resolved else "—",
            _number(row["km_median"]),
        )
    console.print(table)


def _p_text(p: float) -> str:
    return f"{p:.3g}" if p >= 0.001 else f"{p:.2e}"


def print_logistic(result: LogisticResult, console: Console) -> None:
    """Odds ratios with both CIs labelled, and the rows used and dropped."""
    level = f"{100 * result.confidence:g}%"
    table = Table(title=f"logistic regression of {result.outcome_definition}: {result.n_events} events in "
                  f"{result.n_used} patients ({result.n_dropped} dropped for missing values)", title_justify="left")
    for name in ("term", "OR", f"{level} CI (Wald)", f"{level} CI (profile)", "P", "beta", "SE"):
        table.add_column(name, justify="left" if name == "term" else "right")
    for row in result.summary.iter_rows(named=True):
        term = row["term"] if row["level"] is None else f"{row['variable']} {row['level']} vs {row['reference_level']}"
        profile = (f"{row['profile_lower']:.3g}–{row['profile_upper']:.3g}"
                   if not math.isnan(row["profile_lower"]) else "—")
        table.add_row(term, f"{row['odds_ratio']:.3g}", f"{row['wald_lower']:.3g}–{row['wald_upper']:.3g}", profile,
                      _p_text(row["p"]), f"{row['estimate']:.4g}", f"{row['std_error']:.4g}")
    console.print(table)
    if result.dropped_ids:
        shown = ", ".join(result.dropped_ids[:10]) + (" …" if len(result.dropped_ids) > 10 else "")
        missing = ", ".join(f"{c}: {n}" for c, n in result.missing_by_column.items() if n)
        console.print(f"dropped (missing {missing}): {shown}")
