"""Cytopenias graded by CTCAE v5.0 (default) or v6.0, one grade per lab value, for a whole batch at once.

Terms: anemia (``hgb``), neutrophil count decreased (``anc``), platelet count decreased / v6.0
thrombocytopenia (``plt``), lymphocyte count decreased (``alc``, v5.0 only) and white blood cell decreased
(``wbc``). References: NCI CTCAE v5.0 (27 Nov 2017,
https://ctep.cancer.gov/protocoldevelopment/electronic_applications/docs/CTCAE_v5_Quick_Reference_8.5x11.pdf)
and v6.0 (2025, https://dctd.cancer.gov/research/ctep-trials/for-sites/adverse-events/ctcae-v6.pdf), as
transcribed in ``../shared/clinical/criteria.md`` §3.1. The cut-offs, terms and rule ids are data
(``data/criteria/cytopenia_ctcae5.yaml`` and ``cytopenia_ctcae6.yaml``); the local decisions are
:class:`tocsin.config.CytopeniaConfig`; both are explained in ``docs/cytopenia.md``.

* Bands are half-open: a value below a cut-off has at least that grade (v5.0 ANC exactly 1.0 x 10^9/L is
  grade 2). Values are compared in the canonical unit (counts 10*9/L, hemoglobin g/dL) after conversion.
* Grade 1 starts at the lower limit of normal (LLN): the row's ``lln``, else the configured reference. With
  no LLN a value at or above the grade-2 cut-off has grade null and ``missing`` = ``lln``; v6.0 ANC needs none.
* A value below its quantification limit (``blq``) is graded on the interval below the limit: exact when
  the whole interval lies in one band, else the least severe band as a lower bound with ``missing`` =
  ``quantified value``.
* ``transfused``: an ``rbc_transfusion`` (hemoglobin) or ``platelet_transfusion`` (platelets) within the
  configured hours before or after the value. Where grade 3 reads "transfusion indicated" (anemia, v6.0
  thrombocytopenia) a transfused value is grade 3 at least, unless the config turns that off.
* Anemia grade 4 ("life-threatening; urgent intervention") is never assigned from a number.

Example
-------
>>> import polars as pl
>>> from tocsin.config import CytopeniaConfig
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> raw = pl.DataFrame({"patient_id": "P", "day": ["0", "7", "7", "7"],
...     "item": ["infusion", "anc", "plt", "hgb"], "value": ["axi-cel", "0.45", "60000", "10.5"],
...     "unit": ["", "10*9/L", "/uL", "g/dL"], "file": "x", "line": [2, 3, 4, 5]})
>>> events = normalise_events(raw, load_vocabulary()).events
>>> graded = grade_cytopenias(events, CytopeniaConfig())
>>> graded.select("lineage", "grade", "missing").rows()
[('anc', 4, ''), ('plt', 2, ''), ('hgb', None, 'lln')]
>>> graded.get_column("rule").to_list()
['CYTO-CTCAE5-ANC-G4', 'CYTO-CTCAE5-PLT-G2', 'CYTO-CTCAE5-HGB-NEEDS-LLN']
>>> grade_cytopenias(events, CytopeniaConfig(scale="ctcae6")).get_column("grade").to_list()
[3, 2, None]
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

from tocsin.config import CytopeniaConfig
from tocsin.core.lookup import per_patient
from tocsin.core.timeline import HOURS_PER_DAY
from tocsin.criteria import load_scale

#: Lab items graded, in output order of the ``lineage`` Enum.
LINEAGES = ("anc", "plt", "hgb", "alc", "wbc")
LINEAGE = pl.Enum(LINEAGES)
#: Config scale name -> criteria file.
SCALE_FILES = {"ctcae5": "cytopenia_ctcae5", "ctcae6": "cytopenia_ctcae6"}
SCALE = pl.Enum(tuple(SCALE_FILES))
GRADES = (4, 3, 2, 1)
LLN_SOURCE = pl.Enum(("row", "reference"))
#: What ``missing`` names: the LLN, a value above the quantification limit, or nothing that could be given.
NEEDS_LLN = "lln"
NEEDS_QUANTIFIED = "quantified value"
NOT_A_TERM = "term not in CTCAE v6.0"


class _Band(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    grade: int
    below: float | Literal["lln"]
    rule: str


class _Transfusion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    item: str
    grade: int | None = None  # absent: recorded beside the grade only (the term's wording has no transfusion)
    rule: str | None = None


class _Term(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    term: str
    bands: tuple[_Band, ...]
    normal_rule: str | None = None
    needs_lln_rule: str | None = None
    not_graded_rule: str | None = None
    transfusion: _Transfusion | None = None

    def rule_ids(self) -> set[str]:
        ids = {b.rule for b in self.bands} | {self.normal_rule, self.needs_lln_rule, self.not_graded_rule}
        if self.transfusion is not None:
            ids.add(self.transfusion.rule)
        return ids - {None}


@cache
def criteria_tables(scale: str) -> dict[str, _Term]:
    """The per-lineage tables of one CTCAE version (``ctcae5``/``ctcae6``), checked against its rules."""
    data = load_scale(SCALE_FILES[scale])
    tables = {name: _Term.model_validate(table) for name, table in data.table("lineages").items()}
    known = {r.id for r in data.rules}
    unknown = set().union(*(t.rule_ids() for t in tables.values())) - known
    if set(tables) != set(LINEAGES) or unknown:
        raise ValueError(f"{data.scale}: lineages {sorted(tables)}, rule ids missing from its rules {sorted(unknown)}")
    return tables


@cache
def _rule_enum() -> pl.Enum:
    return pl.Enum(tuple(r.id for name in SCALE_FILES.values() for r in load_scale(name).rules))


GRADED_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.Categorical(),
    "t": pl.Float64(),
    "lineage": LINEAGE,
    "value": pl.Float64(),
    "blq": pl.Boolean(),
    "lln": pl.Float64(),
    "lln_source": LLN_SOURCE,
    "grade": pl.Int8(),
    "rule": _rule_enum(),
    "missing": pl.String(),
    "scale": SCALE,
    "transfused": pl.Boolean(),
}


def _plan(config: CytopeniaConfig) -> dict[str, tuple[str, _Term]]:
    """lineage -> (scale it is graded under, its table). Only v6.0 lymphocytes may borrow the v5.0 table."""
    plan = {name: (config.scale, term) for name, term in criteria_tables(config.scale).items()}
    if config.scale == "ctcae6" and config.ctcae6_lymphocytes == "ctcae5":
        plan["alc"] = ("ctcae5", criteria_tables("ctcae5")["alc"])
    return plan


def _by_lineage(mapping: dict[str, object], dtype: pl.DataType) -> pl.Expr:
    """``mapping[lineage]`` of every row (null where absent), gathered by the lineage's Enum code."""
    return pl.lit(pl.Series([mapping.get(n) for n in LINEAGES], dtype=dtype)).gather(pl.col("lineage").to_physical())


