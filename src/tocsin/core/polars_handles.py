"""Series and frames built through Polars' own handles, where the public constructors' checks cost more than the work.

``pl.Series(array)`` spends ~9 µs in Python checks before the ~1 µs constructor it ends in, ``Series.slice`` ~1.4 µs
around a ~0.4 µs slice, indexing by a Series of row numbers ~4 µs around a ~0.8 µs gather, and ``pl.DataFrame``
of thirty Series ~30 µs around a ~3 µs constructor. A course's grading builds some 300 Series and 25 frames, most
of them of one row, so these wrappers were a tenth of its time. The functions here call the constructors the
public ones end in (``PySeries.new_f64``, ``PySeries.gather_with_series``, ``PyDataFrame``) with inputs they
accept as they are: C-contiguous NumPy arrays of a supported type, fresh Series.

These are private to Polars: they are checked against the public constructors for every type used
(``tests/test_polars_handles.py``) with the pinned Polars, and that test must pass before Polars is upgraded.

Example
-------
>>> import numpy as np
>>> numeric_series(np.array([1.0, np.nan]), "x", nan_to_null=True).to_list()
[1.0, None]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from polars._plr import PyDataFrame, PySeries

#: The constructor of each NumPy type (kind and size: ``long`` and ``longlong`` are both int64), as
#: ``pl.Series(array)`` picks it.
_CONSTRUCTORS = {
    ("f", 8): PySeries.new_f64, ("f", 4): PySeries.new_f32,
    ("i", 1): PySeries.new_i8, ("i", 2): PySeries.new_i16, ("i", 4): PySeries.new_i32, ("i", 8): PySeries.new_i64,
    ("u", 1): PySeries.new_u8, ("u", 2): PySeries.new_u16, ("u", 4): PySeries.new_u32, ("u", 8): PySeries.new_u64,
    ("b", 1): PySeries.new_bool,
}


def numeric_series(values: np.ndarray, name: str = "", nan_to_null: bool = False) -> pl.Series:
    """``pl.Series(name, values, nan_to_null=nan_to_null)`` for a one-dimensional array (copied; ``nan_to_null``
    applies to floats): through Polars' own constructor for a number or boolean type in native byte order, else
    through ``pl.Series`` itself."""
    kind = values.dtype.kind
    constructor = _CONSTRUCTORS.get((kind, values.dtype.itemsize))
    if constructor is None or not values.dtype.isnative:  # any other array: the public constructor
        return pl.Series(name, values, nan_to_null=nan_to_null)
    # The last argument is ``nan_is_null`` for floats and ``strict`` for the others, as ``pl.Series`` passes them.
    handle = constructor(name, np.ascontiguousarray(values), nan_to_null if kind == "f" else True)
    return pl.Series._from_pyseries(handle)


def masked_series(values: np.ndarray, valid: np.ndarray, name: str = "") -> pl.Series:
    """A Series of ``values`` (a number or boolean type) with null where ``valid`` is False: the masked Arrow array
    from its buffers, taken by Polars as it is (``pa.array(values, mask=...)`` imports pandas: 0.45 s in every batch
    worker)."""
    validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if values.dtype == np.bool_:  # Arrow's booleans are bits
        data, arrow_type = pa.py_buffer(np.packbits(values, bitorder="little")), pa.bool_()
    else:
        data, arrow_type = pa.py_buffer(np.ascontiguousarray(values)), pa.from_numpy_dtype(values.dtype)
    array = pa.Array.from_buffers(arrow_type, values.shape[0], [validity, data], int(values.shape[0] - valid.sum()))
    return arrow_series(array, name)


def arrow_series(array: pa.Array, name: str = "") -> pl.Series:
    """``pl.Series(name, array)`` for an Arrow array of a type Polars takes as it is (numbers, booleans, large
    strings and lists of them)."""
    handle = PySeries.from_arrow_c_array(array)
    handle.rename(name)
    return pl.Series._from_pyseries(handle)


def categorical_series(codes: np.ndarray, categories: pl.Series, name: str = "") -> pl.Series:
    """``categories[codes].cast(pl.Categorical)`` for ``uint32`` codes into distinct, non-null texts: an Arrow
    dictionary array, which Polars takes as Categorical by looking up only its dictionary's texts."""
    indices = pa.Array.from_buffers(pa.uint32(), codes.shape[0], [None, pa.py_buffer(np.ascontiguousarray(codes))])
    dictionary = categories.cast(pl.Utf8).to_arrow(compat_level=pl.CompatLevel.newest())
    return arrow_series(pa.DictionaryArray.from_arrays(indices, dictionary), name)


