"""Safe dose arithmetic: the mg dose of a drug for a patient, and when the next dose is allowed.

Pure and deterministic: the rules are the versioned drug table (``tocsin/data/drugs.yaml``, loaded by
:mod:`tocsin.drugs`; ``../shared/clinical/criteria.md`` §5), the administrations are the canonical events
(:func:`tocsin.core.events.normalise_events`), and "now" is always an argument.

* :func:`dose_for` — the dose for one weight and age: the band's mg/kg × weight or its fixed dose, never above
  the per-dose cap or the label maximum, rounded to the table's decimals (0.1 mg; no source prescribes vial
  rounding). Without a usable weight there is no mg dose — only the per-kg dose and "needs weight". Below the
  drug's minimum age the dose is refused with the reason. :func:`doses_for` is the same for a patient table.
* :func:`administration_limits_batch` — for every (patient, time) of a query frame, the doses of a drug given
  so far, and the earliest time the next one is allowed: the latest of *last dose + minimum interval* and
  *the time the rolling 24-h count drops below its cap*, or never once the total is used up.
  :func:`administration_limits` is the one-patient convenience on top of it.

Every result carries :data:`SUPPORTS_JUDGEMENT` so that adapters show it.

References: tocilizumab 8 mg/kg (12 mg/kg < 30 kg), <= 800 mg/dose, >= 8 h apart, <= 3 doses in 24 h,
<= 4 in total — RoActemra EU leaflet; Santomasso BD et al., ASCO guideline, J Clin Oncol 2021;39:3978,
doi:10.1200/JCO.21.01992; NCCN CAR T-cell toxicities v2.2026 CART-6. Other drugs: see ``drugs.yaml``.

Example
-------
>>> from tocsin.core.dosing import dose_for
>>> calc = dose_for("tocilizumab", weight_kg=120, age_years=54)
>>> calc.dose_mg, calc.cap_applied, calc.dose_basis
(800.0, True, '8 mg/kg × 120 kg = 960 mg → 800 mg (per-dose cap 800 mg applied)')
>>> dose_for("tocilizumab", weight_kg=None, age_years=54).needs
('weight',)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import polars as pl

from tocsin.drugs import AdministrationRules, DoseBand, DrugTable, load_drugs
from tocsin.vocabulary import load_vocabulary

#: Shown with every dose and limit: the arithmetic informs, the treating team decides.
SUPPORTS_JUDGEMENT = (
    "Decision support only: supports, and does not replace, the clinical judgement of the treating team; "
    "check every dose against the local protocol and the product label."
)

DoseStatus = Literal["ok", "needs_data", "refused"]

# Limit arithmetic is done in whole seconds: exact integer comparisons, so a dose exactly 8 h after the
# previous one is allowed whatever the float representation of the two times, and a later query can never
# see an earlier "next allowed" time through rounding.
_SECONDS_PER_DAY = 86_400

#: Columns of :func:`administration_limits_batch`.
LIMITS_COLUMNS = (
    "patient_id",
    "at",
    "drug",
    "doses_given",
    "doses_counted",
    "counted_from",
    "doses_last_24h",
    "last_dose_at",
    "hours_since_last",
    "mg_given",
    "doses_without_mg",
    "doses_left",
    "next_allowed_at",
    "allowed_now",
    "reason",
    "min_interval_hours",
    "max_doses_24h",
    "max_doses_total",
    "total_scope",
    "note",
)


@dataclass(frozen=True)
class DoseCalculation:
    """The dose of one drug for one patient, with how it was reached.

    ``status``: ``ok`` (``dose_mg`` set), ``needs_data`` (no mg dose; ``needs`` names what is missing) or
    ``refused`` (no dose; ``reason`` says why). ``dose_mg`` never exceeds ``cap_mg``; ``uncapped_mg`` is the
    arithmetic before the cap, ``cap_applied`` whether the cap lowered it.
    """

    drug: str
    regimen: str
    status: DoseStatus
    dose_mg: float | None
    per_kg_mg: float | None
    uncapped_mg: float | None
    cap_mg: float | None
    cap_applied: bool
    dose_basis: str
    needs: tuple[str, ...]
    reason: str | None
    route: str
    frequency: str
    infusion_minutes: float | None
    cautions: tuple[str, ...]
    citations: tuple[str, ...]
    drug_table_version: str
    note: str = SUPPORTS_JUDGEMENT

    def as_dict(self) -> dict:
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _usable(value: float | None, item: str) -> tuple[float | None, str | None]:
    """A weight or age that can enter arithmetic, or None and why not: it must be a number within the
    vocabulary's plausible range for the item (0 kg is no weight; a typo must not become a dose)."""
    if value is None:
        return None, None
    definition = load_vocabulary().items[item]
    (low, high), unit = definition.range, definition.unit
    if not math.isfinite(value) or not low <= value <= high:
        return None, f"{item} {value:g} {unit} is outside the plausible range {low:g}-{high:g} {unit}"
    return float(value), None


