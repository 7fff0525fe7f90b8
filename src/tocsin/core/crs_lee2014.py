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

import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.crs_course import (
    common_missing,
    fever_evidence,
    support_evidence,
    support_shown,
    vasopressor_names,
    with_grade_and_domain,
    with_raw_grade,
)
from tocsin.core.evidence import Observation, missing_text, observation
from tocsin.core.segments import ffill, shift1, with_segment_start
from tocsin.core.timeline import HOURS_PER_DAY, PID
from tocsin.criteria import load_scale

SCALE = load_scale("crs_lee2014")
_LOW_FLOW = pl.col("o2_device").is_in(["nasal_cannula", "blow_by"]) | pl.col("o2_device").is_null()


def _high_dose(pressors: list[str]) -> pl.Expr:
    equivalent_factor: dict[str, float] = SCALE.table("norepinephrine_equivalent")
    monotherapy: dict[str, float] = SCALE.table("high_dose_monotherapy")
    ne_equivalent = pl.sum_horizontal([pl.col(f"rate_{p}") * f for p, f in equivalent_factor.items() if p in pressors])
    on_vasopressin = pl.col("rate_vasopressin") > 0 if "vasopressin" in pressors else pl.lit(False)
    single = pl.col("n_vasopressors") == 1
    mono = pl.any_horizontal([pl.col(f"rate_{p}") >= dose for p, dose in monotherapy.items() if p in pressors])
    return (
        pl.when(on_vasopressin)
        .then(ne_equivalent >= SCALE.table("high_dose_with_vasopressin_ne_equivalent"))
        .when(single)
        .then(mono)
        .otherwise(ne_equivalent >= SCALE.table("high_dose_combination_ne_equivalent"))
    )


def _fio2(config: GradingConfig) -> pl.Expr:
    recorded = pl.when(pl.col("o2_device_t").is_null() | (pl.col("fio2_t") >= pl.col("o2_device_t"))).then(
        pl.col("fio2")
    )
    if not config.crs.lee2014_estimate_nasal_fio2:
        return recorded  # low-flow devices without FiO2 count as < 40 % (see _LOW_FLOW)
    nasal = 21.0 + config.crs.lee2014_fio2_per_l_min_nasal * pl.col("o2_flow_current")
    return pl.coalesce(recorded, pl.when(_LOW_FLOW).then(nasal))


def grade_crs_lee2014(course: pl.DataFrame, config: GradingConfig) -> tuple[pl.DataFrame, list[Observation]]:
    """Add ``grade``, ``domain``, ``rule``, ``missing`` to a marked CRS course frame; return it with the
    evidence specs that explain each row."""
    pressors = vasopressor_names(course)
    # The sustained high-dose run is filled within the patient: the course frame carries no segment start.
    df = with_segment_start(course, [PID]).with_columns(
        _high_dose(pressors).fill_null(False).alias("high_dose"), _fio2(config).alias("fio2_used")
    )
    run_start = ffill(pl.when(pl.col("high_dose") & ~shift1(pl.col("high_dose")).fill_null(False)).then(pl.col("t")))
    sustained = pl.col("high_dose") & (
        (pl.col("t") - run_start) * HOURS_PER_DAY >= SCALE.table("high_dose_minimum_hours")
    )
    ventilator = ["mechanical_ventilation"] + (
        ["cpap", "bipap"] if config.crs.lee2014_noninvasive_is_ventilator else []
    )
    hypotension = (
        pl.when(pl.col("hypotension_attributed"))
        .then(0)
        .when((pl.col("n_vasopressors") >= 2) | sustained)
        .then(3)
        .when(pl.col("any_vasopressor") | (pl.col("bp_known") & pl.col("bp_low")))
        .then(2)
        .otherwise(0)
        .cast(pl.Int8)
    )
    fio2_high = pl.col("fio2_used") >= SCALE.table("fio2_high_percent")
    hypoxia = (
        pl.when(pl.col("hypoxia_attributed") | ~pl.col("on_oxygen"))
        .then(0)
        .when(pl.col("o2_device").is_in(ventilator))
        .then(4)
        .when(fio2_high.fill_null(False))
        .then(3)
        .otherwise(2)
        .cast(pl.Int8)
    )
    df = df.with_columns(hypotension.alias("g_hypotension"), hypoxia.alias("g_hypoxia"))
    eligible = pl.col("fever_now") | pl.col("crs_started")
    df = with_raw_grade(df, eligible)
    df = df.with_columns(
        missing_text(
            [
                *common_missing(eligible),
                (eligible & (pl.col("g_hypoxia") == 2) & pl.col("fio2_used").is_null() & ~_LOW_FLOW, "fio2"),
            ]
        )
    )
    df = with_grade_and_domain(df)
    g = pl.col("raw_grade")
    d = pl.col("domain")
    rule = (
        pl.when(g == 5)
        .then(pl.lit("CRS-LEE14-G5-DEATH"))
        .when((g == 0) & (d == "fever"))
        .then(pl.lit("CRS-LEE14-G0-NO-FEVER"))
        .when(g == 0)
        .then(pl.lit("CRS-LEE14-G0"))
        .when(g == 1)
        .then(pl.lit("CRS-LEE14-G1-SYMPTOMS"))
        .when(g == 4)
        .then(pl.lit("CRS-LEE14-G4-VENTILATOR"))
        .when(d.str.starts_with("hypotension"))
        .then(pl.format("CRS-LEE14-G{}-HYPOTENSION", g))
        .otherwise(pl.format("CRS-LEE14-G{}-HYPOXIA", g))
    )
    hypotension_shown, hypoxia_shown = support_shown()
    evidence = [
        *fever_evidence(),
        *support_evidence(
            pressors, hypotension_shown, hypotension_shown & pl.col("bp_low") & pl.col("bp_known"), hypoxia_shown
        ),
        observation("fio2", "fio2_t", "fio2_used", hypoxia_shown & pl.col("fio2_used").is_not_null(), "%"),
    ]
    return df.with_columns(rule.alias("rule")), evidence
