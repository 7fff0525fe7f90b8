"""What every score shares: the baseline of a lab, the worst value in a window, threshold ladders, ranges.

**Baseline.** The baseline value of a lab is its last value at or before the *anchor*: the first
``lymphodepletion`` row of the patient, or, when none is recorded, the infusion (day 0) — each row says
which anchor it used. Values older than ``lookback_days`` before the anchor do not count. A lab drawn at
the anchor time counts (with day-resolution data, the lymphodepletion day's labs are the pre-treatment draw).

**Windows.** A score at a time ``at`` takes, per lab, one value from the window of ``period`` days that
ends at ``at``: the last one, or the worst one (highest or lowest). All windows of a batch are resolved at
once, by one compiled scan of each window's patient rows (:mod:`tocsin.core.kernels_scores`), and the winning
rows are gathered. The cost grows with the rows of each patient times its windows (one or a few per score).

**Ladders and ranges.** Point tables are threshold ladders read from ``tocsin/data/criteria``: the first
step whose comparison holds gives the points. Thresholds are stated in the table's unit and converted once
to the item's canonical unit, by the same conversion ingest applies to values (and rounded alike), so a
value exactly at a cut-off scores the same in any input unit. A score whose inputs are incomplete is never
given as a number; it gets the range it can still take (``score_at_least`` / ``score_at_most``), and a
category only when the whole range falls in one category.

Example
-------
>>> import polars as pl
>>> from tocsin.core.scores.baseline import Step, ladder_points
>>> pl.select(ladder_points(pl.lit(75.0), [Step("<", 75.0, 2), Step("<=", 175.0, 1)], 0)).item()
1
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import polars as pl

from tocsin.core.kernels_scores import best_rows_in_windows
from tocsin.units import conversion_for
from tocsin.vocabulary import load_vocabulary

Pick = Literal["last", "max", "min"]
Closed = Literal["left", "right", "both", "none"]
Op = Literal["<", "<=", ">", ">="]
Anchor = Literal["lymphodepletion", "infusion"]

_US_PER_DAY = 86_400_000_000
# As ingest rounds canonical values (tocsin.core.events), so that a converted cut-off equals a converted value.
_DECIMALS = 6
#: Label of the anchor a baseline was taken before.
ANCHOR_LYMPHODEPLETION = "lymphodepletion"
ANCHOR_INFUSION = "infusion"
#: Caveat of a baseline taken before the infusion because no lymphodepletion is recorded.
INFUSION_ANCHOR_CAVEAT = (
    "No lymphodepletion recorded: baseline taken at or before the infusion (day 0), possibly after "
    "lymphodepleting chemotherapy, which lowers counts and may change the score."
)


@dataclass(frozen=True)
class Step:
    """One rung of a threshold ladder: ``value op threshold`` gives ``points`` (threshold in canonical units)."""

    op: Op
    threshold: float
    points: int


@dataclass(frozen=True)
class Input:
    """A lab a score reads: its name in the output, the vocabulary item, the unit of the published table."""

    name: str
    item: str
    unit: str

    @property
    def canonical_unit(self) -> str:
        return _item_unit(self.item)

    def to_canonical(self, value: float) -> float:
        """A value in the table's unit in the item's canonical unit, rounded as ingest rounds."""
        return round(_conversion(self.unit, self.item).apply(value), _DECIMALS)

    def from_canonical(self, value: pl.Expr) -> pl.Expr:
        """Canonical values in the table's unit (for display and formulas)."""
        conversion = _conversion(self.unit, self.item)
        return ((value - conversion.offset) / conversion.scale).round(_DECIMALS)


@cache
def _item_unit(item: str) -> str:
    unit = load_vocabulary().items[item].unit
    if unit is None:
        raise ValueError(f"item {item!r} has no canonical unit: it cannot be a score input")
    return unit


def _conversion(unit: str, item: str) -> Any:
    return conversion_for(unit, _item_unit(item), molar_mass=load_vocabulary().items[item].molar_mass)