def _fits(band: DoseBand, weight: float | None, age: float | None) -> bool:
    """Whether the band can apply given what is known (an unknown weight or age rules nothing out)."""
    w_lo, w_hi = band.weight_range
    a_lo, a_hi = band.age_range
    return (weight is None or w_lo <= weight < w_hi) and (age is None or a_lo <= age < a_hi)


def _mg(value: float) -> str:
    return f"{round(value, 1):g} mg"


def dose_for(
    drug: str,
    weight_kg: float | None,
    age_years: float | None,
    *,
    regimen: str | None = None,
    table: DrugTable | None = None,
) -> DoseCalculation:
    """The dose of ``drug`` (its first regimen, or ``regimen``) for a patient of this weight and age.

    Parameters
    ----------
    drug : vocabulary item name of the drug (``tocilizumab``, ``dexamethasone``...).
    weight_kg, age_years : the patient's; ``None`` when not known. A value outside the vocabulary's plausible
        range (weight 0.5-400 kg, age 0-120 y; so 0 kg) counts as not known, and the caution says so.
    regimen : a regimen id of the drug in the table (e.g. ``methylprednisolone_1g_daily``).
    table : the drug table (default: the packaged ``drugs.yaml``; a centre's copy via :func:`tocsin.drugs.parse_drugs`).

    The mg dose is rounded to the table's decimals and then bounded by the lowest of the drug's per-dose cap,
    its label maximum and the band's own cap, so it never exceeds any of them.

    References: criteria.md §5.1 (tocilizumab), §5.2-5.3 (steroids, anakinra, siltuximab, levetiracetam);
    each band's own source is in ``drugs.yaml`` and in ``citations``.

    Example
    -------
    >>> calc = dose_for("tocilizumab", weight_kg=29.9, age_years=9)
    >>> calc.dose_mg, calc.per_kg_mg
    (358.8, 12.0)
    >>> young = dose_for("tocilizumab", weight_kg=12, age_years=1.5)
    >>> young.status, young.dose_mg, young.reason.split(" (")[0]
    ('refused', None, 'tocilizumab is indicated from 2 y; the patient is 1.5 y')
    """
    table = table or load_drugs()
    d = table.drug(drug)
    reg = d.regimen(regimen)
    weight, weight_problem = _usable(weight_kg, "weight")
    age, age_problem = _usable(age_years, "age")
    cap = d.cap_mg
    cautions = [*d.cautions(), *(p for p in (weight_problem, age_problem) if p)]

    def result(status: DoseStatus, basis: str, **values: object) -> DoseCalculation:
        fields: dict = {
            "dose_mg": None,
            "per_kg_mg": None,
            "uncapped_mg": None,
            "cap_mg": cap,
            "cap_applied": False,
            "needs": (),
            "reason": None,
        }
        fields.update(values)
        return DoseCalculation(
            drug=d.id,
            regimen=reg.id,
            status=status,
            dose_basis=basis,
            route=d.route,
            frequency=reg.frequency,
            infusion_minutes=d.infusion_minutes.value if d.infusion_minutes else None,
            cautions=tuple(cautions),
            citations=d.citations(),
            drug_table_version=table.version,
            **fields,
        )

    if d.min_age_years is not None:
        minimum = d.min_age_years
        if age is None:
            cautions.append(f"age not recorded: {d.id} is indicated from {minimum.value:g} y ({minimum.source})")
        elif age < minimum.value:
            reason = f"{d.id} is indicated from {minimum.value:g} y; the patient is {age:g} y ({minimum.source})"
            return result("refused", f"no dose: {reason}", reason=reason)

    candidates = [b for b in reg.bands if _fits(b, weight, age)]
    bands_text = "; ".join(b.describe() for b in reg.bands)
    if not candidates:
        known = ", ".join(
            f"{name} {value:g} {unit}"
            for name, value, unit in (("weight", weight, "kg"), ("age", age, "y"))
            if value is not None
        )
        reason = f"no dose rule of regimen {reg.id} applies to {known} (rules: {bands_text})"
        return result("refused", f"no dose: {reason}", reason=reason)

    needs = []
    if weight is None and any(b.needs_weight for b in candidates):
        needs.append("weight")
    if age is None and any(b.needs_age for b in candidates):
        needs.append("age")
    per_kg = {b.per_kg_mg for b in candidates}
    per_kg_mg = per_kg.pop() if len(per_kg) == 1 else None
    if needs:
        what = " and ".join(needs)
        return result(
            "needs_data",
            f"needs {what}: {bands_text}",
            per_kg_mg=per_kg_mg,
            needs=tuple(needs),
            reason=f"no mg dose without the patient's {what}"
            + "".join(f" ({p})" for p in (weight_problem, age_problem) if p),
        )

    band = candidates[0]
    if band.per_kg_mg is not None:
        uncapped = band.per_kg_mg * weight
        arithmetic = f"{band.per_kg_mg:g} mg/kg × {weight:g} kg = {_mg(uncapped)}"
    else:
        uncapped = band.fixed_mg
        arithmetic = f"{_mg(uncapped)} fixed dose" + (f" ({band.conditions()})" if band.conditions() else "")
    caps = [c for c in (cap, band.cap_mg) if c is not None]
    ceiling = min(caps) if caps else None
    dose = round(uncapped, table.rounding.decimals)
    capped = ceiling is not None and uncapped > ceiling
    if ceiling is not None:
        dose = min(dose, ceiling)
    if capped:
        basis = f"{arithmetic} → {_mg(dose)} (per-dose cap {_mg(ceiling)} applied)"
    elif ceiling is not None:
        basis = f"{arithmetic} (per-dose cap {_mg(ceiling)})"
    else:
        basis = f"{arithmetic} (no per-dose cap in the sources)"
    return result(
        "ok",
        basis,
        dose_mg=dose,
        per_kg_mg=band.per_kg_mg,
        uncapped_mg=uncapped,
        cap_mg=ceiling,
        cap_applied=capped,
    )


