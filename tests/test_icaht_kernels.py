"""The compiled passes of ICAHT (``tocsin.core.kernels_icaht``) on their edge cases, and ``grade_icaht`` on
batches the conformance cases do not build: empty, patients without counts, an end before day 0, null values.
The clinical rules themselves are checked by ``tests/test_icaht_conformance.py``."""

from __future__ import annotations

import doctest

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tocsin.core.icaht
from hematology_cases import normalised
from tocsin.config import IcahtConfig
from tocsin.core.icaht import grade_icaht
from tocsin.core import kernels_icaht as k
from tocsin.core.icaht import _layout, _Layout, _Lineage, _lineages
from tocsin.core.kernels_icaht import ABOVE, BELOW, UNKNOWN, day_grid, grid_windows, lineage_summary

NAN = float("nan")


def _grid(
    end_day: list[int],
    values: list[list[tuple[int, float]]],
    supports: list[list[int]] | None = None,
    *,
    lead: int = 2,
    max_gap: int = 2,
    masking: int = -1,
):
    """``values``: per patient, its (day, value) pairs by day; ``supports``: per patient, its support days."""
    ends = np.array(end_day, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(np.maximum(ends + 1, 0))))
    supports = supports if supports is not None else [[] for _ in end_day]
    grid = day_grid(
        offsets,
        ends,
        np.cumsum([0, *map(len, values)]),
        np.array([d for v in values for d, _ in v], dtype=np.int64),
        np.array([x for v in values for _, x in v], dtype=float),
        np.cumsum([0, *map(len, supports)]),
        np.array([d for s in supports for d in s], dtype=np.int64),
        lead,
        max_gap,
        masking,
    )
    return offsets, grid


def _same(actual: np.ndarray, expected: list[float]) -> bool:
    return np.array_equal(actual, np.array(expected, dtype=float), equal_nan=True)


def test_day_grid_of_an_empty_batch() -> None:
    offsets, grid = _grid([], [])
    assert offsets.tolist() == [0] and all(column.size == 0 for column in grid)


def test_day_grid_without_values_is_unknown_and_an_end_before_day_0_leaves_no_days() -> None:
    offsets, grid = _grid([3, -1], [[], [(-2, 1.0)]])
    assert offsets.tolist() == [0, 4, 4]
    assert np.isnan(grid.level).all() and not (grid.bracketed.any() or grid.observed.any() or grid.masked.any())


def test_day_grid_interpolates_short_gaps_and_carries_the_ends_for_max_gap_days() -> None:
    # Values on days 1 and 4 (2 missing days: interpolated), 9 (4 missing days: unknown), then nothing.
    _, grid = _grid([12], [[(1, 1.0), (4, 4.0), (9, 9.0)]], max_gap=2)
    assert _same(grid.level, [1.0, 1.0, 2.0, 3.0, 4.0, NAN, NAN, NAN, NAN, 9.0, 9.0, 9.0, NAN])
    assert grid.observed.tolist() == [d in (1, 4, 9) for d in range(13)]
    assert grid.interpolated.tolist() == [d in (2, 3) for d in range(13)]
    assert grid.bracketed.tolist() == [1 <= d <= 9 for d in range(13)]


def test_day_grid_interpolation_is_returned_unrounded() -> None:
    _, grid = _grid([3], [[(0, 0.0), (3, 1.0)]])
    assert grid.level[1] == 0.0 + (1.0 - 0.0) / 3 * 1 and grid.interpolated[1]


def test_day_grid_values_before_day_0_anchor_the_interpolation_but_the_grid_starts_at_day_0() -> None:
    _, grid = _grid([2], [[(-2, 0.0), (2, 4.0)]], lead=2, max_gap=3)
    assert _same(grid.level, [2.0, 3.0, 4.0]) and grid.bracketed.all()


