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

from functools import cache

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.evidence import Observation, first_label, observation
from tocsin.core.timeline import NEURO_FINDINGS, NEURO_VALUES, Assessments, NullableInt, labels
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
NO_GRADE = -1


def _band(values: np.ndarray, bands: list[dict]) -> np.ndarray:
    """The grade of the first band (inclusive limits) holding each value (-1 = none, or no value)."""
    grade = np.full(values.shape, NO_GRADE, dtype=np.int64)
    for band in reversed(bands):  # from the last, so that the first band holding the value wins (np.select: 10x)
        grade = np.where((values >= band["min"]) & (values <= band["max"]), band["grade"], grade)
    return grade


#: Per domain recorded as a value: the grade of each code (a value's position in NEURO_VALUES), and NO_GRADE for
#: the code -1 (another value, or none).
_GRADE_OF_CODE = {
    d: np.array([SCALE.table(f"{d}_grade")[v] for v in values] + [NO_GRADE], dtype=np.int64)
    for d, values in NEURO_VALUES.items()
}


@cache
def _tool_missing_labels(ice_items: tuple[str, ...], capd_items: tuple[str, ...]) -> list[str]:
    """The ``missing`` texts: '' (code 0); per tool, its score alone, or with the items an incomplete
    assessment lacked (code 1 + offset of the tool + mask of the absent items)."""
    texts = [""]
    for tool, items in (("ice_score", ice_items), ("capd_score", capd_items)):
        for mask in range(1 << len(items)):
            absent = "; ".join(name for bit, name in enumerate(items) if mask >> bit & 1)
            texts.append(f"{tool}; {absent}" if absent else tool)
    return texts


@cache
def _domain_labels() -> list[str]:
    """Domain texts by the mask of the domains at the maximum (``+``-joined in domain order)."""
    return ["+".join(d for bit, d in enumerate(DOMAINS) if mask >> bit & 1) for mask in range(1 << len(DOMAINS))]


def grade_icans_astct2019(state: Assessments, config: GradingConfig) -> tuple[Assessments, list[Observation]]:
    """Add ``grade``, ``domain``, ``rule``, ``missing`` to an ICANS state; return it with the evidence specs that
    explain each row."""
    age = state["age_years"]
    use_ice = np.where(np.isnan(age), state["ice_fresh"] | ~state["capd_fresh"], age >= config.icans.ice_min_age_years)
    ok = {d: ~state[f"{d}_attributed"] for d in DOMAINS}
    # The grade of each domain's latest value: its code (position among the values the scale grades) in a table.
    mapped = {d: grade_of_code[state[f"{d}_code"]] for d, grade_of_code in _GRADE_OF_CODE.items()}
    domain_grades = {
        "ice": np.where(use_ice & state["ice_fresh"] & ok["ice"], _band(state["ice_value"], SCALE.table("ice_bands")),
                        NO_GRADE),
        "capd": np.where(~use_ice & state["capd_fresh"] & ok["capd"],
                         _band(state["capd_value"], SCALE.table("capd_bands")), NO_GRADE),
        "consciousness": np.where(state["consciousness_fresh"] & ok["consciousness"], mapped["consciousness"],
                                  NO_GRADE),
        "seizure": np.where(state["seizure_fresh"] & ok["seizure"], mapped["seizure"], NO_GRADE),
        **{d: np.where(ok[d], mapped[d], NO_GRADE) for d in ("motor_weakness", "cerebral_edema", "icp_sign")},
    }
    state.add(uses_ice=use_ice, **{f"g_{d}": NullableInt(g.astype(np.int8)) for d, g in domain_grades.items()})
    death = state["death_due"]
    known = np.maximum.reduce([domain_grades[d] for d in DOMAINS])
    raw = np.where(death, 5, np.maximum(known, 0)).astype(np.int8)
    unarousable = state["consciousness_fresh"] & (
        state["consciousness_code"] == NEURO_VALUES["consciousness"].index("unarousable")
    )
    tool_missing = ~unarousable & ~death & np.where(use_ice, ~state["ice_fresh"], ~state["capd_fresh"])
    ice_items: list[str] = SCALE.table("ice_items")
    capd_items: list[str] = SCALE.table("capd_items")
    incomplete = np.where(use_ice, state["ice_incomplete_last"], state["capd_incomplete_last"])
    tool_code = 1 + np.where(use_ice, 0, 1 << len(ice_items)) + np.maximum(incomplete, 0)
    missing = np.where(tool_missing, tool_code, 0)
    state.add(
        raw_grade=raw,
        missing=labels(_tool_missing_labels(tuple(ice_items), tuple(capd_items)), missing),
        grade=NullableInt(np.where((raw == 0) & (missing != 0), -1, raw).astype(np.int8)),
    )
    at_max = [domain_grades[d] == raw for d in DOMAINS]
    mask = np.zeros(raw.shape, dtype=np.int64)
    for bit, held in enumerate(at_max):
        mask |= held.astype(np.int64) << bit
    domain_texts = _domain_labels()
    state.add(
        domain=labels([*domain_texts, "death", "none"],
                      np.where(death, len(domain_texts), np.where(raw == 0, len(domain_texts) + 1, mask))),
        rule=first_label(
            [
                (death, "ICANS-ASTCT19-G5-DEATH"),
                (raw == 0, "ICANS-ASTCT19-G0"),
                # The rule of the first domain (in domain order) at the maximum.
                *[(held, RULE_IDS[d]) for d, held in zip(DOMAINS, at_max, strict=True)],
            ]
        ),
    )
    return state, _evidence()


@cache
def _evidence() -> list[Observation]:
    g = pl.col("raw_grade")
    death = (pl.col("death_cause") == "icans").fill_null(False)
    ok = {d: ~pl.col(f"{d}_attributed") for d in DOMAINS}
    shown = {d: (pl.col(f"g_{d}") == g) & (g > 0) for d in DOMAINS}
    return [
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
