"""CAR-T cellular kinetics: non-compartmental analysis (NCA) of CAR levels for a whole batch at once.

Each assay (``car_t_copies`` {copies}/ug gDNA by qPCR, ``car_t_cells`` /uL and ``car_t_percent`` % of CD3+
by flow cytometry) is its own series: assays are never mixed (criteria.md §7). Per patient and assay,
:func:`kinetics_nca` gives Cmax, Tmax, AUC(0-28 d) by the linear-up/log-down trapezoidal rule, AUC to the
last quantifiable level, Clast, Tlast, persistence at day 90 and 180, and the terminal half-life by
log-linear regression; :func:`expansion_phase` says whether a time lies before, at or after the patient's
expansion peak (to time steroids as in seed 000, Lu N et al., Front Hematol 2025, doi:10.3389/frhem.2025.1616504);
:func:`cohort_time_to_peak` computes the cohort's time to peak (median, IQR) from the data, to stand in
for a patient without levels.

Conventions (each a rule in ``data/criteria/kinetics_nca.yaml``, documented in docs/kinetics.md):

* Samples at ``t <= 0`` are pre-infusion; the curve starts at day 0 with the latest of them (a BLQ counts
  as 0), or with 0 when there is none ("pre-dose value = 0", criteria.md §7). Cmax, Tmax, Clast, Tlast and
  the sample counts use the post-infusion samples (``t > 0``) only.
* Replicates at the same time are averaged (quantifiable ones; the time point is BLQ when none is). A
  measured 0 counts as below quantification.
* BLQ values follow ``KineticsConfig.blq_rule``: before Tmax always 0; after Tmax excluded, LLOQ/2 or 0.
  Cmax, Clast, Tlast, the half-life and persistence use quantifiable values only.
* Actual sampling days are used, never nominal ones (criteria.md §7).

References: criteria.md §7; Mueller KT et al., Clin Cancer Res 2018;24:6175 (doi:10.1158/1078-0432.CCR-18-0758);
Awasthi R et al., Blood Adv 2020;4:560 (doi:10.1182/bloodadvances.2019000525); FDA guidance on
bioavailability/bioequivalence NCA and the PKNCA conventions (linear-up/log-down, lambda-z selection).

Example
-------
>>> import polars as pl
>>> from tocsin.config import KineticsConfig
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> levels = [("7", "1000"), ("14", "500"), ("21", "250"), ("28", "125")]
>>> rows = [("P", "0", "infusion", "axi-cel", "")] + [("P", d, "car_t_copies", v, "{copies}/ug") for d, v in levels]
>>> raw = pl.DataFrame(rows, orient="row", schema=["patient_id", "day", "item", "value", "unit"])
>>> raw = raw.with_columns(file=pl.lit("x.csv"), line=pl.int_range(2, 7))
>>> n = normalise_events(raw, load_vocabulary())
>>> nca = kinetics_nca(n.events, n.patients, KineticsConfig())
>>> nca.select("cmax", "tmax_day", pl.col("auc_0_28").round(2), pl.col("half_life_days").round(6)).row(0)
(1000.0, 7.0, 12336.51, 7.0)
"""

from __future__ import annotations

import math
from functools import cache

import polars as pl

from tocsin.config import KineticsConfig
from tocsin.core.segments import last_index, shift1, with_segment_start
from tocsin.vocabulary import load_vocabulary

PID = "patient_id"
#: One series per patient and assay.
GROUP = [PID, "item"]
SERIES = "_series"
#: Values of the ``phase`` column of :func:`expansion_phase`.
PHASES = ("before_peak", "at_peak", "after_peak", "peak_not_confirmed")
MEASURED = "measured"
COHORT_REFERENCE = "cohort reference"


@cache
def kinetic_units() -> dict[str, str]:
    """Each kinetics item of the vocabulary (one assay each) and its canonical unit."""
    vocabulary = load_vocabulary()
    return {name: vocabulary.items[name].unit or "" for name in vocabulary.names_where(kind="kinetics")}