def test_day_grid_one_value() -> None:
    _, grid = _grid([0], [[(0, 0.7)]])
    assert _same(grid.level, [0.7]) and grid.observed.all() and grid.bracketed.all() and not grid.interpolated.any()


def test_day_grid_masks_the_support_day_and_the_masking_days_after_it_from_day_minus_lead() -> None:
    # A support on day -3 (before the grid's lead: ignored), day -1 (masks days 0-1) and day 5 (masks 5-7).
    _, grid = _grid([9], [[]], [[-3, -1, 5]], lead=2, masking=2)
    assert grid.masked.tolist() == [d in (0, 1, 5, 6, 7) for d in range(10)]
    _, never = _grid([9], [[]], [[-1, 5]], lead=2, masking=-1)
    assert not never.masked.any()


def test_day_grid_keeps_patients_apart() -> None:
    # The first patient's last value must not bracket or carry into the second patient's days.
    offsets, grid = _grid([2, 2], [[(2, 5.0)], [(2, 1.0)]], [[2], []], masking=3)
    first, second = slice(offsets[0], offsets[1]), slice(offsets[1], offsets[2])
    assert _same(grid.level[first], [5.0, 5.0, 5.0]) and _same(grid.level[second], [1.0, 1.0, 1.0])
    assert grid.masked[first].tolist() == [False, False, True] and not grid.masked[second].any()


# ------------------------------------------------------------------------------------------ lineage_summary
def _bridged_reference(states: list[int], stable: int) -> list[bool]:
    """Below after bridging: a run above shorter than ``stable`` between days below counts as below."""
    out, first = [], 0
    while first < len(states):
        end = first
        while end < len(states) and states[end] == states[first]:
            end += 1
        inner = 0 < first and end < len(states) and states[first - 1] == BELOW and states[end] == BELOW
        out += [states[first] == BELOW or (states[first] == ABOVE and end - first < stable and inner)] * (end - first)
        first = end
    return out


def _runs_reference(flags: list[bool]) -> dict[str, int]:
    days = [d for d, f in enumerate(flags) if f]
    runs: list[list[int]] = []
    for d in days:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    longest = max(runs, key=len) if runs else []  # max: the first of equal lengths
    return {
        "count": len(days), "first": days[0] if days else -1, "last": days[-1] if days else -1,
        "longest": len(longest), "longest_start": longest[0] if longest else -1,
        "last_start": runs[-1][0] if runs else -1,
    }  # fmt: skip


