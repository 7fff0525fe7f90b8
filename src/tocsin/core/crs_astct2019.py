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
from tocsin.core.evidence import Observation, first_label, missing_text


def hypotension_grade() -> pl.Expr:
    return (
        pl.when(pl.col("hypotension_attributed"))
        .then(0)
        .when(pl.col("n_vasopressors") >= 2)
        .then(4)
        .when(pl.col("any_vasopressor"))
        .then(3)
        .when(pl.col("bp_known") & pl.col("bp_low"))
        .then(2)
        .otherwise(0)
        .cast(pl.Int8)
    )


def hypoxia_grade(config: GradingConfig) -> pl.Expr:
    flow = pl.col("o2_flow_current")
    by_flow = pl.when(flow > config.crs.low_flow_max_l_min).then(3).when(flow > 0).then(2).otherwise(0)
    by_device = (
        pl.when((pl.col("o2_device") == "nasal_cannula") & (flow > config.crs.low_flow_max_l_min))
        .then(3)
        .otherwise(pl.col("o2_device_tier"))
    )
    return (
        pl.when(pl.col("hypoxia_attributed"))
        .then(0)
        .when(pl.col("o2_device").is_not_null())
        .then(by_device)
        .otherwise(by_flow)
        .cast(pl.Int8)
    )


_RULES = {
    (2, "hypotension"): "CRS-ASTCT19-G2-HYPOTENSION",
    (2, "hypoxia"): "CRS-ASTCT19-G2-HYPOXIA-LOW-FLOW",
    (3, "hypotension"): "CRS-ASTCT19-G3-HYPOTENSION-ONE-VASOPRESSOR",
    (3, "hypoxia"): "CRS-ASTCT19-G3-HYPOXIA-HIGH-FLOW",
    (4, "hypotension"): "CRS-ASTCT19-G4-HYPOTENSION-MULTIPLE-VASOPRESSORS",
    (4, "hypoxia"): "CRS-ASTCT19-G4-HYPOXIA-POSITIVE-PRESSURE",
}


def grade_crs_astct2019(course: pl.DataFrame, config: GradingConfig) -> tuple[pl.DataFrame, list[Observation]]:
    """Add ``grade``, ``domain``, ``rule``, ``missing`` to a marked CRS course frame; return it with the
    evidence specs that explain each row."""
    df = course.with_columns(hypotension_grade().alias("g_hypotension"), hypoxia_grade(config).alias("g_hypoxia"))
    eligible = pl.col("fever_now") | pl.col("waived")
    df = with_raw_grade(df, eligible)
    df = df.with_columns(
        missing_text(
            [
                *common_missing(eligible),
                # A nasal cannula without a flow may be high flow (> 6 L/min): grade 2 is then a lower bound.
                (
                    eligible
                    & ~pl.col("hypoxia_attributed")
                    & (pl.col("o2_device") == "nasal_cannula")
                    & pl.col("o2_flow_current").is_null()
                    & (pl.col("raw_grade") < 3),
                    "oxygen_flow",
                ),
            ]
        )
    )
    df = with_grade_and_domain(df)
    g, fever = pl.col("raw_grade"), pl.col("domain") == "fever"
    rule = first_label(
        [
            (g == 5, "CRS-ASTCT19-G5-DEATH"),
            (fever & (g == 1), "CRS-ASTCT19-G1-FEVER"),
            (fever, "CRS-ASTCT19-G0-NO-FEVER"),
            (g == 0, "CRS-ASTCT19-G0"),
            *[((g == grade) & pl.col("domain").str.starts_with(dom), rule) for (grade, dom), rule in _RULES.items()],
        ]
    )
    return df.with_columns(rule.alias("rule")), _evidence(vasopressor_names(df))


def _evidence(pressors: list[str]) -> list[Observation]:
    hypotension_shown, hypoxia_shown = support_shown()
    return [
        *fever_evidence(),
        *support_evidence(
            pressors, hypotension_shown, hypotension_shown & (pl.col("g_hypotension") == 2), hypoxia_shown
        ),
    ]
