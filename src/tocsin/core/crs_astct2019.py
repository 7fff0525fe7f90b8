"""CRS grade by the ASTCT 2019 consensus (Lee DW et al., BBMT 2019;25:625-638, doi:10.1016/j.bbmt.2018.12.758).

Grade = the worse of hypotension and hypoxia, in a patient with fever (or after the fever requirement
was waived by antipyretic/anticytokine therapy during the episode):

* hypotension: not needing vasopressors = 2; one vasopressor with or without vasopressin = 3; multiple
  vasopressors, vasopressin not counted = 4;
* hypoxia: low-flow nasal cannula (<= 6 L/min) or blow-by = 2; high-flow nasal cannula (> 6 L/min),
  face mask, non-rebreather, Venturi mask = 3; positive pressure (CPAP, BiPAP, mechanical ventilation) = 4;
* fever alone = 1; an adjudicated death due to CRS = 5.

A finding attributed to another cause (``alternative_cause``) does not count. Vasopressor *dose* plays no
part (unlike Lee 2014). Rule ids and tables come from ``data/criteria/crs_astct2019.yaml``.

Example
-------
>>> import polars as pl
>>> from tocsin.core.engine import grade_events
>>> from tocsin.config import GradingConfig
>>> raw = pl.DataFrame({"patient_id": ["P"] * 4, "day": ["0", "2", "2", "2"],
...     "item": ["infusion", "temperature", "oxygen", "oxygen_flow"],
...     "value": ["axi-cel", "38.6", "nasal_cannula", "6"], "unit": ["", "Cel", "", "L/min"],
...     "file": "x", "line": [2, 3, 4, 5]})
>>> grade_events(raw, GradingConfig()).crs.timeline.filter(pl.col("t") == 2)["grade"].to_list()
[2]
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.crs_course import (
    fever_evidence,
    rule_table,
    support_evidence,
    support_shown,
    vasopressor_names,
    with_grades,
    with_rule,
)
from tocsin.core.evidence import Observation
from tocsin.core.timeline import DEVICE_NONE, DEVICES, Assessments, NullableInt, Text


def hypotension_grade(state: Assessments) -> np.ndarray:
    """The hypotension tier; the first case that holds wins (nested ``where``: ``np.select`` cost ten times more)."""
    low_bp = np.where(state["bp_known"] & state["bp_low"], 2, 0)
    by_pressors = np.where(state["n_vasopressors"] >= 2, 4, np.where(state["any_vasopressor"], 3, low_bp))
    return np.where(state["hypotension_attributed"], 0, by_pressors).astype(np.int8)


def hypoxia_grade(state: Assessments, config: GradingConfig) -> np.ndarray:
    """The hypoxia tier (-1 = null: a device the scale does not list)."""
    flow, device = state["o2_flow_current"], state["o2_device_code"]
    high_flow = flow > config.crs.low_flow_max_l_min
    by_flow = np.where(high_flow, 3, np.where(flow > 0, 2, 0))
    by_device = np.where((device == DEVICES.index("nasal_cannula")) & high_flow, 3, state["o2_device_tier"])
    grade = np.where(state["hypoxia_attributed"], 0, np.where(device != DEVICE_NONE, by_device, by_flow))
    return grade.astype(np.int8)


_RULES = {
    (2, "hypotension"): "CRS-ASTCT19-G2-HYPOTENSION",
    (2, "hypoxia"): "CRS-ASTCT19-G2-HYPOXIA-LOW-FLOW",
    (3, "hypotension"): "CRS-ASTCT19-G3-HYPOTENSION-ONE-VASOPRESSOR",
    (3, "hypoxia"): "CRS-ASTCT19-G3-HYPOXIA-HIGH-FLOW",
    (4, "hypotension"): "CRS-ASTCT19-G4-HYPOTENSION-MULTIPLE-VASOPRESSORS",
    (4, "hypoxia"): "CRS-ASTCT19-G4-HYPOXIA-POSITIVE-PRESSURE",
}


def _rule_cases(g: np.ndarray, domain: Text) -> list[tuple[np.ndarray, str]]:
    """The rule of a raw grade ``g`` set by ``domain``: the first case that holds."""
    fever, hypoxia_domain = domain.labelled("fever"), domain.labelled("hypoxia")
    hypotension_domain = domain.labelled("hypotension", "hypotension+hypoxia")  # the domain starts with it
    return [
        (g == 5, "CRS-ASTCT19-G5-DEATH"),
        (fever & (g == 1), "CRS-ASTCT19-G1-FEVER"),
        (fever, "CRS-ASTCT19-G0-NO-FEVER"),
        (g == 0, "CRS-ASTCT19-G0"),
        *[
            ((g == grade) & (hypotension_domain if dom == "hypotension" else hypoxia_domain), rule)
            for (grade, dom), rule in _RULES.items()
        ],
    ]


@cache
def _rules() -> tuple[pl.Series, np.ndarray]:
    return rule_table(_rule_cases)


def grade_crs_astct2019(course: Assessments, config: GradingConfig) -> tuple[Assessments, list[Observation]]:
    """Add ``grade``, ``domain``, ``rule``, ``missing`` to a marked CRS course; return it with the evidence
    specs that explain each row."""
    course.add(g_hypotension=hypotension_grade(course), g_hypoxia=NullableInt(hypoxia_grade(course, config)))
    eligible = course["fever_now"] | course["waived"]
    # A nasal cannula without a flow may be high flow (> 6 L/min): grade 2 is then a lower bound.
    no_flow = (
        eligible
        & ~course["hypoxia_attributed"]
        & (course["o2_device_code"] == DEVICES.index("nasal_cannula"))
        & np.isnan(course["o2_flow_current"])
    )
    with_grades(course, eligible, no_flow, "oxygen_flow", 3)
    with_rule(course, _rules())
    return course, _evidence(tuple(vasopressor_names(course)))


@cache
def _evidence(pressors: tuple[str, ...]) -> list[Observation]:
    hypotension_shown, hypoxia_shown = support_shown()
    return [
        *fever_evidence(),
        *support_evidence(
            list(pressors), hypotension_shown, hypotension_shown & (pl.col("g_hypotension") == 2), hypoxia_shown
        ),
    ]