def _reference(grid: tuple, end_day: np.ndarray, values: tuple, support: tuple, layout: _Layout) -> np.ndarray:
    """:func:`lineage_summary`'s integers, patient by patient in plain Python (as the NumPy code computed them)."""
    offsets, level, masked, unknown, undetermined, early, late = grid
    limits, inclusive, in_late = layout.thresholds
    settings, n_thresholds = layout.settings, limits.size
    never, longest = settings[k.NEVER_THRESHOLD], bool(settings[k.LONGEST])
    out = np.full((k.FIXED_ROWS + 2 * n_thresholds + 2 * len(layout.late_bands), end_day.size), -1, dtype=np.int64)
    floats = np.full((2, end_day.size), np.nan)
    for p in range(end_day.size):
        cells = range(offsets[p], offsets[p + 1])
        in_early, in_late_window = [bool(early[c]) for c in cells], [bool(late[c]) for c in cells]
        summary, known_o = {}, []
        for t in range(n_thresholds):
            below = [bool(masked[c]) or bool(level[c] <= limits[t] if inclusive[t] else level[c] < limits[t])
                     for c in cells]  # fmt: skip
            readings = {
                "b": [BELOW if x else ABOVE for x in below],
                "w": [BELOW if x or unknown[c] else ABOVE for x, c in zip(below, cells)],
            }
            if t == never:
                readings["o"] = [BELOW if x else UNKNOWN if undetermined[c] else ABOVE for x, c in zip(below, cells)]
                known_o = [e and s != UNKNOWN for e, s in zip(in_early, readings["o"])]
            for reading, states in readings.items():
                bridged = _bridged_reference(states, settings[k.STABLE_DAYS])
                summary[t, reading, "e"] = _runs_reference([b and e for b, e in zip(bridged, in_early)])
                summary[t, reading, "l"] = _runs_reference([b and e for b, e in zip(bridged, in_late_window)])
        unknown_e = _runs_reference([bool(unknown[c]) and e for c, e in zip(cells, in_early)])
        unknown_l = _runs_reference([bool(unknown[c]) and e for c, e in zip(cells, in_late_window)])
        known_e = _runs_reference([not np.isnan(level[c]) and e for c, e in zip(cells, in_early)])
        graded = len(cells) > 0

        def band(bands: np.ndarray, window: str, reading: str) -> int:
            for b, (threshold, min_days, _, _) in enumerate(bands.tolist()):
                met = summary[threshold, reading, window]["longest" if longest else "count"]
                if graded and met >= min_days:
                    return b
            return -1

        best, worst = band(layout.early_bands, "e", "b"), band(layout.early_bands, "e", "w")
        low = layout.early_bands[best, 2] if best >= 0 else 0
        high = layout.early_bands[worst, 2] if worst >= 0 else 0
        rule = layout.early_bands[best, 3] if best >= 0 else settings[k.EARLY_GRADE0_RULE]
        early_end = min(settings[k.EARLY_END], end_day[p])
        if never >= 0:
            b, o = summary[never, "b", "e"], summary[never, "o", "e"]
            start_b = b["last_start"] if b["last"] == early_end else -1
            last_known = _runs_reference(known_o)["last"]
            start_o = o["last_start"] if o["last"] >= 0 and o["last"] == last_known else -1
            onset = start_o if unknown_e["count"] + unknown_l["count"] > 0 else start_b
            if 0 <= onset <= settings[k.NEVER_ONSET_MAX_DAY]:
                low = high = settings[k.NEVER_GRADE]
                rule = settings[k.NEVER_RULE]
        recovery = summary[0, "b", "e"]
        first = recovery["longest_start"] if longest else recovery["first"]
        last = first + recovery["longest"] - 1 if longest else recovery["last"]
        ok = low == high
        out[[k.EARLY_GRADE, k.EARLY_GRADE_MIN, k.EARLY_GRADE_MAX, k.EARLY_RULE, k.EARLY_EVALUABLE], p] = (
            low if ok else -1, low, high, rule if ok else -1, ok
        )
        if first >= 0:
            out[[k.EARLY_FIRST_DAY, k.EARLY_LAST_DAY], p] = first, last
        out[[k.EARLY_DAYS_UNKNOWN, k.EARLY_UNKNOWN_FIRST, k.EARLY_UNKNOWN_LAST], p] = [
            unknown_e[f] for f in ("count", "first", "last")
        ]
        out[[k.EARLY_DAYS_KNOWN, k.EARLY_WINDOW_END], p] = known_e["count"], early_end
        if graded:
            for t in range(n_thresholds):
                out[k.FIXED_ROWS + 2 * t : k.FIXED_ROWS + 2 * t + 2, p] = [
                    summary[t, "b", "e"][f] for f in ("longest", "count")
                ]
            for b, threshold in enumerate(layout.late_bands[:, 0].tolist()):
                row = k.FIXED_ROWS + 2 * n_thresholds + 2 * b
                out[row : row + 2, p] = [summary[threshold, "b", "l"][f] for f in ("longest", "count")]
        # Late values and grade.
        v_offsets, v_day, v_value = values
        late_days = [(v_value[v], v_day[v]) for v in range(v_offsets[p], v_offsets[p + 1])
                     if v_day[v] >= settings[k.LATE_START]]  # fmt: skip
        ranked = sorted(late_days)  # by value, then day
        n = len(late_days)
        if n:
            floats[0, p], out[k.LATE_NADIR_DAY, p] = ranked[0]
            out[[k.LATE_FIRST_DAY, k.LATE_LAST_DAY], p] = late_days[0][1], late_days[-1][1]
        if n >= 2:
            floats[1, p] = ranked[1][0]
        nadir_limits, nadir_inclusive, nadir_bands = layout.nadir
        nadir = floats[0, p]
        below_band = [nadir <= x if at else nadir < x for x, at in zip(nadir_limits, nadir_inclusive, strict=True)]
        nadir_band = below_band.index(True) if n >= 1 and any(below_band) else -1
        limit, inclusive_confirm = layout.confirm
        confirmed = n == 1 or (n >= 2 and (floats[1, p] <= limit if inclusive_confirm else floats[1, p] < limit))
        nadir_grade = nadir_bands[nadir_band, 0] if confirmed and nadir_band >= 0 else 0
        best, worst = band(layout.late_bands, "l", "b"), band(layout.late_bands, "l", "w")
        d_low = layout.late_bands[best, 2] if best >= 0 else 0
        d_high = layout.late_bands[worst, 2] if worst >= 0 else 0
        if d_low > 0 and d_low >= nadir_grade:
            rule = layout.late_bands[best, 3]
        elif nadir_grade > 0:
            rule = nadir_bands[nadir_band, 1]
        else:
            rule = settings[k.LATE_CONFIRM_RULE] if nadir_band >= 0 else settings[k.LATE_GRADE0_RULE]
        low, high = max(nadir_grade, d_low), max(nadir_grade, d_high)
        late_end = min(settings[k.LATE_END_DAY], end_day[p])
        late_open = late_end >= settings[k.LATE_START]
        late_graded = late_open and n >= settings[k.LATE_MIN_VALUES]
        ok = late_graded and low == high
        out[[k.LATE_GRADE, k.LATE_RULE, k.LATE_EVALUABLE, k.LATE_OPEN, k.LATE_N_VALUES, k.LATE_WINDOW_END], p] = (
            low if ok else -1, rule if ok else -1, ok, late_open, n, late_end
        )
        if late_graded:
            out[[k.LATE_GRADE_MIN, k.LATE_GRADE_MAX], p] = low, high
        out[[k.LATE_DAYS_UNKNOWN, k.LATE_UNKNOWN_FIRST, k.LATE_UNKNOWN_LAST], p] = [
            unknown_l[f] for f in ("count", "first", "last")
        ]
        s_offsets, s_day = support
        given = [d for d in s_day[s_offsets[p] : s_offsets[p + 1]].tolist() if d >= 0]
        out[k.SUPPORT_EARLY, p] = sum(d <= early_end for d in given)
        out[k.SUPPORT_LATE, p] = sum(settings[k.LATE_START] <= d <= late_end for d in given)
        out[k.SUPPORT_FIRST_DAY, p] = given[0] if given else -1
    return np.vstack([out, floats])


