"""Situation facts for decision support: what holds for a patient at a moment, for many moments at once.

:func:`situation_facts` answers, for each query row (``patient_id``, ``at`` days since infusion), the questions a
guideline pack asks before it suggests anything (issue 4, items 3, 4 and 6):

* response to tocilizumab: no improvement 8 h after the last dose (seed 001, Zhou Q et al., Front Immunol
  2025;16:1530623, doi:10.3389/fimmu.2025.1530623: "a repeated dose ... if the symptoms were not significantly
  relieved 8 hours after infusion"; NCCN v2.2026 CART-6), IL-6 above its pre-dose value, grade not falling after N
  doses, and the confounders seed 001 names (ongoing CAR-T expansion, infection, GVHD after donor-derived cells);
* possible infection behind fever or CRS (seed 000, Lu N et al., Front Hematol 2025;4:1616504,
  doi:10.3389/frhem.2025.1616504: procalcitonin, mNGS, viral reactivation), the work-up, the phase of CAR-T
  expansion (measured, or the cohort's time to peak marked as such) and mould-active cover on steroids
  (criteria.md §5.4);
* prolonged cytopenia (seed 003, Wang J et al., Front Immunol 2023;14:1139559, doi:10.3389/fimmu.2023.1139559):
  PHT persisting despite support, the work-up (criteria.md §5.5) and the low-dose prednisone regimen (0.5 mg/kg/day,
  halved after one grade of recovery, tapered, restarted on recurrence) as a state computed from the events.

:func:`prophylaxis_reminders` gives the reminders of ``data/prophylaxis.yaml`` (criteria.md §5.4) with their
windows (item 7).

Every fact is a boolean or number, null when it cannot be told; ``<fact>_because`` names the observations that
decided it and ``<fact>_needs`` what would decide a null. Everything is column-wise over the whole batch (as-of
joins on sorted frames, no per-patient loop); row order of the events or queries never changes a fact. Facts
support, they do not replace, the clinician's judgement.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

from tocsin.config import GradingConfig, SituationConfig, SteroidConfig
from tocsin.core.engine import GradingResult
from tocsin.core.kinetics import cohort_time_to_peak, expansion_phase
from tocsin.core.prolonged_cytopenia import support_items_given
from tocsin.core.steroid_exposure import steroid_exposure
from tocsin.yaml_text import parse_yaml

PID = "patient_id"
Q = "_q"
LINEAGES = ("anc", "plt", "hgb")
#: Support "given" for PHT despite support: the PHT criteria's support items and the items counted as them, so that
#: a pegfilgrastim dose is support as a filgrastim one is.
SUPPORT_ITEMS = support_items_given()
RESULT_ITEMS = ("culture", "pcr", "mngs")
#: Expansion phases in which CAR-T cells may still be expanding (a confounder of the response to tocilizumab).
EXPANDING = ("before_peak", "peak_not_confirmed")
#: IL-6 rises after tocilizumab because the drug blocks the receptor that clears it (seed 001, Discussion).
IL6_NOTE = (
    "IL-6 rises after tocilizumab by receptor blockade alone (seed 001, doi:10.3389/fimmu.2025.1530623); "
    "read it with the clinical course"
)
INFECTION_WORKUP = (
    "blood cultures (peripheral and each line) before antibiotics; urine culture; chest imaging (CT if hypoxic); "
    "procalcitonin and CRP; viral PCR (CMV, EBV, HHV-6, adenovirus); mNGS of blood or BAL if cultures stay negative "
    "(seed 000); empiric broad-spectrum antibiotics if neutropenic (ASCO 2021, doi:10.1200/JCO.21.01992)"
)
PHT_WORKUP = (
    "bone marrow aspirate and biopsy (relapse, MDS/t-MN, HLH); viral PCR (CMV, HHV-6, parvovirus B19); "
    "B12, folate, copper; ferritin and IEC-HS screen (criteria.md §5.5; Jain T et al., Blood 2023;141:2460)"
)


def _rows(events: pl.DataFrame, items: tuple[str, ...] | list[str]) -> pl.DataFrame:
    """Events of these items with plain string keys, sorted by patient and time (deterministic as-of joins)."""
    return (
        events.filter(pl.col("item").cast(pl.Utf8).is_in(list(items)))
        .select(pl.col(PID).cast(pl.Utf8), pl.col("item").cast(pl.Utf8), "t", "num", pl.col("cat").cast(pl.Utf8))
        .sort([PID, "t", "item", "num", "cat"], nulls_last=True)
    )


def _at_or_before(left: pl.DataFrame, right: pl.DataFrame, left_on: str, right_on: str) -> pl.DataFrame:
    """``left`` with the columns of the patient's last ``right`` row at or before ``left_on`` (nulls if none).

    ``right`` must hold ``patient_id`` and ``right_on``; its other columns are added. Rows with a null
    ``left_on`` get nulls. Row order of ``left`` is kept.
    """
    keys = left.filter(pl.col(left_on).is_not_null()).select(Q, PID, left_on).sort(left_on)
    hit = keys.join_asof(
        right.sort(right_on), left_on=left_on, right_on=right_on, by=PID, strategy="backward", check_sortedness=False
    ).drop(PID, left_on)
    if right_on in left.columns:
        hit = hit.drop(right_on)
    return left.join(hit, on=Q, how="left", maintain_order="left")


def _queries(queries: pl.DataFrame) -> pl.DataFrame:
    return queries.select(pl.col(PID).cast(pl.Utf8), pl.col("at").cast(pl.Float64)).with_row_index(Q)


def _day(expr: pl.Expr) -> pl.Expr:
    return expr.round(3).cast(pl.Utf8)


def _needs(*pairs: tuple[pl.Expr, str]) -> pl.Expr:
    """'; '-joined texts of the conditions that hold (null when none does)."""
    parts = [pl.when(cond).then(pl.lit(text)) for cond, text in pairs]
    joined = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    return pl.when(joined != "").then(joined)


# ---------------------------------------------------------------- item 3: response to tocilizumab


def _crs_grades(result: GradingResult) -> pl.DataFrame:
    return result.crs.timeline.select(
        pl.col(PID).cast(pl.Utf8), pl.col("t").alias("_g_t"), pl.col("grade").alias("_g")
    ).sort([PID, "_g_t"])


def _grade_at(frame: pl.DataFrame, grades: pl.DataFrame, time: str, prefix: str) -> pl.DataFrame:
    """CRS grade (and its assessment time) at or before the time column ``time``."""
    renamed = grades.rename({"_g_t": f"{prefix}_t", "_g": prefix})
    return _at_or_before(frame, renamed, time, f"{prefix}_t")


def _tocilizumab(
    frame: pl.DataFrame, events: pl.DataFrame, result: GradingResult, cfg: SituationConfig
) -> pl.DataFrame:
    doses = _rows(events, ["tocilizumab"]).with_columns(pl.int_range(1, pl.len() + 1).over(PID).alias("_n"))
    last = doses.select(PID, pl.col("t").alias("toci_t"), pl.col("_n").alias("toci_n"), pl.col("t").alias("_toci_k"))
    frame = _at_or_before(frame, last, "at", "_toci_k")
    first = doses.filter(pl.col("_n") == 1).select(PID, pl.col("t").alias("toci_first_t"))
    nth = doses.filter(pl.col("_n") == cfg.refractory_doses).select(PID, pl.col("t").alias("toci_nth_t"))
    frame = frame.join(first, on=PID, how="left", maintain_order="left").join(
        nth, on=PID, how="left", maintain_order="left"
    )
    grades = _crs_grades(result)
    frame = _grade_at(frame, grades, "at", "g_now")
    frame = _grade_at(frame, grades, "toci_t", "g_dose")
    frame = _grade_at(frame, grades, "toci_first_t", "g_first")
    il6 = _rows(events, ["il6"]).select(PID, pl.col("t").alias("_il6_k"), pl.col("num").alias("il6_pre"))
    frame = _at_or_before(frame, il6.with_columns(pl.col("_il6_k").alias("il6_pre_t")), "toci_t", "_il6_k")
    frame = _at_or_before(
        frame, il6.rename({"il6_pre": "il6_now"}).with_columns(il6_now_t=pl.col("_il6_k")), "at", "_il6_k"
    )

    wait = cfg.tocilizumab_response_hours / 24
    given = pl.col("toci_t").is_not_null()
    nth_given = pl.col("toci_n") >= cfg.refractory_doses
    g_now, g_dose, g_first = pl.col("g_now"), pl.col("g_dose"), pl.col("g_first")
    reassessed = pl.col("g_now_t") >= pl.col("toci_t") + wait
    early = pl.col("at") < pl.col("toci_t") + wait
    no_improvement = (
        pl.when(~given)
        .then(False)
        .when(early | ~reassessed | g_dose.is_null() | g_now.is_null())
        .then(None)
        .otherwise((g_now >= g_dose) & (g_now >= 1))
    )
    reassessed_n = pl.col("g_now_t") >= pl.col("toci_nth_t") + wait
    not_falling = (
        pl.when(~given | ~nth_given)
        .then(False)
        .when(~reassessed_n | g_first.is_null() | g_now.is_null())
        .then(None)
        .otherwise((g_now >= g_first) & (g_now >= 1))
    )
    pre_ok = pl.col("il6_pre_t") >= pl.col("toci_t") - cfg.il6_pre_dose_hours / 24
    post = pl.col("il6_now_t") > pl.col("toci_t")
    il6_rising = (
        pl.when(~given)
        .then(False)
        .when(~pre_ok.fill_null(False) | ~post.fill_null(False))
        .then(None)
        .otherwise(pl.col("il6_now") > pl.col("il6_pre"))
    )
    doses_text = pl.format("tocilizumab dose {} at day {}", pl.col("toci_n"), _day(pl.col("toci_t")))
    return frame.with_columns(
        no_improvement.alias("no_improvement_8h_after_tocilizumab"),
        pl.when(~given)
        .then(pl.lit("no tocilizumab given at or before this time"))
        .otherwise(
            pl.format(
                "{}: CRS grade {} at the dose, {} at day {} ({} h window)",
                doses_text,
                g_dose,
                g_now,
                _day(pl.col("g_now_t")),
                pl.lit(f"{cfg.tocilizumab_response_hours:g}"),
            )
        )
        .alias("no_improvement_8h_after_tocilizumab_because"),
        pl.when(no_improvement.is_null())
        .then(
            _needs(
                (early, "wait: the response is judged >= the window after the dose"),
                (~early & ~reassessed.fill_null(False), "a CRS assessment (vitals) at least the window after the dose"),
                (g_dose.is_null(), "the CRS grade at the dose"),
                (g_now.is_null(), "a CRS grade at this time"),
            )
        )
        .alias("no_improvement_8h_after_tocilizumab_needs"),
        il6_rising.alias("il6_rising_after_tocilizumab"),
        pl.when(~given)
        .then(pl.lit("no tocilizumab given at or before this time"))
        .otherwise(
            pl.format(
                "{}: IL-6 {} pg/mL at day {} before the dose, {} pg/mL at day {}; {}",
                doses_text,
                pl.col("il6_pre"),
                _day(pl.col("il6_pre_t")),
                pl.col("il6_now"),
                _day(pl.col("il6_now_t")),
                pl.lit(IL6_NOTE),
            )
        )
        .alias("il6_rising_after_tocilizumab_because"),
        pl.when(il6_rising.is_null())
        .then(
            _needs(
                (~pre_ok.fill_null(False), f"an IL-6 value within {cfg.il6_pre_dose_hours:g} h before the dose"),
                (~post.fill_null(False), "an IL-6 value after the dose"),
            )
        )
        .alias("il6_rising_after_tocilizumab_needs"),
        not_falling.alias("crs_grade_not_falling_after_n_doses"),
        pl.when(~given | ~nth_given)
        .then(pl.format("{} tocilizumab dose(s) of {} given", pl.col("toci_n").fill_null(0), cfg.refractory_doses))
        .otherwise(
            pl.format(
                "CRS grade {} at the first dose (day {}), {} at day {} after dose {} (day {})",
                g_first,
                _day(pl.col("toci_first_t")),
                g_now,
                _day(pl.col("g_now_t")),
                pl.lit(cfg.refractory_doses),
                _day(pl.col("toci_nth_t")),
            )
        )
        .alias("crs_grade_not_falling_after_n_doses_because"),
        pl.when(not_falling.is_null())
        .then(
            _needs(
                (
                    ~reassessed_n.fill_null(False),
                    f"a CRS assessment at least the window after dose {cfg.refractory_doses}",
                ),
                (g_first.is_null(), "the CRS grade at the first dose"),
            )
        )
        .alias("crs_grade_not_falling_after_n_doses_needs"),
    )


# ---------------------------------------------------------------- item 4: infection, expansion, mould cover


def infection_results(events: pl.DataFrame, cfg: SituationConfig) -> pl.DataFrame:
    """Culture, PCR and mNGS rows parsed: ``positive``, ``viral`` (a positive PCR of a viral target), ``label``.

    Shared with the cohort derivation (``tocsin.cohort.derive``: infection columns).
    """
    rows = _rows(events, RESULT_ITEMS)
    text = pl.col("cat").str.strip_chars()
    head = text.str.split(":").list.first().str.strip_chars()
    tail = text.str.split_exact(":", 1).struct.field("field_1").str.strip_chars().str.to_lowercase()
    pcr = pl.col("item") == "pcr"
    target = head.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    result = pl.when(pcr).then(tail).otherwise(head.str.to_lowercase())
    positive = result.str.starts_with("pos") | result.str.starts_with("detected")
    return rows.select(
        PID,
        "t",
        positive.fill_null(False).alias("positive"),
        (pcr & positive & target.is_in(cfg.viral_targets)).fill_null(False).alias("viral"),
        pl.format("{} {} (day {})", pl.col("item"), text, _day(pl.col("t"))).alias("label"),
    )


def _recent_results(frame: pl.DataFrame, events: pl.DataFrame, cfg: SituationConfig) -> pl.DataFrame:
    """Per query: results seen in the window, positive labels, and whether one is viral reactivation."""
    window = (pl.col("t") <= pl.col("at")) & (pl.col("t") > pl.col("at") - cfg.positive_result_days)
    seen = (
        frame.select(Q, PID, "at")
        .join(infection_results(events, cfg), on=PID)
        .filter(window)
        .group_by(Q)
        .agg(
            pl.len().alias("results_seen"),
            pl.col("label").filter(pl.col("positive")).sort().alias("positives"),
            pl.col("viral").any().alias("viral_reactivation"),
        )
    )
    return frame.join(seen, on=Q, how="left", maintain_order="left").with_columns(
        pl.col("results_seen").fill_null(0), pl.col("viral_reactivation").fill_null(False)
    )


def _anc_runs(events: pl.DataFrame, cfg: SituationConfig) -> pl.DataFrame:
    """ANC rows with the start of the current run below ``neutropenia_anc`` (null on a row at or above it)."""
    low = pl.col("anc") < cfg.neutropenia_anc
    rows = (
        _rows(events, ["anc"])
        .select(PID, pl.col("t").alias("anc_t"), pl.col("num").alias("anc"), pl.col("t").alias("_anc_k"))
        .with_columns(low.alias("_low"))
        .with_columns((pl.col("_low") & ~pl.col("_low").shift(1).over(PID).fill_null(False)).alias("_new"))
    )
    run_start = pl.when(pl.col("_new")).then(pl.col("anc_t")).forward_fill().over(PID)
    return rows.with_columns(pl.when(pl.col("_low")).then(run_start).alias("neutropenia_since")).drop("_low", "_new")


def _mould_risk(
    frame: pl.DataFrame, events: pl.DataFrame, cfg: SituationConfig, steroids: SteroidConfig
) -> pl.DataFrame:
    """High-dose steroid days in the window and days of current neutropenia, with the mould-cover fact."""
    daily = steroid_exposure(events, steroids).daily
    high = daily.filter(pl.col("dex_eq_mg") >= cfg.high_dose_steroid_dex_mg_per_day).select(
        pl.col(PID).cast(pl.Utf8), pl.col("day").cast(pl.Float64)
    )
    in_window = (pl.col("day") <= pl.col("at")) & (pl.col("day") > pl.col("at") - cfg.high_dose_steroid_window_days)
    counted = (
        frame.select(Q, PID, "at")
        .join(high, on=PID)
        .filter(in_window)
        .group_by(Q)
        .agg(pl.len().alias("high_dose_days"))
    )
    frame = frame.join(counted, on=Q, how="left", maintain_order="left").with_columns(
        pl.col("high_dose_days").fill_null(0).cast(pl.Int64)
    )
    frame = _at_or_before(frame, _anc_runs(events, cfg), "at", "_anc_k")
    anc_known = (pl.col("at") - pl.col("anc_t")) <= cfg.lab_lookback_days
    neutropenia_days = pl.when(anc_known).then(pl.col("at") - pl.col("neutropenia_since"))
    frame = frame.with_columns(
        neutropenia_days.alias("neutropenia_days"), anc_known.fill_null(False).alias("_anc_known")
    )
    steroid_hit = pl.col("high_dose_days") > cfg.high_dose_steroid_days
    neutropenia_hit = (pl.col("neutropenia_days") > cfg.prolonged_neutropenia_days).fill_null(False)
    fact = pl.when(steroid_hit | neutropenia_hit).then(True).when(pl.col("_anc_known")).then(False)
    return frame.with_columns(
        fact.alias("antifungal_cover_indicated_on_steroids"),
        pl.format(
            "{} day(s) with >= {} mg dexamethasone-equivalent in the last {} days (trigger > {}); ANC {} at day {}, "
            "below {} for {} days (trigger > {}); criteria.md §5.4",
            pl.col("high_dose_days"),
            pl.lit(f"{cfg.high_dose_steroid_dex_mg_per_day:g}"),
            pl.lit(f"{cfg.high_dose_steroid_window_days:g}"),
            pl.lit(cfg.high_dose_steroid_days),
            pl.col("anc").fill_null(pl.lit("unknown")),
            _day(pl.col("anc_t")).fill_null("-"),
            pl.lit(f"{cfg.neutropenia_anc:g}"),
            pl.col("neutropenia_days").round(2).cast(pl.Utf8).fill_null("0"),
            pl.lit(f"{cfg.prolonged_neutropenia_days:g}"),
        ).alias("antifungal_cover_indicated_on_steroids_because"),
        pl.when(fact.is_null())
        .then(pl.lit(f"an ANC within {cfg.lab_lookback_days:g} days"))
        .alias("antifungal_cover_indicated_on_steroids_needs"),
    )


def _infection(frame: pl.DataFrame, events: pl.DataFrame, cfg: SituationConfig) -> pl.DataFrame:
    frame = _recent_results(frame, events, cfg)
    pct = _rows(events, ["pct"]).select(PID, pl.col("t").alias("pct_t"), pl.col("num").alias("pct"))
    frame = _at_or_before(frame, pct.with_columns(_pct_k=pl.col("pct_t")), "at", "_pct_k")
    fevers = (
        _rows(events, ["temperature"])
        .filter(pl.col("num") >= cfg.neutropenic_fever_celsius)
        .select(PID, pl.col("t").alias("fever_t"), pl.col("num").alias("fever"), pl.col("t").alias("_fever_k"))
    )
    frame = _at_or_before(frame, fevers, "at", "_fever_k")
    pct_known = ((pl.col("at") - pl.col("pct_t")) <= cfg.lab_lookback_days).fill_null(False)
    pct_high = pct_known & (pl.col("pct") > cfg.pct_threshold_ng_ml)
    fever_now = ((pl.col("at") - pl.col("fever_t")) <= cfg.fever_lookback_hours / 24).fill_null(False)
    neutropenic = pl.col("_anc_known") & (pl.col("anc") < cfg.neutropenia_anc).fill_null(False)
    positive = pl.col("positives").list.len().fill_null(0) > 0
    reasons = pl.concat_str(
        [
            pl.when(pct_high).then(
                pl.format(
                    "procalcitonin {} ng/mL at day {} > {} (seed 000)",
                    pl.col("pct"),
                    _day(pl.col("pct_t")),
                    pl.lit(f"{cfg.pct_threshold_ng_ml:g}"),
                )
            ),
            pl.when(positive).then(pl.format("positive: {}", pl.col("positives").list.join(", "))),
            pl.when(fever_now & neutropenic).then(
                pl.format(
                    "neutropenic fever: {} °C at day {} with ANC {} at day {}",
                    pl.col("fever"),
                    _day(pl.col("fever_t")),
                    pl.col("anc"),
                    _day(pl.col("anc_t")),
                )
            ),
            pl.when(pl.col("viral_reactivation")).then(pl.lit("viral reactivation (positive viral PCR)")),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    anything = pct_known | (pl.col("results_seen") > 0) | (fever_now & pl.col("_anc_known"))
    fact = pl.when(reasons != "").then(True).when(anything).then(False)
    checked = pl.concat_str(
        [
            pl.when(pct_known).then(
                pl.format("procalcitonin {} ng/mL at day {}", pl.col("pct"), _day(pl.col("pct_t")))
            ),
            pl.when(pl.col("results_seen") > 0).then(
                pl.format("{} culture/PCR/mNGS result(s), none positive", pl.col("results_seen"))
            ),
            pl.when(fever_now & pl.col("_anc_known")).then(pl.format("fever with ANC {}", pl.col("anc"))),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    return frame.with_columns(
        fact.alias("possible_infection"),
        pl.when(reasons != "").then(reasons).when(checked != "").then(checked).alias("possible_infection_because"),
        pl.when(fact.is_null())
        .then(pl.lit("procalcitonin, cultures/PCR/mNGS, or a temperature with an ANC"))
        .alias("possible_infection_needs"),
        pl.when(fact.fill_null(False) | fever_now).then(pl.lit(INFECTION_WORKUP)).alias("suggested_workup"),
    )


def _expansion(
    frame: pl.DataFrame, events: pl.DataFrame, result: GradingResult, reference: pl.DataFrame | None
) -> pl.DataFrame:
    if reference is None and result.kinetics.height:
        reference = cohort_time_to_peak(result.kinetics)
    if reference is not None and reference.height == 0:
        reference = None
    phased = expansion_phase(
        events,
        frame.select(Q, PID, pl.col("at").alias("t")),
        result.config.kinetics,
        patients=result.patients if reference is not None else None,
        reference=reference,
        known_at_t=True,
    )
    measured = pl.col("basis") == "measured"
    because = (
        pl.when(pl.col("phase").is_null())
        .then(pl.lit("no CAR-T level and no cohort reference for the product"))
        .when(measured)
        .then(pl.format("{} peak so far at day {} (levels up to this time)", pl.col("item"), _day(pl.col("tmax_day"))))
        .otherwise(
            pl.format(
                "cohort reference, not measured: median time to peak day {} of {} patient(s) ({}, product {})",
                _day(pl.col("tmax_day")),
                pl.col("reference_n"),
                pl.col("item"),
                pl.col("reference_product").fill_null("all"),
            )
        )
    )
    return frame.join(
        phased.select(
            Q,
            pl.col("phase").fill_null("unknown").alias("expansion_phase"),
            pl.col("basis").alias("expansion_phase_basis"),
            because.alias("expansion_phase_because"),
        ),
        on=Q,
        how="left",
        maintain_order="left",
    )


def _confounders(frame: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    donor = (
        _rows(events, ["donor_derived"])
        .filter(pl.col("cat") == "true")
        .group_by(PID)
        .agg(pl.col("t").min().alias("donor_t"))
    )
    gvhd = _rows(events, ["gvhd"]).select(
        PID, pl.col("t").alias("gvhd_t"), pl.col("num").alias("gvhd"), _gvhd_k=pl.col("t")
    )
    frame = frame.join(donor, on=PID, how="left", maintain_order="left")
    frame = _at_or_before(frame, gvhd, "at", "_gvhd_k")
    expanding = pl.col("expansion_phase").is_in(list(EXPANDING))
    parts = [
        pl.when(expanding).then(
            pl.format("ongoing CAR-T expansion ({}, {})", pl.col("expansion_phase"), pl.col("expansion_phase_basis"))
        ),
        pl.when(pl.col("possible_infection").fill_null(False)).then(pl.lit("possible infection")),
        pl.when(pl.col("gvhd") >= 1).then(pl.format("GVHD grade {} at day {}", pl.col("gvhd"), _day(pl.col("gvhd_t")))),
        pl.when(pl.col("donor_t").is_not_null() & ~(pl.col("gvhd") >= 1).fill_null(False)).then(
            pl.lit("donor-derived CAR-T cells (GVHD possible)")
        ),
    ]
    listed = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    return frame.with_columns(
        listed.alias("refractory_confounders"),
        pl.lit(
            "confounders of the response to tocilizumab named by seed 001 (doi:10.3389/fimmu.2025.1530623): ongoing "
            "CAR-T expansion, infection, acute GVHD after donor-derived cells"
        ).alias("refractory_confounders_because"),
        _needs(
            (pl.col("expansion_phase") == "unknown", "CAR-T levels (or a cohort reference) for the expansion phase"),
            (pl.col("possible_infection").is_null(), "infection work-up results"),
        ).alias("refractory_confounders_needs"),
    )


# ---------------------------------------------------------------- item 6: prolonged cytopenia, low-dose prednisone


def _current_grades(
    frame: pl.DataFrame, result: GradingResult, time: str, prefix: str, lookback: float
) -> pl.DataFrame:
    """Worst CTCAE grade over ANC, platelets and hemoglobin of the latest value of each at or before ``time``."""
    graded = result.hematology.cytopenia.select(
        pl.col(PID).cast(pl.Utf8), pl.col("lineage").cast(pl.Utf8).alias("item"), "t", "grade"
    ).filter(pl.col("grade").is_not_null())
    columns = []
    for lineage in LINEAGES:
        rows = graded.filter(pl.col("item") == lineage).select(
            PID, pl.col("t").alias(f"_{prefix}_{lineage}_t"), pl.col("grade").alias(f"_{prefix}_{lineage}")
        )
        frame = _at_or_before(frame, rows.with_columns(pl.col(f"_{prefix}_{lineage}_t").alias("_k")), time, "_k")
        recent = (pl.col(time) - pl.col(f"_{prefix}_{lineage}_t")) <= lookback
        columns.append(pl.when(recent).then(pl.col(f"_{prefix}_{lineage}")))
    return frame.with_columns(pl.max_horizontal(columns).alias(prefix))


def _pht(frame: pl.DataFrame, events: pl.DataFrame, result: GradingResult, cfg: SituationConfig) -> pl.DataFrame:
    pcfg = result.config.prolonged_cytopenia
    pht = result.hematology.pht.select(pl.col(PID).cast(pl.Utf8), "pht", "pht_lineages")
    frame = frame.join(pht, on=PID, how="left", maintain_order="left")
    frame = _current_grades(frame, result, "at", "grade_now", cfg.cytopenia_lookback_days)
    first_support = _rows(events, SUPPORT_ITEMS).group_by(PID, "item").agg(pl.col("t").min().alias("_first"))
    support = (
        frame.select(Q, PID, "at")
        .join(first_support, on=PID)
        .filter((pl.col("_first") >= 0) & (pl.col("_first") <= pl.col("at")))
        .group_by(Q)
        .agg(pl.col("item").sort().str.join(", ").alias("support_given"))
    )
    frame = frame.join(support, on=Q, how="left", maintain_order="left")
    after_landmark = pl.col("at") >= pcfg.landmark_day
    cytopenic_now = pl.col("grade_now") >= pcfg.min_grade
    supported = pl.col("support_given").is_not_null()
    fact = (
        pl.when(pl.col("pht") == False)  # noqa: E712 - null pht must stay null, not False
        .then(False)
        .when(pl.col("pht").is_null() | ~after_landmark | pl.col("grade_now").is_null())
        .then(None)
        .otherwise(cytopenic_now & supported)
    )
    persisting = fact.fill_null(False) | (pl.col("pht").fill_null(False) & cytopenic_now.fill_null(False))
    return frame.with_columns(
        fact.alias("pht_persisting_despite_support"),
        pl.format(
            "PHT at day {}: {} ({}); worst current grade {} (CTCAE v5, counts within {} days); support given: {}",
            pl.lit(pcfg.landmark_day),
            pl.col("pht"),
            pl.col("pht_lineages").fill_null("-"),
            pl.col("grade_now"),
            pl.lit(f"{cfg.cytopenia_lookback_days:g}"),
            pl.col("support_given").fill_null("none"),
        ).alias("pht_persisting_despite_support_because"),
        pl.when(fact.is_null())
        .then(
            _needs(
                (~after_landmark, f"the day-{pcfg.landmark_day} landmark"),
                (pl.col("pht").is_null() & after_landmark, f"counts at day {pcfg.landmark_day} for every lineage"),
                (pl.col("grade_now").is_null() & after_landmark, "a recent ANC, platelet or hemoglobin value"),
            )
        )
        .alias("pht_persisting_despite_support_needs"),
        pl.when(persisting).then(pl.lit(PHT_WORKUP)).alias("pht_workup"),
    )


def _prednisone(frame: pl.DataFrame, events: pl.DataFrame, result: GradingResult, cfg: SituationConfig) -> pl.DataFrame:
    """Seed 003 regimen: start at 0.5 mg/kg/day, halve after one grade of recovery, taper, restart on recurrence."""
    weights = result.patients.select(pl.col(PID).cast(pl.Utf8), pl.col("weight").alias("_weight"))
    frame = frame.join(weights, on=PID, how="left", maintain_order="left")
    dose = (pl.col("_weight") * cfg.prednisone_mg_per_kg).round(1)
    gap = pl.col("t") - pl.col("t").shift(1).over(PID)
    new_course = (gap > cfg.prednisone_course_gap_days).fill_null(True)
    courses = (
        _rows(events, ["prednisone"])
        .with_columns(
            pl.when(new_course).then(pl.col("t")).forward_fill().over(PID).alias("pred_course_start"),
            pl.when(new_course).then(pl.col("num")).forward_fill().over(PID).alias("pred_course_first_dose"),
        )
        .select(
            PID,
            pl.col("t").alias("pred_t"),
            pl.col("num").alias("pred_dose"),
            "pred_course_start",
            "pred_course_first_dose",
            _k=pl.col("t"),
        )
    )
    frame = _at_or_before(frame, courses, "at", "_k")
    frame = _current_grades(frame, result, "pred_course_start", "grade_at_start", cfg.cytopenia_lookback_days)
    recurrence_grade = result.config.prolonged_cytopenia.second_fall_min_grade
    had = pl.col("pred_t").is_not_null()
    on = had & ((pl.col("at") - pl.col("pred_t")) <= cfg.prednisone_course_gap_days)
    improved = pl.col("grade_now") <= pl.col("grade_at_start") - 1
    halved = pl.col("pred_dose") <= 0.75 * pl.col("pred_course_first_dose")
    step = (
        pl.when(~had & pl.col("pht_persisting_despite_support").fill_null(False))
        .then(pl.lit("start"))
        .when(~had)
        .then(pl.lit("none"))
        .when(on & improved.fill_null(False) & ~halved.fill_null(False))
        .then(pl.lit("halve"))
        .when(on & improved.fill_null(False))
        .then(pl.lit("taper"))
        .when(on)
        .then(pl.lit("continue"))
        .when((pl.col("grade_now") >= recurrence_grade).fill_null(False))
        .then(pl.lit("restart"))
        .otherwise(pl.lit("stopped"))
    )
    frame = frame.with_columns(step.alias("prednisone_regimen_step"))
    s = pl.col("prednisone_regimen_step")
    suggested = (
        pl.when(s.is_in(["start", "restart"]))
        .then(dose)
        .when(s == "halve")
        .then(pl.col("pred_dose") / 2)
        .when(s == "continue")
        .then(pl.col("pred_dose"))
    )
    return frame.with_columns(
        dose.alias("prednisone_0_5_mg_per_kg_dose_mg"),
        pl.format(
            "{} mg/kg/day x {} kg (seed 003, Wang 2023)", pl.lit(f"{cfg.prednisone_mg_per_kg:g}"), pl.col("_weight")
        ).alias("prednisone_0_5_mg_per_kg_dose_mg_because"),
        pl.when(pl.col("_weight").is_null()).then(pl.lit("weight")).alias("prednisone_0_5_mg_per_kg_dose_mg_needs"),
        suggested.alias("prednisone_suggested_dose_mg"),
        pl.format(
            "step {}: last prednisone {} mg at day {} (course from day {}, first dose {} mg); worst grade {} at the "
            "course start, {} now; restart at grade >= {} (seed 003: 0.5 mg/kg/day, halved after one grade of "
            "recovery, tapered, restarted on recurrence)",
            s,
            pl.col("pred_dose"),
            _day(pl.col("pred_t")),
            _day(pl.col("pred_course_start")),
            pl.col("pred_course_first_dose"),
            pl.col("grade_at_start"),
            pl.col("grade_now"),
            pl.lit(recurrence_grade),
        )
        .fill_null(pl.format("step {}: no prednisone given; worst grade now {}", s, pl.col("grade_now")))
        .alias("prednisone_regimen_because"),
        _needs(
            (s.is_in(["start", "restart"]) & pl.col("_weight").is_null(), "weight (for the mg dose)"),
            (had & pl.col("grade_now").is_null(), "a recent blood count"),
            (s == "taper", "a taper schedule (seed 003 gives none: reduce gradually until stopped)"),
        ).alias("prednisone_regimen_needs"),
    )


def situation_facts(
    result: GradingResult,
    events: pl.DataFrame,
    queries: pl.DataFrame,
    *,
    config: SituationConfig | None = None,
    reference: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Situation facts at each query (``patient_id``, ``at`` days since infusion), one row per query in its order.

    ``result`` is the grading of ``events`` (canonical events); ``config`` defaults to ``result.config.situation``;
    ``reference`` is a cohort time-to-peak table (:func:`tocsin.core.kinetics.cohort_time_to_peak`) for patients
    without CAR-T levels, by default computed from ``result.kinetics``. Columns are listed in docs/situation.md.
    """
    cfg = config or result.config.situation
    frame = _queries(queries)
    frame = _tocilizumab(frame, events, result, cfg)
    frame = _mould_risk(frame, events, cfg, result.config.steroids)
    frame = _infection(frame, events, cfg)
    frame = _expansion(frame, events, result, reference)
    frame = _confounders(frame, events)
    frame = _pht(frame, events, result, cfg)
    frame = _prednisone(frame, events, result, cfg)
    return frame.select(PID, "at", *FACT_COLUMNS)