def doses_for(
    patients: pl.DataFrame, drug: str, *, regimen: str | None = None, table: DrugTable | None = None
) -> pl.DataFrame:
    """:func:`dose_for` for every row of a patient table (``patient_id``, ``weight``, ``age_years``, as in
    ``NormalisedEvents.patients``): one row per patient with the :class:`DoseCalculation` fields.

    Each distinct (weight, age) pair is computed once, so a cohort costs as many calculations as it has
    distinct pairs.
    """
    pairs = patients.select("weight", "age_years").unique(maintain_order=True)
    rows = [
        {"weight": w, "age_years": a, **dose_for(drug, w, a, regimen=regimen, table=table).as_dict()}
        for w, a in pairs.iter_rows()
    ]
    calculated = pl.DataFrame(
        rows, schema_overrides={"weight": pairs.schema["weight"], "age_years": pairs.schema["age_years"]}
    )
    return patients.select("patient_id", "weight", "age_years").join(
        calculated, on=["weight", "age_years"], how="left", nulls_equal=True, maintain_order="left"
    )


@dataclass(frozen=True)
class Limits:
    """Where one patient stands with one drug at time ``at`` (days since infusion).

    ``next_allowed_at`` is the earliest time, not before ``at``, at which the next dose is allowed, or
    ``None`` when the total is used up (no further dose in this course or episode). ``allowed_now`` is
    whether a dose may be given at ``at``; ``reason`` says which limit forbids it.
    """

    patient_id: str
    drug: str
    at: float
    doses_given: int
    doses_counted: int
    counted_from: float | None
    doses_last_24h: int
    last_dose_at: float | None
    hours_since_last: float | None
    mg_given: float
    doses_without_mg: int
    doses_left: int | None
    next_allowed_at: float | None
    allowed_now: bool
    reason: str | None
    rules: AdministrationRules
    note: str = SUPPORTS_JUDGEMENT

    def as_dict(self) -> dict:
        return asdict(self)


def _seconds(days: pl.Expr) -> pl.Expr:
    return (days * _SECONDS_PER_DAY).round(0).cast(pl.Int64)


