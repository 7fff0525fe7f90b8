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
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from tocsin.config import KineticsConfig
from tocsin.core.arrays import nan_as_null, patient_positions
from tocsin.core.kernels_kinetics import (
    BLQ_RULES,
    FLOAT_OUTPUTS,
    INT_OUTPUTS,
    _collapse_replicates_loop,
    _nca_loop,
)
from tocsin.core.segments import compiled, last_index, shift1, with_segment_start
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


@dataclass(frozen=True)
class _Samples:
    """One entry per patient, assay and time, sorted by series (patient, assay) and time; series ``i`` is
    entries ``series_start[i]:series_start[i + 1]``. ``num`` is NaN below quantification, ``lloq`` NaN when
    not given, and ``source_row`` a row of the events each entry came from (for the patient and the assay).
    Sorting here, with replicates collapsed, makes every result independent of the input's row order."""

    source_row: np.ndarray
    series_start: np.ndarray
    t: np.ndarray
    num: np.ndarray
    lloq: np.ndarray

    @property
    def blq(self) -> np.ndarray:
        return np.isnan(self.num)


def _sort_codes(values: pl.Series) -> np.ndarray:
    """Integer keys that sort like Polars sorts the column's physical values (category codes, else text)."""
    if values.dtype == pl.Categorical or isinstance(values.dtype, pl.Enum):
        return values.to_physical().to_numpy()
    return np.unique(values.cast(pl.Utf8).to_numpy(), return_inverse=True)[1]


def _samples(events: pl.DataFrame) -> _Samples:
    """The kinetics rows of ``events`` as sorted samples (replicates at one time averaged, quantifiable ones;
    a measured 0 counts as below quantification)."""
    item = events.get_column("item")
    rows = np.flatnonzero(item.is_in(list(kinetic_units())).to_numpy())
    column = {c: events.get_column(c).gather(rows) for c in ("t", "num", "lloq")}
    t = column["t"].to_numpy()
    patient, assay = _sort_codes(events.get_column(PID).gather(rows)), _sort_codes(item.gather(rows))
    order = np.lexsort((t, assay, patient))
    rows, t, patient, assay = rows[order], t[order], patient[order], assay[order]
    num = column["num"].cast(pl.Float64).fill_null(np.nan).to_numpy()[order]
    lloq = column["lloq"].cast(pl.Float64).fill_null(np.nan).to_numpy()[order]
    new_series = np.ones(rows.shape[0], dtype=np.bool_)
    new_series[1:] = (patient[1:] != patient[:-1]) | (assay[1:] != assay[:-1])
    new_time = new_series.copy()
    new_time[1:] |= t[1:] != t[:-1]
    sample_start = np.flatnonzero(np.append(new_time, True))
    level, limit = compiled(_collapse_replicates_loop)(sample_start, np.where(num > 0, num, np.nan), lloq)
    first = sample_start[:-1]
    return _Samples(rows[first], np.flatnonzero(np.append(new_series[first], True)), t[first], level, limit)


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
    docs/kinetics.md for the conventions, and ``data/criteria/kinetics_nca.yaml`` for their sources. Each
    series (patient and assay) is one walk over its sorted samples (``kernels_kinetics._nca_loop``).
    """
    samples = _samples(events)
    start, stop = samples.series_start[:-1], samples.series_start[1:]
    # A series is reported when it has a post-infusion sample: its last (in time order) is one.
    reported = samples.t[stop - 1] > 0 if stop.size else np.zeros(0, dtype=np.bool_)
    start, stop = start[reported], stop[reported]
    days = np.array(_persistence_days(config), dtype=np.float64)
    floats = np.empty((len(FLOAT_OUTPUTS), start.size))
    ints = np.empty((len(INT_OUTPUTS), start.size), dtype=np.int64)
    persistent = np.empty((days.size, start.size), dtype=np.int8)
    persistence_day = np.empty((days.size, start.size))
    compiled(_nca_loop)(
        start,
        stop,
        samples.t,
        samples.num,
        samples.lloq,
        BLQ_RULES.index(config.blq_rule),
        float(config.auc_end_day),
        days,
        float(config.persistence_window_days),
        config.half_life_min_points,
        float(config.half_life_r2_adj_tolerance),
        floats,
        ints,
        persistent,
        persistence_day,
    )
    source = samples.source_row[start]
    patient = events.get_column(PID).gather(source)
    order = np.argsort(patient.cast(pl.Utf8).to_numpy(), kind="stable")  # series come by assay within a patient
    patient, source = patient.gather(order), source[order]
    value = dict(zip(FLOAT_OUTPUTS, floats[:, order]))
    count = dict(zip(INT_OUTPUTS, ints[:, order]))
    item = events.get_column("item").gather(source).cast(pl.Utf8)
    return _finish(patient, item, _products(patient, patients), value, count, persistent[:, order],
                   persistence_day[:, order], config)


def _products(patient: pl.Series, patients: pl.DataFrame) -> pl.Series:
    """Each row's CAR-T product from the patient table (null for a patient it does not list)."""
    position = patient_positions(patient, patients.get_column(PID))
    products = patients.get_column("product")
    if patients.height == 0:
        return pl.Series("product", [None] * patient.len(), dtype=products.dtype)
    return _null_where(products.gather(np.maximum(position, 0)), position < 0)