def day_label(day: float) -> str:
    """How a day appears in a column name: 28 -> '28', 90.5 -> '90.5'."""
    return f"{day:g}"


def auc_column(config: KineticsConfig) -> str:
    """Name of the AUC(0-end) column under this config (``auc_0_28`` by default)."""
    return f"auc_0_{day_label(config.auc_end_day)}"


def persistence_columns(config: KineticsConfig) -> list[str]:
    """Names of the persistence columns under this config (``persistence_d90``, ``persistence_d180``)."""
    return [f"persistence_d{day_label(d)}" for d in _persistence_days(config)]


def _persistence_days(config: KineticsConfig) -> list[float]:
    return sorted(set(config.persistence_days))


def _samples(events: pl.DataFrame) -> pl.DataFrame:
    """One row per patient, assay and time, sorted by series and time: ``num`` (null when below
    quantification), ``lloq``, ``blq``, and the series number ``_series`` (an integer window key: cheaper to
    hash than patient and assay). Sorting here, with replicates collapsed, makes every result independent
    of the input's row order."""
    order = [pl.col(PID).to_physical(), pl.col("item").to_physical(), "t"]
    rows = (
        events.filter(pl.col("item").is_in(list(kinetic_units())))
        .select(PID, "item", "t", pl.when(pl.col("num") > 0).then(pl.col("num")).alias("num"), "lloq")
        .sort(order)
    )
    same_series = (pl.col(PID) == pl.col(PID).shift(1)) & (pl.col("item") == pl.col("item").shift(1))
    if rows.select((same_series & (pl.col("t") == pl.col("t").shift(1))).any()).item():
        rows = rows.group_by([*GROUP, "t"]).agg(pl.col("num").mean(), pl.col("lloq").max()).sort(order)
    return rows.with_columns(
        pl.col("num").is_null().alias("blq"), (~same_series).fill_null(True).cum_sum().alias(SERIES)
    )


def _with_peak(post: pl.DataFrame) -> pl.DataFrame:
    """Cmax and Tmax (first time of the maximum) of each series on every row; null when nothing is quantifiable."""
    cmax = pl.col("num").max().over(SERIES)
    return post.with_columns(cmax.alias("cmax")).with_columns(
        pl.col("t").filter(pl.col("num") == pl.col("cmax")).min().over(SERIES).alias("tmax_day")
    )


def _value_used(config: KineticsConfig) -> pl.Expr:
    """The level a sample contributes to the AUC under the BLQ rule (null = excluded)."""
    before_peak = pl.col("tmax_day").is_null() | (pl.col("t") < pl.col("tmax_day"))
    after_peak = {
        "pre_peak_zero_post_peak_excluded": pl.lit(None, pl.Float64),
        # A measured 0 has no limit: 0 is the only value consistent with it.
        "pre_peak_zero_post_peak_half_lloq": (pl.col("lloq") / 2).fill_null(0.0),
        "all_zero": pl.lit(0.0),
    }[config.blq_rule]
    return (
        pl.when(~pl.col("blq")).then(pl.col("num")).when(before_peak).then(pl.lit(0.0)).otherwise(after_peak).alias("c")
    )


def _segment_area(t1: pl.Expr, c1: pl.Expr, t2: pl.Expr, c2: pl.Expr) -> pl.Expr:
    """Linear-up/log-down trapezoid: log rule on a strictly falling segment with both ends above 0 (the
    log rule is undefined at 0 and for equal ends), linear otherwise."""
    dt = t2 - t1
    log_down = (c2 < c1) & (c2 > 0)
    return pl.when(log_down).then((c1 - c2) * dt / (c1 / c2).log()).otherwise((c1 + c2) / 2 * dt)


