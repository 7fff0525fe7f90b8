"""The compiled ingest passes give exactly what the NumPy expressions they replace give, NaN included."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.core.events import _categorical
from tocsin.core.kernels_ingest import (
    NOT_WHOLE,
    OUTSIDE_RANGE,
    converted,
    days_since_infusion,
    decimals,
    grouped_in_order,
    marked,
    ranked,
    rounded,
    short_text_codes,
    text_codes,
    text_table,
    value_failures,
)
from tocsin.core.polars_handles import string_chunks

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
    code = np.zeros(n_rows, dtype=np.int64)
    unbounded, whole = np.array([-np.inf]), np.array([False])
    got, failure = converted(raw, pair, scale, offset, per_kg, fraction, patient, weight, code, unbounded, -unbounded,
                             whole)
    np.testing.assert_array_equal(got, pl.Series(expected).round(6).to_numpy())
    assert not failure.any()  # (no bound, no whole-number item: nothing fails)


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


def test_the_range_check_is_strict_on_both_bounds_and_never_fails_nan() -> None:
    values = np.array([0.0, 1.0, 5.0, 10.0, 10.5, -0.1, np.nan, 3.0])
    code = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    low, high, whole = np.array([0.0, -np.inf]), np.array([10.0, 2.0]), np.array([False, False])
    expected = (values < low[code]) | (values > high[code])
    failure = value_failures(values, code, low, high, whole)
    np.testing.assert_array_equal(failure == OUTSIDE_RANGE, expected)
    assert failure.tolist() == [0, 0, 0, 0, 1, 1, 0, 1]


def test_a_whole_number_item_fails_a_fraction_within_its_range_only() -> None:
    values = np.array([3.0, 3.5, -2.5, np.nan, np.inf, 12.5, 7.25, 0.0, -0.0, 1e-6])
    code = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    low, high, whole = np.array([-np.inf, 0.0]), np.array([np.inf, 10.0]), np.array([True, False])
    failure = value_failures(values, code, low, high, whole)
    # The old checks, one after the other: the range first, then the fraction of a whole-number item's value.
    is_whole = whole[code] & ~np.isnan(values) & (values != np.round(values))
    expected = np.where((values < low[code]) | (values > high[code]), OUTSIDE_RANGE, np.where(is_whole, NOT_WHOLE, 0))
    np.testing.assert_array_equal(failure, expected)
    assert failure.tolist() == [0, 2, 2, 0, 0, 2, 0, 0, 0, 2]
    # A value outside the range of a whole-number item fails the range check only.
    both = value_failures(np.array([12.5]), np.array([0]), np.array([0.0]), np.array([10.0]), np.array([True]))
    assert both.tolist() == [OUTSIDE_RANGE]


def _grouped_in_order_by_numpy(patient: np.ndarray, t: np.ndarray, file: np.ndarray, line: np.ndarray) -> bool:
    """The NumPy expressions ingest used: each row in order after the one before it, and as many patients as runs."""
    same = patient[1:] == patient[:-1]
    now, before = t[1:], t[:-1]
    in_order = (
        ~same | (now > before) | ((now == before) & (file[1:] == file[:-1]) & (line[1:] > line[:-1]))
        | np.isnan(now) | np.isnan(before)
    )
    runs = patient[np.flatnonzero(np.r_[True, ~same])]
    return bool(in_order.all() and runs.size == np.unique(runs).size)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_grouped_in_order_is_the_numpy_check(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 12))
    patient = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    if data.draw(st.booleans()):
        patient = np.sort(patient)
    t = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, np.nan]), min_size=n, max_size=n)))
    if data.draw(st.booleans()):
        t = np.sort(t)
    file = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint32)
    line = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64)
    assert grouped_in_order(patient, t, file, line, 3) == _grouped_in_order_by_numpy(patient, t, file, line)


def test_grouped_in_order_cases() -> None:
    line = np.arange(4)
    file = np.zeros(4, dtype=np.uint32)
    assert grouped_in_order(np.array([0, 0, 1, 1]), np.array([0.0, 1.0, 0.0, 0.5]), file, line, 2)
    assert not grouped_in_order(np.array([0, 1, 0, 1]), np.array([0.0, 1.0, 2.0, 3.0]), file, line, 2)  # split
    assert not grouped_in_order(np.array([0, 0, 1, 1]), np.array([1.0, 0.0, 0.0, 0.5]), file, line, 2)  # time
    assert grouped_in_order(np.array([0, 0, 0, 0]), np.array([1.0, np.nan, 0.0, 0.5]), file, line, 1)  # no time
    same_time = np.array([1.0, 1.0, 1.0, 1.0])
    assert grouped_in_order(np.array([0, 0, 0, 0]), same_time, file, line, 1)
    assert not grouped_in_order(np.array([0, 0, 0, 0]), same_time, file, line[::-1].copy(), 1)  # lines back
    assert not grouped_in_order(np.array([0, 0, 0, 0]), same_time, np.array([0, 1, 1, 1], np.uint32), line, 1)


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


def _views(texts: list[str], cut: int = 0) -> list[np.ndarray]:
    """The views of ``texts`` in chunks (a chunk of ``cut`` rows first, then the rest)."""
    column = pl.concat([pl.Series(texts[:cut], dtype=pl.Utf8), pl.Series(texts[cut:], dtype=pl.Utf8)], rechunk=False)
    return [chunk.views for chunk in string_chunks(column)]


short_texts = st.text(st.sampled_from("ab/[]°µ"), max_size=6)  # multi-byte characters: up to 12 bytes


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.one_of(short_texts, st.sampled_from(["", "SYN00001", "mg/L", "10*9/L"])), max_size=3000),
    st.integers(0, 3000),
)
def test_short_text_codes_number_the_distinct_texts_in_order_of_first_appearance(texts: list[str], cut: int) -> None:
    coded = short_text_codes(_views(texts, cut))  # in two chunks: the table goes on from one to the next
    assert coded is not None
    codes, first = coded
    distinct = list(dict.fromkeys(texts))  # (up to thousands of distinct texts: the table grows several times)
    assert [texts[row] for row in first] == distinct
    assert codes.tolist() == [distinct.index(text) for text in texts]


def test_short_text_codes_grow_their_table_past_its_first_size() -> None:
    texts = [f"P{k % 9_000:05d}" for k in range(30_000)]  # 9,000 distinct: the table grows (and rehashes) twice
    codes, first = short_text_codes(_views(texts, 12_345))
    assert first.tolist() == list(range(9_000)) and codes.tolist() == [k % 9_000 for k in range(30_000)]


def test_short_text_codes_leave_a_column_with_a_longer_text_to_the_cast() -> None:
    assert short_text_codes(_views(["mg", "exactly12byt", "thirteen byte"])) is None
    assert short_text_codes(_views(["mg", "thirteen byte", "exactly12byt"], cut=1)) is None
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
@pytest.mark.parametrize("chunks", [1, 3])
def test_categorical_is_polars_cast(texts: list[str | None], chunks: int) -> None:
    whole = pl.Series("patient_id", texts, dtype=pl.Utf8)
    cuts = np.linspace(0, whole.len(), chunks + 1).astype(int)
    parts = [whole.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    column = pl.concat(parts, rechunk=False).slice(7)  # a slice (views from an offset), in chunks as a read gives
    assert column.n_chunks() == chunks
    made, numbered = _categorical(column)
    assert made.dtype == pl.Categorical and made.name == "patient_id"
    assert made.equals(column.cast(pl.Categorical))
    assert made.to_physical().equals(column.cast(pl.Categorical).to_physical())
    if numbered is not None:  # the pass's numbering: each row's text is its code's, codes in order of first appearance
        assert [numbered.texts[code] for code in numbered.codes.tolist()] == column.to_list()
        assert numbered.texts == list(dict.fromkeys(column.to_list()))
    else:  # (left to the cast: a longer text, or nulls)
        assert column.null_count() or column.str.len_bytes().max() > 12


def _read_by_the_pass(texts: pl.Series) -> np.ndarray:
    """:func:`decimals` over the chunks of ``texts``, its other rows read by Polars' cast (as ingest reads them)."""
    numbers, start = np.full(texts.len(), -7.0), 0
    for chunk in string_chunks(texts):
        end = start + chunk.views.shape[0] // 2
        other = decimals(chunk.views, chunk.valid, chunk.bit, numbers[start:end]) + start
        numbers[other] = texts[other].cast(pl.Float64, strict=False).to_numpy()
        start = end
    return numbers


