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
from tocsin.core.kernels_icaht import (
    ABOVE,
    BELOW,
    UNKNOWN,
    bridged,
    day_grid,
    grid_windows,
    late_values,
    runs,
    support_days,
    threshold_states,
)

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


A, B, U = ABOVE, BELOW, UNKNOWN


@pytest.mark.parametrize(
    ("states", "stable", "expected"),
    [
        ([B, A, A, B], 3, [1, 1, 1, 1]),  # a recovery of 2 days < 3: bridged
        ([B, A, A, A, B], 3, [1, 0, 0, 0, 1]),  # 3 days: stable, kept
        ([A, A, B], 3, [0, 0, 1]),  # no day below before the run
        ([B, A, A], 3, [1, 0, 0]),  # nor after it
        ([B, A, U, B], 3, [1, 0, 0, 1]),  # an unknown day is not below: no bridge
        ([B, U, B], 3, [1, 0, 1]),  # unknown days are never bridged
        ([B, A, B], 1, [1, 0, 1]),  # 1 = no bridging
        ([A], 3, [0]),
        ([B], 3, [1]),
    ],
)
def test_bridged(states: list[int], stable: int, expected: list[int]) -> None:
    below = bridged(np.array([states], dtype=np.int8), np.array([0, len(states)]), stable)
    assert below[0].tolist() == [bool(e) for e in expected]


def test_bridged_never_bridges_across_patients_and_reads_each_row() -> None:
    states = np.array([[B, A, A, B], [A, B, B, A]], dtype=np.int8)
    below = bridged(states, np.array([0, 1, 3, 4]), 3)  # patients: [B], [A, A], [B]; [A], [B, B], [A]
    assert below.tolist() == [[True, False, False, True], [False, True, True, False]]
    assert bridged(np.zeros((2, 0), dtype=np.int8), np.array([0]), 3).shape == (2, 0)


def test_runs_summaries() -> None:
    flags = np.array([[1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0]], dtype=bool)
    found = runs(flags, np.array([0, 12]))
    assert [int(getattr(found, f)[0, 0]) for f in found._fields] == [8, 0, 9, 3, 3, 7]
    # count, first, last, longest, longest_start (the first of two longest runs), last_start


def test_runs_of_patients_without_flags_or_days() -> None:
    flags = np.array([[0, 0, 1], [0, 0, 0]], dtype=bool)
    found = runs(flags, np.array([0, 2, 2, 3]))  # patient 1 has no days
    assert found.count.tolist() == [[0, 0, 1], [0, 0, 0]]
    assert found.first.tolist() == [[-1, -1, 0], [-1, -1, -1]]
    assert found.longest.tolist() == [[0, 0, 1], [0, 0, 0]] and found.last_start.tolist() == [[-1, -1, 0], [-1] * 3]
    assert runs(np.zeros((3, 0), dtype=bool), np.array([0])).count.shape == (3, 0)


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


def test_late_values_rank_equal_values_by_day_and_skip_early_days() -> None:
    offsets = np.array([0, 4, 4, 6])
    day, value = np.array([20, 31, 35, 40, 31, 33]), np.array([0.1, 0.5, 0.3, 0.3, 0.9, 0.2])
    out = late_values(offsets, day, value, 31)
    assert out.n.tolist() == [3, 0, 2]
    assert out.nadir_day.tolist() == [35, -1, 33] and out.first_day.tolist() == [31, -1, 31]
    assert out.last_day.tolist() == [40, -1, 33]
    np.testing.assert_array_equal(out.nadir, [0.3, NAN, 0.2])
    np.testing.assert_array_equal(out.second, [0.3, NAN, 0.9])  # two days at 0.3: the second-lowest is 0.3


def test_support_days_count_each_window_and_the_first_from_day_0() -> None:
    offsets = np.array([0, 4, 5, 5])
    out = support_days(offsets, np.array([-3, 0, 30, 31, -1]), np.array([30, 30, -1]), 31, np.array([100, 100, -1]))
    assert (out.early.tolist(), out.late.tolist(), out.first.tolist()) == ([2, 0, 0], [1, 0, 0], [0, -1, -1])


def test_threshold_states_read_each_case_and_the_observed_one_after_its_threshold() -> None:
    level = np.array([0.4, 0.5, NAN, NAN, 0.6])
    masked = np.array([False, False, False, True, False])
    unknown = np.array([False, False, True, False, False])
    undetermined = np.array([False, False, True, False, False])
    states = threshold_states(level, masked, unknown, undetermined, np.array([0.5, 0.5]), np.array([True, False]), 0)
    assert states.tolist() == [
        [BELOW, BELOW, ABOVE, BELOW, ABOVE],  # <= 0.5, best case: unknown above, masked below
        [BELOW, BELOW, BELOW, BELOW, ABOVE],  # worst case: unknown below
        [BELOW, BELOW, UNKNOWN, BELOW, ABOVE],  # observed: undetermined stays unknown
        [BELOW, ABOVE, ABOVE, BELOW, ABOVE],  # < 0.5
        [BELOW, ABOVE, BELOW, BELOW, ABOVE],
    ]


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
