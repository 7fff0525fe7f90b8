"""Assessment facts: one row per (patient, time) query, one column per named fact that a pack rule may read.

Pure and column-wise: the grades come from the engine's :class:`~tocsin.core.engine.GradingResult`, the doses
and their repeat limits from :func:`tocsin.core.dosing.administration_limits_batch`, the steroid exposure
from the canonical events with the equivalence table (criteria.md §6). Times are days since infusion.

Facts (``FACT_DESCRIPTIONS`` holds the wording shown in docs/assess.md):

* ``crs_grade`` / ``icans_grade`` — the grade of the latest *graded* assessment at or before ``at`` (an
  assessment the engine could not grade is skipped, so a drug row without vitals does not hide the last
  grade); null when none. ``crs_grade_age_hours`` says how old that assessment is.
* ``crs_active`` / ``icans_active`` — that grade is >= 1 (null when the grade is null).
* ``hours_at_current_crs_grade`` / ``..._icans_grade`` — hours since the first of the consecutive graded
  assessments at the current grade.
* ``crs_hypotension`` / ``crs_hypoxia`` — the latest CRS assessment graded hypotension / hypoxia >= 1.
* ``weight``, ``age_years``, ``day`` (= ``at``).
* Per drug of the drug table that the events can record (``<drug>`` = tocilizumab, dexamethasone, ...):
  ``<drug>_doses_given``, ``<drug>_doses_24h``, ``<drug>_doses_left``, ``<drug>_next_allowed_at``,
  ``<drug>_allowed_now``, ``<drug>_limit_reason``, ``hours_since_last_<drug>``.
* ``steroid_mp_eq_mg_24h`` (methylprednisolone-equivalent mg in the last 24 h), ``steroid_mp_eq_mg_total``,
  ``days_on_steroids`` (days with a systemic dose), ``on_steroids`` (a dose in the last 24 h).
* ``anc`` / ``plt`` — the latest absolute neutrophil / platelet count (x10^9/L) at or before ``at``, null when
  none or older than ``SituationConfig.cytopenia_lookback_days`` (a stale count must not trigger G-CSF or a
  TPO-RA); ``g_csf_given`` — a G-CSF dose (``g_csf`` or an item counted as it, pegfilgrastim) recorded from
  day 0 up to ``at`` (refractoriness to G-CSF).

Other modules (e.g. the situation detectors) add their own fact columns to the same frame by joining on
``patient_id, at``; a pack may name any column.

References: repeat limits docs/dosing.md (ASCO 2021 doi:10.1200/JCO.21.01992; NCCN v2.2026 CART-6); steroid
equivalents criteria.md §6 (PMC4369706).
"""

from __future__ import annotations

import polars as pl

from tocsin.config import SteroidConfig
from tocsin.core.situation import situation_facts
from tocsin.core.dosing import administration_limits_batch
from tocsin.core.engine import GradingResult, ToxicityResult
from tocsin.core.steroid_exposure import mp_factors
from tocsin.drugs import DrugTable, load_drugs, load_steroid_equivalence
from tocsin.vocabulary import load_vocabulary

PID = "patient_id"
#: The items of ``g_csf_given``: filgrastim and the items counted as it (pegfilgrastim).
G_CSF_ITEMS = load_vocabulary().counted_with("g_csf")
FACT_DESCRIPTIONS: dict[str, str] = {
    "day": "the query time, days since infusion",
    "crs_grade": "grade of the latest graded CRS assessment at or before the time (null: none)",
    "icans_grade": "grade of the latest graded ICANS assessment at or before the time (null: none)",
    "crs_active": "crs_grade >= 1",
    "icans_active": "icans_grade >= 1",
    "crs_grade_age_hours": "hours since that CRS assessment",
    "icans_grade_age_hours": "hours since that ICANS assessment",
    "hours_at_current_crs_grade": "hours since the CRS grade became the current one",
    "hours_at_current_icans_grade": "hours since the ICANS grade became the current one",
    "crs_hypotension": "the latest CRS assessment graded hypotension",
    "crs_hypoxia": "the latest CRS assessment graded hypoxia",
    "weight": "body weight, kg",
    "age_years": "age, years",
    "steroid_mp_eq_mg_24h": "systemic corticosteroid in the last 24 h, methylprednisolone-equivalent mg",
    "steroid_mp_eq_mg_total": "systemic corticosteroid since infusion (and before), MP-equivalent mg",
    "days_on_steroids": "days with at least one systemic corticosteroid dose, up to the time",
    "on_steroids": "a systemic corticosteroid dose in the last 24 h",
    "anc": "latest absolute neutrophil count, x10^9/L (null when older than the cytopenia lookback)",
    "plt": "latest platelet count, x10^9/L (null when older than the cytopenia lookback)",
    "g_csf_given": "a G-CSF dose (filgrastim or pegfilgrastim) recorded from day 0 up to the time",
}
_LIMIT_FACTS = {
    "doses_given": "{d}_doses_given",
    "doses_last_24h": "{d}_doses_24h",
    "doses_left": "{d}_doses_left",
    "next_allowed_at": "{d}_next_allowed_at",
    "allowed_now": "{d}_allowed_now",
    "reason": "{d}_limit_reason",
    "hours_since_last": "hours_since_last_{d}",
}