def _same_bits(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return (got.view(np.uint64) == expected.view(np.uint64)) | (np.isnan(got) & np.isnan(expected))


_ADVERSARIAL = [
    "-0", "-0.0", "0", "00", "007", "-007.50", "1.", ".5", "-.5", "+1", "+.5", " 1", "1 ", "1e5", "1E-3", "inf", "-inf",
    "+inf", "Inf", "INFINITY", "infinity", "nan", "NaN", "-nan", "+nan", "n", "i", "in", "na", "1_000", "1,5", "--1",
    "-+1", "1..2", "1.2.3", "", "-", ".", "-.", "+", "e5", "5e", "0x10", "1d", "1f", "٣", "３", "1\u00a0", "\t5",
    "12345678", "-12345678", "99999999", "123456789", "-123456789", "1234567.8", "0.1234567", "0.0000001",
    "9999999.9", "-9999999.9", "12.", "-12.", "0.30000000000000004", "3.14159265358979", "1e400", "5e-324",
    "100000000000000000000", "alert", "none", "paracetamol", "a text longer than twelve bytes", "<5", "BLQ",
]


def test_decimals_read_every_text_as_polars_cast_does_bit_for_bit() -> None:
    rng = np.random.default_rng(2026)
    n = 400_000
    integers = rng.integers(0, 10 ** rng.integers(1, 9, n), n).astype(str)
    places = rng.integers(0, 8, n)
    decimal_texts = np.array([f"{x:.{k}f}" for x, k in zip(rng.uniform(-1e4, 1e4, n), places, strict=True)])
    with_zeros = np.array(["0" * z + t for z, t in zip(rng.integers(0, 4, n // 4), integers[: n // 4], strict=True)])
    # Every short text of these bytes: the forms the pass reads and every near miss (signs, points, exponents).
    alphabet = np.array(list("0123456789.-+eEinf ,x"))
    random_texts = np.array(["".join(row) for row in alphabet[rng.integers(0, alphabet.size, (n, 6))]])
    lengths = rng.integers(0, 11, n)
    random_texts = np.array([t[:k] for t, k in zip(np.char.add(random_texts, random_texts), lengths, strict=True)])
    first_bytes = [chr(b) + "5" for b in range(1, 128)] + [chr(b) for b in range(1, 128)] + ["é1", "€1", "\x005"]
    texts = [*integers, *decimal_texts, *with_zeros, *random_texts, *first_bytes, *_ADVERSARIAL, None]
    column = pl.Series(texts, dtype=pl.Utf8)
    cuts = [0, 1, 1000, 333_333, column.len()]
    chunked = pl.concat([column.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])], rechunk=False).slice(1)
    expected = chunked.cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
    got = _read_by_the_pass(chunked)
    same = _same_bits(got, expected)
    assert same.all(), chunked.filter(pl.Series(~same)).head(5).to_list()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(st.sampled_from("0123456789.-+eEnN i"), max_size=13),
                          st.sampled_from(_ADVERSARIAL), st.text(max_size=14)), max_size=200))
