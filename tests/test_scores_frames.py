"""The pieces the score frames are built from: shared-buffer columns, rounding and log2 as the published outputs."""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from tocsin.core.arrays import item_codes
from tocsin.core.scores.baseline import FrameColumns, bands, frames, gathered, layout, round_to, settled_bands
from tocsin.core.scores.easix import INPUTS, SCALE, _formulas, _log2


def _example_columns(rows: slice) -> FrameColumns:
    ids = pl.Series("patient_id", ["A", "B", "C"], dtype=pl.Categorical)[rows]
    columns = FrameColumns(ids.len())
    columns.series(ids)
    columns.numbers("value", np.array([1.5, np.nan, 3.0])[rows])
    columns.whole("points", np.array([2.0, np.nan, 0.0])[rows])
    columns.whole("constant_points", np.nan)
    columns.text("unit", ["mg/dL"])
    columns.text("category", ["low", "high", None], np.array([0, -1, 1])[rows])
    columns.labels("missing", {"plt": np.array([True, False, True])[rows], "anc": False, "crp": True})
    columns.constant_list("caveats", ["one", "two", "one"])
    return columns


def test_frame_columns_of_one_row_are_the_rows_of_a_batch() -> None:
    # One row builds texts and lists value by value, a batch gathers them from their options: the same frame.
    batch = _example_columns(slice(None)).frame()
    for row in range(3):
        assert_frame_equal(_example_columns(slice(row, row + 1)).frame(), batch.slice(row, 1))


def test_frame_columns_match_columns_built_one_by_one() -> None:
    ids = pl.Series("patient_id", ["A", "B", "C"], dtype=pl.Categorical)
    columns = FrameColumns(3)
    columns.series(ids)
    columns.numbers("value", np.array([1.5, np.nan, 3.0]))
    columns.whole("points", np.array([2.0, np.nan, 0.0]))
    columns.whole("constant_points", np.nan)
    columns.text("unit", ["mg/dL"])
    columns.text("category", ["low", "high", None], np.array([0, -1, 1]))
    columns.labels("missing", {"plt": np.array([True, False, True]), "anc": False, "crp": True})
    columns.constant_list("caveats", ["one", "two", "one"])
    expected = pl.DataFrame(
        [
            ids,
            pl.Series("value", [1.5, None, 3.0], dtype=pl.Float64),
            pl.Series("points", [2, None, 0], dtype=pl.Int32),
            pl.Series("constant_points", [None, None, None], dtype=pl.Int32),
            pl.Series("unit", ["mg/dL"] * 3, dtype=pl.Utf8),
            pl.Series("category", ["low", None, "high"], dtype=pl.Utf8),
            pl.Series("missing", [["plt", "crp"], ["crp"], ["plt", "crp"]], dtype=pl.List(pl.Utf8)),
            pl.Series("caveats", [["one", "two", "one"]] * 3, dtype=pl.List(pl.Utf8)),
        ]
    )
    assert_frame_equal(columns.frame(), expected)


def test_frame_columns_of_an_empty_batch_keep_their_types() -> None:
    columns = FrameColumns(0)
    columns.numbers("value", np.empty(0))
    columns.whole("points", np.empty(0))
    columns.text("unit", ["mg/dL"])
    columns.labels("missing", {"plt": np.empty(0, dtype=bool)})
    frame = columns.frame()
    assert frame.height == 0
    assert frame.schema == pl.Schema(
        {"value": pl.Float64, "points": pl.Int32, "unit": pl.Utf8, "missing": pl.List(pl.Utf8)}
    )


def test_frames_built_together_are_the_frames_built_one_by_one() -> None:
    # One set of buffers for frames of other heights, and columns included from tables built once.
    for rows in (slice(None), slice(1, 2)):
        shared = _example_columns(rows)
        other = FrameColumns(2)
        other.numbers("x", np.array([np.nan, 2.0]))
        other.text("t", ["a", "b"], np.array([1, 0]))
        other.labels("l", {"m": np.array([True, False])})
        extra = FrameColumns(shared.height)
        extra.whole("n", 1.0)
        extra.constant_list("c", ["x"])
        taking = FrameColumns(shared.height)
        taking.text("first", ["f"])
        taking.include(shared, "category")
        taking.include(extra)
        built = frames(other, taking, shared)
        assert_frame_equal(built[0], other.frame())
        assert_frame_equal(built[2], shared.frame())
        expected = pl.DataFrame(pl.Series("first", ["f"] * shared.height)).hstack(
            [shared.frame().get_column("category"), *extra.frame().get_columns()]
        )
        assert_frame_equal(built[1], expected)


def test_item_codes_are_the_physical_codes_and_a_code_for_null() -> None:
    items = pl.Series(["b", "a", "c", "b"], dtype=pl.Enum(["a", "b", "c"]))
    assert item_codes(items, 3).tolist() == [1, 0, 2, 1]
    assert item_codes(pl.concat([items, pl.Series([None], dtype=items.dtype)]), 3).tolist() == [1, 0, 2, 1, 3]


def test_round_to_gives_the_bits_of_numpy_round() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [rng.uniform(-1e3, 1e3, 100_000), np.exp(rng.uniform(-20, 25, 100_000)), [np.nan, np.inf, -0.0, 2.5e-6]]
    )
    for decimals in (0, 6):
        assert np.array_equal(round_to(values, decimals), np.round(values, decimals), equal_nan=True)


