"""What every CRS scale shares: when CRS has begun, when it has resolved, and the fever waiver.

* CRS **onset requires fever** (ASTCT 2019: "fever must be present at onset"): within a stretch of
  activity (see :mod:`tocsin.core.episodes`) CRS begins at the first fever not attributed to another
  cause.
* The **fever waiver** (ASTCT footnote *): after antipyretic or anticytokine therapy given once CRS has
  begun, fever is no longer required to grade later severity. Treatment given before the first fever
  of the stretch (premedication, prophylaxis) does not waive it. The waiver ends with the episode.
* **Resolution** is a configured rule (``episodes.crs_resolution``); a new fever after resolution opens
  a new episode and needs fever again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.episodes import mark_stretches
from tocsin.core.evidence import Observation, combination_texts, first_label, observation
from tocsin.core.segments import compiled
from tocsin.core.timeline import Assessments, NullableInt, Text, labels
from tocsin.vocabulary import load_vocabulary


def _course_loop(
    first: np.ndarray,
    stretch: np.ndarray,
    t: np.ndarray,
    fever_t: np.ndarray,
    waiver_drug_t: np.ndarray,
    waiver_drug: np.ndarray,
    in_episode: np.ndarray,
    febrile: np.ndarray,
    fever_attributed: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Per row: the first fever of its episode (NaN: none yet), the time and the drug (its text's row, -1: none)
    of the episode's latest waiver so far, whether CRS has begun (in an episode, after a fever), a fever now
    (not attributed to another cause) and the waiver in force."""
    rows = t.shape[0]
    first_fever, waiver_t = np.empty(rows), np.empty(rows)
    drug = np.empty(rows, dtype=waiver_drug.dtype)
    started, fever_now, waived = (np.empty(rows, dtype=np.bool_), np.empty(rows, dtype=np.bool_),
                                  np.empty(rows, dtype=np.bool_))
    fever_so_far, waiver_so_far = np.nan, -1
    for row in range(rows):
        if first[row] or stretch[row] != stretch[row - 1]:  # a new episode (or the stretch-0 rows before one)
            fever_so_far, waiver_so_far = np.nan, -1
        if stretch[row] > 0 and fever_t[row] == t[row] and np.isnan(fever_so_far):
            fever_so_far = t[row]
        # Only treatment at or after the episode's first fever waives it (not premedication).
        if waiver_drug_t[row] == t[row] and t[row] >= fever_so_far:
            waiver_so_far = row
        first_fever[row] = fever_so_far
        waiver_t[row] = t[waiver_so_far] if waiver_so_far >= 0 else np.nan
        drug[row] = waiver_drug[waiver_so_far] if waiver_so_far >= 0 else -1
        started[row] = in_episode[row] and not np.isnan(fever_so_far)
        fever_now[row] = febrile[row] and not fever_attributed[row]
        waived[row] = started[row] and not np.isnan(waiver_t[row])
    return first_fever, waiver_t, drug, started, fever_now, waived


def mark_crs_course(state: Assessments, config: GradingConfig) -> Assessments:
    """Add stretches (of the state's ``active``: see :func:`tocsin.core.kernels_toxicity.crs_state_pass`),
    ``crs_started`` (a fever opened CRS in this stretch), ``fever_now`` and the waiver (``waived``,
    ``waiver_drug_ep``, ``waiver_t_ep``).

    The first fever and the latest waiver of each episode come from one compiled pass over the rows: as
    column expressions they were a running count and three fills within the episode."""
    mark_stretches(state, state["active"], config.episodes.crs_resolution_hours)
    drug = state.text("waiver_drug")
    first_fever, waiver_t, waiver_drug, crs_started, fever_now, waived = compiled(_course_loop)(
        state.first,
        state["stretch"],
        state.t,
        state["fever_t"],
        state["waiver_drug_t"],
        drug.index,
        state["in_episode"],
        state["febrile"],
        state["fever_attributed"],
    )
    state.add(
        first_fever_t=first_fever,
        waiver_t_ep=waiver_t,
        waiver_drug_ep=Text(drug.source, waiver_drug),
        crs_started=crs_started,
        fever_now=fever_now,
        waived=waived,
    )
    return state