def _interpolate(t1: pl.Expr, c1: pl.Expr, t2: pl.Expr, c2: pl.Expr, at: float) -> pl.Expr:
    """Level at ``at`` between two samples, by the same rule as the area: log on a falling segment."""
    fraction = (pl.lit(at) - t1) / (t2 - t1)
    log_down = (c2 < c1) & (c2 > 0)
    return pl.when(log_down).then(c1 * ((c2 / c1).log() * fraction).exp()).otherwise(c1 + (c2 - c1) * fraction)


def _areas(curve: pl.DataFrame, config: KineticsConfig) -> pl.DataFrame:
    """AUC(0-end) and AUC(0-Tlast) per series from the curve points (day-0 point + used samples)."""
    end = config.auc_end_day
    same_next = (pl.col(PID) == pl.col(PID).shift(-1)) & (pl.col("item") == pl.col("item").shift(-1))
    t1, c1 = pl.col("t"), pl.col("c")
    t2, c2 = pl.col("t").shift(-1), pl.col("c").shift(-1)
    segments = curve.with_columns(
        pl.when(same_next).then(t2).alias("t2"), pl.when(same_next).then(c2).alias("c2")
    ).filter(pl.col("t2").is_not_null())
    t2, c2 = pl.col("t2"), pl.col("c2")
    area = _segment_area(t1, c1, t2, c2)
    to_end = (
        pl.when(t2 <= end).then(area).otherwise(_segment_area(t1, c1, pl.lit(end), _interpolate(t1, c1, t2, c2, end)))
    )
    reach = curve.group_by(GROUP).agg(pl.col("t").max().alias("_curve_end"))
    sums = segments.group_by(GROUP).agg(
        to_end.filter(t1 < end).sum().alias("_auc_end"),
        area.filter(t2 <= pl.col("tlast_day")).sum().alias("auc_0_tlast"),
    )
    return reach.join(sums, on=GROUP, how="left").with_columns(
        pl.when(pl.col("_curve_end") >= end).then(pl.col("_auc_end").fill_null(0.0)).alias("_auc_end")
    )


def _half_life(post: pl.DataFrame, config: KineticsConfig) -> pl.DataFrame:
    """Terminal half-life per series: log-linear least squares on the last n quantifiable points after Tmax,
    n from ``half_life_min_points`` to all; among fits with a decline, the best adjusted R² wins, and within
    ``half_life_r2_adj_tolerance`` of it the fit with most points (WinNonlin/PKNCA best-fit)."""
    points = post.filter(~pl.col("blq") & (pl.col("t") > pl.col("tmax_day")))
    # Centred on the last point so the running sums stay small (no cancellation on long courses).
    x = pl.col("t") - pl.col("t").max().over(SERIES)
    y = pl.col("num").log() - pl.col("num").last().over(SERIES).log()
    sums = points.with_columns(x.alias("x"), y.alias("y")).with_columns(
        pl.col("t").cum_count(reverse=True).over(SERIES).alias("n"),
        pl.col("x").cum_sum(reverse=True).over(SERIES).alias("sx"),
        pl.col("y").cum_sum(reverse=True).over(SERIES).alias("sy"),
        (pl.col("x") ** 2).cum_sum(reverse=True).over(SERIES).alias("sxx"),
        (pl.col("x") * pl.col("y")).cum_sum(reverse=True).over(SERIES).alias("sxy"),
        (pl.col("y") ** 2).cum_sum(reverse=True).over(SERIES).alias("syy"),
    )
    n = pl.col("n").cast(pl.Float64)
    sxx = pl.col("sxx") - pl.col("sx") ** 2 / n
    sxy = pl.col("sxy") - pl.col("sx") * pl.col("sy") / n
    syy = pl.col("syy") - pl.col("sy") ** 2 / n
    # Equal levels (syy = 0) have no decline: such fits are dropped by lambda_z > 0 below.
    r2 = pl.when(syy > 0).then((sxy**2 / (sxx * syy)).clip(upper_bound=1.0))
    fits = (
        sums.filter(pl.col("n") >= config.half_life_min_points)
        .with_columns((-sxy / sxx).alias("lambda_z"), (1 - (1 - r2) * (n - 1) / (n - 2)).alias("half_life_r2_adj"))
        .filter(pl.col("lambda_z") > 0)
    )
    best = pl.col("half_life_r2_adj").max().over(SERIES)
    chosen = (
        fits.filter(pl.col("half_life_r2_adj") >= best - config.half_life_r2_adj_tolerance)
        .filter(pl.col("n") == pl.col("n").max().over(SERIES))
        .select(
            *GROUP,
            "lambda_z",
            (math.log(2) / pl.col("lambda_z")).alias("half_life_days"),
            pl.col("n").cast(pl.Int64).alias("half_life_points"),
            "half_life_r2_adj",
            pl.col("t").alias("half_life_from_day"),
        )
    )
    counts = points.group_by(GROUP).agg(
        pl.len().alias("_post_peak_points"), pl.col("t").max().alias("half_life_to_day")
    )
    return counts.join(chosen, on=GROUP, how="left")


