"""HScore for reactive haemophagocytic syndrome at a time point, with Fardet's probability of HLH.

Fardet L et al. Arthritis Rheumatol 2014;66:2613-2620, doi:10.1002/art.38690. Nine inputs: known
immunosuppression (0/18), temperature (0/33/49), organomegaly (0/23/38), number of cytopenic lineages
(0/24/34), ferritin (0/35/50), triglycerides (0/44/64, mmol/L), fibrinogen (0/30, g/L), AST (0/19) and
haemophagocytosis on marrow aspirate (0/35); the best cut-off is 169. The tables are data:
``tocsin/data/criteria/hscore.yaml`` (where each value was verified is noted there).

The HScore describes a moment: at each evaluation time it takes the worst value of each lab (highest
temperature, ferritin, triglycerides, AST; lowest fibrinogen, Hb, WBC, platelets) in the
``scores.hscore_window_days`` up to that time. Immunosuppression, organomegaly and haemophagocytosis have
no event item: they are missing (so the score is not given, only its range) unless the configuration
lists them in ``scores.hscore_assume_absent``, which each row then states in its caveats.

Fardet publishes the probability of HLH as a table by steps of 10 points, not as a formula, so a score
gets the two published probabilities around it (``probability_pct_low`` .. ``probability_pct_high``):
169 lies between 160 (40 %) and 170 (54 %).

Example
-------
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> import polars as pl
>>> rows = [("0", "infusion", "axi-cel", ""), ("6", "temperature", "39.5", "Cel"), ("6", "ferritin", "8000", "ng/mL"),
...         ("6", "triglycerides", "2.0", "mmol/L"), ("6", "fibrinogen", "2.0", "g/L"), ("6", "ast", "80", "U/L"),
...         ("6", "hgb", "8.5", "g/dL"), ("6", "wbc", "1.0", "10*9/L"), ("6", "plt", "150", "10*9/L")]
>>> raw = pl.DataFrame({"patient_id": ["P"] * 9, "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": ["f"] * 9, "line": list(range(9))})
>>> n = normalise_events(raw, load_vocabulary())
>>> cfg = ScoresConfig(hscore_assume_absent=["immunosuppression", "organomegaly", "hemophagocytosis"])
>>> hscore(n.events, n.patients, cfg, at=6.0).select("score", "probability_pct_low", "probability_pct_high").row(0)
(216, 93, 96)
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from tocsin.config import ScoresConfig
from tocsin.core.scores.baseline import (
    Input,
    LabRows,
    Ladders,
    Layout,
    Pick,
    Step,
    FrameColumns,
    Windows,
    evaluation_windows,
    identity_columns,
    TableUnits,
    in_table_units,
    lab_rows,
    ladder,
    ladders,
    layout,
    picked_rows,
    points_of,
    table_units,
)
from tocsin.core.kernels_scores import picked_fields
from tocsin.criteria import load_scale

SCALE = load_scale("hscore")
INPUTS = {name: Input(name, spec["item"], spec["unit"]) for name, spec in SCALE.table("inputs").items()}
LINEAGES = {name: Input(name, spec["item"], spec["unit"]) for name, spec in SCALE.table("cytopenia_lineages").items()}
CYTOPENIA_STEPS = [Step(s["op"], float(s["value"]), int(s["points"])) for s in SCALE.table("cytopenia_points")]
#: The labs the HScore reads and the worst direction of each.
# The scale's tables a score reads, looked up once (each lookup of an extra field of the model costs ~1 µs).
_CLINICAL, _CUTOFF, _CAVEATS = SCALE.table("clinical_inputs"), SCALE.table("cutoff"), SCALE.table("caveats")
PICKS: dict[str, Pick] = {spec["item"]: spec["worst"] for spec in SCALE.table("inputs").values()}
PICKS |= {source.item: "min" for source in LINEAGES.values()}
#: The lab inputs, then the lineages, and the pick (slot of PICKS) each reads.
_SOURCES = INPUTS | LINEAGES
_SLOTS = [list(PICKS).index(source.item) for source in _SOURCES.values()]
if len(_SOURCES) != len(INPUTS) + len(LINEAGES):
    raise RuntimeError("criteria/hscore.yaml: an input and a lineage share a name")
ASSUMED_ABSENT_CAVEAT = "Scored as absent by configuration (scores.hscore_assume_absent), not observed: {}."


@cache
def _ladders() -> tuple[Ladders, Ladders, Ladders]:
    """The point ladders, in the items' canonical units and converted once: of the lab inputs; of each lineage
    (one step, 1 point: cytopenic, its value against its limit as the table says), whose least and most totals
    are the lineages certainly and possibly cytopenic; and of those two counts, the cytopenia points."""
    specs, lineages = SCALE.table("inputs"), SCALE.table("cytopenia_lineages")
    inputs = ladders(
        [ladder(specs[name]["ladder"], source) for name, source in INPUTS.items()],
        [specs[name]["otherwise"] for name in INPUTS],
    )
    limits = [
        [Step(lineages[name]["op"], source.to_canonical(float(lineages[name]["value"])), 1)]
        for name, source in LINEAGES.items()
    ]
    return inputs, ladders(limits, [0] * len(LINEAGES)), ladders([CYTOPENIA_STEPS] * 2, [0, 0])


#: The columns of the score's range and probability, in order.
_TOTALS = ["score", "score_at_least", "score_at_most", "probability_pct_low", "probability_pct_high"]


@cache
def _inputs_layout() -> Layout:
    """Per lab input and lineage: its value (in the table's unit), unit and day, and an input's points; then the
    cytopenic lineages and their points, and each clinical input's points."""
    columns: list[tuple[str, str] | tuple[str, str, str]] = []
    for name, source in _SOURCES.items():
        columns += [("numbers", f"{name}_value"), ("texts", f"{name}_unit", source.unit), ("numbers", f"{name}_day")]
        if name in INPUTS:
            columns.append(("whole", f"{name}_points"))
    columns += [("whole", "cytopenias_value"), ("whole", "cytopenias_points")]
    return layout(columns + [("whole", f"{name}_points") for name in _CLINICAL])


@cache
def _units() -> TableUnits:
    """The conversions of the inputs and lineages to the table's units, looked up once."""
    return table_units(list(_SOURCES.values()))


#: Fardet's table as arrays to search (one search instead of a comparison per tabulated score).
_TABLE = SCALE.table("probability")
_TABULATED = np.array([row["hscore"] for row in _TABLE], dtype=np.float64)
# Each padded with its end row, which a score beyond the table reads: low below the first, high above the last.
_LOW = np.array([float(row["low"]) for row in [_TABLE[0], *_TABLE]])
_HIGH = np.array([float(row["high"]) for row in [*_TABLE, _TABLE[-1]]])
if not (np.diff(_TABULATED) > 0).all():
    raise RuntimeError("criteria/hscore.yaml: the probability table must list increasing HScores")


def _probability(score: np.ndarray, field: str) -> np.ndarray:
    """Fardet's published probability (%) at the nearest tabulated HScore below (low) or above (high); beyond the
    table, its end row."""
    if field == "low":
        # The highest tabulated score at or below (its row in _LOW, after the padding row).
        probability = _LOW[np.searchsorted(_TABULATED, score, side="right")]
    else:
        probability = _HIGH[np.searchsorted(_TABULATED, score, side="left")]  # the lowest at or above
    return np.where(np.isnan(score), np.nan, probability)


def hscore(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    at: float | pl.DataFrame | None = None,
) -> pl.DataFrame:
    """HScore (Fardet 2014, doi:10.1002/art.38690) per patient and evaluation time.

    ``at``: None = every day from infusion to the patient's last event (day d from the labs up to the end
    of day d); a number = that day for every patient; a frame ``patient_id, at`` = those times. One row per
    patient and time: ``patient_id, at, day, score, score_at_least, score_at_most, probability_pct_low,
    probability_pct_high, category (high = >= 169 | low | null), rule, missing``; per lab input
    (temperature, ferritin, triglycerides in mmol/L, fibrinogen in g/L, ast) ``<input>_value``,
    ``<input>_unit``, ``<input>_day``, ``<input>_points``; per lineage (hgb, wbc, plt) ``<lineage>_value``,
    ``_unit``, ``_day``; ``cytopenias_value`` (lineages at or below the limit), ``cytopenias_points``;
    ``immunosuppression_points, organomegaly_points, hemophagocytosis_points``; then ``caveats, scale,
    version, citation, doi``.
    """
    return hscore_in_windows(lab_rows(events, list(PICKS)), evaluation_windows(events, patients, at), config)


def hscore_in_windows(labs: LabRows, windows: Windows, config: ScoresConfig = ScoresConfig()) -> pl.DataFrame:
    """:func:`hscore` at ``windows``, from the rows of a batch (``labs`` holding at least the items of ``PICKS``):
    every input, point and range as arrays, the frame built once at the end."""
    return hscore_columns(labs, windows, config).frame()


def hscore_columns(labs: LabRows, windows: Windows, config: ScoresConfig = ScoresConfig()) -> FrameColumns:
    """The columns of :func:`hscore_in_windows`, to build with other frames
    (:func:`tocsin.core.scores.baseline.frames`)."""
    rows = picked_rows(labs, windows.codes, windows.at, PICKS, config.hscore_window_days, windows.closed)
    height = windows.at.size
    # Every input and lineage at once (inputs x windows): the inputs first, then the lineages.
    picked = picked_fields(rows[:, _SLOTS], labs.column("num"), labs.t)
    values, days = picked[:, 0], picked[:, 1]
    shown = in_table_units(_units(), values)
    input_ladders, lineage_ladders, count_ladders = _ladders()
    points, least, most = points_of(values[: len(INPUTS)], input_ladders)
    _, cytopenic, possible = points_of(values[len(INPUTS) :], lineage_ladders)
    lineage_points = points_of(np.array((cytopenic, possible)), count_ladders)[0]
    least, most = least + lineage_points[0], most + lineage_points[1]
    clinical = _CLINICAL
    assumed = [name for name in clinical if name in config.hscore_assume_absent]
    unobserved = np.array([name not in assumed for name in clinical])
    missing = np.concatenate((np.isnan(values), np.broadcast_to(unobserved[:, None], (unobserved.size, height))))
    most = most + sum(spec["max_points"] for name, spec in clinical.items() if name not in assumed)
    counted = [
        np.where(cytopenic == possible, cytopenic, np.nan),  # cytopenias_value
        np.where(lineage_points[0] == lineage_points[1], lineage_points[0], np.nan),  # cytopenias_points
    ]
    assumed_points = np.broadcast_to(np.where(unobserved, np.nan, 0.0)[:, None], (unobserved.size, height))
    whole = np.concatenate((points, counted, assumed_points))  # the points of an assumed absence are 0
    score = np.where(least == most, least, np.nan)
    cutoff = _CUTOFF["value"]
    # The category and rule of a range only when both ends agree on them (0 = below the cut-off, 1 = at or above).
    settled = np.where((least >= cutoff) == (most >= cutoff), (least >= cutoff).astype(np.int64), 2)
    caveats = list(_CAVEATS)
    if assumed:
        caveats.append(ASSUMED_ABSENT_CAVEAT.format(", ".join(assumed)))
    columns = FrameColumns(height)
    columns.series(*windows.columns)
    totals = (score, least, most, _probability(score, "low"), _probability(score, "high"))
    columns.whole_rows(_TOTALS, np.array(totals))
    columns.text("category", ["low", "high", None], settled)
    columns.text("rule", ["HSCORE-BELOW-CUTOFF", "HSCORE-CUTOFF", "HSCORE-MISSING"], settled)
    columns.labels_held("missing", [*_SOURCES, *_CLINICAL], missing)
    columns.add_layout(_inputs_layout(), np.array((shown, days)).transpose(1, 0, 2).reshape(-1, height), whole)
    columns.constant_list("caveats", caveats)
    identity_columns(SCALE, columns)
    return columns
