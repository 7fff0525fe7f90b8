"""The baseline Tocsin is measured against: a per-time-point calculator called in a Python loop.

This is how existing CRS/ICANS calculators work (one time point in, one grade out) and how a registry
script built on them grades a cohort: walk each patient's rows in time order, convert each value to the
canonical unit, keep the latest value of every item in a dict, and at every assessment time call the
scalar grading functions. It applies the same ASTCT rules as Tocsin's core for the common cases (fever
window, waiver after treatment, vasopressor count without vasopressin, device tiers, ICE/consciousness)
but none of the traceability (no evidence, no rule ids, no validation beyond a float parse). It is a
benchmark baseline, not product code: nothing in ``src/`` imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tocsin.criteria import load_scale
from tocsin.units import conversion_for
from tocsin.vocabulary import load_vocabulary

DEVICE_GRADE: dict[str, int] = load_scale("crs_astct2019").table("oxygen_device_grade")
PRESSORS = ("norepinephrine", "epinephrine", "phenylephrine", "dopamine", "vasopressin")
CONSCIOUSNESS = {"awake": 0, "awakens_spontaneously": 1, "awakens_to_voice": 2, "awakens_to_touch": 3, "unarousable": 4}


def crs_grade_scalar(
    febrile: bool, waived: bool, sbp: float | None, rates: dict[str, float], device: str | None, flow: float | None
) -> int:
    """ASTCT 2019 CRS grade at one time point."""
    if not (febrile or waived):
        return 0
    n_pressors = sum(1 for p in PRESSORS if p != "vasopressin" and rates.get(p, 0.0) > 0)
    if n_pressors >= 2:
        hypotension = 4
    elif n_pressors == 1 or rates.get("vasopressin", 0.0) > 0:
        hypotension = 3
    elif sbp is not None and sbp < 90:
        hypotension = 2
    else:
        hypotension = 0
    hypoxia = DEVICE_GRADE.get(device or "room_air", 0)
    if device == "nasal_cannula" and flow is not None and flow > 6:
        hypoxia = 3
    return max(1 if febrile else 0, hypotension, hypoxia)


def icans_grade_scalar(age: float | None, ice: float | None, capd: float | None, consciousness: str | None) -> int:
    """ASTCT 2019 ICANS grade at one time point (encephalopathy and consciousness domains)."""
    grade = CONSCIOUSNESS.get(consciousness or "awake", 0)
    if age is not None and age < 12:
        if capd is not None:
            grade = max(grade, 3 if capd >= 9 else 1 if capd >= 1 else 0)
    elif ice is not None:
        grade = max(grade, 0 if ice >= 10 else 1 if ice >= 7 else 2 if ice >= 3 else 3)
    return grade


def grade_rows(rows: Iterable[tuple[str, float, str, str, str]]) -> dict[str, tuple[int, int]]:
    """Max CRS and ICANS grade per patient from (patient_id, day, item, value, unit) rows sorted by
    patient and day."""
    vocabulary = load_vocabulary()
    canonical = {n: (d.unit, d.per_kg_unit, d.molar_mass) for n, d in vocabulary.items.items() if d.unit}
    anticytokine = set(vocabulary.names_where(anti_cytokine=True)) | {"antipyretic"}
    result: dict[str, tuple[int, int]] = {}
    current = None
    state: dict = {}
    for patient_id, day, item, value, unit in rows:
        if patient_id != current:
            if current is not None:
                result[current] = (state["crs_max"], state["icans_max"])
            current = patient_id
            state = {
                "crs_max": 0,
                "icans_max": 0,
                "rates": {},
                "fever_day": -math.inf,
                "crs_started": False,
                "waived": False,
                "age": None,
                "weight": None,
                "device": None,
                "flow": None,
                "sbp": None,
                "ice": None,
                "capd": None,
                "consciousness": None,
            }
        number = None
        if item in canonical and not value.startswith("<"):  # "<5": below quantification, no number
            target, per_kg, molar_mass = canonical[item]
            conv = conversion_for(unit, target, per_kg, molar_mass)
            number = float(value) * conv.scale + conv.offset
            if conv.per_kg:
                number *= state["weight"] or 0.0
        if item == "temperature":
            if number >= 38.0:
                state["fever_day"] = day
                state["crs_started"] = True
        elif item == "age":
            state["age"] = number
        elif item == "weight":
            state["weight"] = number
        elif item == "sbp":
            state["sbp"] = number
        elif item == "oxygen":
            state["device"] = value
            state["flow"] = None
        elif item == "oxygen_flow":
            state["flow"] = number
        elif item in PRESSORS:
            state["rates"][item] = number
        elif item in anticytokine and state["crs_started"]:
            state["waived"] = True
        elif item == "ice_score":
            state["ice"] = number
        elif item == "capd_score":
            state["capd"] = number
        elif item == "consciousness":
            state["consciousness"] = value
        febrile = day - state["fever_day"] <= 1.0
        crs = crs_grade_scalar(febrile, state["waived"], state["sbp"], state["rates"], state["device"], state["flow"])
        icans = icans_grade_scalar(state["age"], state["ice"], state["capd"], state["consciousness"])
        state["crs_max"] = max(state["crs_max"], crs)
        state["icans_max"] = max(state["icans_max"], icans)
    if current is not None:
        result[current] = (state["crs_max"], state["icans_max"])
    return result
