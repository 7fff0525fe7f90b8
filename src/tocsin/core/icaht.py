"""ICAHT (EHA/EBMT 2023, neutrophils) and T-ICAHT (2025, platelets), early and late, for a whole batch at once.

References: Rejeski K et al., Blood 2023;142:865-877, doi:10.1182/blood.2023020578 (ICAHT); Rejeski K et
al., Blood 2025, doi:10.1182/blood.2025028833 (T-ICAHT); the implementation rules of Liang EC,
``automatedicahtgrading`` (https://emilyliangmd.github.io/automatedicahtgrading), transcribed in
``../shared/clinical/criteria.md`` §3.3. Thresholds, bands and rule ids are data
(``data/criteria/icaht_eha2023.yaml``, ``t_icaht_2025.yaml``); the local decisions are
:class:`tocsin.config.IcahtConfig`; ``docs/icaht.md`` explains both.

How a patient is graded, all patients at once on one daily grid (the event columns are read once as arrays,
:mod:`tocsin.core.arrays`; the grid, the bridging, the stretches, the late values and the support days are
compiled passes, :mod:`tocsin.core.kernels_icaht`; the grades are NumPy over one value per patient):

* Day = ``floor(t)`` (day 0 is the infusion); a day's value is its lowest count (daily nadir).
* Days without a count are interpolated linearly when at most ``max_interpolation_gap_days`` consecutive
  days are missing; days in longer gaps, before the first or after the last count are *unknown*. Counts
  from before the infusion anchor the interpolation but are never counted.
* Observation ends at the earliest of the configured censoring events (progression, next therapy), last
  contact and death; later counts are not used and later days are not at risk.
* A recovery shorter than the stable-recovery length between two days below the threshold is bridged.
  T-ICAHT: a platelet count up to ``t_transfusion_free_days`` after a platelet transfusion counts as below.
* Early grade (days 0-30): the first band of the criteria table met by the days below each threshold
  (longest stretch or cumulative, by configuration). Unknown days are resolved both ways (all above, all
  at the worst count): the grade is given when both agree, else it is null and ``*_grade_min`` /
  ``*_grade_max`` bound it, with the reason. Never a silent 0.
* Late grade (day 31 to ``late_end_day``): band of the lowest daily value, confirmed by the second-lowest
  (not transient); at least ``late_min_values`` daily values. T-ICAHT grade 4 adds a duration (< 20 for
  >= 14 days) counted on the grid.

Example
-------
>>> import polars as pl
>>> from tocsin.config import IcahtConfig
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> days = ["0", *[str(d) for d in range(0, 31)]]
>>> anc = ["axi-cel", *["300" if 1 <= d <= 10 else "2000" for d in range(0, 31)]]
>>> raw = pl.DataFrame({"patient_id": "P", "day": days, "item": ["infusion"] + ["anc"] * 31, "value": anc,
...     "unit": [""] + ["/uL"] * 31, "file": "x", "line": list(range(2, 34))})
>>> out = grade_icaht(normalise_events(raw, load_vocabulary()).events, IcahtConfig())
>>> out.select("early_grade", "early_rule", "days_anc_le_500", "early_first_day", "early_last_day").row(0)
(2, 'ICAHT-EARLY-G2', 10, 1, 10)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from tocsin.config import IcahtConfig
from tocsin.core.arrays import ItemRows, read_item_rows
from tocsin.core.kernels_icaht import (
    UNKNOWN,
    LateValues,
    bridged,
    day_grid,
    grid_windows,
    late_values,
    runs,
    support_days,
    threshold_states,
)
from tocsin.core.timeline import Column, NullableInt, Text, frame_of
from tocsin.criteria import load_scale

PID = "patient_id"
#: The criteria files of ICAHT (neutrophils) and T-ICAHT (platelets).
N_FILE, T_FILE = "icaht_eha2023", "t_icaht_2025"
N_SCALE, T_SCALE = load_scale(N_FILE), load_scale(T_FILE)
#: Items that always end the observation, whatever the configuration.
ALWAYS_ENDS = ("last_contact", "death")
_DECIMALS = 6  # as the canonical values: a threshold is met exactly by its equivalent in another unit


@cache
def _table(scale: str, name: str) -> Any:
    """A table of the criteria file named ``scale``, looked up once: a table is an extra field of the pydantic
    model, ~2 µs a read, and ICAHT read some sixty a course."""
    return load_scale(scale).table(name)


@dataclass(frozen=True)
class _Lineage:
    """One lineage's criteria (from its scale file) with the configuration that applies to it."""

    scale_file: str  # the criteria file of :func:`tocsin.criteria.load_scale`
    prefix: str
    support_item: str
    stable_days: int
    duration_rule: str
    transfusion_free_days: int | None
    never_recovered: dict[str, Any] | None
    never_recovered_onset_max_day: int

    def table(self, name: str) -> Any:
        return _table(self.scale_file, name)

    @property
    def item(self) -> str:
        return self.table("item")

    @property
    def early_end(self) -> int:
        return int(self.table("early_window")[1])

    @property
    def late_start(self) -> int:
        return int(self.table("late_window_start"))

    def threshold(self, name: str) -> dict[str, Any]:
        return self.table("thresholds")[name]

    def counted_thresholds(self) -> list[str]:
        """Thresholds counted in days (early bands, late duration bands), the recovery threshold first."""
        bands = [*self.table("early_bands"), *self.table("late_duration_bands")]
        return list(dict.fromkeys([self.table("recovery_threshold"), *(b["threshold"] for b in bands)]))