# Rule of a row = _rule_table(plan)[lineage code * _STATES + state]; state is the grade 0-4 or one of these.
_RAISED, _NEEDS_LLN, _NOT_GRADED = 5, 6, 7
_STATES = 8
#: ``missing`` by code: bit 1 = the LLN, bit 2 = a quantified value; the last entry is for v6.0 lymphocytes.
_MISSING = ("", NEEDS_LLN, NEEDS_QUANTIFIED, f"{NEEDS_LLN}; {NEEDS_QUANTIFIED}", NOT_A_TERM)


def _rule_table(plan: dict[str, tuple[str, _Term]]) -> pl.Series:
    table: list[str | None] = [None] * (len(LINEAGES) * _STATES)
    for name, (_, term) in plan.items():
        base = LINEAGES.index(name) * _STATES
        for band in term.bands:
            table[base + band.grade] = band.rule
        table[base] = term.normal_rule
        table[base + _RAISED] = term.transfusion.rule if term.transfusion else None
        table[base + _NEEDS_LLN] = term.needs_lln_rule
        table[base + _NOT_GRADED] = term.not_graded_rule
    return pl.Series(table, dtype=_rule_enum())


def _lineage_of_item(item_type: pl.Enum) -> pl.Expr:
    """The lineage of the row's ``item`` (an Enum of the vocabulary), gathered by the item's code."""
    table = [c if c in LINEAGES else None for c in item_type.categories]
    return pl.lit(pl.Series(table, dtype=LINEAGE)).gather(pl.col("item").to_physical())


def _in(lineages: list[str]) -> pl.Expr:
    return pl.col("lineage").is_in(lineages) if lineages else pl.lit(False)


def _lln(config: CytopeniaConfig, sex: bool) -> pl.Expr:
    reference = _by_lineage(dict(config.lln_reference), pl.Float64)
    if sex:
        for sex_value, table in config.lln_reference_by_sex.items():
            reference = (
                pl.when(pl.col("sex") == sex_value)
                .then(pl.coalesce(_by_lineage(dict(table), pl.Float64), reference))
                .otherwise(reference)
            )
    return pl.coalesce(pl.col("lln_row"), reference)


