"""ICAHT (EHA/EBMT 2023, neutrophils) and T-ICAHT (2025, platelets), early and late, for a whole batch at once.

References: Rejeski K et al., Blood 2023;142:865-877, doi:10.1182/blood.2023020578 (ICAHT); Rejeski K et
al., Blood 2025, doi:10.1182/blood.2025028833 (T-ICAHT); the implementation rules of Liang EC,
``automatedicahtgrading`` (https://emilyliangmd.github.io/automatedicahtgrading), transcribed in
``../shared/clinical/criteria.md`` §3.3. Thresholds, bands and rule ids are data
(``data/criteria/icaht_eha2023.yaml``, ``t_icaht_2025.yaml``); the local decisions are
:class:`tocsin.config.IcahtConfig`; ``docs/icaht.md`` explains both.

How a patient is graded, all patients at once on one daily grid:

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

from dataclasses import dataclass
from typing import Any

import polars as pl

from tocsin.config import IcahtConfig
from tocsin.core.lookup import per_patient
from tocsin.core.segments import SEGMENT_START, distinct_in_runs, ffill, row_index, run_number, with_segment_start
from tocsin.criteria import Scale, load_scale

PID = "patient_id"
N_SCALE = load_scale("icaht_eha2023")
T_SCALE = load_scale("t_icaht_2025")
#: Items that always end the observation, whatever the configuration.
ALWAYS_ENDS = ("last_contact", "death")
_DECIMALS = 6  # as the canonical values: a threshold is met exactly by its equivalent in another unit
_ABOVE, _BELOW, _UNKNOWN = 0, 1, -1
_SEGMENT_END = "_segment_end"


@dataclass(frozen=True)
class _Lineage:
    """One lineage's criteria (from its scale file) with the configuration that applies to it."""

    scale: Scale
    prefix: str
    support_item: str
    stable_days: int
    duration_rule: str
    transfusion_free_days: int | None
    never_recovered: dict[str, Any] | None
    never_recovered_onset_max_day: int

    @property
    def item(self) -> str:
        return self.scale.table("item")

    @property
    def early_end(self) -> int:
        return int(self.scale.table("early_window")[1])

    @property
    def late_start(self) -> int:
        return int(self.scale.table("late_window_start"))

    def threshold(self, name: str) -> dict[str, Any]:
        return self.scale.table("thresholds")[name]

    def counted_thresholds(self) -> list[str]:
        """Thresholds counted in days (early bands, late duration bands), the recovery threshold first."""
        bands = [*self.scale.table("early_bands"), *self.scale.table("late_duration_bands")]
        return list(dict.fromkeys([self.scale.table("recovery_threshold"), *(b["threshold"] for b in bands)]))


def _lineages(config: IcahtConfig) -> tuple[_Lineage, _Lineage]:
    neutrophils = _Lineage(
        N_SCALE,
        "",
        "g_csf",
        config.stable_recovery_days,
        config.duration_rule,
        None,
        N_SCALE.table("never_recovered") if config.never_recovered_grade4 else None,
        config.never_recovered_onset_max_day,
    )
    platelets = _Lineage(
        T_SCALE,
        "t_",
        T_SCALE.table("transfusion_item"),
        config.t_stable_recovery_days,
        config.t_duration_rule,
        config.t_transfusion_free_days,
        None,
        config.never_recovered_onset_max_day,
    )
    return neutrophils, platelets


def _below(value: pl.Expr, limit: float, inclusive: bool) -> pl.Expr:
    return value <= limit if inclusive else value < limit


def _band_grade(bands: list[dict], met: dict[str, pl.Expr], key: str) -> pl.Expr:
    """First band from the top whose condition holds: its ``key`` (grade or rule); 0 / null otherwise."""
    expr = pl.when(met[bands[0]["rule"]]).then(pl.lit(bands[0][key]))
    for band in bands[1:]:
        expr = expr.when(met[band["rule"]]).then(pl.lit(band[key]))
    return expr.otherwise(pl.lit(0 if key == "grade" else None))


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