def test_log2_is_the_log_polars_takes() -> None:
    values = np.exp(np.random.default_rng(3).uniform(-30, 30, 100_000))
    assert np.array_equal(np.array([_log2(v) for v in values.tolist()]), pl.Series(values).log(2).to_numpy())


def test_gathered_reads_rows_of_a_table_and_nan_for_none() -> None:
    table = np.array([[1.0, 2.0], [3.0, 4.0]])
    expected = [[3.0, 4.0], [np.nan, np.nan], [1.0, 2.0]]
    assert np.array_equal(gathered(table, np.array([1, -1, 0])), expected, equal_nan=True)
    assert gathered(np.empty((0, 2)), np.array([-1])).shape == (1, 2)
    assert np.array_equal(gathered(np.array([5.0]), np.array([[0, -1]])), [[5.0, np.nan]], equal_nan=True)


def test_string_lists_built_from_arrow_buffers_keep_empty_lists_and_non_ascii_names() -> None:
    from tocsin.core.scores.baseline import _string_lists

    lists = [["ferritin", "créatinine"], [], ["ldh"]]
    assert _string_lists(lists).to_list() == lists
    assert _string_lists([]).to_list() == [] and _string_lists([[]]).to_list() == [[]]
    assert _string_lists(lists).dtype == pl.List(pl.Utf8)


def test_a_layout_adds_the_columns_its_calls_one_by_one_would() -> None:
    columns_of = layout(
        [("numbers", "a_value"), ("texts", "a_unit", "mg/dL"), ("included", "category"), ("whole", "a_points")]
        + [("numbers", "b_value"), ("texts", "b_unit", None), ("whole", "b_points"), ("included", "value")]
    )
    for rows in (slice(None), slice(1, 2), slice(0, 0)):
        source = _example_columns(rows)
        numbers = np.array([[1.5, np.nan, 3.0], [0.0, 2.0, np.nan]])[:, rows]
        whole = np.array([[1.0, 2.0, np.nan], [np.nan, 0.0, 4.0]])[:, rows]
        one_by_one, at_once = FrameColumns(source.height), FrameColumns(source.height)
        for table in (one_by_one, at_once):  # columns before the layout's, so that its places are offsets
            table.numbers("first", 7.0)
            table.text("first_text", ["x"])
            table.include(source, "points")
        one_by_one.numbers("a_value", numbers[0])
        one_by_one.text("a_unit", ["mg/dL"])
        one_by_one.include(source, "category")
        one_by_one.whole("a_points", whole[0])
        one_by_one.numbers("b_value", numbers[1])
        one_by_one.text("b_unit", [None])
        one_by_one.whole("b_points", whole[1])
        one_by_one.include(source, "value")
        at_once.add_layout(columns_of, numbers, whole, source)
        assert_frame_equal(at_once.frame(), one_by_one.frame())


def test_rows_of_numbers_are_the_columns_added_one_by_one() -> None:
    values = np.array([[1.0, np.nan], [3.0, 4.0]])
    one_by_one, at_once = FrameColumns(2), FrameColumns(2)
    for name, row in zip(("x", "y"), values):
        one_by_one.numbers(name, row)
        one_by_one.whole(f"{name}_n", row)
    at_once.numbers_rows(["x"], values[:1])
    at_once.whole_rows(["x_n"], values[:1])
    at_once.numbers_rows(["y"], values[1:])
    at_once.whole_rows(["y_n"], values[1:])
    assert_frame_equal(at_once.frame(), one_by_one.frame())


def test_settled_bands_are_the_band_both_ends_of_a_range_share() -> None:
    # Bands with a gap, an overlap (the first holds), a repeated name and a band without one (None).
    spec = [
        {"min": 0, "max": 1, "name": "low", "rule": "A"},
        {"min": 1, "max": 3, "name": "mid", "rule": None},
        {"min": 5, "max": 6, "name": "low", "rule": "B"},
    ]
    rng = np.random.default_rng(2)
    least = rng.integers(-1, 8, 500).astype(np.float64)
    most = least + rng.integers(0, 4, 500)

    def band(value: float) -> int:
        return next((k for k, b in enumerate(spec) if b["min"] <= value <= b["max"]), -1)

    settled = settled_bands(least, most, bands(spec, ("name", "rule")))
    for k, field in enumerate(("name", "rule")):
        names = [b[field] for b in spec] + [None]
        expected = []
        for low, high in zip(map(band, least.tolist()), map(band, most.tolist())):
            expected.append(low if low >= 0 and names[low] == names[high] else -1)
        assert settled[k].tolist() == expected


def test_easix_formulas_at_once_are_each_formula_on_its_own() -> None:
    rng = np.random.default_rng(11)
    values = rng.choice([0.0, 0.3, 1.0, 2.5, 250.0, 1e-9, np.nan], size=(len(INPUTS), 400))
    value, log2, denominator = _formulas(values)
    row = dict(zip(INPUTS, values))
    for k, spec in enumerate(SCALE.table("formulas").values()):
        numerator = np.ones(values.shape[1])
        for term in spec["numerator"]:
            numerator = numerator * row[term]
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.round(np.where(row[spec["denominator"]] > 0, numerator / row[spec["denominator"]], np.nan), 6)
        logs = [np.round(_log2(v), 6) if v > 0 else np.nan for v in expected.tolist()]
        assert np.array_equal(value[k], expected, equal_nan=True)
        assert np.array_equal(log2[k], logs, equal_nan=True)
        assert np.array_equal(denominator[k], row[spec["denominator"]], equal_nan=True)
