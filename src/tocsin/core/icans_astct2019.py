"""ICANS grade by the ASTCT 2019 consensus (Lee DW et al., BBMT 2019;25:625-638, doi:10.1016/j.bbmt.2018.12.758).

The grade is the most severe of five domains not attributable to another cause:

* encephalopathy: ICE (age >= 12 y) 7-9 = 1, 3-6 = 2, 0-2 = 3 (10 is normal), given as a total or as its
  five items; CAPD (age < 12 y) 1-8 = 1, >= 9 = 3 (grades 1 and 2 are separated by consciousness);
* depressed level of consciousness: spontaneously = 1, to voice = 2, to touch only = 3, unarousable = 4
  (ICE 0 in an unarousable patient is therefore 4; ICE 0 awake with global aphasia is 3);
* seizure: rapidly resolving or non-convulsive on EEG = 3; prolonged or repetitive = 4;
* motor: deep focal weakness = 4;
* raised ICP / cerebral oedema: focal oedema = 3; diffuse oedema, posturing, CN VI palsy, papilloedema,
  Cushing's triad = 4.

Tremor and myoclonus are recorded but never graded here (CTCAE). Tables and rule ids come from
``data/criteria/icans_astct2019.yaml``.
"""

from __future__ import annotations

import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.evidence import Observation, observation
from tocsin.core.timeline import NEURO_FINDINGS
from tocsin.criteria import load_scale

SCALE = load_scale("icans_astct2019")
DOMAINS = NEURO_FINDINGS
RULE_IDS = {
    "ice": "ICANS-ASTCT19-ICE",
    "capd": "ICANS-ASTCT19-CAPD",
    "consciousness": "ICANS-ASTCT19-CONSCIOUSNESS",
    "seizure": "ICANS-ASTCT19-SEIZURE",
    "motor_weakness": "ICANS-ASTCT19-MOTOR",
    "cerebral_edema": "ICANS-ASTCT19-EDEMA",
    "icp_sign": "ICANS-ASTCT19-ICP",
}


def _band(column: str, bands: list[dict]) -> pl.Expr:
    expr = pl.when(pl.lit(False)).then(pl.lit(None, pl.Int8))
    for band in bands:
        expr = expr.when(pl.col(column).is_between(band["min"], band["max"])).then(pl.lit(band["grade"], pl.Int8))
    return expr


def _mapped(column: str, table: str) -> pl.Expr:
    return pl.col(column).replace_strict(SCALE.table(table), default=None, return_dtype=pl.Int8)