def _persistence(post: pl.DataFrame, config: KineticsConfig) -> pl.DataFrame:
    """Per series and persistence day D: is the sample nearest to D (within the window; the later on a tie)
    quantifiable, and its day. Only the few samples inside a window are grouped."""
    window = config.persistence_window_days
    if not _persistence_days(config):
        return post.select(GROUP).unique()
    near = post.filter(
        pl.any_horizontal((pl.col("t") - day).abs() <= window for day in _persistence_days(config))
    ).select(*GROUP, "t", "blq")
    aggregations = []
    for day in _persistence_days(config):
        label = day_label(day)
        distance = (pl.col("t") - day).abs()
        inside = distance <= window
        nearest_day = pl.col("t").filter(inside & (distance == distance.filter(inside).min())).max()
        aggregations += [
            (~pl.col("blq")).filter(pl.col("t") == nearest_day).first().alias(f"persistence_d{label}"),
            nearest_day.alias(f"persistence_d{label}_day"),
        ]
    return near.group_by(GROUP).agg(aggregations)


def kinetics_nca(events: pl.DataFrame, patients: pl.DataFrame, config: KineticsConfig) -> pl.DataFrame:
    """NCA of CAR-T levels: one row per patient and assay with at least one post-infusion sample.

    ``events`` are canonical events (``tocsin.core.events.normalise_events``); ``patients`` its patient table
    (for ``product``). Columns (``auc_0_28`` and ``persistence_d90``/``_d180`` are named after the config's
    days): ``patient_id``, ``item`` (the assay), ``unit``, ``product``, ``blq_rule``, ``n_samples`` (post-
    infusion sampling times), ``n_quantifiable``, ``day0_value`` and ``day0_from_sample`` (the curve's day-0
    level and whether a pre-infusion sample gave it), ``cmax``, ``tmax_day``, ``peak_confirmed`` (a later
    sample is lower), ``clast``, ``tlast_day``, ``last_sample_day``, ``auc_0_28`` with ``auc_0_28_reason``
    (why it is null), ``auc_0_tlast``, ``lambda_z`` (1/day), ``half_life_days``, ``half_life_points``,
    ``half_life_r2_adj``, ``half_life_from_day``, ``half_life_to_day`` (the points used are the
    quantifiable samples in that range), ``half_life_reason``, and per persistence day ``persistence_d90``
    (quantifiable at the nearest sample in the window; null = no sample in the window) with
    ``persistence_d90_day`` (that sample's day). Sorted by patient, then assay in vocabulary order;
    ``item`` is text, as in the other outputs of this module.

    Levels are in the assay's canonical unit; AUC in unit x day. See the module docstring and
    docs/kinetics.md for the conventions, and ``data/criteria/kinetics_nca.yaml`` for their sources.
    """
    samples = _samples(events)
    post = _with_peak(samples.filter(pl.col("t") > 0)).with_columns(_value_used(config))
    day0 = (
        samples.filter(pl.col("t") <= 0)
        .group_by(GROUP)
        .agg(pl.col("num").last().fill_null(0.0).alias("day0_value"))
        .with_columns(pl.lit(True).alias("day0_from_sample"))
    )
    cmax, tmax = pl.col("cmax").first(), pl.col("tmax_day").first()
    quantifiable = ~pl.col("blq")
    summary = post.group_by(GROUP).agg(
        pl.len().cast(pl.Int64).alias("n_samples"),
        quantifiable.sum().cast(pl.Int64).alias("n_quantifiable"),
        cmax.alias("cmax"),
        tmax.alias("tmax_day"),
        ((pl.col("t") > tmax) & (pl.col("blq") | (pl.col("num") < cmax))).any().alias("peak_confirmed"),
        # Rows keep their time order within a group (``_samples`` sorted them).
        pl.col("num").drop_nulls().last().alias("clast"),
        pl.col("t").filter(quantifiable).max().alias("tlast_day"),
        pl.col("t").max().alias("last_sample_day"),
        pl.col("t").filter(pl.col("c").is_not_null()).max().alias("_last_used_day"),
    )
    summary = summary.join(day0, on=GROUP, how="left").with_columns(
        pl.col("day0_value").fill_null(0.0), pl.col("day0_from_sample").fill_null(False)
    )
    curve = pl.concat(
        [
            summary.select(*GROUP, pl.lit(0.0).alias("t"), pl.col("day0_value").alias("c"), "tlast_day"),
            post.filter(pl.col("c").is_not_null())
            .join(summary.select(*GROUP, "tlast_day"), on=GROUP)
            .select(*GROUP, "t", "c", "tlast_day"),
        ]
    ).sort([*GROUP, "t"])
    result = (
        summary.join(_areas(curve, config), on=GROUP, how="left")
        .join(_half_life(post, config), on=GROUP, how="left")
        .join(_persistence(post, config), on=GROUP, how="left")
        .join(patients.select(PID, "product"), on=PID, how="left")
    )
    return _finish(result, config)


