"""Corticosteroid exposure: daily and cumulative dose as methylprednisolone- and dexamethasone-equivalent mg.

Columnar over all patients of a batch (DESIGN principle 2). The equivalence table is data
(``tocsin/data/steroid_equivalence.yaml``: hydrocortisone 20 = cortisone 25 = prednisone 5 = prednisolone 5 =
methylprednisolone 4 = dexamethasone 0.75 mg; ``../shared/clinical/criteria.md`` §6), the dexamethasone value
is a config parameter (:class:`tocsin.config.SteroidConfig`, 0.6 mg the documented alternative).

Rules (docs/dosing.md):

* Every steroid row of the canonical events is a dose; its ``num`` is already mg (a mg/kg entry was multiplied
  by the weight on entry), so the unit of the input never changes the exposure.
* Rows given by an excluded route (intrathecal, topical, inhaled by default) are not systemic exposure and are
  only counted in ``excluded_doses``. A row without a route counts as systemic: steroids for CRS/ICANS are IV
  or PO, and IV and PO are treated as equivalent (criteria.md §6).
* A dose without a known mg amount (mg/kg without a weight) counts as a dose and a steroid day but adds nothing
  to the mg totals, which are then lower bounds: ``doses_without_mg`` > 0 and ``complete`` is false.
* The day of a dose is ``floor(t)`` (day 0 = the infusion day). ``days_on_steroids`` counts the days with at
  least one systemic dose (dose days, not the span from first to last).
* Before/after a split time (e.g. the CAR-T expansion peak): a dose at ``t < t_split`` is before, at or after
  ``t_split`` after. Patients without a split time get null before/after columns.
* Hydrocortisone is included (also at physiologic replacement doses) and flagged: ``hydrocortisone_mg``.

Reference: Strati P et al., Blood 2021;137:3272, doi:10.1182/blood.2020008865 (cumulative dexamethasone-
equivalent dose after axi-cel); equivalence table PMC4369706.

Example
-------
>>> import polars as pl
>>> events = pl.DataFrame({"patient_id": ["A", "A", "A"], "t": [2.2, 2.7, 3.1],
...     "item": ["dexamethasone", "dexamethasone", "methylprednisolone"], "num": [10.0, 10.0, 1000.0],
...     "route": ["iv", None, "iv"]})
>>> out = steroid_exposure(events)
>>> out.summary.select("dex_eq_mg", "mp_eq_mg", "days_on_steroids").row(0)
(207.5, 1106.6666666666667, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tocsin.config import SteroidConfig
from tocsin.core.dosing import SUPPORTS_JUDGEMENT
from tocsin.drugs import SteroidEquivalence, load_steroid_equivalence

#: Columns of :attr:`SteroidExposure.daily`.
DAILY_COLUMNS = ("patient_id", "day", "doses", "doses_without_mg", "mp_eq_mg", "dex_eq_mg")
#: Columns of :attr:`SteroidExposure.summary`.
SUMMARY_COLUMNS = (
    "patient_id",
    "doses",
    "doses_without_mg",
    "excluded_doses",
    "complete",
    "days_on_steroids",
    "first_dose_at",
    "last_dose_at",
    "mp_eq_mg",
    "dex_eq_mg",
    "hydrocortisone_mg",
    "t_split",
    "mp_eq_before_mg",
    "mp_eq_after_mg",
    "dex_eq_before_mg",
    "dex_eq_after_mg",
)


@dataclass(frozen=True)
class SteroidExposure:
    """``daily``: one row per patient and day with a systemic dose; ``summary``: one row per patient of the
    events (zeros for patients without steroids); ``method``: the equivalence used (table version and source,
    the dexamethasone value, the excluded routes) so every figure names how it was computed."""

    daily: pl.DataFrame
    summary: pl.DataFrame
    method: dict
    note: str = SUPPORTS_JUDGEMENT


def mp_factors(config: SteroidConfig, table: SteroidEquivalence) -> dict[str, float]:
    """Methylprednisolone-equivalent mg per mg of each steroid (dexamethasone from the config)."""
    equivalent = {**table.equivalent_mg, "dexamethasone": config.dexamethasone_equivalent_mg}
    reference = equivalent[table.reference_drug]
    return {drug: reference / mg for drug, mg in equivalent.items()}


def steroid_exposure(
    events: pl.DataFrame,
    config: SteroidConfig | None = None,
    splits: pl.DataFrame | None = None,
    *,
    table: SteroidEquivalence | None = None,
) -> SteroidExposure:
    """Daily and cumulative systemic corticosteroid exposure of every patient in ``events``.

    Parameters
    ----------
    events : canonical events (``patient_id``, ``t`` days, ``item``, ``num`` mg, optional ``route``).
    config : equivalence and route choices (default :class:`SteroidConfig`).
    splits : optional ``patient_id, t_split`` (days), e.g. the expansion peak from the kinetics module, for the
        exposure before and after it.
    table : the equivalence table (default: the packaged one).

    Returns :class:`SteroidExposure` with ``daily`` (:data:`DAILY_COLUMNS`) and ``summary``
    (:data:`SUMMARY_COLUMNS`).
    """
    config = config or SteroidConfig()
    table = table or load_steroid_equivalence()
    factors = mp_factors(config, table)
    mp_to_dex = config.dexamethasone_equivalent_mg / table.equivalent_mg[table.reference_drug]

    route = pl.col("route") if "route" in events.columns else pl.lit(None, pl.Utf8)
    rows = (
        events.filter(pl.col("item").cast(pl.Utf8).is_in(list(factors)))
        .select(
            "patient_id",
            "t",
            pl.col("item").cast(pl.Utf8).alias("drug"),
            "num",
            route.is_in(config.excluded_routes).fill_null(False).alias("_excluded"),
        )
        .with_columns(
            (pl.col("num") * pl.col("drug").replace_strict(factors, return_dtype=pl.Float64)).alias("mp_eq_mg"),
            pl.col("t").floor().cast(pl.Int64).alias("day"),
        )
        .with_columns((pl.col("mp_eq_mg") * mp_to_dex).alias("dex_eq_mg"))
    )
    systemic = rows.filter(~pl.col("_excluded"))
    daily = (
        systemic.group_by("patient_id", "day")
        .agg(
            pl.len().cast(pl.Int64).alias("doses"),
            pl.col("num").is_null().sum().cast(pl.Int64).alias("doses_without_mg"),
            pl.col("mp_eq_mg").sum(),
            pl.col("dex_eq_mg").sum(),
        )
        .sort(pl.col("patient_id").cast(pl.Utf8), "day")
        .select(DAILY_COLUMNS)
    )

    if splits is not None:
        split = splits.select(
            pl.col("patient_id").cast(events.schema["patient_id"]), pl.col("t_split").cast(pl.Float64)
        )
        systemic = systemic.join(split, on="patient_id", how="left")
    else:
        systemic = systemic.with_columns(pl.lit(None, pl.Float64).alias("t_split"))
    before = pl.col("t") < pl.col("t_split")

    def part(column: str, when: pl.Expr) -> pl.Expr:
        # null without a split time: "unknown", not "no exposure"
        return pl.when(pl.col("t_split").first().is_not_null()).then(pl.col(column).filter(when).sum())

    per_patient = systemic.group_by("patient_id").agg(
        pl.len().cast(pl.Int64).alias("doses"),
        pl.col("num").is_null().sum().cast(pl.Int64).alias("doses_without_mg"),
        pl.col("day").n_unique().cast(pl.Int64).alias("days_on_steroids"),
        pl.col("t").min().alias("first_dose_at"),
        pl.col("t").max().alias("last_dose_at"),
        pl.col("mp_eq_mg").sum(),
        pl.col("dex_eq_mg").sum(),
        pl.col("num").filter(pl.col("drug") == "hydrocortisone").sum().alias("hydrocortisone_mg"),
        part("mp_eq_mg", before).alias("mp_eq_before_mg"),
        part("mp_eq_mg", ~before).alias("mp_eq_after_mg"),
        part("dex_eq_mg", before).alias("dex_eq_before_mg"),
        part("dex_eq_mg", ~before).alias("dex_eq_after_mg"),
    )
    excluded = (
        rows.filter(pl.col("_excluded")).group_by("patient_id").agg(pl.len().cast(pl.Int64).alias("excluded_doses"))
    )
    patients = events.select(pl.col("patient_id").unique(maintain_order=True))
    summary = patients.join(per_patient, on="patient_id", how="left").join(excluded, on="patient_id", how="left")
    if splits is not None:
        summary = summary.join(split, on="patient_id", how="left")
        # A patient with a split time but no steroid has none before and none after it.
        summary = summary.with_columns(
            pl.when(pl.col("t_split").is_not_null()).then(pl.col(c).fill_null(0.0)).alias(c)
            for c in ("mp_eq_before_mg", "mp_eq_after_mg", "dex_eq_before_mg", "dex_eq_after_mg")
        )
    else:
        summary = summary.with_columns(pl.lit(None, pl.Float64).alias("t_split"))
    summary = summary.with_columns(
        pl.col("doses", "doses_without_mg", "excluded_doses", "days_on_steroids").fill_null(0),
        pl.col("mp_eq_mg", "dex_eq_mg", "hydrocortisone_mg").fill_null(0.0),
    ).with_columns((pl.col("doses_without_mg") == 0).alias("complete"))

    method = {
        "equivalence_version": table.version,
        "equivalence_source": table.source,
        "equivalence_ref": table.ref,
        "dexamethasone_equivalent_mg": config.dexamethasone_equivalent_mg,
        "mp_equivalent_mg_per_mg": factors,
        "excluded_routes": list(config.excluded_routes),
        "null_route": "systemic",
    }
    return SteroidExposure(daily=daily, summary=summary.select(SUMMARY_COLUMNS), method=method)
