"""The compiled ingest passes give exactly what the NumPy expressions they replace give, NaN included."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.core.events import _categorical
from tocsin.core.kernels_ingest import (
    converted,
    days_since_infusion,
    marked,
    outside,
    ranked,
    rounded,
    short_text_codes,
)

finite_or_nan = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(float("nan")))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_converted_equals_the_element_wise_expression(data: st.DataObject) -> None:
    n_rows = data.draw(st.integers(0, 40))
    n_pairs, n_patients = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    raw = np.array(data.draw(st.lists(finite_or_nan, min_size=n_rows, max_size=n_rows)), dtype=np.float64)
    pair = np.array(data.draw(st.lists(st.integers(0, n_pairs - 1), min_size=n_rows, max_size=n_rows)), dtype=np.int64)
    patient = np.array(
        data.draw(st.lists(st.integers(0, n_patients - 1), min_size=n_rows, max_size=n_rows)), dtype=np.int64
    )
    scale = np.array(data.draw(st.lists(finite_or_nan, min_size=n_pairs, max_size=n_pairs)), dtype=np.float64)
    offset = np.array(data.draw(st.lists(finite_or_nan, min_size=n_pairs, max_size=n_pairs)), dtype=np.float64)
    per_kg = np.array(data.draw(st.lists(st.booleans(), min_size=n_pairs, max_size=n_pairs)), dtype=np.bool_)
    fraction = np.array(data.draw(st.lists(st.booleans(), min_size=n_pairs, max_size=n_pairs)), dtype=np.bool_)
    weight = np.array(data.draw(st.lists(finite_or_nan, min_size=n_patients, max_size=n_patients)))
    expected = (raw * scale[pair] + offset[pair]) * np.where(per_kg[pair], weight[patient], 1.0)
    expected = np.where(fraction[pair] & (raw <= 1.0), raw * 100, expected)
    got = converted(raw, pair, scale, offset, per_kg, fraction, patient, weight)
    np.testing.assert_array_equal(got, pl.Series(expected).round(6).to_numpy())


def _values_to_round() -> np.ndarray:
    """Values of every kind a conversion gives: unit conversions of values written with few decimals (°F, CRP
    mg/dL), exact ties at the 7th decimal, integers, huge values whose product by 10^6 is not finite, subnormals,
    signed zeros, infinities and NaN."""
    rng = np.random.default_rng(2026)
    written = np.round(rng.uniform(-50, 500, 400_000), 1)
    return np.concatenate([
        (written - 32) / 1.8, written * 1.8 + 32, written * 10, written / 88.4, rng.normal(0, 100, 400_000),
        rng.integers(-10**7, 10**7, 400_000) / 1e6 + 5e-7,  # ties (as near as binary floats get)
        10 ** rng.uniform(-12, 308, 400_000) * rng.choice([-1.0, 1.0], 400_000),
        np.array([0.5e-6, 1.5e-6, 2.5e-6, -0.5e-6, 1.7e308, -1.7e308, 1e303, 5e-324, 0.0, -0.0, 2.0**53]),
        np.array([np.inf, -np.inf, np.nan]),
    ])


def test_rounded_is_polars_round_to_six_decimals_bit_for_bit() -> None:
    values = _values_to_round()
    expected = pl.Series(values).round(6).to_numpy()
    got = rounded(values)
    same = (got == expected) & (np.signbit(got) == np.signbit(expected)) | (np.isnan(got) & np.isnan(expected))
    assert same.all(), values[~same][:5]
    assert rounded(np.array([37.99999999, 100.00000049, -0.0000004, 1.7e308])).tolist() == [38.0, 100.0, -0.0, 1.7e308]
    assert rounded(np.zeros(0)).shape == (0,)


def test_outside_is_strict_on_both_bounds_and_never_for_nan() -> None:
    values = np.array([0.0, 1.0, 5.0, 10.0, 10.5, -0.1, np.nan, 3.0])
    code = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    low, high = np.array([0.0, -np.inf]), np.array([10.0, 2.0])
    expected = (values < low[code]) | (values > high[code])
    np.testing.assert_array_equal(outside(values, code, low, high), expected)
    assert outside(values, code, low, high).tolist() == [False, False, False, False, True, True, False, True]


def test_marked_sets_the_positions_of_the_selected_rows_only() -> None:
    positions = np.array([2, 0, 2, 3, 1])
    where = np.array([True, False, False, True, False])
    assert marked(positions, where, 5).tolist() == [False, False, True, True, False]
    assert marked(positions[:0], where[:0], 3).tolist() == [False, False, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=40), st.integers(1, 4), st.data())
def test_ranked_gives_what_numpy_unique_gives(first: list[int], width: int, data: st.DataObject) -> None:
    second = data.draw(st.lists(st.integers(0, width - 1), min_size=len(first), max_size=len(first)))
    a, b = np.array(first, dtype=np.uint32), np.array(second, dtype=np.int64)
    keys = a.astype(np.int64) * width + b
    distinct, first_rows, inverse = np.unique(keys, return_index=True, return_inverse=True)
    got = ranked(a, b, width, 31 * width)
    for got_part, expected in zip(got, (distinct, inverse.reshape(-1), first_rows), strict=True):
        np.testing.assert_array_equal(got_part, expected)
    alone = ranked(a, a[:0], 1, 31)  # no second key
    np.testing.assert_array_equal(alone[1], np.unique(a, return_inverse=True)[1].reshape(-1))


def test_days_since_infusion_takes_the_clock_time_only_without_a_day() -> None:
    day = np.array([1.5, np.nan, 0.0, np.nan])
    patient = np.array([0, 1, 1, 0])
    infusion_day = np.array([0.5, 0.0])
    from_time = np.array([9.0, 2.25, 9.0, np.nan])
    expected = np.where(np.isnan(day), from_time, day - infusion_day[patient])
    np.testing.assert_array_equal(days_since_infusion(day, patient, infusion_day, from_time), expected)
    no_clock = days_since_infusion(day, patient, infusion_day, np.zeros(0))
    np.testing.assert_array_equal(no_clock, np.where(np.isnan(day), np.nan, day - infusion_day[patient]))


def _views(texts: list[str]) -> np.ndarray:
    array = pl.Series(texts, dtype=pl.Utf8).to_arrow(compat_level=pl.CompatLevel.newest())
    return np.frombuffer(array.buffers()[1], np.uint64, 2 * len(array), 16 * array.offset)


short_texts = st.text(st.sampled_from("ab/[]°µ"), max_size=6)  # multi-byte characters: up to 12 bytes


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(short_texts, st.sampled_from(["", "SYN00001", "mg/L", "10*9/L"])), max_size=3000))
def test_short_text_codes_number_the_distinct_texts_in_order_of_first_appearance(texts: list[str]) -> None:
    coded = short_text_codes(_views(texts))
    assert coded is not None
    codes, first = coded
    distinct = list(dict.fromkeys(texts))  # (up to thousands of distinct texts: the table grows several times)
    assert [texts[row] for row in first] == distinct
    assert codes.tolist() == [distinct.index(text) for text in texts]


def test_short_text_codes_leave_a_column_with_a_longer_text_to_the_cast() -> None:
    assert short_text_codes(_views(["mg", "exactly12byt", "thirteen byte"])) is None
    assert short_text_codes(_views(["mg", "exactly12byt"])) is not None
    assert short_text_codes(_views([])) is not None


@pytest.mark.parametrize(
    "texts",
    [
        ["P2", "P2", "P1", "P2", "P3"] * 20_000,
        ["a-long-patient-identifier", "P1"] * 40_000,
        ["P1", None, "P2"] * 30_000,
    ],
    ids=["short", "long-text", "with-nulls"],
)
def test_categorical_is_polars_cast(texts: list[str | None]) -> None:
    column = pl.Series("patient_id", texts, dtype=pl.Utf8).slice(7)  # a slice: views from an offset
    made = _categorical(column)
    assert made.dtype == pl.Categorical and made.name == "patient_id"
    assert made.equals(column.cast(pl.Categorical))
    assert made.to_physical().equals(column.cast(pl.Categorical).to_physical())
