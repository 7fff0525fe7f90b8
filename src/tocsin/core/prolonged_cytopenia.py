"""Prolonged hematologic toxicity (PHT) at day 28, recovery and biphasic cytopenia, for a whole batch at once.

Seed 003: Wang J et al., Front Immunol 2023;14:1139559, doi:10.3389/fimmu.2023.1139559 ("patients with
anemia, thrombocytopenia, and/or neutropenia on D28 were considered to be experiencing PHT"; recovery =
back to grade <= 2 without transfusion or G-CSF; complete recovery = normal; recurrence after recovery).
The absolute recovery definitions are those of EHA/EBMT 2023 (doi:10.1182/blood.2023020578; neutrophils
>= 0.5 x10^9/L on 3 measurements, CIBMTR) and T-ICAHT 2025 (doi:10.1182/blood.2025028833; platelets >= 20
x10^9/L untransfused for 7 days). Cut-offs and rule ids are data (``data/criteria/pht_wang2023.yaml``,
including the CTCAE v5.0 cytopenia bands this module grades with); local decisions are
:class:`tocsin.config.ProlongedCytopeniaConfig`; ``docs/icaht.md`` explains both.

Per patient and lineage (neutrophils ``anc``, platelets ``plt``, hemoglobin ``hgb``), on the daily lowest
values (day = ``floor(t)``, day 0 = infusion) observed before the end of observation (progression or next
therapy as configured, last contact, death):

* landmark value: the day nearest to ``landmark_day`` within ``landmark_window_days`` (ties: the lower
  value), graded by CTCAE v5.0 (grade 1 below the row's LLN, else the configured LLN); cytopenic when the
  grade is at least ``min_grade``. PHT = any cytopenic lineage; uni-, bi- or trilineage by their number;
  unknown (null) when no lineage is cytopenic but one has no landmark value.
* a daily value *meets* a recovery definition when it is at or above its level and no support item of the
  definition was given on that day or in the days before it allows; a recovery is the first of the
  required consecutive measurements that meet it, after a value that did not (so there was something to
  recover from). ``recovery_day_threshold`` / ``_grade_le_2`` / ``_normal`` are the three definitions;
  ``recovered`` and the biphasic watch use the configured one.
* second fall: after the recovery run, a value that no longer meets the definition and has at least
  ``second_fall_min_grade``: biphasic (recurrent) cytopenia.

Example
-------
>>> import polars as pl
>>> from tocsin.config import ProlongedCytopeniaConfig
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> rows = [("0", "infusion", "axi-cel", ""), ("14", "anc", "0.3", "10*9/L"), ("21", "anc", "1.6", "10*9/L"),
...     ("28", "anc", "0.8", "10*9/L"), ("28", "plt", "120", "10*9/L"), ("28", "hgb", "9.1", "g/dL")]
>>> raw = pl.DataFrame({"patient_id": "P", "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": "x", "line": list(range(2, 8))})
>>> out = prolonged_cytopenia(normalise_events(raw, load_vocabulary()).events, ProlongedCytopeniaConfig())
>>> out.select("pht", "pht_pattern", "pht_lineages", "anc_landmark_grade", "anc_recovery_day_grade_le_2",
...     "anc_second_fall_day", "biphasic").row(0)
(True, 'trilineage', 'neutropenia, thrombocytopenia, anemia', 3, 21, 28, True)
"""

from __future__ import annotations

import polars as pl

from tocsin.config import ProlongedCytopeniaConfig
from tocsin.core.cytopenia_ctcae import criteria_tables
from tocsin.core.icaht import observation_end, observation_end_items
from tocsin.core.lookup import per_patient
from tocsin.core.segments import (
    SEGMENT_START,
    cum_sum,
    distinct_in_runs,
    ffill,
    row_index,
    run_number,
    with_segment_start,
)
from tocsin.criteria import load_scale

PID = "patient_id"
SCALE = load_scale("pht_wang2023")
LINEAGES: list[dict] = list(SCALE.table("lineages"))
#: Recovery definitions, in output order.
DEFINITIONS = ("threshold", "grade_le_2", "normal")
_PATTERNS = {0: "none", 1: "unilineage", 2: "bilineage", 3: "trilineage"}
_SEGMENT_END = "_segment_end"