def _finish(result: pl.DataFrame, config: KineticsConfig) -> pl.DataFrame:
    """Reasons for null parameters, config-named columns, documented column order."""
    end = config.auc_end_day
    auc = auc_column(config)
    auc_reason = (
        pl.when(pl.col("_auc_end").is_not_null())
        .then(None)
        .when(pl.col("last_sample_day") < end)
        .then(pl.format("sampling ends at day {}, before day {} (not extrapolated)", "last_sample_day", pl.lit(end)))
        .otherwise(
            pl.format(
                "last usable level at day {}, before day {}: later samples are BLQ after Tmax and {} excludes them",
                pl.coalesce(pl.col("_last_used_day"), pl.lit(0.0)),
                pl.lit(end),
                pl.lit(config.blq_rule),
            )
        )
    )
    min_points = config.half_life_min_points
    threshold = config.half_life_min_r2_adj
    below_threshold = (pl.col("half_life_r2_adj") < threshold if threshold is not None else pl.lit(False)) & pl.col(
        "lambda_z"
    ).is_not_null()
    half_life_reason = (
        pl.when(pl.col("tmax_day").is_null())
        .then(pl.lit("no quantifiable level"))
        .when(pl.col("_post_peak_points").fill_null(0) < min_points)
        .then(
            pl.format(
                "{} quantifiable points after Tmax; at least {} are needed",
                pl.col("_post_peak_points").fill_null(0),
                pl.lit(min_points),
            )
        )
        .when(pl.col("lambda_z").is_null())
        .then(pl.lit("no decline after Tmax (lambda_z <= 0 for every fit)"))
        .when(below_threshold)
        .then(pl.format("adjusted R² {} is below {}", pl.col("half_life_r2_adj").round(4), pl.lit(threshold)))
    )
    rejected = below_threshold.fill_null(False)
    units = kinetic_units()
    persistence = [c for col in persistence_columns(config) for c in (col, f"{col}_day")]
    return (
        result.with_columns(
            pl.col("_auc_end").alias(auc),
            auc_reason.alias(f"{auc}_reason"),
            half_life_reason.alias("half_life_reason"),
            *(
                pl.when(~rejected).then(pl.col(c)).alias(c)
                for c in ("lambda_z", "half_life_days", "half_life_points", "half_life_r2_adj", "half_life_from_day")
            ),
            pl.when(pl.col("lambda_z").is_not_null() & ~rejected)
            .then(pl.col("half_life_to_day"))
            .alias("half_life_to_day"),
            pl.when(pl.col("tlast_day").is_not_null()).then(pl.col("auc_0_tlast")).alias("auc_0_tlast"),
            pl.col("item").cast(pl.Utf8).replace_strict(units, return_dtype=pl.Utf8).alias("unit"),
            pl.lit(config.blq_rule).alias("blq_rule"),
        )
        .select(
            PID,
            "item",
            "unit",
            "product",
            "blq_rule",
            "n_samples",
            "n_quantifiable",
            "day0_value",
            "day0_from_sample",
            "cmax",
            "tmax_day",
            "peak_confirmed",
            "clast",
            "tlast_day",
            "last_sample_day",
            auc,
            f"{auc}_reason",
            "auc_0_tlast",
            "lambda_z",
            "half_life_days",
            "half_life_points",
            "half_life_r2_adj",
            "half_life_from_day",
            "half_life_to_day",
            "half_life_reason",
            *persistence,
        )
        .sort([pl.col(PID).cast(pl.Utf8), "item"])
        .with_columns(pl.col("item").cast(pl.Utf8))
    )


