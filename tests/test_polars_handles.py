"""The fast constructors of ``tocsin.core.polars_handles`` against Polars' public ones, for every type they take.

They call Polars' private handles: this test is what tells an upgrade of Polars broke them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from tocsin.core.polars_handles import (
    cut_columns,
    empty_or_null,
    frame_from,
    gather_series,
    masked_series,
    numeric_series,
    sliced,
    string_chunks,
)

TYPES = [np.float64, np.float32, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
         np.bool_, np.longlong, np.intc]


@pytest.mark.parametrize("numpy_type", TYPES)
@pytest.mark.parametrize("length", [0, 1, 7])
def test_numeric_series_is_the_public_constructor(numpy_type: type, length: int) -> None:
    values = (np.arange(length) % 3).astype(numpy_type)
    for nan_to_null in (False, True):
        expected = pl.Series("x", values, nan_to_null=nan_to_null)
        assert_series_equal(numeric_series(values, "x", nan_to_null=nan_to_null), expected)


def test_numeric_series_nan_and_strided_input() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0, np.nan, 6.0])[::2]  # not contiguous: 1, NaN, NaN
    assert_series_equal(numeric_series(values, nan_to_null=True), pl.Series("", values, nan_to_null=True))
    kept = numeric_series(values)
    assert kept.null_count() == 0 and np.isnan(kept.to_numpy()).sum() == 2
    assert numeric_series(values, nan_to_null=True).null_count() == 2
    values[0] = 10.0  # the Series owns a copy
    assert kept[0] == 1.0


def test_numeric_series_of_other_arrays_is_the_public_constructor() -> None:
    for values in (np.array(["a", None], dtype=object), np.array([1.0, 2.0], dtype=">f8"),
                   np.array(["2026-01-01"], dtype="datetime64[ms]")):
        assert_series_equal(numeric_series(values, "x"), pl.Series("x", values))


@pytest.mark.parametrize("numpy_type", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.bool_, np.float64])
def test_masked_series_is_an_arrow_masked_array(numpy_type: type) -> None:
    values = (np.arange(11) % 2).astype(numpy_type)
    valid = np.array([True, False, True, True, False, True, True, True, True, False, True])
    expected = pl.Series("m", [v if ok else None for v, ok in zip(values.tolist(), valid, strict=True)],
                         dtype=pl.Series(values).dtype)
    assert_series_equal(masked_series(values, valid, "m"), expected)
    assert_series_equal(masked_series(values[:0], valid[:0]), pl.Series("", [], dtype=expected.dtype))


def test_gather_series_slices_and_null_rows() -> None:
    source = pl.Series(["a", "b", None, "d"])
    rows = pl.Series([3, None, 0, 2, 3], dtype=pl.UInt32)
    assert_series_equal(gather_series(source, rows), source[rows])
    part = sliced(rows, 1, 3, "p")
    assert_series_equal(part, rows.slice(1, 3).alias("p"))
    assert rows.name == ""  # the slice was renamed, not the Series it came from


def test_cut_columns_make_a_frame() -> None:
    whole = pl.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    frame = frame_from([handle for _, handle in cut_columns(whole, ["a", "b"], 2, 2)])
    assert_frame_equal(frame, pl.DataFrame({"a": [3.0, 4.0], "b": [5.0, 6.0]}))
    assert_frame_equal(frame_from([pl.Series("x", [1]), pl.Series("y", ["u"])]), pl.DataFrame({"x": [1], "y": ["u"]}))


def test_frame_from_still_checks_heights_and_names() -> None:
    with pytest.raises(pl.exceptions.ShapeError):
        frame_from([pl.Series("a", [1, 2]), pl.Series("b", [1])])
    with pytest.raises(pl.exceptions.DuplicateError):
        frame_from([pl.Series("a", [1]), pl.Series("a", [2])])


TEXTS = ["", "a", None, " ", "a text longer than twelve bytes", "", None, "0", "é", "twelve bytes"]


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_empty_or_null_is_the_comparison_with_an_empty_text(offset: int) -> None:
    texts = pl.Series(TEXTS).slice(offset)  # a slice: the views and validity start at an offset
    expected = (texts == "").fill_null(True).to_numpy()
    np.testing.assert_array_equal(empty_or_null(texts), expected)
    np.testing.assert_array_equal(empty_or_null(pl.Series([*TEXTS, "x"])[[4, 0, 10]]), [False, True, False])
    assert empty_or_null(pl.Series([], dtype=pl.Utf8)).shape == (0,)


def test_string_chunks_hold_each_chunk_as_it_is() -> None:
    long = "a text longer than twelve bytes"
    parts = [pl.Series([t for t in TEXTS if t is not None]).slice(2), pl.Series([None, long, "x", None]).slice(1),
             pl.Series([], dtype=pl.Utf8), pl.Series([long + "!", "y"])]
    texts = pl.concat(parts, rechunk=False)
    chunks = string_chunks(texts)
    assert len(chunks) == 3  # (an empty chunk has no rows to read)
    written = [t for t in texts.to_list()]
    row = 0
    for chunk in chunks:
        for k in range(chunk.views.shape[0] // 2):
            low, high = int(chunk.views[2 * k]), int(chunk.views[2 * k + 1])
            bit = chunk.bit + k
            if chunk.valid.size and not (chunk.valid[bit >> 3] >> (bit & 7)) & 1:
                assert written[row] is None
            else:
                length = low & 0xFFFFFFFF
                if length <= 12:
                    text = ((low >> 32) | high << 32).to_bytes(16, "little")[:length]
                else:
                    at = int(chunk.buffer_start[high & 0xFFFFFFFF]) + (high >> 32)
                    text = chunk.buffers[at : at + length].tobytes()
                assert text.decode() == written[row]
            row += 1
    assert row == texts.len()