def _daily_values(
    events: pl.DataFrame, item: str, patients: pl.DataFrame, first_day: int, last_day: int
) -> pl.DataFrame:
    """Lowest value per patient and day, for days ``first_day..last_day``, before the end of observation."""
    rows = events.filter((pl.col("item") == item) & pl.col("num").is_not_null()).select(PID, "t", "num")
    rows = (
        rows.with_columns(*per_patient(patients, "end_t", rows=rows.height))
        .filter(pl.col("end_t").is_null() | (pl.col("t") <= pl.col("end_t")))
        .with_columns(pl.col("t").floor().cast(pl.Int32).alias("day"))
        .filter(pl.col("day").is_between(first_day, last_day))
    )
    return (
        rows.with_columns(run_number(pl.col(PID).to_physical(), pl.col("day")).alias("_k"))
        .group_by("_k", maintain_order=True)
        .agg(pl.col(PID).first(), pl.col("day").first(), pl.col("num").min().alias("value"))
        .drop("_k")
    )


def _support_days(events: pl.DataFrame, item: str) -> pl.DataFrame:
    return (
        events.filter(pl.col("item") == item)
        .select(PID, pl.col("t").floor().cast(pl.Int32).alias("day"))
        .unique(maintain_order=True)
    )


def _on_grid(grid_rows: int, patients: pl.DataFrame, rows: pl.DataFrame, lead: int, column: pl.Expr) -> pl.Series:
    """``column`` of per-patient, per-day ``rows`` placed at their grid positions (patient offset + day +
    lead) in a column of ``grid_rows`` values, null elsewhere; rows outside the patient's grid are dropped."""
    placed = rows.with_columns(*per_patient(patients, "_offset", "end_day", rows=rows.height)).filter(
        pl.col("day").is_between(-lead, pl.col("end_day"))
    )
    position = placed.select((pl.col("_offset") + pl.col("day") + lead).cast(pl.Int64)).to_series()
    values = placed.select(column).to_series()
    return pl.repeat(None, grid_rows, dtype=values.dtype, eager=True).scatter(position, values)


def _grid(patients: pl.DataFrame, daily: pl.DataFrame, lead: int, max_gap: int) -> pl.DataFrame:
    """One row per patient and day from ``-lead`` to the end of observation: the daily value and ``level``,
    the value interpolated over gaps of at most ``max_gap`` missing days (null on unknown days)."""
    grid = (
        patients.select(PID, pl.int_ranges(-lead, pl.col("end_day") + 1, dtype=pl.Int32).alias("day"))
        .explode("day")
        .drop_nulls("day")
    )
    grid = grid.with_columns(
        _on_grid(grid.height, patients, daily, lead, pl.col("value")).alias("value"),
        pl.col(PID).to_physical().alias("_pid"),
    )
    grid = _with_segments(grid)
    observed_day = pl.when(pl.col("value").is_not_null()).then(pl.col("day"))
    grid = grid.with_columns(
        ffill(observed_day).alias("_d0"),
        ffill(pl.col("value")).alias("_v0"),
        _bfill(observed_day).alias("_d1"),
        _bfill(pl.col("value")).alias("_v1"),
    )
    missing_run = pl.col("_d1") - pl.col("_d0") - 1
    slope = (pl.col("_v1") - pl.col("_v0")) / (pl.col("_d1") - pl.col("_d0"))
    interpolated = (pl.col("_v0") + slope * (pl.col("day") - pl.col("_d0"))).round(_DECIMALS)
    # Liang's na.approx(rule = 2) also carries the first and last values outward; here for max_gap days at most.
    level = (
        pl.when(pl.col("value").is_not_null())
        .then(pl.col("value"))
        .when(missing_run <= max_gap)
        .then(interpolated)
        .when(pl.col("_d0").is_null() & (pl.col("_d1") - pl.col("day") <= max_gap))
        .then(pl.col("_v1"))
        .when(pl.col("_d1").is_null() & (pl.col("day") - pl.col("_d0") <= max_gap))
        .then(pl.col("_v0"))
    )
    bracketed = pl.col("_d0").is_not_null() & pl.col("_d1").is_not_null()
    return grid.with_columns(level.alias("level"), bracketed.alias("_bracketed")).drop("_d0", "_v0", "_d1", "_v1")


def _with_segments(df: pl.DataFrame) -> pl.DataFrame:
    """Row number, first and last row of each patient (the frame is sorted by patient and day), so that
    fills and runs are global, hash-free operations (see :mod:`tocsin.core.segments`)."""
    df = with_segment_start(df, ["_pid"])
    last = (pl.col("_pid") != pl.col("_pid").shift(-1)).fill_null(True)
    return df.with_columns(pl.when(last).then(row_index()).backward_fill().alias(_SEGMENT_END))