def _finish(
    patient: pl.Series,
    item: pl.Series,
    product: pl.Series,
    value: dict[str, np.ndarray],
    count: dict[str, np.ndarray],
    persistent: np.ndarray,
    persistence_day: np.ndarray,
    config: KineticsConfig,
) -> pl.DataFrame:
    """The output frame in its documented column order, with the reasons for null parameters."""
    end = config.auc_end_day
    auc = auc_column(config)
    min_points = config.half_life_min_points
    threshold = config.half_life_min_r2_adj
    fitted = ~np.isnan(value["lambda_z"])
    # A fit below the R² threshold is reported as no half-life (its R² only in the reason).
    rejected = fitted & (value["half_life_r2_adj"] < threshold) if threshold is not None else np.zeros_like(fitted)
    kept = fitted & ~rejected
    n_rows = patient.len()
    units = kinetic_units()

    def number(name: str, where: np.ndarray | None = None) -> pl.Series:
        column = value[name] if where is None else np.where(where, value[name], np.nan)
        return nan_as_null(column, name)

    reasons = pl.DataFrame(
        [
            number("auc_end").alias("_auc_end"),
            number("last_sample_day"),
            number("last_used_day").alias("_last_used_day"),
            number("tmax_day"),
            pl.Series("_post_peak_points", count["post_peak_points"]),
            number("lambda_z"),
            number("half_life_r2_adj"),
            pl.Series("_rejected", rejected),
        ]
    ).select(
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
        .alias(f"{auc}_reason"),
        pl.when(pl.col("tmax_day").is_null())
        .then(pl.lit("no quantifiable level"))
        .when(pl.col("_post_peak_points") < min_points)
        .then(
            pl.format(
                "{} quantifiable points after Tmax; at least {} are needed",
                pl.col("_post_peak_points"),
                pl.lit(min_points),
            )
        )
        .when(pl.col("lambda_z").is_null())
        .then(pl.lit("no decline after Tmax (lambda_z <= 0 for every fit)"))
        .when(pl.col("_rejected"))
        .then(pl.format("adjusted R² {} is below {}", pl.col("half_life_r2_adj").round(4), pl.lit(threshold)))
        .alias("half_life_reason"),
    )
    points = np.where(kept, count["half_life_points"], -1)
    columns = [
        patient,
        item.alias("item"),
        item.replace_strict(units, return_dtype=pl.Utf8).alias("unit"),
        product.alias("product"),
        pl.Series("blq_rule", [config.blq_rule] * n_rows, dtype=pl.Utf8),
        pl.Series("n_samples", count["n_samples"]),
        pl.Series("n_quantifiable", count["n_quantifiable"]),
        pl.Series("day0_value", value["day0_value"]),
        pl.Series("day0_from_sample", count["day0_from_sample"].astype(np.bool_)),
        number("cmax"),
        number("tmax_day"),
        pl.Series("peak_confirmed", count["peak_confirmed"].astype(np.bool_)),
        number("clast"),
        number("tlast_day"),
        number("last_sample_day"),
        number("auc_end").alias(auc),
        reasons.get_column(f"{auc}_reason"),
        number("auc_0_tlast"),
        number("lambda_z", kept),
        nan_as_null(np.where(kept, math.log(2) / value["lambda_z"], np.nan), "half_life_days"),
        _null_where(pl.Series("half_life_points", points), points < 0),
        number("half_life_r2_adj", kept),
        number("half_life_from_day", kept),
        number("half_life_to_day", kept),
        reasons.get_column("half_life_reason"),
    ]
    for d, name in enumerate(persistence_columns(config)):
        flag = _null_where(pl.Series(name, persistent[d] == 1), persistent[d] < 0)
        columns += [flag, nan_as_null(persistence_day[d], f"{name}_day")]
    return pl.DataFrame(columns)


def _null_where(values: pl.Series, missing: np.ndarray) -> pl.Series:
    """``values`` with null where ``missing`` holds."""
    return values.scatter(np.flatnonzero(missing), None) if missing.any() else values


def _sample_frame(events: pl.DataFrame, samples: _Samples) -> pl.DataFrame:
    """The samples as a frame: patient, assay, ``t``, ``num`` (null below quantification), ``blq`` and the
    series number ``_series`` (an integer window key: cheaper to hash than patient and assay)."""
    series = np.repeat(np.arange(1, samples.series_start.size), np.diff(samples.series_start))
    return pl.DataFrame(
        [
            events.get_column(PID).gather(samples.source_row),
            events.get_column("item").gather(samples.source_row),
            pl.Series("t", samples.t),
            nan_as_null(samples.num, "num"),
            pl.Series("blq", samples.blq),
            pl.Series(SERIES, series),
        ]
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
    samples = _running_peak(_sample_frame(events, _samples(events)).filter(pl.col("t") > 0))
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