def ladder(spec: Sequence[Mapping[str, Any]], source: Input) -> list[Step]:
    """Ladder steps from criteria data (``[{op, value, points}]`` in the table's unit)."""
    return [Step(s["op"], source.to_canonical(float(s["value"])), int(s["points"])) for s in spec]


def compare(value: pl.Expr, op: Op, threshold: float) -> pl.Expr:
    match op:
        case "<":
            return value < threshold
        case "<=":
            return value <= threshold
        case ">":
            return value > threshold
        case ">=":
            return value >= threshold
    raise ValueError(f"unknown comparison {op!r}")


def ladder_points(value: pl.Expr, steps: Sequence[Step], otherwise: int) -> pl.Expr:
    """Points of the first step that holds; ``otherwise`` when none does; null when the value is null."""
    expr = pl.when(value.is_null()).then(pl.lit(None, pl.Int32))
    for step in steps:
        expr = expr.when(compare(value, step.op, step.threshold)).then(pl.lit(step.points, pl.Int32))
    return expr.otherwise(pl.lit(otherwise, pl.Int32))


def ladder_bounds(steps: Sequence[Step], otherwise: int) -> tuple[int, int]:
    """Lowest and highest points a ladder can give (the range of a missing input)."""
    points = [s.points for s in steps] + [otherwise]
    return min(points), max(points)


def points_range(points: pl.Expr, bounds: tuple[int, int]) -> tuple[pl.Expr, pl.Expr]:
    """(least, most) points of an input: its points when known, else the ladder's bounds."""
    return points.fill_null(bounds[0]), points.fill_null(bounds[1])


