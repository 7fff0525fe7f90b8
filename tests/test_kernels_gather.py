"""The compiled reads of rows agree with NumPy's (the rows of some items) and with Polars' own gather and conversion
(a float column at rows), on random inputs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tocsin.core.arrays import float_rows, gather_rows
from tocsin.core.kernels_gather import rows_of_items


def _reference(column: pl.Series, rows: np.ndarray) -> np.ndarray:
    return gather_rows(column, rows).cast(pl.Float64).to_numpy()


def _random_column(rng: np.random.Generator, n: int, null_share: float) -> pl.Series:
    values = rng.normal(size=n)
    values[rng.random(n) < 0.1] = np.nan  # NaN values (not nulls) stay NaN
    valid = rng.random(n) >= null_share
    return pl.Series("x", [float(v) if ok else None for v, ok in zip(values, valid)], dtype=pl.Float64)


@pytest.mark.parametrize("seed", range(20))
def test_float_rows_is_the_gathered_column_nan_where_null(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    column = _random_column(rng, n, float(rng.choice([0.0, 0.3, 1.0])))
    rows = np.sort(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=bool(rng.integers(2))))
    assert np.array_equal(float_rows(column, rows), _reference(column, rows), equal_nan=True)
    # A slice (an Arrow offset into the buffers, the validity bits not byte-aligned).
    start = int(rng.integers(0, n))
    part = column.slice(start, n - start)
    rows = rng.integers(0, part.len(), size=int(rng.integers(0, 40))) if part.len() else np.empty(0, np.int64)
    assert np.array_equal(float_rows(part, rows), _reference(part, rows), equal_nan=True)


def test_float_rows_edge_cases() -> None:
    empty = np.empty(0, dtype=np.int64)
    assert float_rows(pl.Series("x", [], dtype=pl.Float64), empty).shape == (0,)
    one = pl.Series("x", [None], dtype=pl.Float64)
    assert np.isnan(float_rows(one, np.array([0]))).all()
    assert float_rows(pl.Series("x", [1.5, 2.5]), np.array([1, 0, 1])).tolist() == [2.5, 1.5, 2.5]
    # Other types and a column of several chunks: gathered, cast and read.
    integers = pl.Series("x", [1, None, 3], dtype=pl.Int32)
    assert np.array_equal(float_rows(integers, np.array([2, 1])), [3.0, np.nan], equal_nan=True)
    chunks = pl.concat([pl.Series("x", [1.0, None]), pl.Series("x", [3.0])], rechunk=False)
    assert chunks.n_chunks() == 2
    assert np.array_equal(float_rows(chunks, np.array([2, 1, 0])), [3.0, np.nan, 1.0], equal_nan=True)
    assert float_rows(pl.Series("x", [True, False]), np.array([0, 1])).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("seed", range(20))
def test_rows_of_items_are_the_rows_of_the_wanted_codes_with_their_codes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_codes = int(rng.integers(0, 200)), int(rng.integers(1, 12))
    item = rng.integers(0, n_codes, size=n).astype(rng.choice([np.uint8, np.int64]))
    patient = np.sort(rng.integers(0, 30, size=n)).astype(np.uint32)
    wanted = rng.random(n_codes) < float(rng.choice([0.0, 0.3, 1.0]))
    rows, items, patients = rows_of_items(item, patient, wanted)
    expected = np.flatnonzero(wanted[item])
    assert rows.dtype == np.int64 and np.array_equal(rows, expected)
    assert items.dtype == item.dtype and np.array_equal(items, item[expected])
    assert patients.dtype == patient.dtype and np.array_equal(patients, patient[expected])


def test_rows_of_items_edge_cases() -> None:
    none = np.empty(0, dtype=np.uint8)
    rows, items, patients = rows_of_items(none, none.astype(np.uint32), np.ones(3, dtype=np.bool_))
    assert rows.size == items.size == patients.size == 0
    rows, items, patients = rows_of_items(np.array([2], np.uint8), np.array([7], np.uint32), np.array([0, 0, 1], bool))
    assert rows.tolist() == [0] and items.tolist() == [2] and patients.tolist() == [7]
    rows, _, _ = rows_of_items(np.array([2, 1, 2], np.uint8), np.zeros(3, np.uint32), np.array([0, 0, 1], bool))
    assert rows.tolist() == [0, 2]  # the last row wanted too
    rows, _, _ = rows_of_items(np.array([0, 1], np.uint8), np.zeros(2, np.uint32), np.zeros(2, bool))
    assert rows.size == 0
