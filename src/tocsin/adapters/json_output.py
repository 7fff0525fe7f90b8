"""Grading results as the stable JSON document of ``tocsin grade --json``.

Shape (keys are stable; new keys may be added)::

    {"tocsin_version", "vocabulary_version", "config": {...}, "patients": [
        {"patient_id", "product", "age_years", "infusion_time",
         "crs":   {"scale", "scale_version", "citation", "doi", "max_grade", "onset_day", "n_episodes",
                   "days_at_grade", "episodes": [{"onset_day", "peak_grade", "peak_day", "resolved_day",
                   "duration_days", "ongoing", "recurrence"}],
                   "timeline": [{"day", "time", "grade", "domain", "evidence", "rule", "missing", ...}],
                   "rules": {rule_id: guideline sentence}},
         "icans": {same keys}}],
     "input_problems": [{"file", "line", "patient_id", "field", "value", "message", "fix", "severity"}]}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from tocsin import __version__
from tocsin.core.engine import GradingResult, ToxicityResult
from tocsin.core.timeline import PID
from tocsin.vocabulary import load_vocabulary

EPISODE_KEYS = [
    "episode",
    "onset_day",
    "peak_grade",
    "peak_day",
    "resolved_day",
    "duration_days",
    "ongoing",
    "recurrence",
]


def _by_patient(df: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in df.iter_rows(named=True):
        out.setdefault(row.pop(PID), []).append(row)
    return out


def _timeline_rows(result: ToxicityResult, infusion_times: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    extra = [c for c in ("waived", "waiver_drug_ep", "waiver_t_ep") if c in result.timeline.columns]
    frame = result.explained().select(
        PID, pl.col("t").round(4).alias("day"), "grade", "domain", "evidence", "rule", "missing", *extra
    )
    rows = _by_patient(frame)
    for pid, patient_rows in rows.items():
        start = infusion_times.get(pid)
        for row in patient_rows:
            row["time"] = (start + timedelta(days=row["day"])).isoformat(timespec="minutes") if start else None
            if "waived" in row:
                drug, day = row.pop("waiver_drug_ep"), row.pop("waiver_t_ep")
                row["fever_waived_by"] = {"drug": drug, "day": round(day, 4)} if row.pop("waived") else None
    return rows


def _toxicity(result: ToxicityResult, infusion_times: dict[str, Any]) -> dict[str, dict[str, Any]]:
    timelines = _timeline_rows(result, infusion_times)
    episodes = _by_patient(result.episodes.select(PID, *EPISODE_KEYS))
    grade_columns = [c for c in result.summary.columns if c.startswith("days_grade_")]
    out: dict[str, dict[str, Any]] = {}
    for row in result.summary.iter_rows(named=True):
        pid = row[PID]
        out[pid] = {
            "scale": result.scale.scale,
            "scale_version": result.scale.version,
            "citation": result.scale.citation,
            "doi": result.scale.doi,
            "max_grade": row["max_grade"],
            "onset_day": row["onset_day"],
            "n_episodes": row["n_episodes"],
            "days_at_grade": {c.removeprefix("days_grade_"): row[c] or 0 for c in grade_columns},
            "episodes": episodes.get(pid, []),
            "timeline": timelines.get(pid, []),
            "rules": _rules_used(result, timelines.get(pid, [])),
        }
    return out


def _rules_used(result: ToxicityResult, timeline: list[dict[str, Any]]) -> dict[str, str]:
    """The guideline sentence behind every rule id in this timeline (ids resolve within ``scale``)."""
    used = {row["rule"] for row in timeline if row["rule"]}
    return {r.id: r.text for r in result.scale.rules if r.id in used}


def _empty(result: ToxicityResult) -> dict[str, Any]:
    return {
        "scale": result.scale.scale,
        "scale_version": result.scale.version,
        "citation": result.scale.citation,
        "doi": result.scale.doi,
        "max_grade": None,
        "onset_day": None,
        "n_episodes": 0,
        "days_at_grade": {},
        "episodes": [],
        "timeline": [],
        "note": "no assessments recorded",
    }


def result_document(result: GradingResult) -> dict[str, Any]:
    """The whole ``--json`` document for a grading run."""
    infusion_times = {r[PID]: r["infusion_time"] for r in result.patients.iter_rows(named=True)}
    crs = _toxicity(result.crs, infusion_times)
    icans = _toxicity(result.icans, infusion_times)
    patients = []
    for row in result.patients.iter_rows(named=True):
        pid = row[PID]
        patients.append(
            {
                "patient_id": pid,
                "product": row["product"],
                "age_years": None if row["age_years"] is None else round(row["age_years"], 2),
                "infusion_time": row["infusion_time"].isoformat() if row["infusion_time"] else None,
                "crs": crs.get(pid, _empty(result.crs)),
                "icans": icans.get(pid, _empty(result.icans)),
            }
        )
    return {
        "tocsin_version": __version__,
        "vocabulary_version": load_vocabulary().version,
        "config": result.config.describe(),
        "patients": patients,
        "input_problems": result.errors.to_dicts(),
    }