def grade_icans_astct2019(state: pl.DataFrame, config: GradingConfig) -> tuple[pl.DataFrame, list[Observation]]:
    """Add ``grade``, ``domain``, ``rule``, ``missing`` to an ICANS state frame; return it with the
    evidence specs that explain each row."""
    age = pl.col("age_years")
    use_ice = (
        pl.when(age.is_not_null())
        .then(age >= config.icans.ice_min_age_years)
        .otherwise(pl.col("ice_fresh") | ~pl.col("capd_fresh"))
    )
    ok = {d: ~pl.col(f"{d}_attributed") for d in DOMAINS}
    domain_grades = {
        "ice": pl.when(use_ice & pl.col("ice_fresh") & ok["ice"]).then(_band("ice_value", SCALE.table("ice_bands"))),
        "capd": pl.when(~use_ice & pl.col("capd_fresh") & ok["capd"]).then(
            _band("capd_value", SCALE.table("capd_bands"))
        ),
        "consciousness": pl.when(pl.col("consciousness_fresh") & ok["consciousness"]).then(
            _mapped("consciousness_value", "consciousness_grade")
        ),
        "seizure": pl.when(pl.col("seizure_fresh") & ok["seizure"]).then(_mapped("seizure_value", "seizure_grade")),
        "motor_weakness": pl.when(ok["motor_weakness"]).then(_mapped("motor_weakness_value", "motor_weakness_grade")),
        "cerebral_edema": pl.when(ok["cerebral_edema"]).then(_mapped("cerebral_edema_value", "cerebral_edema_grade")),
        "icp_sign": pl.when(ok["icp_sign"]).then(_mapped("icp_sign_value", "icp_sign_grade")),
    }
    df = state.with_columns(use_ice.alias("uses_ice"), *[e.alias(f"g_{d}") for d, e in domain_grades.items()])
    death = (pl.col("death_cause") == "icans").fill_null(False)
    known = pl.max_horizontal([pl.col(f"g_{d}") for d in DOMAINS]).fill_null(0)
    raw = pl.when(death).then(5).otherwise(known).cast(pl.Int8)
    unarousable = pl.col("consciousness_fresh") & (pl.col("consciousness_value") == "unarousable")
    tool_missing = (
        ~unarousable & ~death & pl.when(pl.col("uses_ice")).then(~pl.col("ice_fresh")).otherwise(~pl.col("capd_fresh"))
    )
    df = df.with_columns(raw.alias("raw_grade"))
    needs_tool = pl.when(pl.col("uses_ice")).then(pl.lit("ice_score")).otherwise(pl.lit("capd_score"))
    incomplete = (
        pl.when(pl.col("uses_ice")).then(pl.col("ice_incomplete_last")).otherwise(pl.col("capd_incomplete_last"))
    )
    df = df.with_columns(
        pl.when(tool_missing)
        .then(pl.concat_str([needs_tool, incomplete], separator="; ", ignore_nulls=True))
        .otherwise(pl.lit(""))
        .alias("missing")
    )
    g = pl.col("raw_grade")
    grade = pl.when((g == 0) & (pl.col("missing") != "")).then(None).otherwise(g)
    at_max = [pl.when(pl.col(f"g_{d}") == g).then(pl.lit(d)) for d in DOMAINS]
    domain = (
        pl.when(death)
        .then(pl.lit("death"))
        .when(g == 0)
        .then(pl.lit("none"))
        .otherwise(pl.concat_str(at_max, separator="+", ignore_nulls=True))
    )
    df = df.with_columns(grade.alias("grade"), domain.alias("domain"))
    first_domain = pl.col("domain").str.split("+").list.first()
    rule = (
        pl.when(death)
        .then(pl.lit("ICANS-ASTCT19-G5-DEATH"))
        .when(g == 0)
        .then(pl.lit("ICANS-ASTCT19-G0"))
        .otherwise(first_domain.replace_strict(RULE_IDS, default=None))
    )
    shown = {d: (pl.col(f"g_{d}") == g) & (g > 0) for d in DOMAINS}
    evidence = [
        observation("ice_score", "ice_t", "ice_value", pl.col("uses_ice") & pl.col("ice_fresh")),
        observation("capd_score", "capd_t", "capd_value", ~pl.col("uses_ice") & pl.col("capd_fresh")),
        observation(
            "consciousness",
            "consciousness_t",
            "consciousness_value",
            pl.col("consciousness_fresh") & (shown["consciousness"] | (g == 0)),
        ),
        observation(
            "global_aphasia",
            "global_aphasia_t",
            "global_aphasia_value",
            pl.col("global_aphasia_fresh") & (pl.col("global_aphasia_value") == "true") & shown["ice"],
        ),
        *[
            observation(d, f"{d}_t", f"{d}_value", shown[d])
            for d in ("seizure", "motor_weakness", "cerebral_edema", "icp_sign")
        ],
        *[
            observation(
                "alternative_cause",
                pl.lit(None, pl.Float64),
                pl.concat_str([pl.lit(d + ":"), pl.col(f"alt_{d}")]),
                ~ok[d],
            )
            for d in DOMAINS
        ],
        observation("death", "death_t", "death_cause", death),
    ]
    return df.with_columns(rule.alias("rule")), evidence