def administration_limits_batch(
    events: pl.DataFrame,
    at_frame: pl.DataFrame,
    drug: str,
    rules: AdministrationRules | None = None,
    *,
    table: DrugTable | None = None,
) -> pl.DataFrame:
    """Doses of ``drug`` given and the earliest next dose, for every query row of ``at_frame``.

    Parameters
    ----------
    events : canonical events (``patient_id``, ``t`` in days since infusion, ``item``, ``num`` in mg). Every
        row of the drug at or before the query time is an administration, with a known or unknown (null) mg
        dose; a row of 0 mg records nothing given and is ignored.
    at_frame : ``patient_id``, ``at`` (days) and optionally ``count_from`` (days): the start of the episode
        whose doses count towards the total. Without it every dose since infusion counts (the stricter
        reading). The interval and the 24-h window always look at every earlier dose.
    drug : vocabulary item name.
    rules : the limits; default the drug's in the table (tighten them with ``dataclasses.replace``).

    Returns one row per query row, columns :data:`LIMITS_COLUMNS`. Times are compared in whole seconds: a
    dose exactly 8 h (to the second) after the last one is allowed. A dose counts in the rolling 24 h for
    24 h after it was given (at 24 h it leaves the window).

    References: tocilizumab limits — ASCO 2021 (doi:10.1200/JCO.21.01992) and NCCN v2.2026 CART-6: repeat
    after >= 8 h, at most 3 doses in 24 h, at most 4 in total (criteria.md §5.1).

    Example
    -------
    >>> import polars as pl
    >>> events = pl.DataFrame({"patient_id": ["A", "A"], "t": [1.0, 1.25], "item": ["tocilizumab"] * 2,
    ...                        "num": [640.0, 640.0]})
    >>> out = administration_limits_batch(events, pl.DataFrame({"patient_id": ["A"], "at": [1.5]}), "tocilizumab")
    >>> out.select("doses_given", "allowed_now", "next_allowed_at").row(0)
    (2, False, 1.5833333333333333)
    """
    table = table or load_drugs()
    if rules is None:
        rules = table.drug(drug).rules()
    if drug in table.awaiting_vocabulary:
        raise ValueError(f"{drug!r} is not an event item yet: its administrations cannot be read from a course")
    item_dtype = events.schema.get("item")
    if isinstance(item_dtype, pl.Enum) and drug not in item_dtype.categories.to_list():
        raise ValueError(f"{drug!r} is not an item of the events' vocabulary")

    has_from = "count_from" in at_frame.columns
    queries = at_frame.select(
        pl.col("patient_id"),
        pl.col("at").cast(pl.Float64),
        (pl.col("count_from") if has_from else pl.lit(None)).cast(pl.Float64).alias("counted_from"),
    ).with_row_index("_query")
    doses = events.filter((pl.col("item") == drug) & (pl.col("num").is_null() | (pl.col("num") > 0))).select(
        pl.col("patient_id").cast(queries.schema["patient_id"]), "t", "num"
    )

    at_s, t_s = _seconds(pl.col("at")), _seconds(pl.col("t"))
    counted = pl.col("counted_from").is_null() | (t_s >= _seconds(pl.col("counted_from")))
    window = rules.max_doses_24h
    given = (
        queries.join(doses, on="patient_id", how="inner")
        .filter(t_s <= at_s)
        .group_by("_query")
        .agg(
            pl.len().cast(pl.Int64).alias("doses_given"),
            counted.sum().cast(pl.Int64).alias("doses_counted"),
            (at_s - t_s < _SECONDS_PER_DAY).sum().cast(pl.Int64).alias("doses_last_24h"),
            t_s.max().alias("_last_s"),
            pl.col("t").max().alias("last_dose_at"),
            pl.col("num").sum().alias("mg_given"),
            pl.col("num").is_null().sum().cast(pl.Int64).alias("doses_without_mg"),
            # The window frees up when the window-th most recent dose leaves it.
            (pl.when(pl.len() >= window).then(t_s.top_k(window).min()) if window else pl.lit(None, pl.Int64)).alias(
                "_kth_s"
            ),
        )
    )
    out = queries.join(given, on="_query", how="left").with_columns(
        pl.col("doses_given", "doses_counted", "doses_last_24h", "doses_without_mg").fill_null(0),
        pl.col("mg_given").fill_null(0.0),
    )

    now_s = _seconds(pl.col("at"))
    interval_free = (
        pl.col("_last_s") + round(rules.min_interval_hours * 3600)
        if rules.min_interval_hours
        else pl.lit(None, pl.Int64)
    )
    window_free = pl.col("_kth_s") + _SECONDS_PER_DAY
    free = pl.max_horizontal(interval_free, window_free)
    total = rules.max_doses_total
    exhausted = pl.lit(total is not None) & (pl.col("doses_counted") >= (total or 0))
    out = out.with_columns(
        interval_free.alias("_interval_free"),
        window_free.alias("_window_free"),
        exhausted.alias("_exhausted"),
        pl.when(~exhausted).then(pl.max_horizontal(now_s, free) / _SECONDS_PER_DAY).alias("next_allowed_at"),
        (~exhausted & (free.is_null() | (free <= now_s))).alias("allowed_now"),
        ((now_s - pl.col("_last_s")) / 3600).alias("hours_since_last"),
        (pl.lit(total, pl.Int64) - pl.col("doses_counted")).clip(lower_bound=0).alias("doses_left"),
    )
    return out.with_columns(
        _reason(rules, now_s),
        pl.lit(drug).alias("drug"),
        pl.lit(rules.min_interval_hours, pl.Float64).alias("min_interval_hours"),
        pl.lit(rules.max_doses_24h, pl.Int64).alias("max_doses_24h"),
        pl.lit(total, pl.Int64).alias("max_doses_total"),
        pl.lit(rules.total_scope).alias("total_scope"),
        pl.lit(SUPPORTS_JUDGEMENT).alias("note"),
    ).select(LIMITS_COLUMNS)