def _lineages(config: IcahtConfig) -> tuple[_Lineage, _Lineage]:
    neutrophils = _Lineage(
        N_FILE,
        "",
        "g_csf",
        config.stable_recovery_days,
        config.duration_rule,
        None,
        _table(N_FILE, "never_recovered") if config.never_recovered_grade4 else None,
        config.never_recovered_onset_max_day,
    )
    platelets = _Lineage(
        T_FILE,
        "t_",
        _table(T_FILE, "transfusion_item"),
        config.t_stable_recovery_days,
        config.t_duration_rule,
        config.t_transfusion_free_days,
        None,
        config.never_recovered_onset_max_day,
    )
    return neutrophils, platelets


def _below(value: np.ndarray, limit: float, inclusive: bool) -> np.ndarray:
    return value <= limit if inclusive else value < limit


def _first_band(conditions: Sequence[np.ndarray] | np.ndarray, n: int) -> np.ndarray:
    """Index of the first condition that holds (the bands of a criteria table, from the top); -1 if none.
    ``conditions``: one row per band (a matrix, or a list of rows), one value per patient."""
    if len(conditions) == 0:
        return np.full(n, -1, dtype=np.int64)
    held = np.asarray(conditions)
    return np.where(held.any(axis=0), held.argmax(axis=0), -1)


def _band_values(bands: list[dict], band: np.ndarray, key: str, otherwise: Any) -> np.ndarray:
    """The ``key`` (grade or rule) of each patient's band; ``otherwise`` where none was met (index -1 picks
    the value appended last)."""
    return np.array([*(b[key] for b in bands), otherwise], dtype=object if key == "rule" else np.int64)[band]


def observation_end_items(censor_at: list[str]) -> list[str]:
    """The items that can end the observation: the configured censoring events, last contact and death."""
    return [*censor_at, *ALWAYS_ENDS]


def observation_end(events: pl.DataFrame, censor_at: list[str]) -> pl.DataFrame:
    """Per patient with an end: ``end_t`` (earliest censoring event, last contact or death) and ``end_item``."""
    return (
        # On the Enum: casting every row to text cost 0.25 s a chunk.
        events.filter(pl.col("item").is_in(observation_end_items(censor_at)))
        .group_by(PID)
        .agg(pl.col("t").min().alias("end_t"), pl.col("item").cast(pl.Utf8).sort_by("t").first().alias("end_item"))
    )


