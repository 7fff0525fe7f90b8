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
from tocsin.core.kernels_icaht import ABOVE, BELOW, UNKNOWN, lineage_summary

NAN = float("nan")


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


def _grid_reference(rows: tuple, end_t: np.ndarray, end_day: np.ndarray, slots: tuple, settings: np.ndarray) -> tuple:
    """The daily values, support days and grid of every patient (offsets and flat arrays), in plain Python as the
    separate passes computed them."""
    patient, t, num, slot = rows
    lead, max_gap, masking = settings[k.LEAD], settings[k.MAX_GAP], settings[k.MASKING_DAYS]
    values: list[list[tuple[int, float]]] = [[] for _ in end_day]
    support: list[list[int]] = [[] for _ in end_day]
    for p, when, x, item in zip(patient.tolist(), t.tolist(), num.tolist(), slot.tolist(), strict=True):
        day = int(np.floor(when))
        if item == slots[0] and not np.isnan(x) and not when > end_t[p] and -lead <= day <= end_day[p]:
            if values[p] and values[p][-1][0] == day:
                values[p][-1] = (day, min(values[p][-1][1], x))
            else:
                values[p].append((day, x))
        elif item == slots[1] and (not support[p] or support[p][-1] != day):
            support[p].append(day)
    grid: list[list] = [[] for _ in range(6)]  # level, masked, unknown, undetermined, early, late
    for p, end in enumerate(end_day.tolist()):
        days, given = [d for d, _ in values[p]], [d for d in support[p] if d >= -lead]
        for day in range(end + 1):
            before = [(d, x) for d, x in values[p] if d < day]
            after = [(d, x) for d, x in values[p] if d >= day]
            level = NAN
            if day in days:
                level = after[0][1]
            elif before and after and after[0][0] - before[-1][0] - 1 <= max_gap:
                (d0, v0), (d1, v1) = before[-1], after[0]
                level = np.round(v0 + (v1 - v0) / (d1 - d0) * (day - d0), 6)
            elif after and not before and after[0][0] - day <= max_gap:
                level = after[0][1]
            elif before and not after and day - before[-1][0] <= max_gap:
                level = before[-1][1]
            bracketed = bool(before and after) or day in days
            if day >= settings[k.LATE_START] and not bracketed:
                level = NAN
            masked = masking >= 0 and any(0 <= day - d <= masking for d in given)
            undetermined = bool(np.isnan(level)) and not masked
            early = day <= settings[k.EARLY_END]
            for column, x in zip(grid, [level, masked, undetermined and (early or bracketed), undetermined, early,
                                        day >= settings[k.LATE_START]], strict=True):  # fmt: skip
                column.append(x)
    offsets = np.concatenate(([0], np.cumsum(np.maximum(end_day + 1, 0)))).astype(np.int64)
    return (
        (offsets, np.array(grid[0], dtype=float), *(np.array(c, dtype=bool) for c in grid[1:])),
        (np.cumsum([0, *map(len, values)]), [d for v in values for d, _ in v], [x for v in values for _, x in v]),
        (np.cumsum([0, *map(len, support)]), np.array([d for s in support for d in s], dtype=np.int64)),
    )


def _reference(rows: tuple, n_patients: int, ends: np.ndarray, slots: tuple, layout: _Layout) -> np.ndarray:
    """:func:`lineage_summary`, patient by patient in plain Python (as the NumPy code and passes computed it)."""
    patient, t, _, slot = rows
    end_t, end_slot = np.full(n_patients, NAN), np.full(n_patients, -1)
    for row in np.flatnonzero(ends[slot])[::-1]:  # each patient's first row that ends the observation
        end_t[patient[row]], end_slot[patient[row]] = t[row], slot[row]
    end_day = np.fmin(layout.settings[k.LATE_END_DAY], np.floor(end_t)).astype(np.int64)
    grid, values, support = _grid_reference(rows, end_t, end_day, slots, layout.settings)
    offsets, level, masked, unknown, undetermined, early, late = grid
    limits, inclusive, in_late = layout.thresholds
    settings, n_thresholds = layout.settings, limits.size
    never, longest = settings[k.NEVER_THRESHOLD], bool(settings[k.LONGEST])
    out = np.full((k.FIXED_ROWS + 2 * n_thresholds + 2 * len(layout.late_bands), end_day.size), -1, dtype=np.int64)
    floats = np.full((3, end_day.size), np.nan)
    out[k.END_SLOT], out[k.END_DAY], floats[k.END_T] = end_slot, end_day, end_t
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


