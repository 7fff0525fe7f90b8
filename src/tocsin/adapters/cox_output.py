"""Render a Cox model and its proportional-hazards test: a Rich table, or a JSON document with stable keys.

JSON document::

    {"analysis": "cox", "source", "time", "event", "covariates", "references", "ties": "efron",
     "conf_level", "n", "n_events", "n_dropped", "log_likelihood", "warnings",
     "terms": [{term, variable, level, reference, coef, hazard_ratio, std_err, z, p, lower, upper}, ...],
     "tests": [{"name": "likelihood_ratio" | "wald" | "score", "statistic", "df", "p"}, ...],
     "proportional_hazards": {"transform": "km", "terms": [{term, chisq, df, p}, ...]}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from tocsin.adapters.competing_output import format_p
from tocsin.stats.survival.cox import CoxResult
from tocsin.stats.survival.proportional_hazards import ProportionalHazardsTest

TEST_LABEL = {"likelihood_ratio": "Likelihood ratio", "wald": "Wald", "score": "Score (log-rank)"}


def cox_document(fit: CoxResult, zph: ProportionalHazardsTest, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-ready document (``meta`` gives the source and the column names)."""
    return {
        "analysis": "cox",
        **meta,
        "references": fit.design.references,
        "ties": "efron",
        "conf_level": fit.conf_level,
        "n": fit.n,
        "n_events": fit.n_events,
        "n_dropped": fit.n_dropped,
        "log_likelihood": fit.log_likelihood,
        "warnings": list(fit.warnings),
        "terms": fit.summary.to_dicts(),
        "tests": [{"name": t.name, "statistic": t.statistic, "df": t.df, "p": t.p} for t in fit.tests],
        "proportional_hazards": {"transform": zph.transform, "terms": zph.summary.to_dicts()},
    }


def print_cox(console: Console, fit: CoxResult, zph: ProportionalHazardsTest) -> None:
    level = round(fit.conf_level * 100)
    dropped = f", {fit.n_dropped} row(s) with missing values left out" if fit.n_dropped else ""
    table = Table(
        title=f"Cox proportional hazards (Efron ties): n = {fit.n}, events = {fit.n_events}{dropped}",
        title_justify="left",
    )
    for name in ("term", "reference", "coef", "HR", f"{level}% CI", "se", "z", "P"):
        table.add_column(name, justify="left" if name in ("term", "reference") else "right")
    for row in fit.summary.iter_rows(named=True):
        table.add_row(
            row["term"],
            row["reference"] or "",
            f"{row['coef']:.4f}",
            f"{row['hazard_ratio']:.3f}",
            f"{row['lower']:.3f}–{row['upper']:.3f}",
            f"{row['std_err']:.4f}",
            f"{row['z']:.3f}",
            format_p(row["p"]),
        )
    console.print(table)
    for warning in fit.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    tests = Table(title="Global tests (all coefficients 0)", title_justify="left")
    for name in ("test", "statistic", "df", "P"):
        tests.add_column(name, justify="left" if name == "test" else "right")
    for t in fit.tests:
        tests.add_row(TEST_LABEL[t.name], f"{t.statistic:.2f}", str(t.df), format_p(t.p))
    console.print(tests)
    ph = Table(
        title=f"Proportional hazards (score test, as R cox.zph; transform {zph.transform})", title_justify="left"
    )
    for name in ("term", "chisq", "df", "P"):
        ph.add_column(name, justify="left" if name == "term" else "right")
    for row in zph.summary.iter_rows(named=True):
        ph.add_row(row["term"], f"{row['chisq']:.3f}", str(row["df"]), format_p(row["p"]))
    console.print(ph)