def _cut_columns(plan: dict[str, tuple[str, _Term]]) -> list[pl.Expr]:
    """``_cut{g}``: the cut-off below which the row's value has at least grade g (null: no such band, or
    the LLN is unknown)."""
    out = []
    for grade in GRADES:
        fixed = {n: b.below for n, (_, t) in plan.items() for b in t.bands if b.grade == grade and b.below != "lln"}
        at_lln = [n for n, (_, t) in plan.items() for b in t.bands if b.grade == grade and b.below == "lln"]
        cut = _by_lineage(fixed, pl.Float64)
        out.append((pl.when(_in(at_lln)).then(pl.col("lln")).otherwise(cut) if at_lln else cut).alias(f"_cut{grade}"))
    return out


def _grade_of(value: pl.Expr) -> pl.Expr:
    """CTCAE grade of ``value`` (the cut-offs are the ``_cut`` columns). A '<limit' value (``blq``) lies just
    below its limit, so it is in a band whose cut-off equals the limit."""

    def below(g: int) -> pl.Expr:
        cut = pl.col(f"_cut{g}")
        return (value < cut) | (pl.col("blq") & (value == cut))

    grade = pl.when(below(GRADES[0])).then(GRADES[0])
    for g in GRADES[1:]:
        grade = grade.when(below(g)).then(g)
    return grade.when(pl.col("_cut1").is_not_null()).then(0).cast(pl.Int8)


def _transfusion_items(plan: dict[str, tuple[str, _Term]]) -> dict[str, str]:
    """Transfusion item -> the lineage it supports."""
    return {t.transfusion.item: n for n, (_, t) in plan.items() if t.transfusion is not None}


def _transfusions(events: pl.DataFrame, plan: dict[str, tuple[str, _Term]]) -> pl.DataFrame:
    """patient_id, lineage, tx_t: every transfusion given (value > 0), labelled with the lineage it supports."""
    items = _transfusion_items(plan)
    return events.filter(pl.col("item").is_in(list(items)) & (pl.col("num") > 0)).select(
        "patient_id",
        pl.col("item").cast(pl.String).replace_strict(items, return_dtype=LINEAGE).alias("lineage"),
        pl.col("t").alias("tx_t"),
    )


def _with_transfused(
    labs: pl.DataFrame, events: pl.DataFrame, plan: dict[str, tuple[str, _Term]], config: CytopeniaConfig
) -> pl.DataFrame:
    """``transfused``: a transfusion for the row's lineage within the configured hours before or after it.
    Both frames come from events sorted by patient then t, so each (patient, lineage) group is sorted by
    time, which is all the as-of joins need; they keep the row order."""
    # One integer key per (patient, lineage) joins faster than the two columns.
    key = (
        pl.col("patient_id").to_physical().cast(pl.UInt64) * len(LINEAGES)
        + pl.col("lineage").to_physical().cast(pl.UInt64)
    ).alias("_key")
    transfusions = _transfusions(events, plan).select(key, "tx_t")
    labs = labs.with_columns(key)
    for direction, name in (("backward", "tx_before"), ("forward", "tx_after")):
        labs = labs.join_asof(
            transfusions.rename({"tx_t": name}),
            left_on="t",
            right_on=name,
            by="_key",
            strategy=direction,
            check_sortedness=False,
        )
    near = ((pl.col("t") - pl.col("tx_before")) * HOURS_PER_DAY <= config.transfusion_hours_before) | (
        (pl.col("tx_after") - pl.col("t")) * HOURS_PER_DAY <= config.transfusion_hours_after
    )
    supported = [n for n, (_, t) in plan.items() if t.transfusion is not None]
    return labs.with_columns(pl.when(_in(supported)).then(near.fill_null(False)).alias("transfused")).drop(
        "_key", "tx_before", "tx_after"
    )


def _sorted_in_time(events: pl.DataFrame) -> pl.DataFrame:
    """The events sorted by t within each patient (normalise_events already gives them so: then a no-op)."""
    backwards = (pl.col("t") < pl.col("t").shift()) & (pl.col("patient_id") == pl.col("patient_id").shift())
    if events.select(backwards.any()).item():
        return events.sort("patient_id", "t", maintain_order=True)
    return events