def _lln(item: str, config: ProlongedCytopeniaConfig) -> float:
    return {"anc": config.anc_lln, "plt": config.plt_lln, "hgb": config.hgb_lln}[item]


def _support_items() -> list[str]:
    return sorted({s for lineage in LINEAGES for s in lineage["support_items"]})


def _ctcae_v5_bands() -> dict[str, list[dict[str, float]]]:
    """Per lineage, the numeric CTCAE v5.0 bands (grade, below) of the cytopenia criteria data, worst first
    (grade 1 "< LLN" is applied apart, with the day's LLN)."""
    tables = criteria_tables("ctcae5")
    return {
        item: [{"grade": b.grade, "below": float(b.below)} for b in tables[item].bands if b.below != "lln"]
        for item in (lineage["item"] for lineage in LINEAGES)
    }


def _ctcae_grade(value: pl.Expr, lln: pl.Expr) -> pl.Expr:
    """CTCAE v5.0 grade of a daily value of the row's lineage (``item`` column), bands from the data."""
    expr = pl.when(pl.lit(False)).then(pl.lit(0))
    for item, bands in _ctcae_v5_bands().items():
        for band in bands:
            expr = expr.when((pl.col("item") == item) & (value < band["below"])).then(pl.lit(band["grade"]))
    return expr.when(value < lln).then(pl.lit(1)).otherwise(pl.lit(0)).cast(pl.Int8)


def _by_item(values: dict[str, object], dtype: pl.DataType) -> pl.Expr:
    """A per-lineage constant (null for a lineage not in ``values``)."""
    return pl.col("item").replace_strict(values, default=None, return_dtype=dtype)


def _recovery_level(definition: str) -> pl.Expr:
    """The level a daily count must reach to meet ``definition`` (null: it does not apply to the lineage)."""
    if definition == "normal":
        return pl.col("lln")
    if definition == "threshold":
        levels = {item: float(rule["at_least"]) for item, rule in SCALE.table("threshold_recovery").items()}
    else:  # grade <= 2: at or above the grade-3 cut-off
        levels = {
            item: float(next(b["below"] for b in bands if b["grade"] == 3))
            for item, bands in _ctcae_v5_bands().items()
        }
    return _by_item(levels, pl.Float64)


def _unsupported(definition: str, config: ProlongedCytopeniaConfig) -> pl.Expr:
    """No support item of the definition on the value's day or in the support-free days before it."""
    free = pl.lit(True)
    for lineage in LINEAGES:
        items, days = lineage["support_items"], config.support_free_days
        if definition == "threshold":
            rule = SCALE.table("threshold_recovery").get(lineage["item"], {})
            items, days = rule.get("support_items", []), rule.get("support_free_days", 0)
        for support in items:
            given = ((pl.col("day") - pl.col(f"_last_{support}")) <= days).fill_null(False)
            free = free & ~((pl.col("item") == lineage["item"]) & given)
    return free


