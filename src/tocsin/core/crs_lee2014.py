"""CRS grade by Lee 2014 (Lee DW et al., Blood 2014;124:188-195, doi:10.1182/blood-2014-05-552729).

* grade 1: fever (symptoms needing symptomatic treatment only);
* grade 2: O2 requirement < 40 % FiO2, or hypotension responsive to fluids or a low dose of one
  vasopressor;
* grade 3: O2 requirement >= 40 %, or hypotension needing high-dose or multiple vasopressors;
* grade 4: ventilator support (CPAP/BiPAP count when ``crs.lee2014_noninvasive_is_ventilator``);
* grade 5: death due to CRS.

"High dose" follows the Lee 2014 table as transcribed in criteria.md §1.3 ([M]: not yet confirmed
against the PDF) and must be sustained for >= 3 h: the grade rises at the first assessment at least 3 h
into a continuous high-dose period. FiO2 is the recorded one; without it, nasal cannula counts
as below 40 % unless ``crs.lee2014_estimate_nasal_fio2`` (21 % + 4 % per L/min), and a mask without FiO2
is "needs fio2" (graded 2 as a lower bound). Organ
toxicity criteria are not derived (no CTCAE organ grading yet). CRS onset needs fever as for every
scale; within the episode, support is graded with or without fever (Lee 2014 has no fever waiver).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.crs_course import (
    MAX_GRADE,
    fever_evidence,
    rule_table,
    support_evidence,
    support_shown,
    vasopressor_names,
    with_grades,
    with_rule,
)
from tocsin.core.evidence import Observation, observation
from tocsin.core.timeline import DEVICE_NONE, Assessments, NullableInt, Text, device_codes, hours_since, latest_valid
from tocsin.criteria import load_scale

SCALE = load_scale("crs_lee2014")


def _low_flow(state: Assessments) -> np.ndarray:
    return np.isin(state["o2_device_code"], device_codes(["nasal_cannula", "blow_by"])) | (
        state["o2_device_code"] == DEVICE_NONE
    )


def _high_dose(state: Assessments, pressors: tuple[str, ...]) -> np.ndarray:
    equivalent_factor: dict[str, float] = SCALE.table("norepinephrine_equivalent")
    monotherapy: dict[str, float] = SCALE.table("high_dose_monotherapy")
    ne_equivalent = np.zeros(state.t.shape)
    for p, factor in equivalent_factor.items():
        if p in pressors:
            ne_equivalent = ne_equivalent + state[f"rate_{p}"] * factor
    on_vasopressin = state["rate_vasopressin"] > 0 if "vasopressin" in pressors else np.zeros(state.t.shape, bool)
    mono = np.zeros(state.t.shape, dtype=np.bool_)
    for p, dose in monotherapy.items():
        if p in pressors:
            mono |= state[f"rate_{p}"] >= dose
    combination = ne_equivalent >= SCALE.table("high_dose_combination_ne_equivalent")
    return np.where(
        on_vasopressin,
        ne_equivalent >= SCALE.table("high_dose_with_vasopressin_ne_equivalent"),
        np.where(state["n_vasopressors"] == 1, mono, combination),
    )


def _fio2(state: Assessments, config: GradingConfig) -> np.ndarray:
    device_t = state["o2_device_t"]
    recorded = np.where(np.isnan(device_t) | (state["fio2_t"] >= device_t), state["fio2"], np.nan)
    if not config.crs.lee2014_estimate_nasal_fio2:
        return recorded  # low-flow devices without FiO2 count as < 40 % (see _low_flow)
    nasal = 21.0 + config.crs.lee2014_fio2_per_l_min_nasal * state["o2_flow_current"]
    return np.where(np.isnan(recorded), np.where(_low_flow(state), nasal, np.nan), recorded)


def _sustained(state: Assessments, high_dose: np.ndarray) -> np.ndarray:
    """High dose for at least the scale's minimum hours without a break (within the patient)."""
    before = np.zeros(high_dose.shape, dtype=np.bool_)
    before[1:] = high_dose[:-1] & ~state.first[1:]
    run_start = latest_valid({"start": high_dose & ~before}, state.first)["start"]
    run_start_t = np.where(run_start >= 0, state.t[run_start], np.nan) if run_start.size else state.t
    return high_dose & (hours_since(state.t, run_start_t) >= SCALE.table("high_dose_minimum_hours"))


def grade_crs_lee2014(course: Assessments, config: GradingConfig) -> tuple[Assessments, list[Observation]]:
    """Add ``grade``, ``domain``, ``rule``, ``missing`` to a marked CRS course; return it with the evidence
    specs that explain each row."""
    pressors = vasopressor_names(course)
    sustained = _sustained(course, _high_dose(course, pressors))
    fio2_used = _fio2(course, config)
    ventilator = ["mechanical_ventilation"] + (
        ["cpap", "bipap"] if config.crs.lee2014_noninvasive_is_ventilator else []
    )
    hypotension = np.select(
        [
            course["hypotension_attributed"],
            (course["n_vasopressors"] >= 2) | sustained,
            course["any_vasopressor"] | (course["bp_known"] & course["bp_low"]),
        ],
        [0, 3, 2],
        0,
    ).astype(np.int8)
    hypoxia = np.select(
        [
            course["hypoxia_attributed"] | ~course["on_oxygen"],
            np.isin(course["o2_device_code"], device_codes(ventilator)),
            fio2_used >= SCALE.table("fio2_high_percent"),
        ],
        [0, 4, 3],
        2,
    ).astype(np.int8)
    course.add(fio2_used=fio2_used, g_hypotension=hypotension, g_hypoxia=NullableInt(hypoxia))
    eligible = course["fever_now"] | course["crs_started"]
    no_fio2 = eligible & (hypoxia == 2) & np.isnan(fio2_used) & ~_low_flow(course)
    with_grades(course, eligible, no_fio2, "fio2", MAX_GRADE + 1)
    with_rule(course, _rules())
    return course, _evidence(pressors)


def _rule_cases(g: np.ndarray, domain: Text) -> list[tuple[np.ndarray, str]]:
    """The rule of a raw grade ``g`` set by ``domain``: the first case that holds."""
    hypotension_domain = domain.labelled("hypotension", "hypotension+hypoxia")  # the domain starts with it
    return [
        (g == 5, "CRS-LEE14-G5-DEATH"),
        ((g == 0) & domain.labelled("fever"), "CRS-LEE14-G0-NO-FEVER"),
        (g == 0, "CRS-LEE14-G0"),
        (g == 1, "CRS-LEE14-G1-SYMPTOMS"),
        (g == 4, "CRS-LEE14-G4-VENTILATOR"),
        *[((g == grade) & hypotension_domain, f"CRS-LEE14-G{grade}-HYPOTENSION") for grade in (2, 3)],
        *[(g == grade, f"CRS-LEE14-G{grade}-HYPOXIA") for grade in (2, 3)],
    ]


@cache
def _rules() -> tuple[pl.Series, np.ndarray]:
    return rule_table(_rule_cases)


@cache
def _evidence(pressors: tuple[str, ...]) -> list[Observation]:
    hypotension_shown, hypoxia_shown = support_shown()
    return [
        *fever_evidence(),
        *support_evidence(
            list(pressors), hypotension_shown, hypotension_shown & pl.col("bp_low") & pl.col("bp_known"),
            hypoxia_shown,
        ),
        observation("fio2", "fio2_t", "fio2_used", hypoxia_shown & pl.col("fio2_used").is_not_null(), "%"),
    ]
