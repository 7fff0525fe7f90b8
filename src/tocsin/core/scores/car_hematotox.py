"""CAR-HEMATOTOX: risk of prolonged neutropenia from five labs before lymphodepletion.

Rejeski K et al. Blood 2021;138:2499-2513, doi:10.1182/blood.2020010543 (criteria.md §3.4). Platelets
(0-2 points), ANC (0-1), haemoglobin (0-1), CRP (0-1, in mg/dL) and ferritin (0-2) sum to 0-7; 0-1 is
low risk (HT-low), >= 2 high risk (HT-high). The point table and both boundary rules (what a value exactly
at a cut-off scores) are data: ``tocsin/data/criteria/car_hematotox.yaml``.

A patient without a baseline value for an input gets no score: ``missing`` names the inputs, and
``score_at_least`` / ``score_at_most`` give the range the score can still take. The risk group is given
when that whole range falls in one group (e.g. platelets < 75 alone make HT-high).

Example
-------
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> import polars as pl
>>> rows = [("0", "infusion", "axi-cel", ""), ("-5", "lymphodepletion", "Flu/Cy", ""),
...         ("-5", "plt", "150", "10*9/L"), ("-5", "anc", "2.0", "10*9/L"), ("-5", "hgb", "11", "g/dL"),
...         ("-5", "crp", "30", "mg/L"), ("-5", "ferritin", "800", "ng/mL")]
>>> raw = pl.DataFrame({"patient_id": ["P"] * 7, "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": ["f"] * 7, "line": list(range(7))})
>>> n = normalise_events(raw, load_vocabulary())
>>> car_hematotox(n.events, n.patients).select("score", "category", "crp_value", "crp_points").row(0)
(3, 'high', 3.0, 1)
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from tocsin.config import ScoresConfig
from tocsin.core.scores.baseline import (
    INFUSION_ANCHOR_CAVEAT,
    Baseline,
    Bands,
    Input,
    FrameColumns,
    Ladders,
    Layout,
    bands,
    read_baseline,
    identity_columns,
    TableUnits,
    in_table_units,
    ladder,
    ladders,
    inputs_layout,
    points_of,
    settled_bands,
    table_units,
)
from tocsin.criteria import load_scale

SCALE = load_scale("car_hematotox")
INPUTS = {name: Input(name, spec["item"], spec["unit"]) for name, spec in SCALE.table("inputs").items()}
# The scale's tables a score reads, looked up once (each lookup of an extra field of the model costs ~1 µs).
_CATEGORIES, _CAVEATS = SCALE.table("categories"), SCALE.table("caveats")


@cache
def _ladders(boundary_rule: str) -> Ladders:
    """The point ladders of the inputs under a boundary rule, in their items' canonical units, converted once."""
    specs = SCALE.table("inputs")
    steps = [ladder(specs[name]["ladders"][boundary_rule], source) for name, source in INPUTS.items()]
    return ladders(steps, [specs[name]["otherwise"] for name in INPUTS])


@cache
def _inputs_layout() -> Layout:
    """Per input: its value (in the table's unit), unit, day (the baseline's column) and points."""
    return inputs_layout(INPUTS, points=True)


@cache
def _bands() -> Bands:
    """The risk groups, for the category and the rule of a score's range."""
    return bands(_CATEGORIES, ("category", "rule"))


@cache
def _units() -> TableUnits:
    """The conversions of the inputs to the table's units, looked up once."""
    return table_units(list(INPUTS.values()))


def car_hematotox(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    *,
    baseline: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """CAR-HEMATOTOX per patient from the baseline labs (Rejeski 2021, doi:10.1182/blood.2020010543).

    ``events`` and ``patients`` are ``NormalisedEvents.events`` / ``.patients``. One row per patient:
    ``patient_id, score, score_at_least, score_at_most, category (low | high | null), rule, missing,
    anchor, anchor_day``, per input (plt, anc, hgb, crp, ferritin) ``<input>_value`` (in the table's unit:
    CRP in mg/dL), ``<input>_unit``, ``<input>_day``, ``<input>_points``, then ``boundary_rule, caveats,
    scale, version, citation, doi``. ``baseline``: the :func:`baseline_values` of (at least) these inputs with
    ``config.baseline_lookback_days``, when several scores share one read of the batch.
    """
    inputs = {name: source.item for name, source in INPUTS.items()}
    base = read_baseline(events, patients, inputs, config.baseline_lookback_days, baseline)
    return car_hematotox_columns(base, config).frame()


def car_hematotox_columns(base: Baseline, config: ScoresConfig = ScoresConfig()) -> FrameColumns:
    """The columns of :func:`car_hematotox` from a :class:`Baseline` of (at least) its inputs, to build with other
    frames (:func:`tocsin.core.scores.baseline.frames`)."""
    rule = config.hematotox_boundary_rule
    height = base.columns.height
    canonical = np.array([base.values[f"{name}_value"] for name in INPUTS])
    points, least, most = points_of(canonical, _ladders(rule))
    shown = in_table_units(_units(), canonical)
    categories = _CATEGORIES
    caveats = dict.fromkeys(_CAVEATS, True)
    caveats[INFUSION_ANCHOR_CAVEAT] = base.infusion_anchored
    columns = FrameColumns(height)
    columns.include(base.columns, "patient_id")
    columns.whole("score", np.where(least == most, least, np.nan))
    columns.whole("score_at_least", least)
    columns.whole("score_at_most", most)
    # -1 (unsettled) reads the last option: none.
    category, settled_rule = settled_bands(least, most, _bands())
    columns.text("category", [c["category"] for c in categories] + [None], category)
    columns.text("rule", [c["rule"] for c in categories] + ["HEMATOTOX-MISSING"], settled_rule)
    columns.labels_held("missing", list(INPUTS), np.isnan(canonical))
    columns.include(base.columns, "anchor")
    columns.include(base.columns, "anchor_day")
    columns.add_layout(_inputs_layout(), shown, points, base.columns)
    columns.text("boundary_rule", [rule])
    columns.labels("caveats", caveats)
    identity_columns(SCALE, columns)
    return columns