FACT_COLUMNS = [
    *(
        f"{fact}{suffix}"
        for fact in (
            "no_improvement_8h_after_tocilizumab",
            "il6_rising_after_tocilizumab",
            "crs_grade_not_falling_after_n_doses",
            "refractory_confounders",
            "possible_infection",
        )
        for suffix in ("", "_because", "_needs")
    ),
    "suggested_workup",
    "expansion_phase",
    "expansion_phase_basis",
    "expansion_phase_because",
    *(f"antifungal_cover_indicated_on_steroids{s}" for s in ("", "_because", "_needs")),
    *(f"pht_persisting_despite_support{s}" for s in ("", "_because", "_needs")),
    "pht_workup",
    *(f"prednisone_0_5_mg_per_kg_dose_mg{s}" for s in ("", "_because", "_needs")),
    "prednisone_regimen_step",
    "prednisone_suggested_dose_mg",
    "prednisone_regimen_because",
    "prednisone_regimen_needs",
]


# ---------------------------------------------------------------- item 7: prophylaxis reminders


class _GivenBy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    item: str
    value: str | None = None


class Reminder(BaseModel):
    """One prophylaxis reminder of ``data/prophylaxis.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    target: str
    text: str
    anchor: Literal["lymphodepletion", "infusion"]
    start_day: float | None
    stop_day: float | None
    condition: Literal["always", "neutropenia", "mould_risk", "igg_low"]
    given_by: _GivenBy | None
    source: str
    note: str


class ProphylaxisTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    reminders: list[Reminder]


@cache
def load_prophylaxis() -> ProphylaxisTable:
    """The packaged reminder table, validated (a wrong field names itself in the pydantic error)."""
    text = resources.files("tocsin.data").joinpath("prophylaxis.yaml").read_text(encoding="utf-8")
    return ProphylaxisTable.model_validate(parse_yaml(text))


def _bound(day: float | None) -> str:
    return "open" if day is None else f"{day:g}"


def prophylaxis_reminders(
    events: pl.DataFrame,
    queries: pl.DataFrame,
    config: GradingConfig | None = None,
    table: ProphylaxisTable | None = None,
) -> pl.DataFrame:
    """Every reminder of the table at every query: one row per (query, reminder), queries in their order.

    Columns: ``patient_id``, ``at``, ``reminder``, ``target``, ``text``, ``due`` (inside the window and the condition
    holds; null when the condition cannot be told), ``given`` (a ``given_by`` event at or before ``at``), ``window``
    (text), ``window_start``/``window_stop`` (days since infusion, null = open), ``because``, ``needs``, ``source``,
    ``note``. Sources: criteria.md §5.4 and §5.3.
    """
    grading = config or GradingConfig()
    cfg, table = grading.situation, table or load_prophylaxis()
    frame = _mould_risk(_queries(queries), events, cfg, grading.steroids)
    frame = _recent_results(frame, events, cfg)
    ld = _rows(events, ["lymphodepletion"]).group_by(PID).agg(pl.col("t").min().alias("_ld"))
    igg = _rows(events, ["igg"]).select(PID, pl.col("t").alias("igg_t"), pl.col("num").alias("igg"), _k=pl.col("t"))
    frame = _at_or_before(frame.join(ld, on=PID, how="left", maintain_order="left"), igg, "at", "_k")
    infected = pl.col("positives").list.len().fill_null(0) > 0
    igg_low = pl.col("igg") < cfg.ivig_igg_below_mg_dl
    igg_fact = (igg_low & infected) if cfg.ivig_requires_infection else igg_low
    conditions = {
        "always": (pl.lit(True), pl.lit("no condition")),
        "neutropenia": (
            pl.when(pl.col("_anc_known")).then(pl.col("anc") < cfg.neutropenia_anc),
            pl.format(
                "ANC {} at day {} (neutropenia below {})",
                pl.col("anc"),
                _day(pl.col("anc_t")),
                pl.lit(cfg.neutropenia_anc),
            ),
        ),
        "mould_risk": (
            pl.col("antifungal_cover_indicated_on_steroids"),
            pl.col("antifungal_cover_indicated_on_steroids_because"),
        ),
        "igg_low": (
            pl.when(pl.col("igg").is_not_null()).then(igg_fact),
            pl.format(
                "IgG {} mg/dL at day {} (threshold {}{}); positive results: {}",
                pl.col("igg"),
                _day(pl.col("igg_t")),
                pl.lit(f"{cfg.ivig_igg_below_mg_dl:g}"),
                pl.lit(", with infection" if cfg.ivig_requires_infection else ""),
                pl.col("positives").list.join(", ").fill_null(""),
            ),
        ),
    }
    needs = {"always": None, "neutropenia": "a recent ANC", "mould_risk": "a recent ANC", "igg_low": "an IgG value"}
    given_rows = _rows(events, ["prophylaxis", *{r.given_by.item for r in table.reminders if r.given_by}])
    parts = []
    for reminder in table.reminders:
        anchor = pl.lit(0.0) if reminder.anchor == "infusion" else pl.col("_ld").fill_null(0.0)
        start = anchor + reminder.start_day if reminder.start_day is not None else pl.lit(None, pl.Float64)
        stop = anchor + reminder.stop_day if reminder.stop_day is not None else pl.lit(None, pl.Float64)
        inside = (pl.col("at") >= start).fill_null(True) & (pl.col("at") <= stop).fill_null(True)
        condition, because = conditions[reminder.condition]
        if reminder.given_by is None:
            given = pl.lit(None, pl.Boolean)
        else:
            match = pl.col("item") == reminder.given_by.item
            if reminder.given_by.value is not None:
                match = match & (pl.col("cat").str.to_lowercase() == reminder.given_by.value)
            first = given_rows.filter(match).group_by(PID).agg(pl.col("t").min().alias("_given_t"))
            given = (pl.col("_given_t") <= pl.col("at")).fill_null(False)
        anchor_note = (
            pl.when(pl.col("_ld").is_null())
            .then(pl.lit(" (no lymphodepletion row: counted from infusion)"))
            .otherwise(pl.lit(""))
            if reminder.anchor == "lymphodepletion"
            else pl.lit("")
        )
        rows = frame if reminder.given_by is None else frame.join(first, on=PID, how="left", maintain_order="left")
        parts.append(
            rows.select(
                Q,
                PID,
                "at",
                pl.lit(reminder.id).alias("reminder"),
                pl.lit(reminder.target).alias("target"),
                pl.lit(reminder.text).alias("text"),
                (inside & condition).alias("due"),
                given.alias("given"),
                pl.concat_str(
                    [
                        pl.lit(
                            f"day {_bound(reminder.start_day)} to {_bound(reminder.stop_day)} after {reminder.anchor}"
                        ),
                        anchor_note,
                    ]
                ).alias("window"),
                start.alias("window_start"),
                stop.alias("window_stop"),
                pl.concat_str(
                    [
                        pl.when(inside).then(pl.lit("inside the window")).otherwise(pl.lit("outside the window")),
                        because,
                    ],
                    separator="; ",
                ).alias("because"),
                pl.when(inside & condition.is_null()).then(pl.lit(needs[reminder.condition], pl.Utf8)).alias("needs"),
                pl.lit(reminder.source).alias("source"),
                pl.lit(reminder.note).alias("note"),
            )
        )
    return pl.concat(parts).sort(Q, maintain_order=True).drop(Q)
