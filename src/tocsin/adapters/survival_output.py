"""Render a survival analysis: the JSON document with stable keys, Rich tables, and atomic file writes.

The document (``survival_document``) is what ``tocsin cohort survival --json`` prints::

    {"time", "event", "by", "strata", "time_unit", "conf_type", "conf_level",
     "groups": [{"group", "n", "events", "median", "median_lower", "median_upper",
                 "survival_at": [{"time", "survival", "std_err", "lower", "upper", "n_risk"}],
                 "follow_up": {"median", "lower", "upper", "censored"},
                 "rmst": {"horizon", "estimate", "std_err", "lower", "upper", "beyond_follow_up"} | null}],
     "test": {"name", "statistic", "df", "p"} | null}

Missing numbers (a median not reached, a CI limit that does not exist) are ``null``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

from tocsin.adapters.atomic_write import write_bytes_atomically
from tocsin.adapters.text_format import formatted, json_value
from tocsin.stats.survival.follow_up import FollowUpResult
from tocsin.stats.survival.kaplan_meier import KaplanMeierResult
from tocsin.stats.survival.logrank import LogRankResult
from tocsin.stats.survival.rmst import RestrictedMeanResult

NOT_REACHED = "NR"


def survival_document(
    curves: KaplanMeierResult,
    survival_at: pl.DataFrame,
    follow_up: FollowUpResult,
    rmst: RestrictedMeanResult | None,
    test: LogRankResult | None,
    *,
    columns: dict[str, str | None],
    time_unit: str,
) -> dict[str, Any]:
    """One JSON-ready dict of everything the command computed (keys as in the module docstring)."""
    at_by_group = _rows_by_group(survival_at)
    follow_by_group = {row["group"]: row for row in follow_up.summary.to_dicts()}
    rmst_by_group = {row["group"]: row for row in rmst.summary.to_dicts()} if rmst else {}
    groups = []
    for row in curves.groups.to_dicts():
        label = row["group"]
        follow = follow_by_group[label]
        restricted = rmst_by_group.get(label)
        groups.append(
            {
                **row,
                "survival_at": [
                    {key: point[key] for key in ("time", "survival", "std_err", "lower", "upper", "n_risk")}
                    for point in at_by_group.get(label, [])
                ],
                "follow_up": {key: follow[key] for key in ("median", "lower", "upper", "censored")},
                "rmst": None
                if restricted is None
                else {
                    "horizon": restricted["horizon"],
                    "estimate": restricted["rmst"],
                    "std_err": restricted["std_err"],
                    "lower": restricted["lower"],
                    "upper": restricted["upper"],
                    "beyond_follow_up": restricted["beyond_follow_up"],
                },
            }
        )
    return {
        "time": columns["time"],
        "event": columns["event"],
        "by": columns["by"],
        "strata": columns["strata"],
        "time_unit": time_unit,
        "conf_type": curves.conf_type,
        "conf_level": curves.conf_level,
        "groups": groups,
        "test": None
        if test is None
        else {"name": test.name, "statistic": test.statistic, "df": test.df, "p": json_value(test.p_value)},
    }


def print_survival(document: dict[str, Any], console: Console) -> None:
    """Rich tables: medians with CI, follow-up and RMST per group; survival at the asked times; the test."""
    unit = document["time_unit"]
    level = f"{document['conf_level']:.0%}"
    overview = Table(title=f"Kaplan–Meier: {document['time']} ({unit}), {level} CI {document['conf_type']}")
    for name in ("group", "n", "events", f"median ({level} CI)", "median follow-up (reverse KM)"):
        overview.add_column(name, justify="left" if name == "group" else "right")
    horizons = {group["rmst"]["horizon"] for group in document["groups"] if group["rmst"]}
    if horizons:
        overview.add_column(f"RMST to {_time(horizons.pop())} ± SE", justify="right")
    carried = False
    for group in document["groups"]:
        cells = [
            group["group"],
            str(group["n"]),
            str(group["events"]),
            _estimate(group["median"], group["median_lower"], group["median_upper"]),
            _estimate(group["follow_up"]["median"], group["follow_up"]["lower"], group["follow_up"]["upper"]),
        ]
        rmst = group["rmst"]
        if rmst:
            carried = carried or rmst["beyond_follow_up"]
            mark = "*" if rmst["beyond_follow_up"] else ""
            cells.append(f"{_time(rmst['estimate'])} ± {_time(rmst['std_err'])}{mark}")
        overview.add_row(*cells)
    console.print(overview)
    if carried:
        console.print("* the horizon is after this group's last follow-up; its curve is carried flat to it (as R)")

    if any(group["survival_at"] for group in document["groups"]):
        landmarks = Table(title=f"Survival at chosen times ({unit})")
        for name in ("group", "time", "at risk", "survival", "SE", f"{level} CI"):
            landmarks.add_column(name, justify="left" if name == "group" else "right")
        for group in document["groups"]:
            for point in group["survival_at"]:
                landmarks.add_row(
                    group["group"],
                    _time(point["time"]),
                    str(point["n_risk"]),
                    formatted(point["survival"], ".3f"),
                    formatted(point["std_err"], ".3f"),
                    f"{formatted(point['lower'], '.3f')} – {formatted(point['upper'], '.3f')}",
                )
        console.print(landmarks)

    test = document["test"]
    if test is not None:
        console.print(
            f"{test['name']}: chi-square {test['statistic']:.4g} on {test['df']} df, P = {formatted(test['p'], '.3g')}"
        )


def write_document(document: dict[str, Any], path: Path) -> None:
    """Write the JSON document atomically (a temporary file renamed into place)."""
    write_bytes_atomically(path, orjson.dumps(document, option=orjson.OPT_INDENT_2))


def _rows_by_group(frame: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in frame.to_dicts():
        grouped.setdefault(row["group"], []).append(row)
    return grouped




def _time(value: float) -> str:
    """A time or duration to two decimals without trailing zeros: 310, 10.18, 0.5."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _estimate(value: float | None, lower: float | None, upper: float | None) -> str:
    def show(x: float | None) -> str:
        return NOT_REACHED if x is None else _time(x)

    return f"{show(value)} ({show(lower)}, {show(upper)})"