def grade_cytopenias(
    events: pl.DataFrame, config: CytopeniaConfig, patients: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One row per ``anc``/``plt``/``hgb``/``alc``/``wbc`` value of every patient, with its CTCAE grade.

    Parameters
    ----------
    events:
        Canonical events (``NormalisedEvents.events``), sorted by patient then ``t``.
    config:
        The cytopenia section of the grading config.
    patients:
        ``NormalisedEvents.patients``; only read for ``sex`` when ``config.lln_reference_by_sex`` is set.

    Returns
    -------
    pl.DataFrame
        Columns of :data:`GRADED_SCHEMA`, in the order of ``events``: ``patient_id``, ``t``, ``lineage``,
        ``value`` (canonical unit; the quantification limit when ``blq``), ``blq``, ``lln`` (the LLN used)
        and ``lln_source`` (``row``/``reference``), ``grade`` (Int8, null = cannot grade), ``rule`` (a rule
        id of the criteria file), ``missing`` ('' or what would decide the grade: ``lln``, ``quantified
        value``; ``term not in CTCAE v6.0`` for v6.0 lymphocytes), ``scale`` (``ctcae5``/``ctcae6``, the
        version this value was graded under) and ``transfused`` (hgb/plt; null for the other lineages).
    """
    plan = _plan(config)
    # The counts and transfusions are a small part of the batch: one filter, then the order check and the
    # steps below read only them (a stable sort commutes with the filter).
    events = _sorted_in_time(events.filter(pl.col("item").is_in([*LINEAGES, *_transfusion_items(plan)])))
    labs = events.filter(
        pl.col("item").is_in(LINEAGES) & (pl.col("num").is_not_null() | pl.col("blq").fill_null(False))
    ).select(
        "patient_id",
        "t",
        _lineage_of_item(events.schema["item"]).alias("lineage"),
        pl.coalesce(pl.col("num"), pl.col("lloq")).alias("value"),
        pl.col("blq").fill_null(False),
        pl.col("lln").alias("lln_row"),
    )
    by_sex = bool(config.lln_reference_by_sex) and patients is not None
    if by_sex:
        labs = labs.with_columns(per_patient(patients, "sex", rows=labs.height))
    labs = labs.with_columns(_lln(config, by_sex).alias("lln"))
    labs = _with_transfused(labs, events, plan, config)

    labs = labs.with_columns(_cut_columns(plan))
    # The grade at 0 is the most severe a value below its quantification limit could have.
    labs = labs.with_columns(_grade_of(pl.col("value")).alias("numeric_grade"), _grade_of(pl.lit(0.0)).alias("worst"))
    tx_grade = _by_lineage(
        {n: t.transfusion.grade for n, (_, t) in plan.items() if t.transfusion and t.transfusion.grade}, pl.Int8
    )
    numeric = pl.col("numeric_grade")
    raised = pl.lit(config.transfusion_raises_grade) & pl.col("transfused").fill_null(False) & tx_grade.is_not_null()
    labs = labs.with_columns((raised & (numeric.is_null() | (numeric < tx_grade))).alias("raised"))
    labs = labs.with_columns(pl.when(pl.col("raised")).then(tx_grade).otherwise(numeric).alias("grade"))

    grade = pl.col("grade")
    not_graded = _in([n for n, (_, t) in plan.items() if t.not_graded_rule])
    # Without a grade (and a term to grade) only the LLN can be missing: every other cut-off is fixed.
    state = (
        pl.when(not_graded)
        .then(_NOT_GRADED)
        .when(pl.col("raised"))
        .then(_RAISED)
        .otherwise(grade.fill_null(_NEEDS_LLN))
    )
    unresolved_blq = pl.col("blq") & ~not_graded & (grade.is_null() | (grade < pl.col("worst"))).fill_null(False)
    missing = (
        pl.when(not_graded)
        .then(len(_MISSING) - 1)
        .otherwise((state == _NEEDS_LLN).cast(pl.UInt8) + 2 * unresolved_blq.cast(pl.UInt8))
    )
    return labs.select(
        "patient_id",
        "t",
        "lineage",
        "value",
        "blq",
        "lln",
        pl.when(pl.col("lln_row").is_not_null())
        .then(pl.lit("row"))
        .when(pl.col("lln").is_not_null())
        .then(pl.lit("reference"))
        .cast(LLN_SOURCE)
        .alias("lln_source"),
        "grade",
        pl.lit(_rule_table(plan))
        .gather(pl.col("lineage").to_physical().cast(pl.UInt32) * _STATES + state)
        .alias("rule"),
        pl.lit(pl.Series(_MISSING, dtype=pl.String)).gather(missing).alias("missing"),
        _by_lineage({n: s for n, (s, _) in plan.items()}, SCALE).alias("scale"),
        "transfused",
    ).cast(GRADED_SCHEMA)


def worst_cytopenia_grades(graded: pl.DataFrame) -> pl.DataFrame:
    """Per patient and lineage: the worst grade, when it was first reached, and how many values there were.

    ``unresolved`` counts values whose grade is null or only a lower bound (``missing`` not empty): while it
    is above 0 the worst grade is itself a lower bound.
    """
    grade = pl.col("grade")
    return graded.group_by("patient_id", "lineage", maintain_order=True).agg(
        pl.col("scale").first(),
        grade.max().alias("worst_grade"),
        pl.col("t").filter(grade == grade.max()).min().alias("worst_t"),
        pl.len().alias("values"),
        (grade.is_null() | (pl.col("missing") != "")).sum().alias("unresolved"),
    )
