"""Evidence: the observations (item, day, value) behind every grade, and what is still missing.

A grading module declares its evidence as a list of :class:`Observation` specs (what to show and when).
The graded timeline keeps the state columns those specs read, so the evidence of any row is fully
determined by the row; :func:`expand_evidence` turns it into a long table (one row per observation per
assessment) when someone asks for it. Building nested lists for millions of assessment rows that nobody
reads would cost more than the grading itself; a long table is also what a database or a report wants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from tocsin.core.timeline import Text, labels

EVIDENCE_SCHEMA = {"patient_id": pl.Utf8, "t": pl.Float64, "item": pl.Utf8, "day": pl.Float64, "value": pl.Utf8}


@dataclass(frozen=True)
class Observation:
    """Show ``item`` observed on ``day`` with ``value`` at every assessment where ``condition`` holds."""

    item: pl.Expr
    day: pl.Expr
    value: pl.Expr
    condition: pl.Expr

    def columns(self) -> set[str]:
        return {name for e in (self.item, self.day, self.value, self.condition) for name in e.meta.root_names()}


def observation(
    item: str | pl.Expr, day: str | pl.Expr, value: str | pl.Expr, condition: pl.Expr, unit: str = ""
) -> Observation:
    """One evidence entry; ``item``/``day``/``value`` are literals (item) or column names/expressions."""
    item_expr = pl.lit(item) if isinstance(item, str) else item
    day_expr = pl.col(day) if isinstance(day, str) else day
    value_expr = (pl.col(value) if isinstance(value, str) else value).cast(pl.Utf8)
    if unit:
        value_expr = pl.concat_str([value_expr, pl.lit(" " + unit)])
    return Observation(
        item_expr.cast(pl.Utf8), day_expr.cast(pl.Float64).round(4), value_expr, condition.fill_null(False)
    )


def evidence_columns(observations: list[Observation]) -> list[str]:
    return sorted(set().union(*(o.columns() for o in observations)))


def expand_evidence(timeline: pl.DataFrame, observations: list[Observation]) -> pl.DataFrame:
    """Long evidence table: patient_id, t (the assessment), item, day (of the observation), value."""
    parts = [
        timeline.filter(o.condition).select(
            pl.col("patient_id"), pl.col("t"), o.item.alias("item"), o.day.alias("day"), o.value.alias("value")
        )
        for o in observations
    ]
    schema = {**EVIDENCE_SCHEMA, "patient_id": timeline.schema["patient_id"]}
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat([p.cast(schema) for p in parts], how="vertical")


def first_label(cases: Sequence[tuple[np.ndarray, str]]) -> Text:
    """The label (rule id, domain) of the first condition that holds (null when none does), as codes into
    the labels: the choice is made on integers and the text gathered once."""
    code = np.full(cases[0][0].shape, -1, dtype=np.int64)
    for k in range(len(cases) - 1, -1, -1):  # from the last, so that the first that holds is kept (np.select cost 10x)
        code = np.where(cases[k][0], k, code)
    return labels([label for _, label in cases], code)


@cache
def combination_texts(names: tuple[str, ...]) -> tuple[str, ...]:
    """The text of every bit mask of ``names``, '; '-separated ('' for none): what is still needed, as a table
    of labels (:func:`tocsin.core.timeline.labels`) by the mask of the conditions that hold."""
    return tuple(
        "; ".join(name for bit, name in enumerate(names) if combination >> bit & 1)
        for combination in range(1 << len(names))
    )
