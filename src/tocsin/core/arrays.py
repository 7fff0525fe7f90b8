"""Event rows as NumPy arrays for the compiled passes of the graders, and each row's patient as a number.

The graders read their columns once as NumPy arrays and do the per-patient work in compiled loops over the
sorted rows (DESIGN principle 2: the same code for a batch of one and of ten thousand). A loop needs each
row's patient as a number: its position in the patient table (:func:`patient_positions`), or among the
patients of the events read (:func:`read_item_rows`, for the hematology modules).

Example
-------
>>> import polars as pl
>>> patient_positions(pl.Series(["B", "A", "X"]), pl.Series(["A", "B"])).tolist()
[1, 0, -1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

import numpy as np
import polars as pl

from tocsin.core.kernels_gather import rows_of_items
from tocsin.core.kernels_toxicity import float_rows_pass
from tocsin.core.polars_handles import gather_series, numeric_series
from tocsin.core.segments import read_only

PID = "patient_id"


def patient_positions(rows: pl.Series, patients: pl.Series) -> np.ndarray:
    """Position in ``patients`` of each row's patient (int64; -1 for a patient the table does not list).

    Category codes are global to the process (a long-lived server's codes grow far beyond its frames), so
    positions are found by a search in the table's sorted codes rather than a table indexed by code.
    """
    if rows.dtype == pl.Categorical or isinstance(rows.dtype, pl.Enum):
        keys, table = rows.to_physical().to_numpy(), patients.cast(rows.dtype).to_physical().to_numpy()
    else:  # text identifiers (frames built by hand): the same search on the strings
        keys, table = rows.cast(pl.Utf8).to_numpy(), patients.cast(pl.Utf8).to_numpy()
    return positions_in(keys, table)


def positions_in(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Position in ``table`` of each key (int64; -1 for a key the table does not hold), by a search in the
    table's sorted values: for callers that read the codes themselves, in an operation they do anyway."""
    if len(table) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    order = np.argsort(table, kind="stable")
    ranked = table[order]
    found = np.minimum(np.searchsorted(ranked, keys), len(ranked) - 1)
    positions = order[found].astype(np.int64)
    positions[ranked[found] != keys] = -1
    return positions


class ItemRows(NamedTuple):
    """The event rows of some items as arrays, in event order (a patient's rows adjacent, in time order)."""

    n_patients: int
    patient: np.ndarray  # position among the patients of the events read
    t: np.ndarray
    num: np.ndarray  # NaN where null
    slot: np.ndarray  # position of the row's item in ``items``
    items: tuple[str, ...]
    event_rows: np.ndarray  # the rows' numbers in the events read, for reading further columns

    def rows_of(self, *items: str) -> np.ndarray:
        """Row numbers (ascending, into these arrays) of the rows of these items."""
        of_items = self.slot == self.items.index(items[0])
        for item in items[1:]:
            of_items |= self.slot == self.items.index(item)
        return np.flatnonzero(of_items)

    def slot_counted_as(self, group: Sequence[str]) -> np.ndarray:
        """``slot`` with every item of ``group`` that was read in the slot of its first: for a compiled pass that
        takes one slot per item it counts (pegfilgrastim counted as g_csf, ``Vocabulary.counted_with``)."""
        read = [self.items.index(item) for item in group if item in self.items]
        if len(read) < 2:
            return self.slot
        of_slot = np.arange(len(self.items), dtype=self.slot.dtype)  # the kernels are compiled for its type
        of_slot[read[1:]] = read[0]
        return of_slot[self.slot]


def enum_codes(values: pl.Series) -> np.ndarray:
    """The codes of an Enum Series, as ``values.to_physical().to_numpy()`` reads them (of its integer type; if
    there is a null, floats with NaN for null, float64 where ``to_physical`` gives float32): the indices of its
    Arrow dictionary, ~5 µs where ``to_physical`` runs a query (~22 µs). Not for a Categorical, whose Arrow
    export costs far more (~130 µs).

    The codes and their nulls are read off the Arrow buffers: PyArrow's own ``to_numpy`` imports pandas (0.45 s
    and ~60 MB in every batch worker)."""
    indices = values.to_arrow().indices
    validity, data = indices.buffers()
    start, size = indices.offset, len(indices)
    codes = np.frombuffer(data, dtype=f"uint{indices.type.bit_width}")[start : start + size]
    if not indices.null_count:
        return codes
    valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[start : start + size]
    return np.where(valid.astype(np.bool_), codes, np.nan)


def patient_codes(ids: pl.Series) -> np.ndarray:
    """Category codes of patient ids (codes are global to the process, so two frames' codes compare)."""
    return ids.cast(pl.Categorical).to_physical().to_numpy()


def patient_codes_of(*ids: pl.Series) -> list[np.ndarray]:
    """:func:`patient_codes` of several Series of patient ids by one ``to_physical``, a query (~20 µs, and several
    times that amid a course's other work): the Series are concatenated as chunks (no copy) and the codes cut back
    into zero-copy slices."""
    physical = pl.concat([column.cast(pl.Categorical) for column in ids], rechunk=False).to_physical()
    ends = np.cumsum([column.len() for column in ids]).tolist()
    return [physical.slice(end - column.len(), column.len()).to_numpy() for end, column in zip(ends, ids)]


@dataclass(frozen=True)
class EventCodes:
    """The codes every grader's read of canonical events starts from: each row's item and patient, and the patients
    of the patient table. Each read costs a query or an Arrow export (~10–30 µs, whatever the rows), and the graders
    of one course read them some thirty times: :func:`tocsin.core.engine.grade_normalised` reads them once for all,
    a grader called on its own reads them itself."""

    categories: list[str]  # the item names, by code
    item: np.ndarray  # item code of each row (a null item: len(categories), no item)
    patient: np.ndarray  # patient category code of each row
    table: np.ndarray | None = None  # patient category code of each row of the patient table, when read with them

    @cached_property
    def code(self) -> dict[str, int]:
        """The code of each item name (a search of the hundred names costs more)."""
        return {name: k for k, name in enumerate(self.categories)}


def item_codes(column: pl.Series, null_code: int) -> np.ndarray:
    """The codes of an Enum column (:func:`enum_codes`), ``null_code`` where null."""
    codes = enum_codes(column)
    return np.where(np.isnan(codes), null_code, codes).astype(np.int64) if column.null_count() else codes


def event_codes(events: pl.DataFrame, patient: np.ndarray | None = None) -> EventCodes:
    """The :class:`EventCodes` of canonical events (``item`` an Enum, ``patient_id`` categorical; ``patient``: the
    codes of its patient ids, when read with others by :func:`patient_codes_of`)."""
    item = events.get_column("item")
    categories = item.dtype.categories.to_list()  # from the column: the frame's whole schema costs ~10 µs
    if patient is None:
        patient = patient_codes(events.get_column("patient_id"))
    return EventCodes(categories, item_codes(item, len(categories)), patient)




def codes_of(events: pl.DataFrame, patients: pl.DataFrame) -> EventCodes:
    """The :class:`EventCodes` of canonical events and of their patient table, the patients of both by one query."""
    event_patients, table = patient_codes_of(events.get_column(PID), patients.get_column(PID))
    return replace(event_codes(events, event_patients), table=table)


def physical_codes(events: pl.DataFrame, column: str) -> np.ndarray:
    """The physical codes of a categorical column. An Enum without nulls: :func:`enum_codes`. Otherwise (nulls,
    or a Categorical) a select per column: with two in one, Polars ran them on its thread pool at six times the
    cost."""
    series = events.get_column(column)
    if isinstance(series.dtype, pl.Enum) and not series.null_count():
        return enum_codes(series)
    return events.select(pl.col(column).to_physical()).to_series().to_numpy()


def row_numbers(rows: np.ndarray) -> pl.Series:
    """Row numbers (non-negative) as the UInt32 Series a Series or frame is indexed by: converted by NumPy first
    (the constructor's own conversion, ``dtype=pl.UInt32``, costs more: 0.01 ms against 0.12 ms for a batch's
    77,000 rows), then built through Polars' own constructor (~1 µs, :mod:`tocsin.core.polars_handles`)."""
    return numeric_series(rows.astype(np.uint32, copy=False))


def gather_rows(column: pl.Series, rows: np.ndarray) -> pl.Series:
    """``column`` at these (non-negative) row numbers: a direct gather (~1 µs), where indexing by a NumPy array
    runs a query."""
    return gather_series(column, row_numbers(rows))


def float_buffers(column: pl.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """A number column's float64 values and Arrow validity bitmap (empty: no null), off its Arrow buffers (exported
    without a copy; another number type is cast first), and the offset of its first row in the bitmap: for a
    compiled pass that reads the column at some rows (a row's value where its bit is unset is not defined)."""
    array = (column if column.dtype == pl.Float64 else column.cast(pl.Float64)).to_arrow()
    if not len(array):
        return _NO_FLOATS, _NO_VALIDITY, 0
    validity, data = array.buffers()
    values = np.frombuffer(data, np.float64, len(array), 8 * array.offset)
    return values, np.frombuffer(validity, np.uint8) if array.null_count else _NO_VALIDITY, array.offset


# Read-only, as the Arrow buffers are: one compiled specialisation of a pass serves both (segments.read_only).
_NO_FLOATS = read_only(np.empty(0))
_NO_VALIDITY = read_only(np.zeros(0, np.uint8))


def float_rows(column: pl.Series, rows: np.ndarray) -> np.ndarray:
    """A number column at these (non-negative) row numbers as float64, NaN where null: one compiled gather off the
    column's Arrow buffers (:func:`float_buffers`). A Polars gather, then its conversion to NumPy (which fills the
    nulls in a copy) cost ~5 ms for a chunk's 440,000 CRS rows. A column of another type (such as the Boolean
    ``blq``) is gathered at the rows before its cast to float64: cast whole, it cost ~8 ms of a batch chunk for some
    70,000 blood counts read out of 1.1 million events."""
    if column.dtype != pl.Float64:
        column, rows = gather_rows(column, rows).cast(pl.Float64), np.arange(rows.size)
    return float_rows_pass(*float_buffers(column), rows.astype(np.int64, copy=False))


def read_item_rows(events: pl.DataFrame, items: Sequence[str]) -> tuple[pl.Series, ItemRows]:
    """The patients of ``events`` in order (runs of patient_id, so a patient without rows of ``items`` keeps
    its place) and the rows of ``items`` as arrays: :func:`item_rows` on the events' own codes."""
    return item_rows(events, event_codes(events), items)


def item_rows(events: pl.DataFrame, read: EventCodes, items: Sequence[str]) -> tuple[pl.Series, ItemRows]:
    """:func:`read_item_rows` from codes already read (:func:`event_codes`, once for several graders: the reads of
    the codes and of the item Enum's ``dtype``, built anew at each call, are ~80 µs of ~0.2 ms for one course).

    Comparisons and gathers on the columns' arrays: a filter of the frame and a wrapper object of its arrays
    cost 0.4 ms for one course against some 50 µs here.
    """
    patient = read.patient
    first = np.ones(patient.size, dtype=np.bool_)
    first[1:] = patient[1:] != patient[:-1]
    starts = np.flatnonzero(first)
    slot_of_code = np.full(len(read.categories) + 1, -1, dtype=np.int8)  # the last: a null item
    slot_of_code[[read.code[i] for i in items]] = np.arange(len(items))
    rows, codes, _ = rows_of_items(read.item, read.patient, slot_of_code >= 0)  # (one pass, not a mask's three)
    rows_read = ItemRows(
        starts.size,
        np.searchsorted(starts, rows, side="right") - 1,
        events.get_column("t").to_numpy()[rows].astype(np.float64, copy=False),
        float_rows(events.get_column("num"), rows),
        slot_of_code[codes],
        tuple(items),
        rows,
    )
    return events.get_column(PID).filter(first), rows_read