def _random_lineage(rng: np.random.Generator, n_patients: int, scale: float) -> tuple:
    """A grid of piecewise constant levels (stretches long enough for every band) with NaN, masked, unknown
    and undetermined days, daily values (days before the late window too) and support days."""
    end_day = rng.integers(-2, 60, n_patients)
    offsets = np.concatenate(([0], np.cumsum(np.maximum(end_day + 1, 0))))
    pieces = []
    while sum(map(len, pieces)) < offsets[-1]:
        value = rng.choice([0.05, 0.1, 0.3, 0.5, 0.7, 1.0, 1.6, NAN]) * scale
        pieces.append([value] * int(rng.integers(1, 16)))
    level = np.concatenate([[], *pieces])[: offsets[-1]]
    day = np.concatenate([[], *(np.arange(n) for n in np.diff(offsets))]).astype(np.int64)
    masked = rng.random(level.size) < 0.05
    undetermined = np.isnan(level) & ~masked
    unknown = undetermined & (rng.random(level.size) < 0.7)
    grid = (offsets, level, masked, unknown, undetermined, day <= 30, day >= 31)
    counts = [np.sort(rng.choice(np.arange(-3, 70), rng.integers(0, 12), replace=False)) for _ in range(n_patients)]
    values = (
        np.cumsum([0, *map(len, counts)]),
        np.concatenate([[], *counts]).astype(np.int64),
        rng.choice([0.05, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0], sum(map(len, counts))) * scale,
    )
    given = [np.sort(rng.choice(np.arange(-3, 70), rng.integers(0, 4), replace=False)) for _ in range(n_patients)]
    support = (np.cumsum([0, *map(len, given)]), np.concatenate([[], *given]).astype(np.int64))
    return grid, end_day, values, support