def cohort_time_to_peak(nca: pl.DataFrame, *, by_product: bool = True) -> pl.DataFrame:
    """Cohort reference for the time to peak expansion, from the data (never a hard-coded label value).

    ``nca`` is the output of :func:`kinetics_nca`. Only confirmed peaks count (an unconfirmed Tmax is the
    last sample so far: the true peak may be later). One row per assay (and product, when ``by_product``;
    else ``product`` is null, the pooled reference): ``item``, ``product``, ``n``, ``tmax_median_day``,
    ``tmax_q1_day``, ``tmax_q3_day`` (IQR by linear interpolation between order statistics, numpy/R type 7),
    ``tmax_min_day``, ``tmax_max_day``. Seed 000 started steroids "after the median time to peak CAR T-cell
    expansion"; criteria.md §7 reports Tmax as median (range).

    >>> nca = pl.DataFrame({"item": ["car_t_copies"] * 3, "product": ["axi-cel"] * 3,
    ...                     "tmax_day": [7.0, 10.0, 14.0], "peak_confirmed": [True, True, True]})
    >>> cohort_time_to_peak(nca).select("n", "tmax_median_day", "tmax_q1_day", "tmax_q3_day").row(0)
    (3, 10.0, 8.5, 12.0)
    """
    keys = ["item", "product"] if by_product else ["item"]
    tmax = pl.col("tmax_day")
    reference = (
        nca.filter(pl.col("peak_confirmed").fill_null(False) & tmax.is_not_null())
        .group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            tmax.median().alias("tmax_median_day"),
            tmax.quantile(0.25, interpolation="linear").alias("tmax_q1_day"),
            tmax.quantile(0.75, interpolation="linear").alias("tmax_q3_day"),
            tmax.min().alias("tmax_min_day"),
            tmax.max().alias("tmax_max_day"),
        )
    )
    if not by_product:
        reference = reference.with_columns(pl.lit(None, pl.Utf8).alias("product"))
    return reference.select(
        pl.col("item").cast(pl.Utf8),
        pl.col("product").cast(pl.Utf8),
        "n",
        "tmax_median_day",
        "tmax_q1_day",
        "tmax_q3_day",
        "tmax_min_day",
        "tmax_max_day",
    ).sort(["item", "product"], nulls_last=True)