def _random_rows(rng: np.random.Generator, n_patients: int, scale: float) -> tuple:
    """Rows of counts (slot 0: runs of equal values, long enough for every band, a few without a value), of a
    support item (slot 1), of another item and of an item that ends the observation (slot 3), a patient's in time
    order."""
    per_patient = rng.integers(0, 80, n_patients)
    patient = np.repeat(np.arange(n_patients), per_patient).astype(np.int64)
    t = np.concatenate([[], *(np.sort(rng.uniform(-12, 110, n)) for n in per_patient)])
    slot = rng.choice(4, t.size, p=[0.84, 0.1, 0.05, 0.01]).astype(np.int8)
    runs = np.repeat(rng.choice([0.05, 0.1, 0.3, 0.5, 0.7, 1.0, 1.6, 2.0], t.size), rng.integers(1, 12, t.size))
    num = runs[: t.size] * scale
    num[rng.random(t.size) < 0.03] = NAN
    return (patient, t, num, slot), n_patients, np.array([False, False, False, True]), (0, 1)


def _summary(rows: tuple, n_patients: int, ends: np.ndarray, slots: tuple, layout: _Layout) -> np.ndarray:
    """The kernel's integers, then its floats (the last three rows)."""
    ints, floats = lineage_summary(
        rows, n_patients, ends, slots, layout.thresholds, layout.early_bands, layout.late_bands, layout.nadir,
        layout.confirm, layout.settings,
    )  # fmt: skip
    return np.vstack([ints, floats])


@pytest.mark.parametrize(
    "config",
    [
        IcahtConfig(),
        IcahtConfig(duration_rule="cumulative", t_duration_rule="cumulative", never_recovered_grade4=False),
        IcahtConfig(stable_recovery_days=1, t_stable_recovery_days=5, late_min_values=1, late_end_day=45,
                    max_interpolation_gap_days=2, t_transfusion_free_days=0),  # fmt: skip
    ],
)
def test_lineage_summary_is_the_reference_on_random_rows(config: IcahtConfig) -> None:
    rng = np.random.default_rng(7)
    for spec in _lineages(config):
        layout = _layout(spec, config.max_interpolation_gap_days, config.late_end_day, config.late_min_values, 0)
        scale = 100.0 if spec.item == "plt" else 1.0
        for n_patients in (0, 1, 2, 30):
            case = _random_rows(rng, n_patients, scale)
            np.testing.assert_array_equal(_summary(*case, layout), _reference(*case, layout))


def _layout_of(item: str = "anc", *, stable: int = 3, max_gap: int = 7) -> _Layout:
    """The tables of the neutrophils (cumulative days, no never-recovered grade 4) or of the platelets."""
    if item == "plt":
        return _layout(_lineages(IcahtConfig())[1], max_gap, 100, 2, 0)
    return _layout(_Lineage("icaht_eha2023", "", "g_csf", stable, "cumulative", None, False, 3), max_gap, 100, 2, 0)


def _patients(counts: list[list[tuple[float, float]]], end_t: list[float | None], layout: _Layout,
              support: list[list[float]] | None = None) -> np.ndarray:  # fmt: skip
    """The summary of patients with these (t, count) rows, support times and ends of observation (None: none)."""
    support = support or [[] for _ in counts]
    ended = [[] if end is None else [(end, NAN, 2)] for end in end_t]
    rows = [sorted([(when, x, 0) for when, x in c] + [(when, NAN, 1) for when in s] + e)
            for c, s, e in zip(counts, support, ended, strict=True)]  # fmt: skip
    patient = np.repeat(np.arange(len(rows)), [len(r) for r in rows]).astype(np.int64)
    flat = [row for r in rows for row in r]
    t, num, slot = (np.array([row[i] for row in flat], dtype=float) for i in range(3))
    rows_read = (patient, t, num, slot.astype(np.int8))
    return _summary(rows_read, len(rows), np.array([False, False, True]), (0, 1), layout)


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
    counts = [(day, 0.3 if c == "B" else 2.0) for day, c in enumerate(below)]
    summary = _patients([counts], [len(below) - 0.5], _layout_of(stable=stable))
    assert summary[k.FIXED_ROWS + 1, 0] == counted  # days <= 500/uL, cumulative


def test_lineage_summary_interpolates_short_gaps_and_carries_the_ends_for_max_gap_days() -> None:
    # Counts on days 1 and 4 (2 missing days: interpolated), 9 (4 missing days: unknown), then nothing: day 0
    # and days 10-11 carried, day 12 unknown. The lowest count of a day counts; a count after the end of
    # observation (12.5) is not read.
    counts = [(1.5, 2.0), (1.2, 0.1), (4.0, 0.4), (9.0, 0.4), (12.7, 0.1)]
    out = _patients([counts], [12.5], _layout_of(max_gap=2))[:, 0]
    assert out[[k.EARLY_DAYS_KNOWN, k.EARLY_DAYS_UNKNOWN, k.EARLY_UNKNOWN_FIRST, k.EARLY_UNKNOWN_LAST]].tolist() == [
        8, 5, 5, 12,
    ]  # fmt: skip
    assert out[k.FIXED_ROWS + 1] == 8  # every known day at or below 0.5 (0.1, 0.2, 0.3 interpolated, 0.4)