def _summary(grid: tuple, end_day: np.ndarray, values: tuple, support: tuple, layout: _Layout) -> np.ndarray:
    ints, floats = lineage_summary(
        grid, end_day, values, support, layout.thresholds, layout.early_bands, layout.late_bands, layout.nadir,
        layout.confirm, layout.settings,
    )  # fmt: skip
    return np.vstack([ints, floats])


@pytest.mark.parametrize(
    "config",
    [
        IcahtConfig(),
        IcahtConfig(duration_rule="cumulative", t_duration_rule="cumulative", never_recovered_grade4=False),
        IcahtConfig(stable_recovery_days=1, t_stable_recovery_days=5, late_min_values=1, late_end_day=45),
    ],
)
def test_lineage_summary_is_the_reference_on_random_grids(config: IcahtConfig) -> None:
    rng = np.random.default_rng(7)
    for spec in _lineages(config):
        layout = _layout(spec, config.late_end_day, config.late_min_values, 0)
        scale = 100.0 if spec.item == "plt" else 1.0
        for n_patients in (0, 1, 2, 30):
            case = _random_lineage(rng, n_patients, scale)
            np.testing.assert_array_equal(_summary(*case, layout), _reference(*case, layout))


def _one_patient(level: list[float], *, stable: int = 3) -> tuple[np.ndarray, _Layout]:
    """One patient's summary for the neutrophil tables on a grid of these levels (all days known)."""
    spec = _Lineage("icaht_eha2023", "", "g_csf", stable, "cumulative", None, False, 3)
    layout = _layout(spec, 100, 2, 0)
    n = len(level)
    day = np.arange(n)
    no = np.zeros(n, dtype=bool)
    grid = (np.array([0, n]), np.array(level, dtype=float), no, no, no, day <= 30, day >= 31)
    empty = np.zeros(0, dtype=np.int64)
    return _summary(grid, np.array([n - 1]), (np.array([0, 0]), empty, np.zeros(0)), (np.array([0, 0]), empty),
                    layout)[:, 0], layout  # fmt: skip


@pytest.mark.parametrize(
    ("below", "stable", "counted"),
    [
        ("BAAB", 3, 4),  # a recovery of 2 days < 3: bridged
        ("BAAAB", 3, 2),  # 3 days: stable, kept
        ("AAB", 3, 1),  # no day below before the run
        ("BAA", 3, 1),  # nor after it
        ("BAB", 1, 2),  # 1 = no bridging
        ("A", 3, 0),
        ("B", 3, 1),
    ],
)
def test_lineage_summary_bridges_short_recoveries(below: str, stable: int, counted: int) -> None:
    summary, _ = _one_patient([0.3 if c == "B" else 2.0 for c in below], stable=stable)
    assert summary[k.FIXED_ROWS + 1] == counted  # days <= 500/uL, cumulative