def fever_evidence() -> list[Observation]:
    """The fever (or the latest temperature), the waiver and any attribution in force."""
    attributions = [
        observation(
            "alternative_cause",
            "alt_t",
            pl.concat_str([pl.lit(f + ":"), pl.col(f"alt_{f}")]),
            pl.col(f"{f}_attributed"),
        )
        for f in ("fever", "hypotension", "hypoxia")
    ]
    return [
        observation("temperature", "fever_t", "fever_value", pl.col("fever_now"), "Cel"),
        observation("temperature", "temp_t", "temp_value", ~pl.col("fever_now") & pl.col("temp_known"), "Cel"),
        observation(
            pl.col("waiver_drug_ep"),
            "waiver_t_ep",
            pl.lit("given: fever requirement waived"),
            pl.col("waived") & ~pl.col("fever_now"),
        ),
        *attributions,
        observation("death", "death_t", "death_cause", pl.col("death_cause") == "crs"),
    ]


def vasopressor_names(state: Assessments) -> tuple[str, ...]:
    """The vasopressors present as state columns (``rate_<name>``) in a CRS state."""
    return _vasopressors_of(tuple(state.columns))


@lru_cache(maxsize=16)
def _vasopressors_of(columns: tuple[str, ...]) -> tuple[str, ...]:
    """Of the column names of a state (the same every time for a vocabulary: a scan of its sixty took ~8 µs)."""
    return tuple(c.removeprefix("rate_") for c in columns if c.startswith("rate_") and not c.endswith("_t"))


def crs_death(state: Assessments) -> np.ndarray:
    """Grade 5 only from an adjudicated death due to CRS."""
    return state["death_due"]


def support_evidence(
    pressors: list[str], hypotension_shown: pl.Expr, bp_shown: pl.Expr, hypoxia_shown: pl.Expr
) -> list[Observation]:
    """Vasopressors running, the blood pressure, the O2 device and flow behind a support grade."""
    units = {name: item.unit or "" for name, item in load_vocabulary().items.items()}
    return [
        *[
            observation(p, f"rate_{p}_t", f"rate_{p}", hypotension_shown & (pl.col(f"rate_{p}") > 0), units[p])
            for p in pressors
        ],
        observation(pl.col("bp_item"), "bp_t", "bp_value", bp_shown, "mm[Hg]"),
        observation("oxygen", "o2_device_t", "o2_device", hypoxia_shown & pl.col("o2_device").is_not_null()),
        observation(
            "oxygen_flow",
            "o2_flow_t",
            "o2_flow_current",
            hypoxia_shown & pl.col("o2_flow_current").is_not_null(),
            "L/min",
        ),
    ]


#: The domain of a CRS grade, by its code from :func:`with_grades`: the first case that holds (death; grade 0 with
#: support, i.e. support without fever; grade 0; grade 1; both support domains at the grade; hypotension; hypoxia).
DOMAIN_CASES = ("death", "fever", "none", "fever", "hypotension+hypoxia", "hypotension", "hypoxia")
MAX_GRADE = 5
#: What every CRS scale may need, in the order of the bits of ``missing`` (the scale's own need is the third).
COMMON_NEEDS = ("temperature", "sbp or map")


