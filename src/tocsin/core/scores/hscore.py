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

import polars as pl

from tocsin.config import ScoresConfig
from tocsin.core.scores.baseline import (
    Input,
    LabRows,
    Pick,
    Step,
    Windows,
    compare,
    evaluation_windows,
    identity,
    lab_rows,
    ladder,
    ladder_bounds,
    ladder_points,
    labels,
    patient_codes,
    picked_columns,
    picked_rows,
    points_range,
    settled,
    total,
)
from tocsin.criteria import load_scale

SCALE = load_scale("hscore")
INPUTS = {name: Input(name, spec["item"], spec["unit"]) for name, spec in SCALE.table("inputs").items()}
LINEAGES = {name: Input(name, spec["item"], spec["unit"]) for name, spec in SCALE.table("cytopenia_lineages").items()}
CYTOPENIA_STEPS = [Step(s["op"], float(s["value"]), int(s["points"])) for s in SCALE.table("cytopenia_points")]
#: The labs the HScore reads and the worst direction of each.
PICKS: dict[str, Pick] = {spec["item"]: spec["worst"] for spec in SCALE.table("inputs").values()}
PICKS |= {source.item: "min" for source in LINEAGES.values()}
ASSUMED_ABSENT_CAVEAT = "Scored as absent by configuration (scores.hscore_assume_absent), not observed: {}."


def _probability(score: pl.Expr, field: str) -> pl.Expr:
    """Fardet's published probability (%) at the nearest tabulated HScore below (low) or above (high)."""
    table = SCALE.table("probability")
    if field == "low":
        expr = pl.when(score.is_null()).then(pl.lit(None, pl.Int32))
        for row in reversed(table):
            expr = expr.when(score >= row["hscore"]).then(pl.lit(row["low"], pl.Int32))
        return expr.otherwise(pl.lit(table[0]["low"], pl.Int32))
    expr = pl.when(score.is_null()).then(pl.lit(None, pl.Int32))
    for row in table:
        expr = expr.when(score <= row["hscore"]).then(pl.lit(row["high"], pl.Int32))
    return expr.otherwise(pl.lit(table[-1]["high"], pl.Int32))


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
    """:func:`hscore` at ``windows``, from the rows of a batch (``labs`` holding at least the items of ``PICKS``)."""
    rows = picked_rows(
        labs, patient_codes(windows.patient_id), windows.at, PICKS, config.hscore_window_days, windows.closed
    )
    sources = {**INPUTS, **LINEAGES}
    picked = picked_columns(
        labs, rows, {name: source.item for name, source in sources.items()}, list(PICKS), ("value", "day")
    )
    frame = windows.frame().hstack(list(picked.values()))

    # Built in stages, each stage reading the columns of the one before: one expression per output with
    # the ladders inlined into every sum made Polars plan a tree so large that one row took 0.2 s.
    columns, ranges, missing = [], [], {}
    for name, source in INPUTS.items():
        spec = SCALE.table("inputs")[name]
        steps = ladder(spec["ladder"], source)
        canonical = pl.col(f"{name}_value")
        columns += _described(name, source) + [
            ladder_points(canonical, steps, spec["otherwise"]).alias(f"{name}_points")
        ]
        ranges.append(points_range(pl.col(f"{name}_points"), ladder_bounds(steps, spec["otherwise"])))
        missing[name] = canonical.is_null()

    cytopenic, unknown = [], []
    for name, source in LINEAGES.items():
        spec = SCALE.table("cytopenia_lineages")[name]
        canonical = pl.col(f"{name}_value")
        cytopenic.append(compare(canonical, spec["op"], source.to_canonical(float(spec["value"]))).fill_null(False))
        unknown.append(canonical.is_null())
        columns += _described(name, source)
        missing[name] = canonical.is_null()
    known = pl.sum_horizontal(cytopenic)
    columns += [known.alias("_cytopenic_least"), (known + pl.sum_horizontal(unknown)).alias("_cytopenic_most")]
    assumed = [name for name in SCALE.table("clinical_inputs") if name in config.hscore_assume_absent]
    missing |= {name: pl.lit(name not in assumed) for name in SCALE.table("clinical_inputs")}
    frame = frame.with_columns(*columns, labels(missing).alias("missing"))

    least_count, most_count = pl.col("_cytopenic_least"), pl.col("_cytopenic_most")
    frame = frame.with_columns(
        settled(least_count, most_count).cast(pl.Int32).alias("cytopenias_value"),
        ladder_points(least_count, CYTOPENIA_STEPS, 0).alias("_cytopenia_points_least"),
        ladder_points(most_count, CYTOPENIA_STEPS, 0).alias("_cytopenia_points_most"),
    ).with_columns(
        settled(pl.col("_cytopenia_points_least"), pl.col("_cytopenia_points_most")).alias("cytopenias_points")
    )
    ranges.append((pl.col("_cytopenia_points_least"), pl.col("_cytopenia_points_most")))

    clinical = []
    for name, spec in SCALE.table("clinical_inputs").items():
        absent = name in assumed
        clinical.append(pl.lit(0 if absent else None, pl.Int32).alias(f"{name}_points"))
        ranges.append((pl.lit(0, pl.Int32), pl.lit(0 if absent else spec["max_points"], pl.Int32)))
    frame = frame.with_columns(*clinical, *total(ranges))
    score, least, most = pl.col("score"), pl.col("score_at_least"), pl.col("score_at_most")
    cutoff = SCALE.table("cutoff")["value"]
    caveats = {text: pl.lit(True) for text in SCALE.table("caveats")}
    if assumed:
        caveats[ASSUMED_ABSENT_CAVEAT.format(", ".join(assumed))] = pl.lit(True)
    rule = settled(
        pl.when(least >= cutoff).then(pl.lit("HSCORE-CUTOFF")).otherwise(pl.lit("HSCORE-BELOW-CUTOFF")),
        pl.when(most >= cutoff).then(pl.lit("HSCORE-CUTOFF")).otherwise(pl.lit("HSCORE-BELOW-CUTOFF")),
    )
    frame = frame.with_columns(rule.alias("_rule"))
    return frame.select(
        "patient_id",
        "at",
        "day",
        score,
        least,
        most,
        _probability(score, "low").alias("probability_pct_low"),
        _probability(score, "high").alias("probability_pct_high"),
        pl.col("_rule")
        .replace_strict({"HSCORE-CUTOFF": "high", "HSCORE-BELOW-CUTOFF": "low"}, default=None)
        .alias("category"),
        pl.col("_rule").fill_null("HSCORE-MISSING").alias("rule"),
        "missing",
        *[c.meta.output_name() for c in columns if not c.meta.output_name().startswith("_")],
        "cytopenias_value",
        "cytopenias_points",
        *[f"{name}_points" for name in SCALE.table("clinical_inputs")],
        labels(caveats).alias("caveats"),
        *identity(SCALE),
    )


def _described(name: str, source: Input) -> list[pl.Expr]:
    return [
        source.from_canonical(pl.col(f"{name}_value")).alias(f"{name}_value"),
        pl.lit(source.unit).alias(f"{name}_unit"),
        pl.col(f"{name}_day"),
    ]
