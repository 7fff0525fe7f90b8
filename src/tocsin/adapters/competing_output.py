"""Render cumulative incidence (Aalen–Johansen) and Gray's tests: a Rich table, or a JSON document with stable keys.

The curve frame keeps exactly the columns ``group, cause, time, n_risk, cuminc, std_err, lower, upper`` so
that plots (``tocsin cohort report``) and other tools read one shape.

JSON document::

    {"analysis": "cumulative_incidence", "source", "time", "status", "by", "strata", "event_codes", "censor_codes",
     "conf_level", "conf_type", "variance", "n", "groups",
     "curves": [{group, cause, time, n_risk, cuminc, std_err, lower, upper}, ...],
     "at": [... the same keys, at the requested times ...],
     "gray_tests": [{"cause", "statistic", "df", "p", "rho"}, ...]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

from tocsin.adapters.atomic_write import write_bytes_atomically
from tocsin.adapters.text_format import fixed
from tocsin.stats.survival.aalen_johansen import CumulativeIncidence
from tocsin.stats.survival.gray_test import GrayTestResult

VARIANCE_NAME = "cmprsk (Gray) asymptotic variance"


def cuminc_document(
    fit: CumulativeIncidence,
    at: pl.DataFrame | None,
    tests: Sequence[GrayTestResult],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON-ready document (``meta`` gives source, column names and the declared codes)."""
    return {
        "analysis": "cumulative_incidence",
        **meta,
        "conf_level": fit.conf_level,
        "conf_type": fit.conf_type,
        "variance": VARIANCE_NAME,
        "n": sum(int(t.size) for t in fit.follow_up_times.values()),
        "groups": [
            {"group": label, "n": int(fit.follow_up_times[label].size), "last_follow_up": fit.last_follow_up[label]}
            for label in fit.group_labels
        ],
        "curves": fit.summary.to_dicts(),
        "at": [] if at is None else at.to_dicts(),
        "gray_tests": [
            {"cause": t.cause, "statistic": t.statistic, "df": t.df, "p": t.p, "rho": t.rho} for t in tests
        ],
    }


def write_json(document: Mapping[str, Any], path: Path) -> None:
    """Write atomically (temporary file renamed into place), so a failed write keeps the previous file."""
    write_bytes_atomically(path, orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def _number(value: float | None, digits: int = 3) -> str:
    return fixed(value, digits)


def format_p(p: float | None) -> str:
    """P to 4 decimals, or in scientific notation below 0.0001 (never printed as 0)."""
    if p is None:
        return "—"
    return f"{p:.2e}" if p < 0.0001 else f"{p:.4f}"


def print_cuminc(
    console: Console,
    fit: CumulativeIncidence,
    at: pl.DataFrame | None,
    tests: Sequence[GrayTestResult],
    cause_names: Mapping[object, str],
) -> None:
    """Estimates at the requested times (or at each group's event times when none are given) and Gray's tests."""
    rows = at if at is not None and at.height else fit.summary.filter(pl.col("time") > 0)
    level = round(fit.conf_level * 100)
    table = Table(
        title=f"Cumulative incidence (Aalen–Johansen; {level}% CI, {fit.conf_type}; {VARIANCE_NAME})",
        title_justify="left",
    )
    for name, justify in (("group", "left"), ("cause", "left"), ("time", "right"), ("at risk", "right")):
        table.add_column(name, justify=justify)
    for name in ("cumulative incidence", "std err", f"{level}% CI"):
        table.add_column(name, justify="right")
    for row in rows.iter_rows(named=True):
        ci = "—" if row["lower"] is None else f"{row['lower']:.3f}–{row['upper']:.3f}"
        table.add_row(
            str(row["group"]),
            cause_names.get(row["cause"], str(row["cause"])),
            f"{row['time']:g}",
            "—" if row["n_risk"] is None else str(row["n_risk"]),
            _number(row["cuminc"]),
            _number(row["std_err"]),
            ci,
        )
    console.print(table)
    if tests:
        gray = Table(title="Gray's test (equality of cumulative incidence across groups)", title_justify="left")
        for name in ("cause", "statistic", "df", "P"):
            gray.add_column(name, justify="left" if name == "cause" else "right")
        for t in tests:
            gray.add_row(cause_names.get(t.cause, str(t.cause)), _number(t.statistic, 4), str(t.df), format_p(t.p))
        console.print(gray)