def _grade_facts(queries: pl.DataFrame, tox: ToxicityResult, name: str) -> pl.DataFrame:
    """Latest graded assessment at or before each query, and when its grade run began."""
    extra = [c for c in ("g_hypotension", "g_hypoxia") if name == "crs" and c in tox.timeline.columns]
    graded = (
        tox.timeline.filter(pl.col("grade").is_not_null())
        .select(pl.col(PID).cast(pl.String), "t", pl.col("grade").cast(pl.Int64), *extra)
        .sort(PID, "t")
        .with_columns(pl.col("grade").rle_id().over(PID).alias("_run"))
        .with_columns(pl.col("t").min().over(PID, "_run").alias("_run_start"))
    )
    joined = queries.sort("at").join_asof(
        graded.sort("t"), left_on="at", right_on="t", by=PID, strategy="backward", check_sortedness=False
    )
    grade = pl.col("grade")
    columns = [
        grade.alias(f"{name}_grade"),
        (grade >= 1).alias(f"{name}_active"),
        ((pl.col("at") - pl.col("t")) * 24).alias(f"{name}_grade_age_hours"),
        ((pl.col("at") - pl.col("_run_start")) * 24).alias(f"hours_at_current_{name}_grade"),
    ]
    if "g_hypotension" in extra:
        columns.append((pl.col("g_hypotension") >= 1).alias("crs_hypotension"))
    if "g_hypoxia" in extra:
        columns.append((pl.col("g_hypoxia") >= 1).alias("crs_hypoxia"))
    return joined.select("_q", *columns)


def _steroid_facts(queries: pl.DataFrame, events: pl.DataFrame, config: SteroidConfig) -> pl.DataFrame:
    """Systemic corticosteroid exposure up to each query (same conventions as tocsin.core.steroid_exposure)."""
    factors = mp_factors(config, load_steroid_equivalence())
    route = pl.col("route") if "route" in events.columns else pl.lit(None, pl.String)
    doses = events.filter(
        pl.col("item").cast(pl.String).is_in(list(factors)) & ~route.is_in(config.excluded_routes).fill_null(False)
    ).select(
        pl.col(PID).cast(pl.String),
        "t",
        (pl.col("num") * pl.col("item").cast(pl.String).replace_strict(factors, return_dtype=pl.Float64)).alias("_mp"),
    )
    recent = pl.col("at") - pl.col("t") < 1
    per_query = (
        queries.join(doses, on=PID, how="inner")
        .filter(pl.col("t") <= pl.col("at"))
        .group_by("_q")
        .agg(
            pl.col("_mp").filter(recent).sum().alias("steroid_mp_eq_mg_24h"),
            pl.col("_mp").sum().alias("steroid_mp_eq_mg_total"),
            pl.col("t").floor().n_unique().cast(pl.Int64).alias("days_on_steroids"),
            recent.any().alias("on_steroids"),
        )
    )
    return (
        queries.select("_q")
        .join(per_query, on="_q", how="left")
        .with_columns(
            pl.col("steroid_mp_eq_mg_24h", "steroid_mp_eq_mg_total").fill_null(0.0),
            pl.col("days_on_steroids").fill_null(0),
            pl.col("on_steroids").fill_null(False),
        )
    )