def _duration(seconds: pl.Expr) -> pl.Expr:
    """A span in words to the minute ("7 h 59 min"): a bedside reader compares it with the clock."""
    minutes = (seconds / 60).round(0).cast(pl.Int64)
    return pl.format("{} h {} min", minutes // 60, minutes % 60)


def _reason(rules: AdministrationRules, now_s: pl.Expr) -> pl.Expr:
    """Why no dose may be given now: every limit that binds, in words (null when a dose is allowed)."""

    def until(free_s: pl.Expr) -> pl.Expr:
        return pl.format("in {} (day {})", _duration(free_s - now_s), (free_s / _SECONDS_PER_DAY).round(3))

    scope = pl.when(pl.col("counted_from").is_not_null()).then(
        pl.format("since day {} (this episode)", pl.col("counted_from").round(3))
    )
    if rules.total_scope == "episode":
        scope = scope.otherwise(pl.lit("since infusion (no episode start given, so every dose counts)"))
    else:
        scope = scope.otherwise(pl.lit("since infusion"))
    # Only the limits the drug has can bind (siltuximab, for one, has no repeat rule in the sources read).
    parts = []
    if rules.max_doses_total is not None:
        parts.append(
            pl.when(pl.col("_exhausted")).then(
                pl.format(
                    "{} doses given {} (maximum {} per {}): no further dose",
                    pl.col("doses_counted"),
                    scope,
                    pl.lit(rules.max_doses_total),
                    pl.lit(rules.total_scope),
                )
            )
        )
    if rules.min_interval_hours is not None:
        parts.append(
            pl.when(pl.col("_interval_free") > now_s).then(
                pl.format(
                    "last dose {} ago, doses must be >= {} h apart: next {}",
                    _duration(now_s - pl.col("_last_s")),
                    pl.lit(f"{rules.min_interval_hours:g}"),
                    until(pl.col("_interval_free")),
                )
            )
        )
    if rules.max_doses_24h is not None:
        parts.append(
            pl.when(pl.col("_window_free") > now_s).then(
                pl.format(
                    "{} doses in the last 24 h (maximum {}): next when the earliest leaves the window, {}",
                    pl.col("doses_last_24h"),
                    pl.lit(rules.max_doses_24h),
                    until(pl.col("_window_free")),
                )
            )
        )
    if not parts:
        return pl.lit(None, pl.Utf8).alias("reason")
    text = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    return pl.when(~pl.col("allowed_now")).then(text).alias("reason")


def administration_limits(
    events: pl.DataFrame,
    at: float,
    drug: str,
    rules: AdministrationRules | None = None,
    *,
    patient_id: str | None = None,
    count_from: float | None = None,
    table: DrugTable | None = None,
) -> Limits:
    """:func:`administration_limits_batch` for one patient at one time (days since infusion).

    ``patient_id`` may be left out when ``events`` holds one patient.

    Example
    -------
    >>> import polars as pl
    >>> events = pl.DataFrame({"patient_id": ["A"] * 3, "t": [1.0, 1 + 8 / 24, 1 + 16 / 24],
    ...                        "item": ["tocilizumab"] * 3, "num": [640.0] * 3})
    >>> limits = administration_limits(events, 1.9, "tocilizumab")
    >>> limits.allowed_now, limits.next_allowed_at, limits.doses_left
    (False, 2.0, 1)
    """
    table = table or load_drugs()
    if rules is None:
        rules = table.drug(drug).rules()
    if patient_id is None:
        ids = events.get_column("patient_id").unique().to_list()
        if len(ids) != 1:
            raise ValueError(f"events hold {len(ids)} patients: name the patient_id")
        patient_id = str(ids[0])
    query = pl.DataFrame({"patient_id": [patient_id], "at": [float(at)], "count_from": [count_from]}).with_columns(
        pl.col("count_from").cast(pl.Float64)
    )
    row = administration_limits_batch(events, query, drug, rules, table=table).row(0, named=True)
    return Limits(
        rules=rules,
        **{k: row[k] for k in Limits.__dataclass_fields__ if k not in ("rules", "note")},
    )