def _views(array: pa.Array) -> np.ndarray:
    return np.frombuffer(array.buffers()[1], np.uint64, 2 * len(array), 16 * array.offset)


@dataclass(frozen=True)
class StringChunk:
    """One chunk of a String Series as its Arrow buffers, for compiled passes over its texts."""

    # The Arrow views, as ``uint64``, two per row: the low 32 bits of the first are the text's length in bytes; a
    # text of at most 12 bytes is inline in the rest, a longer one has its first 4 bytes there and the second is its
    # data buffer and offset. (A null row's view is not defined: read the validity too.)
    views: np.ndarray
    valid: np.ndarray  # the validity bitmap (uint8; empty: no null)
    bit: int  # row 0's bit in ``valid``
    buffers: np.ndarray  # the data buffers (texts longer than 12 bytes) end to end, uint8
    buffer_start: np.ndarray  # where each data buffer starts in ``buffers`` (int64)


_NO_BYTES = np.zeros(0, dtype=np.uint8)


def string_chunks(texts: pl.Series) -> list[StringChunk]:
    """The chunks of a String Series as they are (Polars' strings are Arrow string views, exported without a copy
    chunk by chunk; the export of a Series of several chunks copies them into one, as a rechunk does): a read file's
    columns come in a chunk per part or row group. Data buffers are copied only when a chunk has several."""
    chunks = []
    for chunk in texts.get_chunks():
        if chunk.len() == 0:
            continue
        array = chunk.to_arrow(compat_level=pl.CompatLevel.newest())
        validity, _, *data = array.buffers()
        sizes = [buffer.size for buffer in data]
        buffers = (
            np.frombuffer(data[0], np.uint8) if len(data) == 1
            else np.concatenate([np.frombuffer(b, np.uint8) for b in data]) if data else _NO_BYTES
        )
        chunks.append(
            StringChunk(
                _views(array),
                np.frombuffer(validity, np.uint8) if array.null_count else _NO_BYTES,
                array.offset,
                buffers,
                np.cumsum([0, *sizes[:-1]], dtype=np.int64),
            )
        )
    return chunks


def empty_or_null(texts: pl.Series) -> np.ndarray:
    """Per row of a String Series, whether its text is empty or null: read off its Arrow views and validity, where
    ``texts == ""`` runs a query (~25 µs, several times that amid other work)."""
    array = texts.to_arrow(compat_level=pl.CompatLevel.newest())
    empty = (_views(array)[0::2] & np.uint64(0xFFFFFFFF)) == 0
    if array.null_count:
        bits = np.unpackbits(np.frombuffer(array.buffers()[0], np.uint8), bitorder="little")
        empty |= bits[array.offset : array.offset + len(array)] == 0
    return empty


def gather_series(source: pl.Series, rows: pl.Series) -> pl.Series:
    """``source[rows]`` for a Series of UInt32 row numbers (a null row number gives a null)."""
    return pl.Series._from_pyseries(source._s.gather_with_series(rows._s))


def sliced(series: pl.Series, offset: int, length: int, name: str) -> pl.Series:
    """``series.slice(offset, length).alias(name)`` without the copies: a zero-copy slice renamed in place."""
    column = series._s.slice(offset, length)
    column.rename(name)
    return pl.Series._from_pyseries(column)


def cut_columns(whole: pl.Series, names: Sequence[str], offset: int, height: int) -> list[tuple[str, PySeries]]:
    """Consecutive columns of ``height`` rows of ``whole`` from row ``offset`` on (zero-copy slices), named
    ``names``, as the handles :func:`frame_from` takes (wrapping each in a Series costs more than the slice)."""
    cut, columns = whole._s.slice, []
    for k, name in enumerate(names):
        column = cut(offset + k * height, height)
        column.rename(name)  # in place: safe, the slice is its own
        columns.append((name, column))
    return columns


def frame_from(columns: Sequence[pl.Series | PySeries]) -> pl.DataFrame:
    """``pl.DataFrame(columns)`` for columns of one height and distinct names (Series, or the handles of
    :func:`cut_columns`), taken as they are. Polars still checks the heights and names."""
    return frame_of_handles([c._s if isinstance(c, pl.Series) else c for c in columns])


def frame_of_handles(handles: list[PySeries]) -> pl.DataFrame:
    """:func:`frame_from` for handles only (a course's frames have some 500 columns: the type check of each is
    ~0.2 µs)."""
    return pl.DataFrame._from_pydf(PyDataFrame(handles))