def test_decimals_of_any_texts_are_polars_cast(texts: list[str | None]) -> None:
    column = pl.Series(texts, dtype=pl.Utf8)
    expected = column.cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
    assert _same_bits(_read_by_the_pass(column), expected).all()


def test_decimals_of_empty_and_null_columns() -> None:
    assert _read_by_the_pass(pl.Series([], dtype=pl.Utf8)).shape == (0,)
    assert np.isnan(_read_by_the_pass(pl.Series([None, None], dtype=pl.Utf8))).all()
    assert _read_by_the_pass(pl.Series(["-0"])).tobytes() == np.array([-0.0]).tobytes()


def test_decimals_read_plain_decimals_themselves_and_leave_the_rest() -> None:
    texts = ["37.2", "120", "-0.85", "007", "99999999", "-12345.78", "1e3", "+1", ".5", "1.", "123456789", "inf",
             "nan", "alert", "", None]
    chunk = string_chunks(pl.Series(texts, dtype=pl.Utf8))[0]
    numbers = np.zeros(len(texts))
    other = decimals(chunk.views, chunk.valid, chunk.bit, numbers)
    assert other.tolist() == [6, 7, 8, 9, 10, 11, 12]  # for Polars' cast
    assert numbers[:6].tolist() == [37.2, 120.0, -0.85, 7.0, 99999999.0, -12345.78]
    assert np.isnan(numbers[13:]).all()  # no number, without the cast


_NAMES = ["crp", "consciousness", "platelet_transfusion", "car_t_dose_per_kg", "car_t_dose_total", "exactly12byt",
          "exactly12byx", "thirteen byte", "thirteen bytf", "a", "", "µg/L"]


def test_text_codes_match_the_cast_to_an_enum_of_the_texts() -> None:
    table = text_table(_NAMES)
    rng = np.random.default_rng(7)
    near = ["CRP", "crp ", " crp", "cr", "crpp", "consciousnesz", "consciousness_", "Consciousness", "platelet",
            "car_t_dose_per_k", "car_t_dose_per_kgg", "car_t_dose_totaL", "exactly12by", "thirteen bytg", "b", "µg/l",
            "a text of many, many more bytes than the names", None]
    pool = np.array([*_NAMES, *near], dtype=object)
    texts = list(pool[rng.integers(0, pool.size, 50_000)])
    column = pl.Series(texts, dtype=pl.Utf8)
    # In chunks (one of several data buffers: copied into one), from an offset
    many = pl.concat([column.slice(0, 20_000), pl.Series(["x" * 40] * 3), column.slice(20_000)], rechunk=False)
    for texts_column in (column.slice(3), many):
        codes, start = np.full(texts_column.len(), -1, np.int64), 0
        for chunk in string_chunks(texts_column):
            end = start + chunk.views.shape[0] // 2
            text_codes(chunk.views, chunk.valid, chunk.bit, chunk.buffers, chunk.buffer_start, table, codes[start:end])
            start = end
        expected = texts_column.cast(pl.Enum(_NAMES), strict=False).to_physical().fill_null(len(_NAMES)).to_numpy()
        np.testing.assert_array_equal(codes, expected)
    empty = np.zeros(0, np.int64)
    text_codes(np.zeros(0, np.uint64), np.zeros(0, np.uint8), 0, np.zeros(0, np.uint8), np.zeros(1, np.int64),
               table, empty)
