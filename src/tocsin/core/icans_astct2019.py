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
from tocsin.core.evidence import Observation, observation
from tocsin.core.segments import compiled
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


#: The domains graded from a value's code (a value's position in NEURO_VALUES), in domain order.
_CODED = tuple(d for d in DOMAINS if d in NEURO_VALUES)


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """The bands of ICE then CAPD (rows: min, max, grade, and the tool: 0 ICE, 1 CAPD; inclusive limits, the first
    band holding a value wins) and per coded domain the grade of each value's code (NO_GRADE past its values)."""
    bands = [(b["min"], b["max"], b["grade"], tool) for tool, name in enumerate(("ice_bands", "capd_bands"))
             for b in SCALE.table(name)]
    width = max(len(v) for v in NEURO_VALUES.values())
    grade_of_code = np.full((len(_CODED), width), NO_GRADE, dtype=np.int64)
    for k, d in enumerate(_CODED):
        grade_of_code[k, : len(NEURO_VALUES[d])] = [SCALE.table(f"{d}_grade")[v] for v in NEURO_VALUES[d]]
    return np.array(bands, dtype=np.float64).T.copy(), grade_of_code


def _grade_loop(
    age: np.ndarray,
    ice_min_age: float,
    fresh: np.ndarray,
    attributed: np.ndarray,
    tool_value: np.ndarray,
    codes: np.ndarray,
    incomplete: np.ndarray,
    death: np.ndarray,
    bands: np.ndarray,
    grade_of_code: np.ndarray,
    unarousable: int,
    ice_offset: int,
) -> tuple[np.ndarray, ...]:
    """Per row: whether ICE is the tool (by age; without an age, ICE unless only a CAPD is fresh), each domain's
    grade (DOMAINS order; NO_GRADE: none, stale, attributed or not this row's tool), the raw grade (5 for a death),
    the code of what is missing (0: nothing; else 1 + the tool's offset + the mask of the items an incomplete tool
    lacked: ``_tool_missing_labels``), the grade (-1: cannot grade), the domain code (the mask of the domains at
    the maximum; then death, none: ``_domain_labels``) and the rule code (death, grade 0, then the first domain at
    the maximum: -1 for none). ``fresh`` rows: ICE, CAPD, consciousness, seizure; ``tool_value``: ICE, CAPD;
    ``incomplete``: ICE, CAPD; ``codes`` and ``grade_of_code``: the coded domains (consciousness, seizure, motor
    weakness, cerebral oedema, ICP sign)."""
    n = age.shape[0]
    domains = attributed.shape[0]
    uses_ice = np.empty(n, dtype=np.bool_)
    g = np.empty((domains, n), dtype=np.int8)
    raw, grade = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int8)
    # The rule codes as 8 bits: the engine checks the rules a batch cites by their distinct codes (np.unique of a
    # chunk's 150,000 took ~5 ms at 64 bits, ~1 ms at 8).
    missing, domain, rule = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int8)
    for i in range(n):
        ice = fresh[0, i] or not fresh[1, i] if np.isnan(age[i]) else age[i] >= ice_min_age
        uses_ice[i] = ice
        for tool in range(2):  # the tool used, fresh and not attributed: its first band holding the score
            found = NO_GRADE
            if (tool == 0) == ice and fresh[tool, i] and not attributed[tool, i]:
                for band in range(bands.shape[1]):
                    if bands[3, band] == tool and bands[0, band] <= tool_value[tool, i] <= bands[1, band]:
                        found = int(bands[2, band])
                        break
            g[tool, i] = found
        for k in range(codes.shape[0]):  # consciousness and seizure only while fresh; the others until changed
            code = codes[k, i]
            held = not attributed[2 + k, i] and (k >= 2 or fresh[2 + k, i])
            g[2 + k, i] = grade_of_code[k, code] if held and code >= 0 else NO_GRADE
        known = NO_GRADE
        for d in range(domains):
            known = max(known, g[d, i])
        top = 5 if death[i] else max(known, 0)
        raw[i] = top
        # The tool's score is needed unless the patient is unarousable (consciousness 4 says it all) or dead.
        if (fresh[2, i] and codes[0, i] == unarousable) or death[i] or fresh[0 if ice else 1, i]:
            missing[i] = 0
        else:
            missing[i] = 1 + (0 if ice else ice_offset) + max(incomplete[0 if ice else 1, i], 0)
        grade[i] = -1 if top == 0 and missing[i] != 0 else top
        mask, first = 0, -1
        for d in range(domains):
            if g[d, i] == top:
                mask |= 1 << d
                if first < 0:
                    first = d
        domain[i] = (1 << domains) if death[i] else (1 << domains) + 1 if top == 0 else mask
        rule[i] = 0 if death[i] else 1 if top == 0 else 2 + first if first >= 0 else -1
    return uses_ice, g, raw, missing, grade, domain, rule


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
    explain each row. One compiled pass (:func:`_grade_loop`): as NumPy steps the grading was some sixty
    operations for one course."""
    bands, grade_of_code = _tables()
    ice_items: list[str] = SCALE.table("ice_items")
    capd_items: list[str] = SCALE.table("capd_items")
    uses_ice, g, raw, missing, grade, domain, rule = compiled(_grade_loop)(
        state["age_years"],
        config.icans.ice_min_age_years,
        np.stack([state[f"{d}_fresh"] for d in ("ice", "capd", "consciousness", "seizure")]),
        np.stack([state[f"{d}_attributed"] for d in DOMAINS]),
        np.stack([state["ice_value"], state["capd_value"]]),
        np.stack([state[f"{d}_code"] for d in _CODED]),
        np.stack([state["ice_incomplete_last"], state["capd_incomplete_last"]]),
        state["death_due"],
        bands,
        grade_of_code,
        NEURO_VALUES["consciousness"].index("unarousable"),
        1 << len(ice_items),
    )
    domain_texts = _domain_labels()
    state.add(
        uses_ice=uses_ice,
        **{f"g_{d}": NullableInt(g[k]) for k, d in enumerate(DOMAINS)},
        raw_grade=raw,
        missing=labels(_tool_missing_labels(tuple(ice_items), tuple(capd_items)), missing),
        grade=NullableInt(grade),
        domain=labels([*domain_texts, "death", "none"], domain),
        rule=labels(_RULE_LABELS, rule),
    )
    return state, _evidence()


#: The rule of each code of :func:`_grade_loop`.
_RULE_LABELS = ("ICANS-ASTCT19-G5-DEATH", "ICANS-ASTCT19-G0", *(RULE_IDS[d] for d in DOMAINS))


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