def _segments(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    df = with_segment_start(df, keys)
    last = pl.any_horizontal([(pl.col(k) != pl.col(k).shift(-1)).fill_null(True) for k in keys])
    return df.with_columns(pl.when(last).then(row_index()).backward_fill().alias(_SEGMENT_END))


def _ahead(expr: pl.Expr, k: int) -> pl.Expr:
    """The value ``k`` rows later within the segment (null past its end)."""
    return pl.when(row_index() + k <= pl.col(_SEGMENT_END)).then(expr.shift(-k))


def _daily(events: pl.DataFrame, config: ProlongedCytopeniaConfig) -> pl.DataFrame:
    """Daily lowest value per patient and lineage from day 0 to the end of observation (``lln``: the day's
    highest LLN, else the configured one), with the last day each support item of the lineage was given
    (that day included); in blocks of one lineage, each in the order of the events (patient, then day)."""
    ends = observation_end(events, config.censor_at)
    # One pass over the batch for the counts and their support; each lineage then reads that small frame.
    relevant = events.filter(pl.col("item").is_in([*(lineage["item"] for lineage in LINEAGES), *_support_items()]))
    blocks = []
    for lineage in LINEAGES:
        item = lineage["item"]
        rows = relevant.filter((pl.col("item") == item) & pl.col("num").is_not_null() & (pl.col("t") >= 0))
        rows = (
            rows.select(PID, "t", "num", "lln")
            .with_columns(*per_patient(ends, "end_t", rows=rows.height))
            .filter(pl.col("end_t").is_null() | (pl.col("t") <= pl.col("end_t")))
            .with_columns(pl.col("t").floor().cast(pl.Int32).alias("day"), pl.col(PID).to_physical().alias("_pid"))
        )
        daily = (
            rows.group_by(run_number(pl.col("_pid"), pl.col("day")).alias("_k"), maintain_order=True)
            .agg(
                pl.col(PID).first(),
                pl.col("_pid").first(),
                pl.col("day").first(),
                pl.col("num").min().alias("value"),
                pl.col("lln").max().alias("lln"),
            )
            .drop("_k")
        )
        for support in lineage["support_items"]:
            given = (
                relevant.filter(pl.col("item") == support)
                .select(pl.col(PID).to_physical().alias("_pid"), pl.col("t").floor().cast(pl.Int32).alias("day"))
                .unique(maintain_order=True)
                .with_columns(pl.col("day").alias(f"_last_{support}"))
            )
            daily = daily.join_asof(given, on="day", by="_pid", strategy="backward", check_sortedness=False)
        blocks.append(daily.with_columns(pl.lit(item).alias("item"), pl.coalesce("lln", pl.lit(_lln(item, config)))))
    return _segments(pl.concat(blocks, how="diagonal_relaxed"), ["_pid", "item"])


def _qualifying(meets: pl.Expr, consecutive: int) -> tuple[pl.Expr, pl.Expr]:
    """This value and the next ``consecutive - 1`` values of the lineage meet; the day of the last of them."""
    ok = meets
    for k in range(1, consecutive):
        ok = ok & _ahead(meets, k).fill_null(False)
    return ok, _ahead(pl.col("day"), consecutive - 1)


def _meets(definition: str, config: ProlongedCytopeniaConfig) -> pl.Expr:
    """The daily value is at or above the definition's level, with no support item in its free days."""
    return (pl.col("value") >= _recovery_level(definition)).fill_null(False) & _unsupported(definition, config)


def _recovery_columns(definition: str, config: ProlongedCytopeniaConfig) -> list[pl.Expr]:
    """``_start_*`` (a recovery starts here: the required run of values meets the definition and an
    earlier value did not) and ``_end_*`` (day of the run's last value), from the ``_meets_*`` column."""
    meets = pl.col(f"_meets_{definition}")
    if definition == "threshold":
        ok, end = pl.lit(False), pl.lit(None, dtype=pl.Int32)
        for item, rule in SCALE.table("threshold_recovery").items():
            item_ok, item_end = _qualifying(meets, rule["consecutive"])
            ok = pl.when(pl.col("item") == item).then(item_ok).otherwise(ok)
            end = pl.when(pl.col("item") == item).then(item_end).otherwise(end)
    else:
        ok, end = _qualifying(meets, config.recovery_consecutive_values)
    missed = (~meets).cast(pl.Int32)
    failed_before = (cum_sum(missed) - missed) > 0
    return [
        (ok & failed_before).alias(f"_start_{definition}"),
        end.alias(f"_end_{definition}"),
    ]


def prolonged_cytopenia_lineages(events: pl.DataFrame, config: ProlongedCytopeniaConfig) -> pl.DataFrame:
    """One row per patient and lineage with a value from day 0 (``item`` anc / plt / hgb, ``term``).

    Columns: ``landmark_day``, ``landmark_value``, ``landmark_grade`` (CTCAE v5.0), ``landmark_supported``
    (a support item of the lineage in the support-free days before the landmark value), ``cytopenic``;
    ``nadir``, ``nadir_day``; ``recovery_day_threshold``, ``recovery_day_grade_le_2``, ``recovery_day_normal``;
    ``recovered`` and ``recovery_after_landmark_day`` (configured definition); ``second_fall_day``,
    ``biphasic``. Counts in 10*9/L, hemoglobin in g/dL, days since infusion. See :func:`prolonged_cytopenia`.
    """
    daily = _daily(events, config)
    daily = daily.with_columns(
        _ctcae_grade(pl.col("value"), pl.col("lln")).alias("grade"),
        (~_unsupported("grade_le_2", config)).alias("_supported"),
        *(_meets(definition, config).alias(f"_meets_{definition}") for definition in DEFINITIONS),
    )
    daily = daily.with_columns(expr for definition in DEFINITIONS for expr in _recovery_columns(definition, config))
    chosen, day = config.recovery, pl.col("day")
    start = pl.col(f"_start_{chosen}")
    first_start = start & (cum_sum(start.cast(pl.Int32)) == 1)
    after_recovery = day > ffill(pl.when(first_start).then(pl.col(f"_end_{chosen}")))
    fall = after_recovery & ~pl.col(f"_meets_{chosen}") & (pl.col("grade") >= config.second_fall_min_grade)
    # Conditions become columns first, so that the per-lineage aggregation is plain min / first.
    daily = daily.with_columns(
        *(pl.when(pl.col(f"_start_{d}")).then(day).alias(f"recovery_day_{d}") for d in DEFINITIONS),
        pl.when(start & (day >= config.landmark_day)).then(day).alias("recovery_after_landmark_day"),
        pl.when(fall).then(day).alias("second_fall_day"),
    )
    per_lineage = daily.group_by(SEGMENT_START, maintain_order=True).agg(
        pl.col(PID).first(),
        pl.col("item").first(),
        pl.col("value").min().alias("nadir"),
        *(pl.col(f"recovery_day_{d}").min() for d in DEFINITIONS),
        pl.col("recovery_after_landmark_day").min(),
        pl.col("second_fall_day").min(),
    )
    distance = (day - config.landmark_day).abs()
    # nearest day to the landmark, then the lower value; the nadir's first day
    landmark = (
        daily.filter(distance <= config.landmark_window_days)
        .sort(SEGMENT_START, distance, "value")
        .unique(SEGMENT_START, keep="first", maintain_order=True)
        .select(
            SEGMENT_START,
            day.alias("landmark_day"),
            pl.col("value").alias("landmark_value"),
            pl.col("grade").alias("landmark_grade"),
            pl.col("_supported").alias("landmark_supported"),
        )
    )
    nadir = (
        daily.join(per_lineage.select(SEGMENT_START, "nadir"), on=SEGMENT_START)
        .filter(pl.col("value") == pl.col("nadir"))
        .unique(SEGMENT_START, keep="first", maintain_order=True)
        .select(SEGMENT_START, day.alias("nadir_day"))
    )
    terms = {lineage["item"]: lineage["term"] for lineage in LINEAGES}
    out = per_lineage.join(landmark, on=SEGMENT_START, how="left", maintain_order="left").join(
        nadir, on=SEGMENT_START, how="left", maintain_order="left"
    )
    return out.select(
        PID,
        "item",
        pl.col("item").replace_strict(terms).alias("term"),
        "landmark_day",
        "landmark_value",
        "landmark_grade",
        "landmark_supported",
        (pl.col("landmark_grade") >= config.min_grade).alias("cytopenic"),
        "nadir",
        "nadir_day",
        *(f"recovery_day_{d}" for d in DEFINITIONS),
        pl.col(f"recovery_day_{chosen}").is_not_null().alias("recovered"),
        "recovery_after_landmark_day",
        "second_fall_day",
        pl.col("second_fall_day").is_not_null().alias("biphasic"),
    )


def _support_days(events: pl.DataFrame, config: ProlongedCytopeniaConfig) -> pl.DataFrame:
    supports = _support_items()
    given = events.filter(pl.col("item").is_in(supports) & (pl.col("t") >= 0))
    given = (
        given.with_columns(*per_patient(observation_end(events, config.censor_at), "end_t", rows=given.height))
        .filter(pl.col("end_t").is_null() | (pl.col("t") <= pl.col("end_t")))
        .select(PID, pl.col("item").cast(pl.Utf8), pl.col("t").floor().cast(pl.Int32).alias("day"))
        .unique()
    )
    after = pl.col("day") > config.landmark_day
    return given.group_by(PID).agg(
        *((pl.col("item") == s).sum().alias(f"{s}_days") for s in supports),
        *(((pl.col("item") == s) & after).sum().alias(f"{s}_days_after_landmark") for s in supports),
    )


def prolonged_cytopenia(events: pl.DataFrame, config: ProlongedCytopeniaConfig) -> pl.DataFrame:
    """PHT at the landmark day, lineages, recovery and biphasic cytopenia: one row per patient of ``events``.

    ``events`` are canonical events (:func:`tocsin.core.events.normalise_events`, sorted by patient and
    time). Columns:

    * ``pht`` (true / false / null = cannot be excluded), ``pht_rule`` (rule id of pht_wang2023),
      ``pht_lineage_count``, ``pht_pattern`` (none / unilineage / bilineage / trilineage),
      ``pht_lineages`` and ``pht_unknown_lineages`` (terms, comma-separated), ``biphasic``,
      ``biphasic_lineages``, ``recovery_definition``, ``recovery_rule``;
    * per lineage ``anc_`` / ``plt_`` / ``hgb_``: the columns of :func:`prolonged_cytopenia_lineages`;
    * support beside it: ``g_csf_days``, ``gm_csf_days``, ``platelet_transfusion_days``,
      ``rbc_transfusion_days``, ``epo_days``, ``tpo_ra_days`` and each ``*_days_after_landmark``.

    References: Wang 2023, doi:10.3389/fimmu.2023.1139559; EHA/EBMT 2023, doi:10.1182/blood.2023020578;
    T-ICAHT 2025, doi:10.1182/blood.2025028833; CTCAE v5.0 (criteria.md §3.1).
    """
    # One pass over the batch for every item PHT reads; the lineages and the support days read that small frame.
    items = [*(lineage["item"] for lineage in LINEAGES), *_support_items(), *observation_end_items(config.censor_at)]
    read = events.filter(pl.col("item").is_in(items))
    lineages = prolonged_cytopenia_lineages(read, config)
    patients = distinct_in_runs(events, PID)
    wide = patients
    value_columns = [c for c in lineages.columns if c not in (PID, "item", "term")]
    for lineage in LINEAGES:
        item = lineage["item"]
        part = lineages.filter(pl.col("item") == item).select(
            PID, *(pl.col(c).alias(f"{item}_{c}") for c in value_columns)
        )
        wide = wide.join(part, on=PID, how="left", maintain_order="left")

    def joined(flag: str) -> pl.Expr:
        names = [pl.when(pl.col(f"{ln['item']}_{flag}")).then(pl.lit(ln["term"])) for ln in LINEAGES]
        return pl.concat_str(names, separator=", ", ignore_nulls=True)

    cytopenic = pl.sum_horizontal(pl.col(f"{ln['item']}_cytopenic").fill_null(False) for ln in LINEAGES)
    unknown = pl.sum_horizontal(pl.col(f"{ln['item']}_landmark_grade").is_null() for ln in LINEAGES)
    unknown_terms = pl.concat_str(
        [pl.when(pl.col(f"{ln['item']}_landmark_grade").is_null()).then(pl.lit(ln["term"])) for ln in LINEAGES],
        separator=", ",
        ignore_nulls=True,
    )
    pht = pl.when(cytopenic > 0).then(True).when(unknown == 0).then(False)
    rule = pl.when(cytopenic > 0).then(pl.lit("PHT-DAY28")).when(unknown == 0).then(pl.lit("PHT-DAY28-NONE"))
    recovery_rule = {
        "threshold": ", ".join(rule["rule"] for rule in SCALE.table("threshold_recovery").values()),
        "grade_le_2": SCALE.table("grade_le_2_rule"),
        "normal": SCALE.table("normal_rule"),
    }[config.recovery]
    head = wide.select(
        PID,
        pht.alias("pht"),
        rule.otherwise(pl.lit("PHT-DAY28-UNKNOWN")).alias("pht_rule"),
        cytopenic.cast(pl.Int8).alias("pht_lineage_count"),
        pl.when(pht.is_not_null()).then(cytopenic.replace_strict(_PATTERNS, return_dtype=pl.Utf8)).alias("pht_pattern"),
        joined("cytopenic").alias("pht_lineages"),
        unknown_terms.alias("pht_unknown_lineages"),
        pl.any_horizontal(pl.col(f"{ln['item']}_biphasic").fill_null(False) for ln in LINEAGES).alias("biphasic"),
        joined("biphasic").alias("biphasic_lineages"),
        pl.lit(config.recovery).alias("recovery_definition"),
        pl.lit(recovery_rule).alias("recovery_rule"),
    )
    support = _support_days(read, config)
    support_columns = [c for c in support.columns if c != PID]
    return (
        head.join(wide, on=PID, how="left", maintain_order="left")
        .join(support, on=PID, how="left", maintain_order="left")
        .with_columns(pl.col(support_columns).fill_null(0).cast(pl.Int32))
    )
