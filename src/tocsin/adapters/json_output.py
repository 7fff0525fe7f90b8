"""Grading results as the stable JSON document of ``tocsin grade --json``.

Shape (keys are stable; new keys may be added)::

    {"tocsin_version", "vocabulary_version", "config": {...}, "patients": [
        {"patient_id", "product", "age_years", "infusion_time",
         "crs":   {"scale", "scale_version", "citation", "doi", "max_grade", "onset_day", "n_episodes",
                   "days_at_grade", "episodes": [{"onset_day", "peak_grade", "peak_day", "resolved_day",
                   "duration_days", "ongoing", "recurrence"}],
                   "timeline": [{"day", "time", "grade", "domain", "evidence", "rule", "missing", ...}],
                   "rules": {rule_id: guideline sentence}},
         "icans": {same keys},
         "cytopenia": {"scale", "anc"|"plt"|"hgb"|"alc"|"wbc": [{"day", "value", "grade", "rule", "missing",
                       "transfused", ...}], "worst": {lineage: {"grade", "day", ...}}},
         "icaht": {"early": {"grade", "days_anc_le_500", "days_anc_le_100", ...}, "late": {"grade", "nadir", ...},
                   "thrombocytopenia": {"early": {...}, "late": {...}}, ...},
         "pht": {"pht", "pht_pattern", "pht_lineages", ..., "lineages": {"anc"|"plt"|"hgb": {...}}},
         "scores": {"car_hematotox": {"score", "risk", "inputs": {name: {"value", "unit", "day", "points"}}, ...},
                    "easix": {...}, "m_easix": {...}, "hscore": {...}, "iec_hs": {...}, "car_hlh": {...}},
         "kinetics": {"assay", "cmax", "tmax_day", "auc_0_28", "tlast_day", ..., "assays": {item: {...}}}}],
     "input_problems": [{"file", "line", "patient_id", "field", "value", "message", "fix", "severity"}]}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from tocsin import __version__
from tocsin.core.engine import GradingResult, ScoreResults, ToxicityResult
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


def _rows(df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """One dict per patient of a per-patient frame."""
    return {row.pop(PID): row for row in df.iter_rows(named=True)}


def _split(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Pop the keys starting with ``prefix`` out of ``row``, without the prefix."""
    keys = [k for k in row if k.startswith(prefix)]
    return {k.removeprefix(prefix): row.pop(k) for k in keys}


def _cytopenia(result: GradingResult) -> dict[str, dict[str, Any]]:
    hematology = result.hematology
    values = hematology.cytopenia.select(
        PID,
        pl.col("lineage").cast(pl.Utf8),
        pl.col("t").round(4).alias("day"),
        "value",
        "blq",
        "lln",
        "grade",
        pl.col("rule").cast(pl.Utf8),
        "missing",
        pl.col("scale").cast(pl.Utf8),
        "transfused",
    )
    out: dict[str, dict[str, Any]] = {}
    for row in values.iter_rows(named=True):
        block = out.setdefault(row.pop(PID), {"scale": result.config.cytopenia.scale, "worst": {}})
        block.setdefault(row.pop("lineage"), []).append(row)
    for row in hematology.cytopenia_worst.iter_rows(named=True):
        block = out.setdefault(row[PID], {"scale": result.config.cytopenia.scale, "worst": {}})
        lineage = str(row["lineage"])
        block["worst"][lineage] = {
            k: (round(v, 4) if k == "worst_t" and v is not None else v)
            for k, v in row.items()
            if k not in (PID, "lineage")
        }
    return out


def _icaht(row: dict[str, Any]) -> dict[str, Any]:
    platelets = {"early": _split(row, "t_early_"), "late": _split(row, "t_late_")}
    platelets["late"].update(_split(row, "late_days_plt_"))
    platelets["early"].update({f"days_plt_{k}": v for k, v in _split(row, "days_plt_").items()})
    platelets.update(_split(row, "platelet_transfusion_"))
    early, late = _split(row, "early_"), _split(row, "late_")
    early.update({f"days_anc_{k}": v for k, v in _split(row, "days_anc_").items()})
    return {"early": early, "late": late, "thrombocytopenia": platelets, **row}


def _pht(row: dict[str, Any]) -> dict[str, Any]:
    lineages = {lineage: _split(row, f"{lineage}_") for lineage in ("anc", "plt", "hgb")}
    return {**row, "lineages": lineages}


def _score(row: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
    """A score's row with its inputs gathered under ``inputs`` and ``category`` also named ``risk``."""
    gathered = {name: _split(row, f"{name}_") for name in inputs}
    return {**row, "risk": row.get("category"), "inputs": gathered}


def _scores(scores: ScoreResults) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pid, row in _rows(scores.car_hematotox).items():
        out.setdefault(pid, {})["car_hematotox"] = _score(row, ["plt", "anc", "hgb", "crp", "ferritin"])
    for pid, row in _rows(scores.easix).items():
        m_easix = _split(row, "m_easix")
        inputs = {name: _split(row, f"{name}_") for name in ("ldh", "creatinine", "plt", "crp")}
        identity = {k: row[k] for k in ("anchor", "anchor_day", "caveats", "scale", "version", "citation", "doi")}
        out.setdefault(pid, {})["easix"] = {**row, "inputs": inputs}
        out[pid]["m_easix"] = {
            "m_easix": m_easix.pop(""),
            **{k.removeprefix("_"): v for k, v in m_easix.items()},
            **identity,
            "inputs": {k: inputs[k] for k in ("ldh", "crp", "plt")},
        }
    for name, frame in (("hscore", scores.hscore), ("iec_hs", scores.iec_hs), ("car_hlh", scores.car_hlh)):
        for pid, row in _rows(frame).items():
            out.setdefault(pid, {})[name] = row
    return out


#: Assays in the order the summary prefers when a patient has several (copies are the usual CK measure).
KINETIC_ASSAYS = ("car_t_copies", "car_t_cells", "car_t_percent")


def _kinetics(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    assays: dict[str, dict[str, dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        pid = row.pop(PID)
        assays.setdefault(pid, {})[row["item"]] = row
    out = {}
    for pid, by_assay in assays.items():
        primary = next(by_assay[a] for a in (*KINETIC_ASSAYS, *by_assay) if a in by_assay)
        out[pid] = {"assay": primary["item"], **primary, "assays": by_assay}
    return out


def result_document(result: GradingResult) -> dict[str, Any]:
    """The whole ``--json`` document for a grading run."""
    infusion_times = {r[PID]: r["infusion_time"] for r in result.patients.iter_rows(named=True)}
    crs = _toxicity(result.crs, infusion_times)
    icans = _toxicity(result.icans, infusion_times)
    cytopenia = _cytopenia(result)
    icaht = {pid: _icaht(row) for pid, row in _rows(result.hematology.icaht).items()}
    pht = {pid: _pht(row) for pid, row in _rows(result.hematology.pht).items()}
    scores = _scores(result.scores)
    kinetics = _kinetics(result.kinetics)
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
                "cytopenia": cytopenia.get(pid, {"scale": result.config.cytopenia.scale, "worst": {}}),
                "icaht": icaht.get(pid),
                "pht": pht.get(pid),
                "scores": scores.get(pid, {}),
                "kinetics": kinetics.get(pid, {"note": "no CAR-T levels recorded", "assays": {}}),
            }
        )
    return {
        "tocsin_version": __version__,
        "vocabulary_version": load_vocabulary().version,
        "config": result.config.describe(),
        "patients": patients,
        "input_problems": result.errors.to_dicts(),
    }
