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
from tocsin.core.kernels_kinetics import (
    BLQ_RULES,
    FLOAT_OUTPUTS,
    INT_OUTPUTS,
    _collapse_replicates_loop,
    _nca_loop,
)
from tocsin.core.kernels_gather import rows_of_items
from tocsin.core.arrays import EventCodes, item_codes, positions_in, row_numbers
from tocsin.core.polars_handles import gather_series
from tocsin.core.segments import compiled, last_index, shift1, with_segment_start
from tocsin.core.timeline import Column, NullableInt, Text, frame_of, labels
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
    """One entry per patient, assay and time, sorted by patient (text), assay and time; series ``i`` (one
    patient's levels of one assay) is entries ``series_start[i]:series_start[i + 1]``. ``num`` is NaN below
    quantification, ``lloq`` NaN when not given; ``patient`` and ``item`` are the texts of each entry, and
    ``patient_ids`` the patient column of the kinetics rows of the events (``patient_ids[source_row]`` is an
    entry's). Sorting here, with replicates collapsed, makes every result independent of the input's row order."""

    patient_ids: pl.Series
    source_row: np.ndarray
    series_start: np.ndarray
    patient: np.ndarray
    item: np.ndarray
    t: np.ndarray
    num: np.ndarray
    lloq: np.ndarray

    @property
    def blq(self) -> np.ndarray:
        return np.isnan(self.num)


@cache
def _is_kinetic_code(categories: tuple[str, ...]) -> np.ndarray:
    """Per code of the ``item`` Enum of these categories (and the code of a null item after them): is it a
    kinetics item (an assay). Cached by the categories as a tuple: an Enum dtype hashes its categories as a
    Series (~20 µs)."""
    return np.isin(np.array([*categories, None], dtype=object), list(kinetic_units()))