def test_lineage_summary_interpolation_is_rounded_and_values_before_day_0_anchor_it() -> None:
    # Day 0 lies between day -1 (0.11) and day 5 (2.45): 0.5000000000000001 before rounding, 0.5 after.
    assert 0.11 + (2.45 - 0.11) / 6 > 0.5
    summary = _patients([[(-1.0, 0.11), (5.0, 2.45)]], [5.5], _layout_of())[:, 0]
    assert summary[k.FIXED_ROWS + 1] == 1 and summary[k.EARLY_DAYS_KNOWN] == 6  # day 0 at or below 0.5


def test_lineage_summary_masks_the_support_day_and_the_masking_days_after_it() -> None:
    # Platelets 100 every day; transfusions on day -10 (before the lead: ignored), -1 (masks days 0-6 with
    # 7 transfusion-free days) and 20 (masks 20-27): those days count as below 20 x10^9/L.
    layout = _layout_of("plt")
    assert layout.settings[k.MASKING_DAYS] == 7 and layout.settings[k.LEAD] == 7
    out = _patients([[(d, 100.0) for d in range(31)]], [30.5], layout, [[-10.0, -1.0, 20.5]])[:, 0]
    assert out[k.FIXED_ROWS + 1] == 15 and out[k.SUPPORT_EARLY] == 1 and out[k.SUPPORT_FIRST_DAY] == 20


def test_lineage_summary_keeps_patients_apart() -> None:
    # The first patient's counts must not bracket or carry into the second patient's days.
    out = _patients([[(2.0, 0.1)], [(2.7, 2.0)]], [2.5, 2.5], _layout_of(max_gap=2))
    assert out[k.FIXED_ROWS + 1].tolist() == [3, 0] and out[k.EARLY_DAYS_UNKNOWN].tolist() == [0, 3]


def test_lineage_summary_of_an_empty_batch_and_of_a_patient_without_days() -> None:
    layout = _layout_of()
    out = _patients([[(-2.0, 0.1)]], [-0.5], layout)
    # No day on the grid: grade 0 in both cases, every duration null, the windows closed.
    assert out[[k.EARLY_GRADE, k.EARLY_GRADE_MIN, k.EARLY_GRADE_MAX, k.EARLY_WINDOW_END], 0].tolist() == [0, 0, 0, -1]
    assert out[k.FIXED_ROWS, 0] == -1 and out[k.LATE_OPEN, 0] == 0 and out[k.LATE_GRADE_MIN, 0] == -1
    assert out[[k.END_SLOT, k.END_DAY], 0].tolist() == [2, -1] and out[-3 + k.END_T, 0] == -0.5
    no_counts = _patients([[]], [5.5], layout)[:, 0]  # every day unknown
    assert no_counts[k.EARLY_DAYS_UNKNOWN] == 6 and no_counts[k.EARLY_DAYS_KNOWN] == 0
    assert _patients([], [], layout).shape == (k.FIXED_ROWS + 2 * layout.thresholds[0].size + 3, 0)


def test_lineage_summary_late_values_rank_equal_values_by_day_and_skip_early_days() -> None:
    counts = [[(20, 0.1), (31, 0.5), (35, 0.3), (40, 0.3)], [], [(31, 0.9), (33, 0.2)]]
    out = _patients(counts, [None, None, None], _layout_of(), [[-3.0, 0.0, 30.0, 31.0], [-1.0], []])
    assert out[k.LATE_N_VALUES].tolist() == [3, 0, 2] and out[k.LATE_NADIR_DAY].tolist() == [35, -1, 33]
    assert out[k.LATE_FIRST_DAY].tolist() == [31, -1, 31] and out[k.LATE_LAST_DAY].tolist() == [40, -1, 33]
    floats = out[-3:]
    np.testing.assert_array_equal(floats[k.LATE_NADIR], [0.3, NAN, 0.2])
    np.testing.assert_array_equal(floats[k.LATE_SECOND_LOWEST], [0.3, NAN, 0.9])  # two at 0.3: the second is 0.3
    assert out[k.END_DAY].tolist() == [100, 100, 100] and np.isnan(floats[k.END_T]).all()
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
