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
from tocsin.core.segments import compiled
from tocsin.core.timeline import DEVICE_NONE, DEVICES, Assessments, NullableInt, Text


def _tiers_loop(
    attributed: np.ndarray,
    bp_known: np.ndarray,
    bp_low: np.ndarray,
    n_vasopressors: np.ndarray,
    any_vasopressor: np.ndarray,
    flow: np.ndarray,
    device: np.ndarray,
    device_tier: np.ndarray,
    low_flow_max: float,
    nasal_cannula: int,
    device_none: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the hypotension and the hypoxia tier (``attributed``: hypotension, hypoxia; a hypoxia tier -1 =
    null: a device the scale does not list). The first case that holds wins: multiple vasopressors, one, a low
    blood pressure; a listed device (a nasal cannula above the low-flow maximum is high flow), else the flow."""
    n = bp_known.shape[0]
    hypotension, hypoxia = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int8)
    for i in range(n):
        if attributed[0, i]:
            hypotension[i] = 0
        elif n_vasopressors[i] >= 2:
            hypotension[i] = 4
        elif any_vasopressor[i]:
            hypotension[i] = 3
        else:
            hypotension[i] = 2 if bp_known[i] and bp_low[i] else 0
        high_flow = flow[i] > low_flow_max
        if attributed[1, i]:
            hypoxia[i] = 0
        elif device[i] != device_none:
            hypoxia[i] = 3 if device[i] == nasal_cannula and high_flow else device_tier[i]
        else:
            hypoxia[i] = 3 if high_flow else 2 if flow[i] > 0 else 0
    return hypotension, hypoxia


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
    hypotension, hypoxia = compiled(_tiers_loop)(
        np.stack([course["hypotension_attributed"], course["hypoxia_attributed"]]),
        course["bp_known"],
        course["bp_low"],
        course["n_vasopressors"],
        course["any_vasopressor"],
        course["o2_flow_current"],
        course["o2_device_code"],
        course["o2_device_tier"],
        config.crs.low_flow_max_l_min,
        DEVICES.index("nasal_cannula"),
        DEVICE_NONE,
    )
    course.add(g_hypotension=hypotension, g_hypoxia=NullableInt(hypoxia))
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
    return course, _evidence(vasopressor_names(course))


@cache
def _evidence(pressors: tuple[str, ...]) -> list[Observation]:
    hypotension_shown, hypoxia_shown = support_shown()
    return [
        *fever_evidence(),
        *support_evidence(
            list(pressors), hypotension_shown, hypotension_shown & (pl.col("g_hypotension") == 2), hypoxia_shown
        ),
    ]
