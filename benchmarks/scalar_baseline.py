"""The baseline Tocsin is measured against: a per-time-point calculator called in a Python loop.

This is how existing CRS/ICANS calculators work (one time point in, one grade out) and how a registry
script built on them grades a cohort: walk each patient's rows in time order, convert each value to the
canonical unit, keep the latest value of every item in a dict, and at every assessment time call the
scalar grading functions. It applies the same ASTCT rules as Tocsin's core for the common cases (fever
window, waiver after treatment, vasopressor count without vasopressin, device tiers, ICE/consciousness)
but none of the traceability (no evidence, no rule ids, no validation beyond a float parse). Since the
batch also grades hematology, the loop does the comparable per-value work the way spreadsheet-style
scripts do: a CTCAE v5.0 grade for every blood count, the daily ANC nadir for early ICAHT (longest run,
no interpolation or bridging), the day-28 cytopenia flag, CAR-HEMATOTOX from the last values before
lymphodepletion, and Cmax/Tmax of the CAR-T levels. It is a benchmark baseline, not product code:
nothing in ``src/`` imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tocsin.core.cytopenia_ctcae import criteria_tables
from tocsin.criteria import load_scale
from tocsin.units import conversion_for
from tocsin.vocabulary import load_vocabulary

DEVICE_GRADE: dict[str, int] = load_scale("crs_astct2019").table("oxygen_device_grade")
PRESSORS = ("norepinephrine", "epinephrine", "phenylephrine", "dopamine", "vasopressin")
CTCAE5 = {
    lineage: [(float(b.below), b.grade) for b in term.bands if b.below != "lln"]
    for lineage, term in criteria_tables("ctcae5").items()
}
DAY28_LLN = {"anc": 1.8, "plt": 150.0, "hgb": 12.0}  # ProlongedCytopeniaConfig defaults
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


def ctcae_grade_scalar(lineage: str, value: float) -> int:
    """CTCAE v5.0 grade of one count (grade 1 needs an LLN, which calculators rarely have: 0 here)."""
    for below, grade in CTCAE5[lineage]:
        if value < below:
            return grade
    return 0


def early_icaht_scalar(nadir: dict[int, float]) -> int:
    """Early ICAHT from the daily ANC nadir of days 0-30: longest runs at <= 0.5 and <= 0.1 x 10^9/L."""
    run500 = run100 = best500 = best100 = 0
    for day in range(0, 31):
        value = nadir.get(day)
        run500 = run500 + 1 if value is not None and value <= 0.5 else 0
        run100 = run100 + 1 if value is not None and value <= 0.1 else 0
        best500, best100 = max(best500, run500), max(best100, run100)
    if best500 >= 31 or best100 >= 14:
        return 4
    if best500 >= 14 or best100 >= 7:
        return 3
    return 2 if best500 >= 7 else 1 if best500 >= 1 else 0


def hematotox_scalar(baseline: dict[str, float]) -> int | None:
    """CAR-HEMATOTOX (developer-group boundaries) from baseline values in canonical units (CRP mg/L)."""
    if any(baseline.get(k) is None for k in ("plt", "anc", "hgb", "crp", "ferritin")):
        return None
    plt, ferritin = baseline["plt"], baseline["ferritin"]
    return (
        (2 if plt < 75 else 1 if plt <= 175 else 0)
        + (1 if baseline["anc"] <= 1.2 else 0)
        + (1 if baseline["hgb"] <= 9.0 else 0)
        + (1 if baseline["crp"] / 10 >= 3.0 else 0)
        + (2 if ferritin > 2000 else 1 if ferritin >= 650 else 0)
    )


def _finish(state: dict) -> tuple:
    """The per-patient results of the loop: CRS, ICANS, early ICAHT, day-28 cytopenia, HEMATOTOX, Tmax."""
    day28 = False
    for item, lln in DAY28_LLN.items():
        near = sorted((abs(d - 28), v) for d, v in state["daily"].get(item, {}).items() if abs(d - 28) <= 3)
        day28 = day28 or bool(near and near[0][1] < lln)
    return (
        state["crs_max"],
        state["icans_max"],
        early_icaht_scalar(state["daily"].get("anc", {})),
        day28,
        hematotox_scalar(state["baseline"]),
        state["tmax"],
    )


def grade_rows(rows: Iterable[tuple[str, float, str, str, str]]) -> dict[str, tuple]:
    """Per patient (CRS max, ICANS max, early ICAHT, day-28 cytopenia, CAR-HEMATOTOX, CAR-T Tmax) from
    (patient_id, day, item, value, unit) rows sorted by patient and day."""
    vocabulary = load_vocabulary()
    canonical = {n: (d.unit, d.per_kg_unit, d.molar_mass) for n, d in vocabulary.items.items() if d.unit}
    anticytokine = set(vocabulary.names_where(anti_cytokine=True)) | {"antipyretic"}
    result: dict[str, tuple[int, int]] = {}
    current = None
    state: dict = {}
    for patient_id, day, item, value, unit in rows:
        if patient_id != current:
            if current is not None:
                result[current] = _finish(state)
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
                "worst_ctcae": {},
                "daily": {},
                "baseline": {},
                "lymphodepleted": False,
                "cmax": -math.inf,
                "tmax": None,
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
        elif item == "lymphodepletion":
            state["lymphodepleted"] = True
        elif item == "car_t_copies" and number is not None and number > state["cmax"]:
            state["cmax"], state["tmax"] = number, day
        if item in CTCAE5 and number is not None:
            worst = state["worst_ctcae"]
            worst[item] = max(worst.get(item, 0), ctcae_grade_scalar(item, number))
            if item in DAY28_LLN and day >= 0:
                daily = state["daily"].setdefault(item, {})
                daily[int(day)] = min(daily.get(int(day), math.inf), number)
        if not state["lymphodepleted"] and day < 0 and item in ("plt", "anc", "hgb", "crp", "ferritin"):
            state["baseline"][item] = number
        febrile = day - state["fever_day"] <= 1.0
        crs = crs_grade_scalar(febrile, state["waived"], state["sbp"], state["rates"], state["device"], state["flow"])
        icans = icans_grade_scalar(state["age"], state["ice"], state["capd"], state["consciousness"])
        state["crs_max"] = max(state["crs_max"], crs)
        state["icans_max"] = max(state["icans_max"], icans)
    if current is not None:
        result[current] = _finish(state)
    return result
