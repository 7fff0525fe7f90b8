"""Compiled reads of the rows of some items of a batch: the rows with their item and patient codes, and a float
column (with nulls) at them.

A grader reads the rows of its items, a twentieth to a fifth of a batch's million events. Finding them by NumPy
(a mask gathered at every row's item code, its row numbers, then the codes gathered at them) was three passes and
as many temporaries of the batch's rows (~2 ms for a chunk of a batch): here one compiled pass counts and one
writes, without a branch per row (~1 ms). The columns then read (``num``, ``lln``, ``uln``, ``lloq``) have nulls:
read whole they are a copy of every event (~6 ms), and gathered first by Polars, the gathered Series' own
conversion to NumPy costs ~2 ms for 200,000 rows. Here the column's Arrow buffers are read without a copy and one
compiled pass takes each row's value or NaN (~0.4 ms).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tocsin.core.arrays import gather_rows
from tocsin.core.segments import compiled


def _rows_of_items_loop(
    item: np.ndarray, patient: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = 0
    for row in range(item.shape[0]):
        n += wanted[item[row]]
    # Every row is written, and the next one overwrites it unless it is wanted: no branch to mispredict (a fifth
    # of the rows are wanted, in no pattern), one spare slot for the last row.
    rows = np.empty(n + 1, dtype=np.int64)
    k = 0
    for row in range(item.shape[0]):
        rows[k] = row
        k += wanted[item[row]]
    rows = rows[:n]
    items, patients = np.empty(n, dtype=item.dtype), np.empty(n, dtype=patient.dtype)
    for k in range(n):
        items[k], patients[k] = item[rows[k]], patient[rows[k]]
    return rows, items, patients


def rows_of_items(
    item: np.ndarray, patient: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows (ascending, int64) whose item code is ``wanted`` (bool, by code: the item codes of
    :class:`tocsin.core.arrays.EventCodes`, a null item's code last), and their item and patient codes (of the
    types of ``item`` and ``patient``)."""
    return compiled(_rows_of_items_loop)(item, patient, wanted)


def _floats_at_loop(values: np.ndarray, validity: np.ndarray, offset: int, rows: np.ndarray) -> np.ndarray:
    out = np.empty(rows.shape[0], dtype=np.float64)
    for k in range(rows.shape[0]):
        at = rows[k] + offset
        out[k] = values[at] if (validity[at >> 3] >> (at & 7)) & 1 else np.nan
    return out


def floats_at(column: pl.Series, rows: np.ndarray) -> np.ndarray:
    """``column`` (numeric) at these row numbers (non-negative, in range) as float64, NaN where null: what
    ``gather_rows(column, rows).cast(pl.Float64).to_numpy()`` gives. A Float64 column of one chunk is read off
    its Arrow buffers (no copy; the validity bits looked up in one compiled pass); any other is gathered, cast
    and read."""
    if column.dtype != pl.Float64 or column.n_chunks() > 1:
        return gather_rows(column, rows).cast(pl.Float64).to_numpy()
    array = column.to_arrow()
    validity, data = array.buffers()
    values = np.frombuffer(data, dtype=np.float64)
    if validity is None:  # no nulls: the values themselves
        return values[array.offset : array.offset + len(array)][rows]
    return compiled(_floats_at_loop)(
        values, np.frombuffer(validity, dtype=np.uint8), array.offset, rows.astype(np.int64, copy=False)
    )