def observation_ends(read: ItemRows, censor_at: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: the time the observation ends (NaN: it does not) and the row that ends it (-1: none), the
    earliest censoring event, last contact or death (ICAHT-IMPL-CENSORING). Rows are in time order, so it is
    each patient's first such row."""
    rows = read.rows_of(*observation_end_items(censor_at))
    first = rows[np.flatnonzero(np.diff(read.patient[rows], prepend=-1))]
    end_t, end_row = np.full(read.n_patients, np.nan), np.full(read.n_patients, -1, dtype=np.int64)
    end_t[read.patient[first]], end_row[read.patient[first]] = read.t[first], first
    return end_t, end_row


class _PerDay(NamedTuple):
    """Values of one item with at most one per patient and day, patients' days in order: patient ``p`` at
    ``offsets[p]:offsets[p + 1]``."""

    offsets: np.ndarray
    day: np.ndarray
    value: np.ndarray


def _per_day(read: ItemRows, rows: np.ndarray, value: np.ndarray) -> _PerDay:
    """The lowest ``value`` of each patient's day among ``rows`` (day = ``floor(t)``; rows in time order)."""
    patient, day = read.patient[rows], np.floor(read.t[rows]).astype(np.int64)
    new_day = np.ones(rows.size, dtype=np.bool_)
    new_day[1:] = (patient[1:] != patient[:-1]) | (day[1:] != day[:-1])
    start = np.flatnonzero(new_day)
    lowest = np.minimum.reduceat(value, start) if start.size else value[:0]
    offsets = np.searchsorted(patient[start], np.arange(read.n_patients + 1))
    return _PerDay(offsets, day[start], lowest)


def _daily_values(read: ItemRows, end_t: np.ndarray, first_day: int, end_day: np.ndarray, item: str) -> _PerDay:
    """Lowest count of ``item`` per patient and day (ICAHT-IMPL-DAILY-NADIR), days ``first_day..end_day``,
    counts taken at or before the end of observation (ICAHT-IMPL-CENSORING)."""
    rows = read.rows_of(item)
    value, t, patient = read.num[rows], read.t[rows], read.patient[rows]
    day = np.floor(t)
    kept = ~np.isnan(value) & ~(t > end_t[patient]) & (day >= first_day) & (day <= end_day[patient])
    return _per_day(read, rows[kept], value[kept])


def _support_days(read: ItemRows, item: str) -> _PerDay:
    """The days a support (G-CSF, platelet transfusion) was given, once each (value: always 1)."""
    rows = read.rows_of(item)
    return _per_day(read, rows, np.ones(rows.size))


class _Column(NamedTuple):
    """One output column, one value per patient: a :func:`tocsin.core.timeline.frame_of` column, or a text
    column as its values (None = null). The output frame is built from all of them at once (:func:`_frame`)."""

    name: str
    values: Column | list[str | None]


#: The NumPy type of an integer or boolean column without nulls (its Series is of the same Polars type).
_NUMPY_TYPES: dict[Any, type] = {
    pl.Int8: np.int8, pl.Int32: np.int32, pl.Int64: np.int64, pl.UInt32: np.uint32, pl.Boolean: np.bool_
}


def _column(name: str, values: np.ndarray | Sequence, dtype: pl.DataType, valid: np.ndarray | None = None) -> _Column:
    """A per-patient column of ``dtype``, null where not ``valid`` (floats: also where NaN). An integer where
    ``valid`` is never negative (a day from day 0, a count, a grade), so -1 can mark its nulls."""
    if dtype == pl.Utf8:
        listed = values.tolist() if isinstance(values, np.ndarray) else list(values)
        if valid is not None:
            for i in np.flatnonzero(~valid).tolist():
                listed[i] = None
        return _Column(name, listed)
    array = np.asarray(values)
    if dtype == pl.Float64:
        return _Column(name, array.astype(np.float64) if valid is None else np.where(valid, array, np.nan))
    if valid is None:
        return _Column(name, array.astype(_NUMPY_TYPES[dtype]))
    return _Column(name, NullableInt(np.where(valid, array, -1), dtype))  # type: ignore[arg-type]


def _frame(patient_ids: pl.Series, columns: list[_Column]) -> pl.DataFrame:
    """The patients and ``columns``, by :func:`tocsin.core.timeline.frame_of`. The texts of all text columns
    are one Series, each column a gather of its part: a Series of strings costs some 5 µs to build, whatever
    its length for one course."""
    n = patient_ids.len()
    texts = [values for _, values in columns if isinstance(values, list)]
    source = pl.Series([text for values in texts for text in values], dtype=pl.Utf8)
    framed: dict[str, Column] = {PID: Text(patient_ids, np.arange(n))}
    start = 0
    for name, values in columns:
        if isinstance(values, list):
            framed[name], start = Text(source, np.arange(start, start + n)), start + n
        else:
            framed[name] = values
    return frame_of(framed)


def _unknown_text(item: str, max_gap: int, days: int, first: int, last: int, low: int, high: int) -> str | None:
    """Why a grade is a range (null without a first and last unknown day, as a format of nulls is)."""
    if first < 0 or last < 0:
        return None
    return (
        f"{item} unknown on {days} day(s) between day {first} and day {last} (gaps over {max_gap} days are not "
        f"interpolated); grade {low} to {high}"
    )


class _Grid(NamedTuple):
    """One lineage's daily grid: each patient's days 0 to the end of observation, patient ``p`` at
    ``offsets[p]:offsets[p + 1]`` (see :func:`tocsin.core.kernels_icaht.day_grid`)."""

    offsets: np.ndarray
    level: np.ndarray  # the day's value, interpolated or carried; NaN where unknown
    masked: np.ndarray  # counts as below every threshold (a platelet count after a transfusion)
    unknown: np.ndarray  # no level, not masked, and in an open window: the day could change a grade
    undetermined: np.ndarray  # no level and not masked
    early: np.ndarray
    late: np.ndarray


def _grid(daily: _PerDay, support: _PerDay, end_day: np.ndarray, spec: _Lineage, max_gap: int) -> _Grid:
    """The daily grid of one lineage (ICAHT-IMPL-INTERPOLATION; T-ICAHT-IMPL-RECOVERY: a count up to
    ``transfusion_free_days`` after a platelet transfusion is masked)."""
    lead = max(max_gap, spec.transfusion_free_days or 0)
    n_days = np.maximum(end_day + 1, 0)
    offsets = np.concatenate(([0], np.cumsum(n_days)))
    masking = -1 if spec.transfusion_free_days is None else spec.transfusion_free_days
    grid = day_grid(offsets, end_day, *daily, support.offsets, support.day, lead, max_gap, masking)
    level = grid.level
    level[grid.interpolated] = np.round(level[grid.interpolated], _DECIMALS)
    # A late day counts when counts were measured before and after it (its level is dropped otherwise).
    windows = grid_windows(offsets, level, grid.observed, grid.bracketed, grid.masked, spec.early_end, spec.late_start)
    return _Grid(offsets, level, grid.masked, windows.unknown, windows.undetermined, windows.early, windows.late)


class _Stretches:
    """Days below each counted threshold after bridging (ICAHT-IMPL-BRIDGING), and the unknown and known days,
    summarised per patient (:class:`tocsin.core.kernels_icaht.Runs`), for three readings of the unknown days:
    ``b`` = unknown days above (best case), ``w`` = unknown days in the open windows below (worst case), ``o`` =
    unknown days stay unknown and break stretches (the never-recovered rule). The worst case differs from the
    best only for patients with unknown days, and the observed one is read only for them.

    :meth:`of` reads a summary: ``of("longest", "e", "b", "anc_le_500")`` is the longest stretch of days 0-30
    at or below 500/uL in the best case; windows ``e`` (early) and ``l`` (late, for the thresholds of the late
    duration bands); ``of("count", "unknown", "e")``, ``of("last", "known", "o")`` (the last known day of days
    0-30, never-recovered threshold).
    """

    def __init__(self, grid: _Grid, spec: _Lineage) -> None:
        late_names = {b["threshold"] for b in spec.table("late_duration_bands")}
        never = spec.never_recovered["threshold"] if spec.never_recovered is not None else None
        names = spec.counted_thresholds()
        # The rows of threshold_states: each threshold's best and worst case, then the observed one for ``never``.
        cases = [(case, name) for name in names for case in ("b", "w", "o") if case != "o" or name == never]
        states = threshold_states(
            grid.level,
            grid.masked,
            grid.unknown,
            grid.undetermined,
            np.array([spec.threshold(name)["limit"] for name in names], dtype=np.float64),
            np.array([spec.threshold(name)["inclusive"] for name in names], dtype=np.bool_),
            names.index(never) if never is not None else -1,
        )
        below_bridged = bridged(states, grid.offsets, spec.stable_days)
        flags: dict[tuple[str, ...], np.ndarray] = {}
        for (case, name), row in zip(cases, below_bridged, strict=True):
            flags["e", case, name] = row & grid.early
            if name in late_names and case != "o":
                flags["l", case, name] = row & grid.late
        flags["unknown", "e"], flags["unknown", "l"] = grid.unknown & grid.early, grid.unknown & grid.late
        flags["known", "e"] = ~np.isnan(grid.level) & grid.early
        if never is not None:
            flags["known", "o"] = grid.early & (states[cases.index(("o", never))] != UNKNOWN)
        self._runs = runs(np.stack(list(flags.values())), grid.offsets)
        self._row = {key: k for k, key in enumerate(flags)}
        self.graded = np.diff(grid.offsets) > 0  # the others have no day on the grid, and null durations

    def of(self, field: str, *key: str) -> np.ndarray:
        return getattr(self._runs, field)[self._row[key]]

    def band(self, bands: list[dict], window: str, case: str, rule: str) -> np.ndarray:
        """Per patient, the index of the first of ``bands`` whose threshold was met for at least its
        ``min_days`` in the window (-1: none), days counted by ``rule`` (longest stretch or cumulative)."""
        counted = getattr(self._runs, "longest" if rule == "longest" else "count")
        days = counted[[self._row[window, case, b["threshold"]] for b in bands]] if bands else counted[:0]
        held = self.graded & (days >= np.array([b["min_days"] for b in bands], dtype=np.int64)[:, None])
        return _first_band(held, self.graded.size)


class _Early(NamedTuple):
    low: np.ndarray  # grade in the best case
    high: np.ndarray  # grade in the worst case
    rule: np.ndarray  # rule id of the best case
    first: np.ndarray  # the counted stretch below the recovery threshold (-1: none)
    last: np.ndarray


def _early_grades(stretches: _Stretches, spec: _Lineage, end_day: np.ndarray) -> _Early:
    """Early grades (days 0-30): the first band of the criteria table met by the days below each threshold
    (ICAHT-IMPL-DURATION), in the best and the worst case, and the never-recovered grade 4."""
    bands = spec.table("early_bands")
    best, worst = (stretches.band(bands, "e", case, spec.duration_rule) for case in ("b", "w"))
    low, high = _band_values(bands, best, "grade", 0), _band_values(bands, worst, "grade", 0)
    rule = _band_values(bands, best, "rule", spec.table("early_grade0_rule"))
    recovery = spec.table("recovery_threshold")
    if spec.duration_rule == "longest":
        first = stretches.of("longest_start", "e", "b", recovery)
        last = first + stretches.of("longest", "e", "b", recovery) - 1
    else:
        first, last = stretches.of("first", "e", "b", recovery), stretches.of("last", "e", "b", recovery)
    if spec.never_recovered is not None:
        # ICAHT-EARLY-G4-NEVER-RECOVERED: the stretch below the threshold that holds on the last known day of
        # days 0-30 (best case: every day is known) starts by the onset day. The stretch ends on that day, so
        # it is the last stretch when its last day is the last known one.
        name = spec.never_recovered["threshold"]
        last_early = np.minimum(spec.early_end, end_day)
        last_b, last_o = stretches.of("last", "e", "b", name), stretches.of("last", "e", "o", name)
        start_b = np.where(last_b == last_early, stretches.of("last_start", "e", "b", name), -1)
        known_o = (last_o >= 0) & (last_o == stretches.of("last", "known", "o"))
        start_o = np.where(known_o, stretches.of("last_start", "e", "o", name), -1)
        uncertain = (stretches.of("count", "unknown", "e") + stretches.of("count", "unknown", "l")) > 0
        start = np.where(uncertain, start_o, start_b)
        never = (start >= 0) & (start <= spec.never_recovered_onset_max_day)
        low = np.where(never, spec.never_recovered["grade"], low)
        high = np.where(never, spec.never_recovered["grade"], high)
        rule = np.where(never, spec.never_recovered["rule"], rule)
    return _Early(low, high, rule, first, last)


class _Late(NamedTuple):
    low: np.ndarray
    high: np.ndarray
    rule: np.ndarray


def _late_grades(values: LateValues, stretches: _Stretches, spec: _Lineage) -> _Late:
    """Late grade: band of the lowest daily value, confirmed by the second-lowest (not transient); T-ICAHT grade 4
    by the days below a threshold (late duration bands), in the best and the worst case."""
    n = values.n.size
    nadir_bands, confirm, bands = (
        spec.table("late_nadir_bands"),
        spec.table("late_confirm"),
        spec.table("late_duration_bands"),
    )
    has_values = values.n >= 1
    nadir_band = _first_band([has_values & _below(values.nadir, b["limit"], b["inclusive"]) for b in nadir_bands], n)
    confirmed = (values.n == 1) | ((values.n >= 2) & _below(values.second, confirm["limit"], confirm["inclusive"]))
    nadir_grade = np.where(confirmed, _band_values(nadir_bands, nadir_band, "grade", 0), 0)
    if bands:
        best, worst = (stretches.band(bands, "l", case, spec.duration_rule) for case in ("b", "w"))
        duration_low, duration_high = _band_values(bands, best, "grade", 0), _band_values(bands, worst, "grade", 0)
        duration_rule = _band_values(bands, best, "rule", None)
    else:
        duration_low = duration_high = np.zeros(n, dtype=np.int64)
        duration_rule = np.full(n, None, dtype=object)
    rule = np.where(
        (duration_low > 0) & (duration_low >= nadir_grade),
        duration_rule,
        np.where(
            nadir_grade > 0,
            _band_values(nadir_bands, nadir_band, "rule", None),
            np.where(nadir_band >= 0, confirm["rule"], spec.table("late_grade0_rule")),
        ),
    )
    return _Late(np.maximum(nadir_grade, duration_low), np.maximum(nadir_grade, duration_high), rule)


def _lineage_grades(
    read: ItemRows,
    end_t: np.ndarray,
    end_day: np.ndarray,
    end_item: list[str | None],
    spec: _Lineage,
    config: IcahtConfig,
) -> list[_Column]:
    """The columns of one lineage's early and late grades, prefixed with ``spec.prefix``, one value per patient."""
    p, item, n = spec.prefix, spec.item, read.n_patients
    late_start, max_gap = spec.late_start, config.max_interpolation_gap_days
    daily = _daily_values(read, end_t, -max(max_gap, spec.transfusion_free_days or 0), end_day, item)
    support = _support_days(read, spec.support_item)
    grid = _grid(daily, support, end_day, spec, max_gap)
    stretches = _Stretches(grid, spec)
    early = _early_grades(stretches, spec, end_day)
    values = late_values(daily.offsets, daily.day, daily.value, late_start)
    late = _late_grades(values, stretches, spec)

    early_end = np.minimum(spec.early_end, end_day)
    late_window_end = np.minimum(config.late_end_day, end_day)
    early_ok = early.low == early.high
    late_open = late_window_end >= late_start
    enough = values.n >= config.late_min_values
    late_graded = late_open & enough
    late_ok = late_graded & (late.low == late.high)
    unknown = {w: [stretches.of(f, "unknown", w) for f in ("count", "first", "last")] for w in ("e", "l")}
    early_known = stretches.of("count", "known", "e")
    early_reason: list[str | None] = [None] * n
    for i in np.flatnonzero(~early_ok):
        early_reason[i] = (
            f"no {item} in days 0-{early_end[i]}"
            if early_known[i] == 0
            else _unknown_text(item, max_gap, *(u[i] for u in unknown["e"]), early.low[i], early.high[i])
        )
    late_reason: list[str | None] = [None] * n
    for i in np.flatnonzero(~late_ok):
        if not late_open[i]:
            ended = end_item[i]
            late_reason[i] = (
                None if ended is None else f"observation ended on day {end_day[i]} ({ended}), before day {late_start}"
            )
        elif values.n[i] == 0:
            late_reason[i] = f"no {item} in days {late_start}-{late_window_end[i]}"
        elif not enough[i]:
            late_reason[i] = (
                f"{values.n[i]} daily {item} value(s) in days {late_start}-{late_window_end[i]}; "
                f"at least {config.late_min_values} needed"
            )
        else:
            late_reason[i] = _unknown_text(item, max_gap, *(u[i] for u in unknown["l"]), late.low[i], late.high[i])

    graded = stretches.graded
    threshold_columns = []
    for name in spec.counted_thresholds():
        threshold_columns += [
            _column(f"days_{name}", stretches.of("longest", "e", "b", name), pl.UInt32, graded),
            _column(f"days_{name}_cumulative", stretches.of("count", "e", "b", name), pl.UInt32, graded),
        ]
    for band in spec.table("late_duration_bands"):
        name = band["threshold"]
        threshold_columns += [
            _column(f"late_days_{name}", stretches.of("longest", "l", "b", name), pl.UInt32, graded),
            _column(f"late_days_{name}_cumulative", stretches.of("count", "l", "b", name), pl.UInt32, graded),
        ]
    given = spec.support_item
    given_days = support_days(support.offsets, support.day, early_end, late_start, late_window_end)
    has_values, counted = values.n >= 1, early.first >= 0
    return [
        _column(f"{p}early_grade", early.low, pl.Int8, early_ok),
        _column(f"{p}early_grade_min", early.low, pl.Int8),
        _column(f"{p}early_grade_max", early.high, pl.Int8),
        _column(f"{p}early_rule", early.rule, pl.Utf8, early_ok),
        _column(f"{p}early_evaluable", early_ok, pl.Boolean),
        _column(f"{p}early_not_evaluable_reason", early_reason, pl.Utf8),
        *threshold_columns,
        _column(f"{p}early_first_day", early.first, pl.Int32, counted),
        # The longest stretch's last day is its first day plus a length: Int64, as the Polars code gave it.
        _column(f"{p}early_last_day", early.last, pl.Int64 if spec.duration_rule == "longest" else pl.Int32, counted),
        _column(f"{p}early_days_unknown", unknown["e"][0], pl.UInt32),
        _column(f"{p}early_window_end", early_end, pl.Int32),
        _column(f"{p}early_duration_rule", [spec.duration_rule] * n, pl.Utf8),
        _column(f"{p}late_grade", late.low, pl.Int8, late_ok),
        _column(f"{p}late_grade_min", late.low, pl.Int8, late_graded),
        _column(f"{p}late_grade_max", late.high, pl.Int8, late_graded),
        _column(f"{p}late_rule", late.rule, pl.Utf8, late_ok),
        _column(f"{p}late_evaluable", late_ok, pl.Boolean),
        _column(f"{p}late_not_evaluable_reason", late_reason, pl.Utf8),
        _column(f"{p}late_nadir", values.nadir, pl.Float64),
        _column(f"{p}late_nadir_day", values.nadir_day, pl.Int32, has_values),
        _column(f"{p}late_second_lowest", values.second, pl.Float64),
        _column(f"{p}late_n_values", values.n, pl.Int32),
        _column(f"{p}late_first_day", values.first_day, pl.Int32, has_values),
        _column(f"{p}late_last_day", values.last_day, pl.Int32, has_values),
        _column(f"{p}late_window_end", late_window_end, pl.Int32),
        _column(f"{given}_days_early", given_days.early, pl.Int32),
        _column(f"{given}_days_late", given_days.late, pl.Int32),
        _column(f"{given}_first_day", given_days.first, pl.Int32, given_days.first >= 0),
    ]


def icaht_items(config: IcahtConfig) -> list[str]:
    """The items ICAHT reads: each lineage's count and support item, and the items that end the observation."""
    lineage_items = [item for spec in _lineages(config) for item in (spec.item, spec.support_item)]
    return [*lineage_items, *observation_end_items(config.censor_at)]


def grade_icaht(
    events: pl.DataFrame, config: IcahtConfig, rows: tuple[pl.Series, ItemRows] | None = None
) -> pl.DataFrame:
    """Early and late ICAHT (neutrophils) and T-ICAHT (platelets): one row per patient of ``events``.

    ``events`` are canonical events (:func:`tocsin.core.events.normalise_events`); counts in 10*9/L. ``rows``:
    the patients and rows of ``events`` (:func:`tocsin.core.arrays.read_item_rows`) of at least
    :func:`icaht_items`, when one read serves several graders (a read costs ~0.3 ms for one course).
    Columns (T-ICAHT ones carry the prefix ``t_``; counts in 10*9/L, days since infusion):

    * ``patient_id``; ``observation_end_day``, ``observation_end_item`` (censoring, last contact or death).
    * ``early_grade`` (null when unknown days could change it), ``early_grade_min``, ``early_grade_max``,
      ``early_rule`` (rule id of icaht_eha2023 / t_icaht_2025), ``early_evaluable``,
      ``early_not_evaluable_reason``; ``days_anc_le_500``, ``days_anc_le_100`` (longest stretch, after
      bridging) and ``*_cumulative`` (T-ICAHT: ``days_plt_lt_20``, ``days_plt_lt_50``);
      ``early_first_day`` / ``early_last_day`` (the counted stretch below 500/uL, or below 20 x10^9/L);
      ``early_days_unknown``, ``early_window_end``, ``early_duration_rule``.
    * ``late_grade``, ``late_grade_min``, ``late_grade_max``, ``late_rule``, ``late_evaluable``,
      ``late_not_evaluable_reason``, ``late_nadir``, ``late_nadir_day``, ``late_second_lowest``,
      ``late_n_values``, ``late_first_day``, ``late_last_day``, ``late_window_end``; T-ICAHT also
      ``late_days_plt_lt_20`` and ``late_days_plt_lt_20_cumulative``.
    * Support beside the grade: ``g_csf_days_early``, ``g_csf_days_late``, ``g_csf_first_day``,
      ``platelet_transfusion_days_early``, ``platelet_transfusion_days_late``, ``platelet_transfusion_first_day``.

    References: doi:10.1182/blood.2023020578 (ICAHT), doi:10.1182/blood.2025028833 (T-ICAHT).
    """
    # One pass over the batch for everything ICAHT reads (counts, their support items, the end of observation);
    # each step then reads those rows' arrays.
    patient_ids, read = rows or read_item_rows(events, icaht_items(config))
    end_t, end_row = observation_ends(read, config.censor_at)
    ends = ~np.isnan(end_t)
    end_day = np.full(read.n_patients, config.late_end_day, dtype=np.int64)
    end_day[ends] = np.minimum(config.late_end_day, np.floor(end_t[ends]))
    end_item: list[str | None] = [None] * read.n_patients
    for patient, slot in zip(np.flatnonzero(ends).tolist(), read.slot[end_row[ends]].tolist(), strict=True):
        end_item[patient] = read.items[slot]
    columns = [_column("observation_end_day", end_t, pl.Float64), _column("observation_end_item", end_item, pl.Utf8)]
    for spec in _lineages(config):
        columns += _lineage_grades(read, end_t, end_day, end_item, spec, config)
    # Built from few buffers (frame_of): for one patient about as fast as the row-wise constructor (~0.25 ms
    # for the 67 columns), which reads every value as a Python object (~3 ms more for a batch of 500).
    return _frame(patient_ids, columns)