def test_lineage_summary_of_an_empty_batch_and_of_a_patient_without_days() -> None:
    config = IcahtConfig()
    layout = _layout(_lineages(config)[0], config.late_end_day, config.late_min_values, 0)
    empty, no_floats = np.zeros(0, dtype=np.int64), np.zeros(0)
    no_days = (np.array([0, 0]), no_floats, *[np.zeros(0, dtype=bool)] * 5)
    out = _summary(no_days, np.array([-1]), (np.array([0, 0]), empty, no_floats), (np.array([0, 0]), empty), layout)
    # No day on the grid: grade 0 in both cases, every duration null, the windows closed.
    assert out[[k.EARLY_GRADE, k.EARLY_GRADE_MIN, k.EARLY_GRADE_MAX, k.EARLY_WINDOW_END], 0].tolist() == [0, 0, 0, -1]
    assert out[k.FIXED_ROWS, 0] == -1 and out[k.LATE_OPEN, 0] == 0 and out[k.LATE_GRADE_MIN, 0] == -1
    none = (np.array([0]), no_floats, *[np.zeros(0, dtype=bool)] * 5)
    assert _summary(none, empty, (np.array([0]), empty, no_floats), (np.array([0]), empty), layout).shape == (
        k.FIXED_ROWS + 2 * layout.thresholds[0].size + 2,
        0,
    )


def test_lineage_summary_late_values_rank_equal_values_by_day_and_skip_early_days() -> None:
    config = IcahtConfig()
    layout = _layout(_lineages(config)[0], config.late_end_day, config.late_min_values, 0)
    end_day = np.array([100, 100, 100])
    offsets = np.concatenate(([0], np.cumsum(end_day + 1)))
    no = np.zeros(offsets[-1], dtype=bool)
    grid = (offsets, np.full(offsets[-1], 2.0), no, no, no, no, no)
    values = (np.array([0, 4, 4, 6]), np.array([20, 31, 35, 40, 31, 33]), np.array([0.1, 0.5, 0.3, 0.3, 0.9, 0.2]))
    support = (np.array([0, 4, 5, 5]), np.array([-3, 0, 30, 31, -1]))
    out = _summary(grid, end_day, values, support, layout)
    assert out[k.LATE_N_VALUES].tolist() == [3, 0, 2] and out[k.LATE_NADIR_DAY].tolist() == [35, -1, 33]
    assert out[k.LATE_FIRST_DAY].tolist() == [31, -1, 31] and out[k.LATE_LAST_DAY].tolist() == [40, -1, 33]
    np.testing.assert_array_equal(out[-2], [0.3, NAN, 0.2])
    np.testing.assert_array_equal(out[-1], [0.3, NAN, 0.9])  # two days at 0.3: the second-lowest is 0.3
    # Support days in each window, and the first from day 0.
    assert out[[k.SUPPORT_EARLY, k.SUPPORT_LATE, k.SUPPORT_FIRST_DAY]].T.tolist() == [[2, 1, 0], [0, 0, -1], [0, 0, -1]]


# ------------------------------------------------------------------------------------------ grade_icaht
def _course(anc: dict[int, float | None], extra: list[list] | None = None) -> list[list]:
    return [[d, "anc", v, "/uL"] for d, v in anc.items()] + (extra or [])


def test_an_empty_batch_has_the_columns_and_types_of_a_graded_one() -> None:
    events = normalised({"P": _course({d: 300 for d in range(31)})}).events
    graded = grade_icaht(events, IcahtConfig())
    empty = grade_icaht(events.head(0), IcahtConfig())
    assert empty.height == 0 and empty.schema == graded.schema


@pytest.mark.parametrize(("rule", "dtype"), [("longest", pl.Int64), ("cumulative", pl.Int32)])
def test_output_types_follow_the_duration_rule(rule: str, dtype: pl.DataType) -> None:
    events = normalised({"P": _course({d: 300 for d in range(31)})}).events
    out = grade_icaht(events, IcahtConfig(duration_rule=rule, t_duration_rule=rule))
    assert out.schema["early_last_day"] == dtype and out.schema["t_early_last_day"] == dtype
    assert out.schema["days_anc_le_500"] == pl.UInt32 and out.schema["early_grade"] == pl.Int8