def _count_facts(queries: pl.DataFrame, events: pl.DataFrame, lookback_days: float) -> pl.DataFrame:
    """Latest ANC and platelet count within the lookback, and whether G-CSF was given since infusion."""
    item = pl.col("item").cast(pl.String)
    out = queries.select("_q")
    for lineage in ("anc", "plt"):
        # A below-quantification count has no value: it is skipped rather than read as its limit.
        counts = (
            events.filter((item == lineage) & pl.col("num").is_not_null())
            .select(pl.col(PID).cast(pl.String), "t", "num")
            .sort("t", "num")
        )
        latest = queries.sort("at").join_asof(
            counts, left_on="at", right_on="t", by=PID, strategy="backward", check_sortedness=False
        )
        recent = pl.when(pl.col("at") - pl.col("t") <= lookback_days).then(pl.col("num"))
        out = out.join(latest.select("_q", recent.alias(lineage)), on="_q", how="left")
    first_g_csf = (
        events.filter(item.is_in(G_CSF_ITEMS) & (pl.col("t") >= 0))
        .group_by(pl.col(PID).cast(pl.String))
        .agg(pl.col("t").min().alias("_g_csf_first"))
    )
    given = queries.join(first_g_csf, on=PID, how="left").select(
        "_q", (pl.col("_g_csf_first") <= pl.col("at")).fill_null(False).alias("g_csf_given")
    )
    return out.join(given, on="_q", how="left")


def recordable_drugs(events: pl.DataFrame, drugs: DrugTable) -> list[str]:
    """Drugs of the table whose administrations the events can hold (an item of their vocabulary)."""
    dtype = events.schema.get("item")
    items = set(dtype.categories.to_list()) if isinstance(dtype, pl.Enum) else None
    return [d.id for d in drugs.drugs if d.id not in drugs.awaiting_vocabulary and (items is None or d.id in items)]


def assessment_facts(
    result: GradingResult,
    events: pl.DataFrame,
    queries: pl.DataFrame,
    *,
    drugs: DrugTable | None = None,
    steroids: SteroidConfig | None = None,
) -> pl.DataFrame:
    """The named facts at every query row (``patient_id``, ``at`` in days since infusion), in query order.

    Parameters
    ----------
    result : the engine's grades for the patients (``grade_normalised``).
    events : the canonical events they were graded from (doses and steroids are read from them).
    queries : ``patient_id``, ``at`` (days).
    drugs : the drug table (default: the packaged one); its repeat limits give the dose facts.
    steroids : the equivalence choices (default: ``result.config.steroids``).

    Returns ``patient_id, at`` and the fact columns listed in the module docstring.

    Example
    -------
    >>> import polars as pl
    >>> from tocsin.config import GradingConfig
    >>> from tocsin.core.engine import grade_normalised
    >>> from tocsin.core.events import normalise_events
    >>> from tocsin.vocabulary import load_vocabulary
    >>> raw = pl.DataFrame({"patient_id": ["P"] * 3, "day": ["0", "1", "1.1"],
    ...     "item": ["infusion", "temperature", "tocilizumab"], "value": ["axi-cel", "39", "8"],
    ...     "unit": ["", "Cel", "mg/kg"], "file": "x", "line": [2, 3, 4]})
    >>> n = normalise_events(raw, load_vocabulary())
    >>> facts = assessment_facts(grade_normalised(n, GradingConfig()), n.events,
    ...                          pl.DataFrame({"patient_id": ["P"], "at": [1.2]}))
    >>> facts.select("crs_grade", "tocilizumab_doses_given", "tocilizumab_allowed_now").row(0)
    (1, 1, False)
    """
    drugs = drugs or load_drugs()
    steroids = steroids or result.config.steroids
    q = queries.select(pl.col(PID).cast(pl.String), pl.col("at").cast(pl.Float64)).with_row_index("_q")
    ev = events.with_columns(pl.col(PID).cast(pl.String))
    patients = result.patients.select(pl.col(PID).cast(pl.String), "weight", "age_years")

    frames = [
        q.join(patients, on=PID, how="left").with_columns(pl.col("at").alias("day")),
        _grade_facts(q, result.crs, "crs"),
        _grade_facts(q, result.icans, "icans"),
        _steroid_facts(q, ev, steroids),
        _count_facts(q, ev, result.config.situation.cytopenia_lookback_days),
        # Response to tocilizumab, infection, expansion phase, prolonged cytopenia (docs/situation.md).
        situation_facts(result, events, q.select(PID, "at")).drop(PID, "at").with_row_index("_q"),
    ]
    for drug in recordable_drugs(events, drugs):
        if drugs.drug(drug).rules().min_interval_hours is None:
            # No repeat rule in the sources (siltuximab): nothing to time; the suggestion says so.
            continue
        limits = administration_limits_batch(events, q.select(PID, "at"), drug, table=drugs)
        frames.append(
            limits.with_row_index("_q").select(
                "_q", *(pl.col(c).alias(f.format(d=drug)) for c, f in _LIMIT_FACTS.items())
            )
        )
    out = frames[0]
    for frame in frames[1:]:
        out = out.join(frame, on="_q", how="left")
    return out.sort("_q").drop("_q")