def _running_peak(post: pl.DataFrame) -> pl.DataFrame:
    """Per sample: the peak known from the samples up to it (``tmax_day``, null before any quantifiable
    level) and whether a later sample up to it is lower (``peak_confirmed``). A new, strictly higher level
    starts a new candidate peak; an equal one does not confirm it."""
    level = pl.col("num").fill_null(-1.0)  # BLQ is lower than any quantifiable level
    frame = with_segment_start(post, [SERIES]).with_columns(level.cum_max().over(SERIES).alias("_max"))
    new_peak = level > shift1(pl.col("_max")).fill_null(-1.0)
    peak_row, lower_row = last_index(new_peak), last_index(level < pl.col("_max"))
    return frame.with_columns(
        pl.col("t").gather(peak_row).alias("tmax_day"),
        (lower_row > peak_row).fill_null(False).alias("peak_confirmed"),
    ).select(*GROUP, "t", "tmax_day", "peak_confirmed")


def expansion_phase(
    events: pl.DataFrame,
    queries: pl.DataFrame,
    config: KineticsConfig,
    *,
    patients: pl.DataFrame | None = None,
    reference: pl.DataFrame | None = None,
    known_at_t: bool = False,
) -> pl.DataFrame:
    """Phase of CAR-T expansion at each query row (``patient_id``, ``t`` days since infusion, any other
    columns are passed through).

    The patient's assay is the first of ``config.phase_assays`` with a quantifiable level (assays are never
    mixed). With the peak's time Tmax (first time of the highest level) and ``peak_confirmed`` (a later
    sample is lower):

    * ``before_peak``: t < Tmax;
    * ``at_peak``: t = Tmax, peak confirmed;
    * ``after_peak``: t > Tmax, peak confirmed;
    * ``peak_not_confirmed``: at or after the highest level so far, but no later sample is lower yet (the
      level may still rise: "at or before the peak, not confirmed").

    ``known_at_t=False`` (retrospective, e.g. "were steroids started after the peak?", seed 000) uses the
    whole course; ``known_at_t=True`` uses only samples at or before t (what was known at the bedside), so
    the phase is ``after_peak`` or ``peak_not_confirmed``.

    A patient with no quantifiable level in any assay gets, when ``reference`` (from
    :func:`cohort_time_to_peak`) and ``patients`` are given, the phase against the cohort's median time to
    peak for the patient's product (else the pooled row, product null), assays in the same order; ``basis``
    says ``cohort reference`` (not measured) and ``reference_n`` how many peaks it rests on. Otherwise
    ``phase`` is null.

    Returns the query rows in their order with ``item``, ``phase``, ``basis`` (``measured`` | ``cohort
    reference`` | null), ``tmax_day`` (measured, or the reference median), ``peak_confirmed``,
    ``reference_product`` and ``reference_n``.
    """
    if reference is not None and patients is None:
        raise ValueError("a cohort reference needs the patients table (for each patient's product)")
    samples = _running_peak(_samples(events).filter(pl.col("t") > 0))
    assays = {name: rank for rank, name in enumerate(config.phase_assays)}
    samples = samples.select(
        pl.col(PID).cast(pl.Utf8).alias("_pid"), pl.col("item").cast(pl.Utf8), "t", "tmax_day", "peak_confirmed"
    ).filter(pl.col("item").is_in(list(assays)))
    chosen = (
        samples.filter(pl.col("tmax_day").is_not_null())
        .select("_pid", "item")
        .unique()
        .with_columns(pl.col("item").replace_strict(assays, return_dtype=pl.Int64).alias("_rank"))
        .filter(pl.col("_rank") == pl.col("_rank").min().over("_pid"))
        .drop("_rank")
    )
    states = samples.join(chosen, on=["_pid", "item"])
    asked = queries.with_row_index("_query").with_columns(pl.col(PID).cast(pl.Utf8).alias("_pid"))
    measured = asked.join(chosen, on="_pid", how="left")
    if known_at_t:
        at_t = states.rename({"t": "_sample_t"}).sort("_sample_t")
        measured = (
            measured.sort("t")
            # Both sides are sorted by time as a whole, hence within every (patient, assay) group.
            .join_asof(at_t, left_on="t", right_on="_sample_t", by=["_pid", "item"], check_sortedness=False)
            .sort("_query")
        )
    else:
        final = states.group_by(["_pid", "item"]).agg(
            pl.col("tmax_day").sort_by("t").last(), pl.col("peak_confirmed").sort_by("t").last()
        )
        measured = measured.join(final, on=["_pid", "item"], how="left").sort("_query")
    t, tmax, confirmed = pl.col("t"), pl.col("tmax_day"), pl.col("peak_confirmed").fill_null(False)
    phase = (
        pl.when(pl.col("item").is_null())
        .then(None)
        .when(tmax.is_null())
        .then(pl.lit("peak_not_confirmed"))
        .when(t < tmax)
        .then(pl.lit("before_peak"))
        .when(confirmed & (t == tmax))
        .then(pl.lit("at_peak"))
        .when(confirmed & (t > tmax))
        .then(pl.lit("after_peak"))
        .otherwise(pl.lit("peak_not_confirmed"))
    )
    measured = measured.with_columns(
        phase.alias("phase"),
        pl.when(pl.col("item").is_not_null()).then(pl.lit(MEASURED)).alias("basis"),
        pl.lit(None, pl.Utf8).alias("reference_product"),
        pl.lit(None, pl.Int64).alias("reference_n"),
    )
    if reference is not None and patients is not None:
        measured = _with_reference(measured, patients, reference, assays)
    return measured.select(
        *queries.columns, "item", "phase", "basis", "tmax_day", "peak_confirmed", "reference_product", "reference_n"
    )