def test_patients_without_counts_and_an_end_before_day_0() -> None:
    events = normalised(
        {
            "no_counts": [[5, "g_csf", 300, "ug"], [40, "g_csf", 300, "ug"]],
            "ended": _course({-1: 200}, [[-0.5, "death", "infection", ""]]),
            "graded": _course({d: 300 for d in range(0, 31)}),
        }
    ).events
    out = grade_icaht(events, IcahtConfig()).rows_by_key("patient_id", named=True, unique=True)
    no_counts, ended, graded = out["no_counts"], out["ended"], out["graded"]
    assert no_counts["early_grade"] is None and no_counts["early_not_evaluable_reason"] == "no anc in days 0-30"
    assert (
        no_counts["g_csf_days_early"] == 1 and no_counts["g_csf_days_late"] == 1 and no_counts["g_csf_first_day"] == 5
    )
    assert ended["observation_end_item"] == "death" and ended["days_anc_le_500"] is None
    assert ended["late_not_evaluable_reason"] == "observation ended on day -1 (death), before day 31"
    assert graded["early_grade"] == 4 and graded["early_first_day"] == 0 and graded["early_last_day"] == 30


def test_a_day_without_a_value_is_interpolated_not_read_as_zero() -> None:
    # Null counts are refused at ingest; a null value in the canonical frame (built by hand) is no count.
    events = normalised({"P": _course({d: 2000 for d in range(31)})}).events
    day5 = (pl.col("item") == "anc") & (pl.col("t") == 5.0)
    out = grade_icaht(
        events.with_columns(pl.when(day5).then(None).otherwise(pl.col("num")).alias("num")), IcahtConfig()
    )
    assert out.row(0, named=True)["early_grade"] == 0 and out.row(0, named=True)["early_days_unknown"] == 0


def test_grading_is_the_same_in_any_batch() -> None:
    courses = {
        "A": _course({d: (300 if 2 <= d <= 12 else 2000) for d in range(0, 60, 2)}),
        "B": _course({d: 50 for d in range(0, 40)}, [[20, "last_contact", "alive", ""]]),
        "C": [[3, "plt", 10, "10*9/L"], [4, "platelet_transfusion", 1, "{unit}"]],
    }
    together = grade_icaht(normalised(courses).events, IcahtConfig())
    alone = pl.concat([grade_icaht(normalised({k: v}).events, IcahtConfig()) for k, v in courses.items()])
    assert_frame_equal(together.with_columns(pl.col("patient_id").cast(pl.Utf8)),
                       alone.with_columns(pl.col("patient_id").cast(pl.Utf8)))  # fmt: skip


def test_module_example() -> None:
    assert doctest.testmod(tocsin.core.icaht, raise_on_error=False).failed == 0


def test_grid_windows_drop_unbracketed_late_levels_and_find_the_unknown_days() -> None:
    offsets = np.array([0, 4, 4, 7])
    level = np.array([0.2, NAN, 0.3, 0.4, NAN, NAN, 0.5])
    observed = np.array([True, False, False, False, False, False, True])
    bracketed = np.array([True, True, False, False, False, True, True])
    masked = np.array([False, False, False, False, True, False, False])
    out = grid_windows(offsets, level, observed, bracketed, masked, 1, 2)
    np.testing.assert_array_equal(level, [0.2, NAN, NAN, NAN, NAN, NAN, 0.5])  # days 2-3 of patient 0: carried
    assert out.early.tolist() == [True, True, False, False, True, True, False]
    assert out.late.tolist() == [False, False, True, True, False, False, True]
    assert out.undetermined.tolist() == [False, True, True, True, False, True, False]
    assert out.unknown.tolist() == [False, True, False, False, False, True, False]