def _grades_loop(
    g_hypotension: np.ndarray,
    g_hypoxia: np.ndarray,
    fever_now: np.ndarray,
    eligible: np.ndarray,
    death: np.ndarray,
    temp_known: np.ndarray,
    any_vasopressor: np.ndarray,
    bp_known: np.ndarray,
    hypotension_attributed: np.ndarray,
    scale_needs: np.ndarray,
    scale_needs_below: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the raw grade, the support grade, the mask of what is missing (:data:`COMMON_NEEDS`, then the
    scale's own need where ``scale_needs`` holds and the raw grade is below ``scale_needs_below``), the grade (-1:
    cannot grade) and the code of the domain (:data:`DOMAIN_CASES`)."""
    n = g_hypotension.shape[0]
    raw, support = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int8)
    missing, grade, domain = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int64)
    for i in range(n):
        s = max(g_hypotension[i], g_hypoxia[i])  # a null (-1) hypoxia tier never wins
        g = MAX_GRADE if death[i] else max(np.int8(fever_now[i]), s) if eligible[i] else 0
        # A temperature (unless the fever was waived), and a blood pressure when no vasopressor runs and the grade
        # is below the hypotension tier.
        needs = 1 if not eligible[i] and not temp_known[i] and not death[i] else 0
        if eligible[i] and not any_vasopressor[i] and not bp_known[i] and not hypotension_attributed[i] and g < 2:
            needs |= 2
        if scale_needs[i] and g < scale_needs_below:
            needs |= 4
        hypotension, hypoxia = g_hypotension[i] == g, g_hypoxia[i] == g
        raw[i], support[i], missing[i] = g, s, needs
        grade[i] = -1 if g == 0 and needs != 0 else g
        if g == MAX_GRADE:
            domain[i] = 0
        elif g == 0:
            domain[i] = 1 if s > 0 else 2
        elif g == 1:
            domain[i] = 3
        else:
            domain[i] = 4 if hypotension and hypoxia else 5 if hypotension else 6
    return raw, support, missing, grade, domain


def with_grades(state: Assessments, eligible: np.ndarray, scale_needs: np.ndarray, need: str, below: int) -> None:
    """``raw_grade`` (5 for a CRS death, 0 when CRS cannot be present: no fever, no waiver; else the worse of
    fever (1) and the scale's ``g_hypotension``/``g_hypoxia``), ``support_grade``, ``missing`` (what is still
    needed, '; '-separated, '' when nothing: :data:`COMMON_NEEDS`, and ``need`` where ``scale_needs`` holds and the
    raw grade is below ``below``), ``grade`` (null = cannot grade: the known findings give 0 and something needed
    is missing) and ``domain`` (what set it; ``fever`` on a grade 0 with support = "support without fever").

    One compiled pass: as NumPy steps they were some thirty operations for one course."""
    raw, support, missing, grade, domain = compiled(_grades_loop)(
        state["g_hypotension"],
        state["g_hypoxia"],
        state["fever_now"],
        eligible,
        crs_death(state),
        state["temp_known"],
        state["any_vasopressor"],
        state["bp_known"],
        state["hypotension_attributed"],
        scale_needs,
        below,
    )
    state.add(
        raw_grade=raw,
        support_grade=support,
        missing=labels(combination_texts((*COMMON_NEEDS, need)), missing),
        grade=NullableInt(grade),
        domain=labels(DOMAIN_CASES, domain),
    )


RuleCases = Callable[[np.ndarray, Text], Sequence[tuple[np.ndarray, str]]]


def rule_table(cases: RuleCases) -> tuple[pl.Series, np.ndarray]:
    """A scale's rules (``cases`` of the raw grade and the domain, the first that holds) as a table of rule
    codes by domain code and raw grade: a CRS rule depends on nothing else, so the cases are evaluated once, on
    every pair."""
    grades = np.tile(np.arange(MAX_GRADE + 1), len(DOMAIN_CASES))
    domains = np.repeat(np.arange(len(DOMAIN_CASES)), MAX_GRADE + 1)
    rule = first_label(cases(grades, labels(DOMAIN_CASES, domains)))
    # As 8 bits (a scale has a dozen rules): the engine checks the rules a batch cites by their distinct codes
    # (np.unique of a chunk's 150,000 took ~5 ms at 64 bits, ~1 ms at 8).
    return rule.source, rule.index.astype(np.int8).reshape(len(DOMAIN_CASES), MAX_GRADE + 1)


def with_rule(state: Assessments, table: tuple[pl.Series, np.ndarray]) -> None:
    """``rule``: the rule of each row's domain and raw grade, from the scale's :func:`rule_table`."""
    source, codes = table
    state.add(rule=Text(source, codes[state.text("domain").index, state["raw_grade"]]))


def support_shown() -> tuple[pl.Expr, pl.Expr]:
    """Whether the hypotension / hypoxia observations explain the row (they set the grade, or they are
    the support that was present without fever)."""
    g = pl.col("raw_grade")
    shown = (g >= 2) | ((g == 0) & (pl.col("support_grade") > 0))
    return tuple(
        shown & (pl.col(f"g_{d}") == pl.col("support_grade")) & (pl.col(f"g_{d}") > 0)
        for d in ("hypotension", "hypoxia")
    )