def _with_reference(
    measured: pl.DataFrame, patients: pl.DataFrame, reference: pl.DataFrame, assays: dict[str, int]
) -> pl.DataFrame:
    """Phase against the cohort's median time to peak for query rows of patients without any level."""
    ref = reference.select(
        pl.col("item").cast(pl.Utf8),
        pl.col("product").cast(pl.Utf8).alias("reference_product"),
        pl.col("n").alias("reference_n"),
        pl.col("tmax_median_day").alias("tmax_day"),
    ).filter(pl.col("item").is_in(list(assays)))
    products = patients.select(pl.col(PID).cast(pl.Utf8).alias("_pid"), pl.col("product").cast(pl.Utf8))
    unmeasured = measured.filter(pl.col("item").is_null()).select("_query", "_pid", "t")
    options = unmeasured.join(products, on="_pid", how="left").join(ref, how="cross")
    same_product = pl.col("reference_product") == pl.col("product")
    candidates = options.filter(same_product.fill_null(False) | pl.col("reference_product").is_null()).with_columns(
        pl.col("item").replace_strict(assays, return_dtype=pl.Int64).alias("_rank"),
        pl.col("reference_product").is_null().cast(pl.Int64).alias("_pooled"),
    )
    best = candidates.sort(["_query", "_pooled", "_rank"]).group_by("_query").first()
    t, median = pl.col("t"), pl.col("tmax_day")
    phased = best.select(
        "_query",
        "item",
        pl.when(t < median)
        .then(pl.lit("before_peak"))
        .when(t == median)
        .then(pl.lit("at_peak"))
        .otherwise(pl.lit("after_peak"))
        .alias("phase"),
        pl.lit(COHORT_REFERENCE).alias("basis"),
        "tmax_day",
        pl.lit(None, pl.Boolean).alias("peak_confirmed"),
        "reference_product",
        "reference_n",
    )
    columns = ["item", "phase", "basis", "tmax_day", "peak_confirmed", "reference_product", "reference_n"]
    return measured.update(phased.cast({c: measured.schema[c] for c in columns}), on="_query", how="left")