def _bfill(expr: pl.Expr) -> pl.Expr:
    """Backward fill that never carries a value across a patient boundary."""
    source = pl.when(expr.is_not_null()).then(row_index()).backward_fill()
    return pl.when(source <= pl.col(_SEGMENT_END)).then(expr.backward_fill())


def _run_bounds(flag: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """First and last row of the run of equal ``flag`` values (within the patient) each row belongs to."""
    row = row_index()
    starts = (flag != flag.shift(1)).fill_null(True) | (row == pl.col(SEGMENT_START))
    ends = (flag != flag.shift(-1)).fill_null(True) | (row == pl.col(_SEGMENT_END))
    return pl.when(starts).then(row).forward_fill(), pl.when(ends).then(row).backward_fill()


def _bridged(df: pl.DataFrame, states: dict[str, str], stable_days: int) -> pl.DataFrame:
    """For each ``state`` column, its ``out`` column = below the threshold after bridging: a run of days above
    it shorter than ``stable_days`` with a day below on both sides (a non-stable recovery) counts as below.
    All states in the same few passes: a pass per state costs its fixed overhead for every threshold."""
    bounds: list[pl.Expr] = []
    for k, state in enumerate(states):
        first, last = _run_bounds(pl.col(state))
        bounds += [first.cast(pl.Int64).alias(f"_rs{k}"), last.cast(pl.Int64).alias(f"_re{k}")]
    df = df.with_columns(bounds)
    flags = []
    for k, (state, out) in enumerate(states.items()):
        s, rs, re = pl.col(state), pl.col(f"_rs{k}"), pl.col(f"_re{k}")
        before = pl.when(rs > pl.col(SEGMENT_START)).then(s.gather((rs - 1).clip(0)))
        after = pl.when(re < pl.col(_SEGMENT_END)).then(s.gather((re + 1).clip(0, pl.len() - 1)))
        short = re - rs + 1 < stable_days
        bridge = (s == _ABOVE) & short & (before == _BELOW).fill_null(False) & (after == _BELOW).fill_null(False)
        flags.append(((s == _BELOW) | bridge).alias(out))
    return df.with_columns(flags).drop(e.meta.output_name() for e in bounds)


def _stretch(flag: pl.Expr) -> pl.Expr:
    """Length of the stretch of consecutive ``flag`` days a day belongs to (0 where not ``flag``)."""
    first, last = _run_bounds(flag)
    return pl.when(flag).then(last - first + 1).otherwise(0)


def _days(flag: pl.Expr, stretch: pl.Expr, rule: str) -> pl.Expr:
    """Days counted under the duration rule (inside ``group_by(patient).agg``)."""
    if rule == "longest":
        return stretch.filter(flag).max().fill_null(0)
    return flag.sum()


def _state(level: pl.Expr, masked: pl.Expr, limit: float, inclusive: bool) -> pl.Expr:
    return (
        pl.when(masked)
        .then(_BELOW)
        .when(level.is_null())
        .then(_UNKNOWN)
        .when(_below(level, limit, inclusive))
        .then(_BELOW)
        .otherwise(_ABOVE)
        .cast(pl.Int8)
    )


def _case_columns(
    grid: pl.DataFrame, spec: _Lineage, case: str, early: pl.Expr, late: pl.Expr
) -> tuple[pl.DataFrame, list[pl.Expr]]:
    """Bridged below-flags and stretch lengths for one reading of the unknown days, and their per-patient
    aggregates. ``case``: ``b`` = unknown days above (best case), ``w`` = unknown days in the open windows
    below (worst case), ``o`` = unknown days stay unknown and break stretches (the never-recovered rule)."""
    late_names = {b["threshold"] for b in spec.scale.table("late_duration_bands")}
    names = spec.counted_thresholds() if case != "o" else [spec.never_recovered["threshold"]]
    aggs: list[pl.Expr] = []
    states = []
    for name in names:
        t = spec.threshold(name)
        state = _state(pl.col("level"), pl.col("_masked"), t["limit"], t["inclusive"])
        if case == "b":
            state = state.replace(_UNKNOWN, _ABOVE)
        elif case == "w":
            state = (
                pl.when((state == _UNKNOWN) & pl.col("_open")).then(_BELOW).otherwise(state.replace(_UNKNOWN, _ABOVE))
            )
        states.append(state.cast(pl.Int8).alias(f"_s{case}_{name}"))
    grid = grid.with_columns(states)
    grid = _bridged(grid, {f"_s{case}_{name}": f"_{case}_{name}" for name in names}, spec.stable_days)
    stretches = []
    for name in names:
        windows = [("e", early)] + ([("l", late)] if name in late_names and case != "o" else [])
        for window, in_window in windows:
            flag, stretch = pl.col(f"_{case}_{name}") & in_window, pl.col(f"_{window}{case}_{name}")
            stretches.append(_stretch(flag).alias(f"_{window}{case}_{name}"))
            aggs += [
                _days(flag, stretch, "longest").alias(f"_{window}{case}_long_{name}"),
                _days(flag, stretch, "cumulative").alias(f"_{window}{case}_cum_{name}"),
            ]
    grid = grid.with_columns(stretches)
    if spec.never_recovered is not None and case in ("b", "o"):
        # The stretch below the threshold that holds on the last known day of days 0-30: its first day.
        name = spec.never_recovered["threshold"]
        below, stretch = pl.col(f"_{case}_{name}") & early, pl.col(f"_e{case}_{name}")
        last_known = pl.col("day").filter(early & (pl.col(f"_s{case}_{name}") != _UNKNOWN)).max()
        aggs.append(
            (pl.col("day") - stretch + 1)
            .filter(below & (pl.col("day") == last_known))
            .first()
            .alias(f"_nr_start_{case}")
        )
    return grid, aggs


def _per_patient(grid: pl.DataFrame, aggs: list[pl.Expr]) -> pl.DataFrame:
    return grid.group_by(SEGMENT_START, maintain_order=True).agg(pl.col(PID).first(), *aggs).drop(SEGMENT_START)


def _lineage_grades(events: pl.DataFrame, patients: pl.DataFrame, spec: _Lineage, config: IcahtConfig) -> pl.DataFrame:
    """One row per patient: early and late grades of one lineage, prefixed with ``spec.prefix``."""
    p, item, scale = spec.prefix, spec.item, spec.scale
    max_gap = config.max_interpolation_gap_days
    lead = max(max_gap, spec.transfusion_free_days or 0)
    length = (pl.col("end_day") + lead + 1).clip(lower_bound=0)
    patients = patients.with_columns((length.cum_sum() - length).alias("_offset"))
    daily = _daily_values(events, item, patients, -lead, config.late_end_day)
    grid = _grid(patients, daily, lead, max_gap)
    if spec.transfusion_free_days is not None:
        given = _support_days(events, spec.support_item).with_columns(pl.lit(True).alias("given"))
        transfused = _on_grid(grid.height, patients, given, lead, pl.col("given"))
        last_transfusion = ffill(pl.when(pl.lit(transfused)).then(pl.col("day")))
        masked = (pl.col("day") - last_transfusion <= spec.transfusion_free_days).fill_null(False)
        grid = grid.with_columns(masked.alias("_masked"))
    else:
        grid = grid.with_columns(pl.lit(False).alias("_masked"))
    grid = _with_segments(grid.filter(pl.col("day") >= 0))
    early = pl.col("day") <= spec.early_end
    late = pl.col("day") >= spec.late_start
    # Liang carries the end values outward on the day 0-30 grid only; a late day counts when counts were
    # measured before and after it, and only unknown days inside the measured course could change a grade.
    carried = late & ~pl.col("_bracketed") & pl.col("value").is_null()
    grid = grid.with_columns(
        pl.when(carried).then(None).otherwise(pl.col("level")).alias("level"),
        (early | pl.col("_bracketed")).alias("_open"),
    )

    recovery = scale.table("recovery_threshold")
    early_bands, late_bands = scale.table("early_bands"), scale.table("late_duration_bands")
    grid, best_aggs = _case_columns(grid, spec, "b", early, late)
    unknown = pl.col("level").is_null() & ~pl.col("_masked") & pl.col("_open")
    counted = pl.col(f"_b_{recovery}") & early
    longest = pl.col(f"_eb_{recovery}")
    if spec.duration_rule == "longest":
        top = longest == longest.filter(counted).max()
        first_last = [
            pl.col("day").filter(counted & top).min().alias("_first"),
            (pl.col("day").filter(counted & top).min() + longest.filter(counted).max() - 1).alias("_last"),
        ]
    else:
        first_last = [
            pl.col("day").filter(counted).min().alias("_first"),
            pl.col("day").filter(counted).max().alias("_last"),
        ]
    graded = _per_patient(
        grid,
        [
            (unknown & early).sum().alias("_e_unknown"),
            pl.col("day").filter(unknown & early).min().alias("_e_unknown_first"),
            pl.col("day").filter(unknown & early).max().alias("_e_unknown_last"),
            (pl.col("level").is_not_null() & early).sum().alias("_e_known"),
            (unknown & late).sum().alias("_l_unknown"),
            pl.col("day").filter(unknown & late).min().alias("_l_unknown_first"),
            pl.col("day").filter(unknown & late).max().alias("_l_unknown_last"),
            *first_last,
            *best_aggs,
        ],
    )
    # Unknown days can change a grade only for the patients who have some: the other readings are computed
    # for them alone, and equal the best case for everyone else.
    uncertain = graded.filter((pl.col("_e_unknown") + pl.col("_l_unknown")) > 0).get_column(PID).to_physical()
    subset = _with_segments(grid.filter(pl.col("_pid").is_in(uncertain.implode())))
    subset, worst_aggs = _case_columns(subset, spec, "w", early, late)
    observed_aggs: list[pl.Expr] = []
    if spec.never_recovered is not None:
        subset, observed_aggs = _case_columns(subset, spec, "o", early, late)
    others = _per_patient(subset, [*worst_aggs, *observed_aggs]).with_columns(pl.lit(True).alias("_uncertain"))
    graded = graded.join(others, on=PID, how="left", maintain_order="left")
    best_names = [e.meta.output_name() for e in best_aggs if e.meta.output_name().startswith(("_eb_", "_lb_"))]
    graded = graded.with_columns(
        pl.coalesce(name.replace("b_", "w_", 1), name).alias(name.replace("b_", "w_", 1)) for name in best_names
    )

    def days_col(window: str, case: str, name: str) -> pl.Expr:
        rule = "long" if spec.duration_rule == "longest" else "cum"
        return pl.col(f"_{window}{case}_{rule}_{name}")

    def met(bands: list[dict], window: str, case: str) -> dict[str, pl.Expr]:
        return {b["rule"]: days_col(window, case, b["threshold"]) >= b["min_days"] for b in bands}

    early_min = _band_grade(early_bands, met(early_bands, "e", "b"), "grade")
    early_max = _band_grade(early_bands, met(early_bands, "e", "w"), "grade")
    early_rule = _band_grade(early_bands, met(early_bands, "e", "b"), "rule").fill_null(
        pl.lit(scale.table("early_grade0_rule"))
    )
    if spec.never_recovered is not None:
        case = pl.col("_uncertain").fill_null(False)

        start = pl.when(case).then(pl.col("_nr_start_o")).otherwise(pl.col("_nr_start_b"))
        never = (start <= spec.never_recovered_onset_max_day).fill_null(False)
        nr_grade = spec.never_recovered["grade"]
        early_min = pl.when(never).then(pl.lit(nr_grade)).otherwise(early_min)
        early_max = pl.when(never).then(pl.lit(nr_grade)).otherwise(early_max)
        early_rule = pl.when(never).then(pl.lit(spec.never_recovered["rule"])).otherwise(early_rule)

    late_bands_n = scale.table("late_nadir_bands")
    confirm = scale.table("late_confirm")
    late_window_end = pl.min_horizontal(pl.lit(config.late_end_day), pl.col("end_day"))
    late_values = (
        daily.filter(pl.col("day") >= spec.late_start)
        .with_columns(run_number(pl.col(PID).to_physical()).alias("_k"))
        .group_by("_k", maintain_order=True)
        .agg(
            pl.col(PID).first(),
            pl.len().alias("n"),
            pl.col("value").min().alias("nadir"),
            pl.col("day").sort_by("value", "day").first().alias("nadir_day"),
            pl.col("value").sort().slice(1, 1).first().alias("second"),
            pl.col("day").min().alias("first_day"),
            pl.col("day").max().alias("last_day"),
        )
    )
    nadir_met = {b["rule"]: _below(pl.col("nadir"), b["limit"], b["inclusive"]) for b in late_bands_n}
    confirmed = (pl.col("n") == 1) | _below(pl.col("second"), confirm["limit"], confirm["inclusive"])
    nadir_band = _band_grade(late_bands_n, nadir_met, "grade")
    nadir_grade = pl.when(confirmed).then(nadir_band).otherwise(0)
    if late_bands:
        duration_min = _band_grade(late_bands, met(late_bands, "l", "b"), "grade")
        duration_max = _band_grade(late_bands, met(late_bands, "l", "w"), "grade")
        duration_rule = _band_grade(late_bands, met(late_bands, "l", "b"), "rule")
    else:
        duration_min = duration_max = pl.lit(0)
        duration_rule = pl.lit(None, dtype=pl.Utf8)
    late_min = pl.max_horizontal(nadir_grade, duration_min)
    late_max = pl.max_horizontal(nadir_grade, duration_max)
    late_rule = (
        pl.when((duration_min > 0) & (duration_min >= nadir_grade))
        .then(duration_rule)
        .when(nadir_grade > 0)
        .then(_band_grade(late_bands_n, nadir_met, "rule"))
        .when(nadir_band > 0)
        .then(pl.lit(confirm["rule"]))
        .otherwise(pl.lit(scale.table("late_grade0_rule")))
    )

    early_end = pl.min_horizontal(pl.lit(spec.early_end), pl.col("end_day"))
    early_ok = pl.col("_early_min") == pl.col("_early_max")
    late_open = late_window_end >= spec.late_start
    enough = pl.col("n") >= config.late_min_values
    late_ok = late_open & enough & (pl.col("_late_min") == pl.col("_late_max"))
    unknown_text = (
        "{} unknown on {} day(s) between day {} and day {} (gaps over {} days are not interpolated); grade {} to {}"
    )
    early_reason = (
        pl.when(early_ok)
        .then(pl.lit(None, dtype=pl.Utf8))
        .when(pl.col("_e_known") == 0)
        .then(pl.format("no {} in days 0-{}", pl.lit(item), early_end))
        .otherwise(
            pl.format(
                unknown_text,
                pl.lit(item),
                pl.col("_e_unknown"),
                pl.col("_e_unknown_first"),
                pl.col("_e_unknown_last"),
                pl.lit(max_gap),
                pl.col("_early_min"),
                pl.col("_early_max"),
            )
        )
    )
    late_reason = (
        pl.when(late_ok)
        .then(pl.lit(None, dtype=pl.Utf8))
        .when(~late_open)
        .then(
            pl.format(
                "observation ended on day {} ({}), before day {}",
                pl.col("end_day"),
                pl.col("end_item"),
                pl.lit(spec.late_start),
            )
        )
        .when(pl.col("n") == 0)
        .then(pl.format("no {} in days {}-{}", pl.lit(item), pl.lit(spec.late_start), late_window_end))
        .when(~enough)
        .then(
            pl.format(
                "{} daily {} value(s) in days {}-{}; at least {} needed",
                pl.col("n"),
                pl.lit(item),
                pl.lit(spec.late_start),
                late_window_end,
                pl.lit(config.late_min_values),
            )
        )
        .otherwise(
            pl.format(
                unknown_text,
                pl.lit(item),
                pl.col("_l_unknown"),
                pl.col("_l_unknown_first"),
                pl.col("_l_unknown_last"),
                pl.lit(max_gap),
                pl.col("_late_min"),
                pl.col("_late_max"),
            )
        )
    )
    support = spec.support_item
    support_days = (
        _support_days(events, support)
        .join(patients, on=PID)
        .group_by(PID)
        .agg(
            pl.col("day").filter(pl.col("day").is_between(0, early_end)).n_unique().alias(f"{support}_days_early"),
            pl.col("day")
            .filter(pl.col("day").is_between(spec.late_start, late_window_end))
            .n_unique()
            .alias(f"{support}_days_late"),
            pl.col("day").filter(pl.col("day") >= 0).min().alias(f"{support}_first_day"),
        )
    )

    threshold_columns = []
    for name in spec.counted_thresholds():
        threshold_columns += [
            pl.col(f"_eb_long_{name}").alias(f"days_{name}"),
            pl.col(f"_eb_cum_{name}").alias(f"days_{name}_cumulative"),
        ]
    for band in late_bands:
        name = band["threshold"]
        threshold_columns += [
            pl.col(f"_lb_long_{name}").alias(f"late_days_{name}"),
            pl.col(f"_lb_cum_{name}").alias(f"late_days_{name}_cumulative"),
        ]
    out = (
        patients.join(graded, on=PID, how="left", maintain_order="left")
        .join(late_values, on=PID, how="left", maintain_order="left")
        .join(support_days, on=PID, how="left", maintain_order="left")
        .with_columns(pl.col("n").fill_null(0), pl.col(f"^{support}_days_.*$").fill_null(0))
        .with_columns(
            early_min.alias("_early_min"),
            early_max.alias("_early_max"),
            early_rule.alias("_early_rule"),
            late_min.alias("_late_min"),
            late_max.alias("_late_max"),
            late_rule.alias("_late_rule"),
        )
    )
    return out.select(
        PID,
        pl.when(early_ok).then(pl.col("_early_min")).cast(pl.Int8).alias(f"{p}early_grade"),
        pl.col("_early_min").cast(pl.Int8).alias(f"{p}early_grade_min"),
        pl.col("_early_max").cast(pl.Int8).alias(f"{p}early_grade_max"),
        pl.when(early_ok).then(pl.col("_early_rule")).alias(f"{p}early_rule"),
        early_ok.alias(f"{p}early_evaluable"),
        early_reason.alias(f"{p}early_not_evaluable_reason"),
        *threshold_columns,
        pl.col("_first").alias(f"{p}early_first_day"),
        pl.col("_last").alias(f"{p}early_last_day"),
        pl.col("_e_unknown").fill_null(0).alias(f"{p}early_days_unknown"),
        early_end.alias(f"{p}early_window_end"),
        pl.lit(spec.duration_rule).alias(f"{p}early_duration_rule"),
        pl.when(late_ok).then(pl.col("_late_min")).cast(pl.Int8).alias(f"{p}late_grade"),
        pl.when(late_open & enough).then(pl.col("_late_min")).cast(pl.Int8).alias(f"{p}late_grade_min"),
        pl.when(late_open & enough).then(pl.col("_late_max")).cast(pl.Int8).alias(f"{p}late_grade_max"),
        pl.when(late_ok).then(pl.col("_late_rule")).alias(f"{p}late_rule"),
        late_ok.alias(f"{p}late_evaluable"),
        late_reason.alias(f"{p}late_not_evaluable_reason"),
        pl.col("nadir").alias(f"{p}late_nadir"),
        pl.col("nadir_day").alias(f"{p}late_nadir_day"),
        pl.col("second").alias(f"{p}late_second_lowest"),
        pl.col("n").cast(pl.Int32).alias(f"{p}late_n_values"),
        pl.col("first_day").alias(f"{p}late_first_day"),
        pl.col("last_day").alias(f"{p}late_last_day"),
        late_window_end.alias(f"{p}late_window_end"),
        pl.col(f"{support}_days_early").cast(pl.Int32),
        pl.col(f"{support}_days_late").cast(pl.Int32),
        pl.col(f"{support}_first_day"),
    )


def grade_icaht(events: pl.DataFrame, config: IcahtConfig) -> pl.DataFrame:
    """Early and late ICAHT (neutrophils) and T-ICAHT (platelets): one row per patient of ``events``.

    ``events`` are canonical events (:func:`tocsin.core.events.normalise_events`); counts in 10*9/L.
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
    neutrophils, platelets = _lineages(config)
    # One pass over the batch for everything ICAHT reads (counts, their support items, the end of observation);
    # each step then reads that small frame.
    lineage_items = [item for spec in (neutrophils, platelets) for item in (spec.item, spec.support_item)]
    read = events.filter(pl.col("item").is_in([*lineage_items, *observation_end_items(config.censor_at)]))
    ends = observation_end(read, config.censor_at)
    patients = (
        distinct_in_runs(events, PID)
        .join(ends, on=PID, how="left", maintain_order="left")
        .with_columns(
            pl.min_horizontal(pl.lit(config.late_end_day), pl.col("end_t").floor().cast(pl.Int32))
            .cast(pl.Int32)
            .alias("end_day")
        )
    )
    n = _lineage_grades(read, patients, neutrophils, config)
    t = _lineage_grades(read, patients, platelets, config)
    head = patients.select(
        PID, pl.col("end_t").alias("observation_end_day"), pl.col("end_item").alias("observation_end_item")
    )
    return head.join(n, on=PID, how="left", maintain_order="left").join(t, on=PID, how="left", maintain_order="left")