def total(ranges: Iterable[tuple[pl.Expr, pl.Expr]]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``score`` (only when every input is known), ``score_at_least`` and ``score_at_most``."""
    ranges = list(ranges)
    least = pl.sum_horizontal([r[0] for r in ranges]).cast(pl.Int32)
    most = pl.sum_horizontal([r[1] for r in ranges]).cast(pl.Int32)
    return pl.when(least == most).then(least).alias("score"), least.alias("score_at_least"), most.alias("score_at_most")


def band(value: pl.Expr, bands: Sequence[Mapping[str, Any]], field: str) -> pl.Expr:
    """``field`` of the band ``{min, max}`` (inclusive) that holds ``value``; null when none does."""
    expr = pl.when(pl.lit(False)).then(pl.lit(None, pl.Utf8))
    for b in bands:
        expr = expr.when(value.is_between(b["min"], b["max"])).then(pl.lit(b[field]))
    return expr.otherwise(None)


def settled(least: pl.Expr, most: pl.Expr) -> pl.Expr:
    """A per-range value (category, rule) only when both ends of the range agree on it."""
    return pl.when(least == most).then(least)


def labels(conditions: Mapping[str, pl.Expr]) -> pl.Expr:
    """The list of names whose condition holds (e.g. missing inputs, caveats that apply), in order."""
    if not conditions:
        return pl.lit([], pl.List(pl.Utf8))
    return pl.concat_list(
        [pl.when(cond.fill_null(False)).then(pl.lit(name)).otherwise(None) for name, cond in conditions.items()]
    ).list.drop_nulls()


def baseline_caveats(scale: Any) -> pl.Expr:
    """The scale's own caveats, plus the infusion-anchor caveat on rows whose baseline used it."""
    caveats = {text: pl.lit(True) for text in scale.table("caveats")}
    caveats[INFUSION_ANCHOR_CAVEAT] = pl.col("anchor") == ANCHOR_INFUSION
    return labels(caveats).alias("caveats")


def identity(scale: Any) -> list[pl.Expr]:
    """Columns naming the criteria a row was computed under."""
    return [
        pl.lit(scale.scale).alias("scale"),
        pl.lit(scale.version).alias("version"),
        pl.lit(scale.citation).alias("citation"),
        pl.lit(scale.doi).alias("doi"),
    ]


# ------------------------------------------------------------------------------------------- windows
def _patient_ids(patients: pl.DataFrame) -> pl.DataFrame:
    return patients.select(pl.col("patient_id").cast(pl.Categorical)).unique(maintain_order=True)


def baseline_anchors(
    events: pl.DataFrame, patients: pl.DataFrame, anchor: Anchor = ANCHOR_LYMPHODEPLETION
) -> pl.DataFrame:
    """One row per patient: ``at`` = the first lymphodepletion day, else 0.0 (infusion); ``anchor`` says which.
    With ``anchor`` "infusion" every patient's baseline is at day 0."""
    rows = events.lazy().filter(pl.col("item") == ANCHOR_LYMPHODEPLETION)
    first_ld = (
        (rows if anchor == ANCHOR_LYMPHODEPLETION else rows.head(0))
        .group_by("patient_id")
        .agg(pl.col("t").min().alias("ld"))
        .collect()
    )
    return (
        _patient_ids(patients)
        .join(first_ld, on="patient_id", how="left")
        .select(
            "patient_id",
            pl.col("ld").fill_null(0.0).alias("at"),
            pl.when(pl.col("ld").is_null())
            .then(pl.lit(ANCHOR_INFUSION))
            .otherwise(pl.lit(ANCHOR_LYMPHODEPLETION))
            .alias("anchor"),
        )
    )


def evaluation_windows(
    events: pl.DataFrame, patients: pl.DataFrame, at: float | pl.DataFrame | None
) -> tuple[pl.DataFrame, Closed]:
    """Windows (``patient_id``, ``at``, ``day``) to evaluate a time-point score, and how they are closed.

    ``at`` None: every day from 0 to the patient's last event; day d is the window ending where day d ends
    (``at`` = d + 1, excluded, so a day-resolution row of day d + 1 is not in day d). A number: that time
    for every patient. A frame of ``patient_id``, ``at``: those times. Explicit times include ``at`` itself.
    """
    ids = _patient_ids(patients)
    if at is None:
        last = events.group_by("patient_id").agg(pl.col("t").max().alias("last"))
        days = (
            ids.join(last, on="patient_id", how="left")
            .select(
                "patient_id",
                pl.int_ranges(0, pl.col("last").fill_null(0.0).clip(lower_bound=0.0).floor().cast(pl.Int64) + 1)
                .cast(pl.List(pl.Int32))
                .alias("day"),
            )
            .explode("day")
        )
        return days.select("patient_id", (pl.col("day") + 1).cast(pl.Float64).alias("at"), "day"), "left"
    if isinstance(at, pl.DataFrame):
        frame = at.select(pl.col("patient_id").cast(pl.Categorical), pl.col("at").cast(pl.Float64))
    else:
        frame = ids.with_columns(pl.lit(float(at), pl.Float64).alias("at"))
    return frame.with_columns(pl.col("at").floor().cast(pl.Int32).alias("day")), "both"


def _stamp(days: str) -> pl.Expr:
    """A time in days as whole microseconds: window bounds compare exactly, as in a rolling window by time."""
    return (pl.col(days) * _US_PER_DAY).round().cast(pl.Int64)


def pick_values(
    events: pl.DataFrame,
    windows: pl.DataFrame,
    picks: Mapping[str, Pick],
    period_days: float,
    closed: Closed = "both",
) -> pl.DataFrame:
    """Per window (``patient_id``, ``at``) and item: the value picked in the ``period_days`` up to ``at``.

    ``last`` is the latest value (ties at one time: the later file line), ``max``/``min`` the worst one
    (the latest of equal worst values gives its day). Returns ``patient_id, at, item, value, day, lln,
    uln`` (canonical units) for every distinct window and item, window by window and in each window the
    items in the order of ``picks``; value null when nothing is in the window. Below-quantification rows
    (no number) are not values.
    """
    item_dtype = events.schema["item"]
    items = pl.Series("item", list(picks), dtype=item_dtype)
    by_pick = {p: [i for i, pick in picks.items() if pick == p] for p in ("last", "max", "min")}
    key = (
        pl.when(pl.col("item").is_in(by_pick["last"]))
        .then(pl.col("t"))
        .when(pl.col("item").is_in(by_pick["max"]))
        .then(pl.col("num"))
        .otherwise(-pl.col("num"))
    )
    # Within one patient and item the pick is the highest key (worst value, or latest time; equal ones: the
    # latest, then the later file line): one compiled scan of each window's patient rows finds it.
    slot_of = np.full(int(items.to_physical().max() or 0) + 1, -1, dtype=np.int64)
    slot_of[items.to_physical().to_numpy()] = np.arange(items.len())
    candidates = events.select("patient_id", "item", "t", "num", "lln", "uln").filter(
        pl.col("item").is_in(items.implode()) & pl.col("num").is_not_null()
    )
    columns = candidates.select(
        pl.col("patient_id").to_physical().alias("p"),
        pl.col("item").to_physical().alias("i"),
        _stamp("t").alias("t_us"),
        key.alias("key"),
        "t",
    )
    # Window-major, items in the order of ``picks``: :func:`widen` reads the items back by position.
    ends = windows.select("patient_id", "at").unique(maintain_order=True)
    best = best_rows_in_windows(
        columns.get_column("p").to_numpy(),
        slot_of[columns.get_column("i").to_numpy()],
        columns.get_column("t_us").to_numpy(),
        columns.get_column("key").to_numpy(),
        columns.get_column("t").to_numpy(),
        ends.get_column("patient_id").to_physical().to_numpy(),
        ends.select(_stamp("at")).to_series().to_numpy(),
        max(1, round(period_days * _US_PER_DAY)),
        items.len(),
        closed,
    ).ravel()
    probes = ends.with_columns(pl.lit(items.to_list(), pl.List(item_dtype)).alias("item")).explode("item")
    rows = pl.Series("row", best).cast(pl.UInt32, strict=False)  # -1 (nothing in the window) becomes null
    found = candidates.select(pl.col("num").alias("value"), pl.col("t").alias("day"), "lln", "uln")[rows]
    return pl.concat([probes, found], how="horizontal").select("patient_id", "at", "item", "value", "day", "lln", "uln")


def widen(
    windows: pl.DataFrame, picked: pl.DataFrame, inputs: Mapping[str, str], fields: Sequence[str] = ("value", "day")
) -> pl.DataFrame:
    """``windows`` with one column per input and field (``<input>_<field>``) from the long ``picked`` frame
    of :func:`pick_values` (a fixed number of items per window, in the same order in every window)."""
    items = picked.get_column("item").unique(maintain_order=True).cast(pl.Utf8).to_list()
    position = {item: k for k, item in enumerate(items)}
    step = max(1, len(items))
    wide = picked.select(
        pl.col("patient_id", "at").gather_every(step),
        *(
            pl.col(f).gather_every(step, offset=position[item] if items else 0).alias(f"{name}_{f}")
            for name, item in inputs.items()
            for f in fields
        ),
    )
    return windows.join(wide, on=["patient_id", "at"], how="left", maintain_order="left")


def baseline_values(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    inputs: Mapping[str, str],
    lookback_days: float,
    fields: Sequence[str] = ("value", "day"),
    anchor: Anchor = ANCHOR_LYMPHODEPLETION,
) -> pl.DataFrame:
    """One row per patient: ``anchor``, ``anchor_day`` and, per input (name -> item), the baseline
    ``<input>_value`` (canonical unit) and ``<input>_day``: the last value in ``lookback_days`` up to the anchor
    (see :func:`baseline_anchors`).
    """
    if not math.isfinite(lookback_days) or lookback_days <= 0:
        raise ValueError(f"lookback_days must be a positive number of days, not {lookback_days!r}")
    anchors = baseline_anchors(events, patients, anchor)
    picked = pick_values(events, anchors, dict.fromkeys(inputs.values(), "last"), lookback_days, "both")
    return widen(anchors, picked, inputs, fields).rename({"at": "anchor_day"})
