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

from collections.abc import Sequence

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.episodes import mark_stretches
from tocsin.core.evidence import Observation, first_label, missing_text, observation
from tocsin.core.segments import compiled
from tocsin.core.timeline import Assessments, NullableInt, Text, at
from tocsin.vocabulary import load_vocabulary


def _activity(state: Assessments, config: GradingConfig) -> np.ndarray:
    """Rows at which CRS is not (yet) resolved by the configured rule.

    Being afebrile must be observed: the quiet period starts at the first documented temperature below
    the fever threshold; a row whose latest temperature is still a (CRS) fever, or with no temperature
    in the fever window, is not quiet, so sparse charting never resolves an episode by silence.
    """
    fever_here = state["fever_t"] == state.t
    unobserved = ~state["temp_known"] | state["temp_is_fever"]
    if config.episodes.crs_resolution == "fever_gone_cytokines_falling":
        # Falling must be observed too (EPI-030): the latest IL-6 lower than the one before (CRP when IL-6 gives
        # no comparison). An unmeasured or once-measured cytokine is not falling: it counted as falling, so a
        # course without cytokine labs "resolved" at its first afebrile assessment, while on vasopressors with the
        # fever masked by an antipyretic, and lost its fever waiver (a grade 4 graded 0; found by the property
        # that a worse observation never lowers a grade).
        il6, crp = state["il6_falling"], state["crp_falling"]
        cytokines_falling = np.where(il6 >= 0, il6 == 1, crp == 1)
        return fever_here | unobserved | ~cytokines_falling
    antipyretic_here = state["antipyretic_t"] == state.t
    oxygen = state["on_oxygen"] & ~state["hypoxia_attributed"]
    pressor = state["any_vasopressor"] & ~state["hypotension_attributed"]
    return fever_here | unobserved | antipyretic_here | oxygen | pressor


def _course_loop(
    first: np.ndarray, stretch: np.ndarray, t: np.ndarray, fever_t: np.ndarray, waiver_drug_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    rows = t.shape[0]
    first_fever = np.full(rows, np.nan)
    waiver_row = np.full(rows, -1, dtype=np.int64)
    fever_so_far, waiver_so_far = np.nan, -1
    for row in range(rows):
        if first[row] or stretch[row] != stretch[row - 1]:  # a new episode (or the stretch-0 rows before one)
            fever_so_far, waiver_so_far = np.nan, -1
        if stretch[row] > 0 and fever_t[row] == t[row] and np.isnan(fever_so_far):
            fever_so_far = t[row]
        # Only treatment at or after the episode's first fever waives it (not premedication).
        if waiver_drug_t[row] == t[row] and t[row] >= fever_so_far:
            waiver_so_far = row
        first_fever[row], waiver_row[row] = fever_so_far, waiver_so_far
    return first_fever, waiver_row


def mark_crs_course(state: Assessments, config: GradingConfig) -> Assessments:
    """Add stretches, ``crs_started`` (a fever opened CRS in this stretch), ``fever_now`` and the
    waiver (``waived``, ``waiver_drug_ep``, ``waiver_t_ep``).

    The first fever and the latest waiver of each episode come from one compiled pass over the rows: as
    column expressions they were a running count and three fills within the episode."""
    mark_stretches(state, _activity(state, config), config.episodes.crs_resolution_hours)
    first_fever, waiver_row = compiled(_course_loop)(
        state.first, state["stretch"], state.t, state["fever_t"], state["waiver_drug_t"]
    )
    waiver_t = at(state.t, waiver_row)
    drug = state.text("waiver_drug")
    crs_started = state["in_episode"] & ~np.isnan(first_fever)
    state.add(
        first_fever_t=first_fever,
        waiver_t_ep=waiver_t,
        waiver_drug_ep=Text(drug.source, at(drug.index, waiver_row, -1)),
        crs_started=crs_started,
        fever_now=state["febrile"] & ~state["fever_attributed"],
        waived=crs_started & ~np.isnan(waiver_t),
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


def vasopressor_names(state: Assessments) -> list[str]:
    """The vasopressors present as state columns (``rate_<name>``) in a CRS state."""
    return [c.removeprefix("rate_") for c in state.columns if c.startswith("rate_") and not c.endswith("_t")]


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


def with_raw_grade(state: Assessments, eligible: np.ndarray) -> None:
    """``raw_grade`` from the scale's ``g_hypotension``/``g_hypoxia``: 5 for a CRS death, 0 when CRS
    cannot be present (no fever, no waiver), else the worse of fever (1) and the support domains."""
    support = np.maximum(state["g_hypotension"], state["g_hypoxia"])  # a null (-1) hypoxia tier never wins
    worst = np.maximum(state["fever_now"].astype(np.int8), support)
    death = crs_death(state)
    state.add(
        crs_death=death,
        raw_grade=np.where(death, 5, np.where(eligible, worst, 0)).astype(np.int8),
        support_grade=support,
    )


def with_grade_and_domain(state: Assessments, missing: Sequence[tuple[np.ndarray, str]]) -> None:
    """``missing`` (what is still needed, '; '-separated, '' when nothing), ``grade`` (null = cannot grade:
    the known findings give 0 and something needed is missing) and ``domain`` (what set it; ``fever`` on a
    grade 0 with support = "support without fever")."""
    g = state["raw_grade"]
    needed = missing_text(missing)
    grade = np.where((g == 0) & (needed.index != 0), -1, g).astype(np.int8)
    hypotension, hypoxia = state["g_hypotension"] == g, state["g_hypoxia"] == g
    domain = first_label(
        [
            (g == 5, "death"),
            ((g == 0) & (state["support_grade"] > 0), "fever"),
            (g == 0, "none"),
            (g == 1, "fever"),
            (hypotension & hypoxia, "hypotension+hypoxia"),
            (hypotension, "hypotension"),
            (np.ones(g.shape, np.bool_), "hypoxia"),
        ]
    )
    state.add(missing=needed, grade=NullableInt(grade), domain=domain)


def support_shown() -> tuple[pl.Expr, pl.Expr]:
    """Whether the hypotension / hypoxia observations explain the row (they set the grade, or they are
    the support that was present without fever)."""
    g = pl.col("raw_grade")
    shown = (g >= 2) | ((g == 0) & (pl.col("support_grade") > 0))
    return tuple(
        shown & (pl.col(f"g_{d}") == pl.col("support_grade")) & (pl.col(f"g_{d}") > 0)
        for d in ("hypotension", "hypoxia")
    )


def common_missing(state: Assessments, eligible: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """What every CRS scale needs: a temperature (unless the fever was waived), and a blood pressure when
    no vasopressor runs and the grade is below the hypotension tier."""
    hypotension_unknown = ~state["any_vasopressor"] & ~state["bp_known"] & ~state["hypotension_attributed"]
    return [
        (~eligible & ~state["temp_known"] & ~state["crs_death"], "temperature"),
        (eligible & hypotension_unknown & (state["raw_grade"] < 2), "sbp or map"),
    ]