def _assay_rows(item: pl.Series, read: EventCodes | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the kinetics items and their sort keys: vocabulary order for the ``item`` Enum of canonical
    events (``read``: their codes, when already read), else the text (as Polars sorts the column)."""
    if read is not None or isinstance(item.dtype, pl.Enum):  # codes read are of an Enum (a dtype costs ~10 µs)
        if read is None:
            categories = item.dtype.categories.to_list()
            codes = item_codes(item, len(categories))
        else:
            categories, codes = read.categories, read.item
        # One compiled pass; its patient codes are not read (the patients are sorted by their text below).
        rows, assay, _ = rows_of_items(codes, codes, _is_kinetic_code(tuple(categories)))
        return rows, assay
    names = item.cast(pl.Utf8)
    rows = np.flatnonzero(names.is_in(list(kinetic_units())).to_numpy())
    return rows, np.unique(names.gather(rows).to_numpy(), return_inverse=True)[1]


def _samples(events: pl.DataFrame, read: EventCodes | None = None) -> _Samples:
    """The kinetics rows of ``events`` as sorted samples (replicates at one time averaged, quantifiable ones;
    a measured 0 counts as below quantification; ``read``: the events' codes, when already read)."""
    rows, assay = _assay_rows(events.get_column("item"), read)
    # Each column gathered at a Series of row numbers through Polars' own handle (~1 µs; indexing the Series by it
    # ~4 µs, by an array a query, and a row gather of the frame took ~50 µs).
    index = row_numbers(rows)
    patient_ids, items, times, levels, limits = (
        gather_series(events.get_column(c), index) for c in (PID, "item", "t", "num", "lloq")
    )
    texts, t = patient_ids.cast(pl.Utf8).to_numpy(), times.to_numpy()
    # The patients in the order of their texts, as ranks: a patient's rows are adjacent (in canonical events), so
    # only the texts of the runs are sorted (every row's, as objects, cost ~1 ms for a chunk of a batch).
    change = np.flatnonzero(texts[1:] != texts[:-1]) + 1
    if change.size:
        head = np.append(0, change)
        names = texts[head].tolist()
        rank_of = {name: k for k, name in enumerate(sorted(set(names)))}
        runs = np.diff(np.append(head, texts.size))
        rank = np.repeat(np.array([rank_of[name] for name in names], dtype=np.int64), runs)
    else:  # one patient (a course), or none
        rank = np.zeros(texts.size, dtype=np.int64)
    order = np.lexsort((t, assay, rank))
    t, rank, assay = t[order], rank[order], assay[order]
    num, lloq = (c.cast(pl.Float64).to_numpy()[order] for c in (levels, limits))
    new_series = np.ones(order.shape[0], dtype=np.bool_)
    new_series[1:] = (rank[1:] != rank[:-1]) | (assay[1:] != assay[:-1])
    new_time = new_series.copy()
    new_time[1:] |= t[1:] != t[:-1]
    sample_start = np.flatnonzero(np.append(new_time, True))
    level, limit = compiled(_collapse_replicates_loop)(sample_start, np.where(num > 0, num, np.nan), lloq)
    first = sample_start[:-1]
    return _Samples(
        patient_ids,
        order[first],
        np.flatnonzero(np.append(new_series[first], True)),
        texts[order[first]],
        items.cast(pl.Utf8).to_numpy()[order[first]],
        t[first],
        level,
        limit,
    )


def kinetics_nca(
    events: pl.DataFrame, patients: pl.DataFrame, config: KineticsConfig, read: EventCodes | None = None
) -> pl.DataFrame:
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
    series (patient and assay) is one walk over its sorted samples (``kernels_kinetics._nca_loop``). ``read``:
    the codes of the events (:func:`tocsin.core.arrays.codes_of`), when already read for several graders.
    """
    samples = _samples(events, read)
    start, stop = samples.series_start[:-1], samples.series_start[1:]
    # A series is reported when it has a post-infusion sample: its last (in time order) is one.
    reported = samples.t[stop - 1] > 0
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
    value, count = dict(zip(FLOAT_OUTPUTS, floats)), dict(zip(INT_OUTPUTS, ints))
    patient_id = Text(samples.patient_ids, samples.source_row[start])
    # Each series' product: its patient's row of the table (none for a patient the table does not list).
    patient_row = positions_in(samples.patient[start], patients.get_column(PID).cast(pl.Utf8).to_numpy())
    product = Text(patients.get_column("product"), patient_row)
    return _finish(patient_id, samples.item[start], product, value, count, persistent, persistence_day, config)


def _finish(
    patient_id: Text,
    item: np.ndarray,
    product: Text,
    value: dict[str, np.ndarray],
    count: dict[str, np.ndarray],
    persistent: np.ndarray,
    persistence_day: np.ndarray,
    config: KineticsConfig,
) -> pl.DataFrame:
    """The output frame in its documented column order, with the reasons for null parameters: built by
    :func:`~tocsin.core.timeline.frame_of` from a few Series (a Series per column cost ~10 µs each)."""
    auc = auc_column(config)
    threshold = config.half_life_min_r2_adj
    fitted = ~np.isnan(value["lambda_z"])
    # A fit below the R² threshold is reported as no half-life (its R² only in the reason).
    rejected = fitted & (value["half_life_r2_adj"] < threshold) if threshold is not None else np.zeros_like(fitted)
    kept = fitted & ~rejected
    auc_reason, half_life_reason = _reasons(value, count, rejected, ~kept, config)
    units = kinetic_units()

    def number(name: str, where: np.ndarray | None = None) -> np.ndarray:  # NaN is null
        return value[name] if where is None else np.where(where, value[name], np.nan)

    assays, assay = np.unique(item, return_inverse=True)
    columns: dict[str, Column] = {
        PID: patient_id,
        "item": labels(list(assays), assay),
        "unit": labels([units[a] for a in assays], assay),
        "product": product,
        "blq_rule": labels([config.blq_rule], np.zeros(item.size, dtype=np.int64)),
        "n_samples": count["n_samples"],
        "n_quantifiable": count["n_quantifiable"],
        "day0_value": value["day0_value"],  # never NaN (0 without a level)
        "day0_from_sample": count["day0_from_sample"].astype(np.bool_),
        "cmax": number("cmax"),
        "tmax_day": number("tmax_day"),
        "peak_confirmed": count["peak_confirmed"].astype(np.bool_),
        "clast": number("clast"),
        "tlast_day": number("tlast_day"),
        "last_sample_day": number("last_sample_day"),
        auc: number("auc_end"),
        f"{auc}_reason": _texts(auc_reason),
        "auc_0_tlast": number("auc_0_tlast"),
        "lambda_z": number("lambda_z", kept),
        "half_life_days": np.where(kept, math.log(2) / value["lambda_z"], np.nan),
        "half_life_points": NullableInt(np.where(kept, count["half_life_points"], -1), pl.Int64),
        "half_life_r2_adj": number("half_life_r2_adj", kept),
        "half_life_from_day": number("half_life_from_day", kept),
        "half_life_to_day": number("half_life_to_day", kept),
        "half_life_reason": _texts(half_life_reason),
    }
    for d, name in enumerate(persistence_columns(config)):
        columns[name] = NullableInt(np.where(persistent[d] < 0, -1, persistent[d] == 1), pl.Boolean)
        columns[f"{name}_day"] = persistence_day[d]
    return frame_of(columns)


def _texts(values: list[str | None]) -> Text:
    """A text column of these values (None = null): its distinct values and each row's among them (a column
    without a text, the usual reason column, from one table kept: a Series from a list costs ~5 µs)."""
    distinct = {v: k for k, v in enumerate(dict.fromkeys(v for v in values if v is not None))}
    index = np.array([-1 if v is None else distinct[v] for v in values], dtype=np.int64)
    return Text(pl.Series(list(distinct), dtype=pl.Utf8) if distinct else _NO_TEXTS, index)


_NO_TEXTS = pl.Series([], dtype=pl.Utf8)


def _reasons(
    value: dict[str, np.ndarray],
    count: dict[str, np.ndarray],
    rejected: np.ndarray,
    no_half_life: np.ndarray,
    config: KineticsConfig,
) -> tuple[list[str | None], list[str | None]]:
    """Why the AUC(0-end) and the half-life are null, per row (None where they are not). Polars formats the
    numbers in the messages, only on the rows that have one."""
    end = config.auc_end_day
    auc_reason: list[str | None] = [None] * rejected.size
    half_life_reason: list[str | None] = [None] * rejected.size
    explained = np.flatnonzero(np.isnan(value["auc_end"]) | no_half_life)
    if not explained.size:
        return auc_reason, half_life_reason
    numbers = ("auc_end", "last_sample_day", "last_used_day", "tmax_day", "lambda_z", "half_life_r2_adj")
    rows = pl.DataFrame(
        [
            *(pl.Series(name, value[name][explained], nan_to_null=True) for name in numbers),
            pl.Series("post_peak_points", count["post_peak_points"][explained]),
            pl.Series("rejected", rejected[explained]),
        ]
    )
    min_points, threshold = config.half_life_min_points, config.half_life_min_r2_adj
    messages = rows.select(
        pl.when(pl.col("auc_end").is_not_null())
        .then(None)
        .when(pl.col("last_sample_day") < end)
        .then(pl.format("sampling ends at day {}, before day {} (not extrapolated)", "last_sample_day", pl.lit(end)))
        .otherwise(
            pl.format(
                "last usable level at day {}, before day {}: later samples are BLQ after Tmax and {} excludes them",
                pl.coalesce(pl.col("last_used_day"), pl.lit(0.0)),
                pl.lit(end),
                pl.lit(config.blq_rule),
            )
        )
        .alias("auc"),
        pl.when(pl.col("tmax_day").is_null())
        .then(pl.lit("no quantifiable level"))
        .when(pl.col("post_peak_points") < min_points)
        .then(
            pl.format(
                "{} quantifiable points after Tmax; at least {} are needed",
                pl.col("post_peak_points"),
                pl.lit(min_points),
            )
        )
        .when(pl.col("lambda_z").is_null())
        .then(pl.lit("no decline after Tmax (lambda_z <= 0 for every fit)"))
        .when(pl.col("rejected"))
        .then(pl.format("adjusted R² {} is below {}", pl.col("half_life_r2_adj").round(4), pl.lit(threshold)))
        .alias("half_life"),
    )
    for row, auc, half_life in zip(explained.tolist(), *(c.to_list() for c in messages.get_columns()), strict=True):
        auc_reason[row], half_life_reason[row] = auc, half_life
    return auc_reason, half_life_reason


def _sample_frame(samples: _Samples) -> pl.DataFrame:
    """The samples as a frame: patient and assay (text), ``t``, ``num`` (null below quantification), ``blq`` and
    the series number ``_series`` (an integer window key: cheaper to hash than patient and assay)."""
    series = np.repeat(np.arange(1, samples.series_start.size), np.diff(samples.series_start))
    return pl.DataFrame(
        [
            pl.Series(PID, samples.patient, pl.Utf8),
            pl.Series("item", samples.item, pl.Utf8),
            pl.Series("t", samples.t),
            pl.Series("num", samples.num, nan_to_null=True),
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
    samples = _running_peak(_sample_frame(_samples(events)).filter(pl.col("t") > 0))
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
