"""The compiled gather of a float column agrees with Polars' own gather and conversion, on random columns."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tocsin.core.arrays import gather_rows
from tocsin.core.kernels_gather import floats_at


def _reference(column: pl.Series, rows: np.ndarray) -> np.ndarray:
    return gather_rows(column, rows).cast(pl.Float64).to_numpy()


def _random_column(rng: np.random.Generator, n: int, null_share: float) -> pl.Series:
    values = rng.normal(size=n)
    values[rng.random(n) < 0.1] = np.nan  # NaN values (not nulls) stay NaN
    valid = rng.random(n) >= null_share
    return pl.Series("x", [float(v) if ok else None for v, ok in zip(values, valid)], dtype=pl.Float64)


@pytest.mark.parametrize("seed", range(20))
def test_floats_at_is_the_gathered_column_nan_where_null(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    column = _random_column(rng, n, float(rng.choice([0.0, 0.3, 1.0])))
    rows = np.sort(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=bool(rng.integers(2))))
    assert np.array_equal(floats_at(column, rows), _reference(column, rows), equal_nan=True)
    # A slice (an Arrow offset into the buffers, the validity bits not byte-aligned).
    start = int(rng.integers(0, n))
    part = column.slice(start, n - start)
    rows = rng.integers(0, part.len(), size=int(rng.integers(0, 40))) if part.len() else np.empty(0, np.int64)
    assert np.array_equal(floats_at(part, rows), _reference(part, rows), equal_nan=True)


def test_floats_at_edge_cases() -> None:
    empty = np.empty(0, dtype=np.int64)
    assert floats_at(pl.Series("x", [], dtype=pl.Float64), empty).shape == (0,)
    one = pl.Series("x", [None], dtype=pl.Float64)
    assert np.isnan(floats_at(one, np.array([0]))).all()
    assert floats_at(pl.Series("x", [1.5, 2.5]), np.array([1, 0, 1])).tolist() == [2.5, 1.5, 2.5]
    # Other types and a column of several chunks: gathered, cast and read.
    integers = pl.Series("x", [1, None, 3], dtype=pl.Int32)
    assert np.array_equal(floats_at(integers, np.array([2, 1])), [3.0, np.nan], equal_nan=True)
    chunks = pl.concat([pl.Series("x", [1.0, None]), pl.Series("x", [3.0])], rechunk=False)
    assert chunks.n_chunks() == 2
    assert np.array_equal(floats_at(chunks, np.array([2, 1, 0])), [3.0, np.nan, 1.0], equal_nan=True)
    assert floats_at(pl.Series("x", [True, False]), np.array([0, 1])).tolist() == [1.0, 0.0]
