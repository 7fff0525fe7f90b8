"""A batch's event columns as NumPy arrays, for the compiled passes of the graders.

An eager Polars operation costs 20–500 µs however small its frame (a group-by or a join the most), and one
course took about 600 of them: their fixed cost, not data, was the time of a bedside request. A NumPy
operation on a few thousand values costs 1–5 µs, and a loop compiled by Numba touches each row once. So the
graders read the columns they need once (:func:`event_arrays`), do their per-patient work on arrays — the
same code for a batch of one and of ten thousand (DESIGN principle 2) — and build their output frames at
the end (:func:`per_patient_frame`).

Canonical events hold each patient's rows together, patients in the order of the patient table, each in time
order; a subset of rows (a filter) keeps that order. So patient ``i``'s rows are
``offsets[i]:offsets[i + 1]``.

Example
-------
>>> import polars as pl
>>> patients = pl.DataFrame({"patient_id": ["A", "B"]}, schema={"patient_id": pl.Categorical})
>>> events = pl.DataFrame({"patient_id": ["A", "A", "B"], "t": [0.0, 1.0, 0.5], "num": [1.0, None, 3.0]},
...                       schema_overrides={"patient_id": pl.Categorical})
>>> batch = event_arrays(events, patients)
>>> batch.offsets.tolist(), batch.floats("num").tolist()
([0, 2, 3], [1.0, nan, 3.0])
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

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


@dataclass(frozen=True)
class EventArrays:
    """Columns of a (subset of a) canonical event frame, with each row's patient position and the per-patient
    row ranges. Value columns are read on demand, each once (nulls as NaN for numbers)."""

    frame: pl.DataFrame
    n_patients: int
    patient: np.ndarray  # int64 position in the patient table, non-decreasing
    offsets: np.ndarray  # int64, n_patients + 1: patient i's rows are offsets[i]:offsets[i + 1]
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def height(self) -> int:
        return self.frame.height

    def floats(self, column: str) -> np.ndarray:
        """A numeric column as float64 with NaN where null."""
        if column not in self._cache:
            values = self.frame.get_column(column)
            self._cache[column] = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
        return self._cache[column]

    def codes(self, column: str = "item") -> np.ndarray:
        """The physical codes of an Enum or categorical column (``item`` by default)."""
        key = f"codes:{column}"
        if key not in self._cache:
            self._cache[key] = self.frame.get_column(column).to_physical().to_numpy()
        return self._cache[key]

    def flags(self, column: str) -> np.ndarray:
        """A boolean column, null as False."""
        key = f"flags:{column}"
        if key not in self._cache:
            self._cache[key] = self.frame.get_column(column).fill_null(False).to_numpy()
        return self._cache[key]

    def item_code(self, item: str) -> int:
        """The code of ``item`` in the ``item`` Enum (an unknown name is a programming error)."""
        return int(self.frame.schema["item"].categories.to_list().index(item))

    def rows_of(self, items: Collection[str]) -> np.ndarray:
        """Row numbers (ascending) of the rows of these items."""
        categories = self.frame.schema["item"].categories.to_list()
        wanted = np.zeros(len(categories), dtype=np.bool_)
        wanted[[categories.index(i) for i in items]] = True
        return np.flatnonzero(wanted[self.codes()])

    def subset(self, rows: np.ndarray) -> EventArrays:
        """The same arrays for a subset of rows (ascending row numbers), cached columns carried along."""
        sub = EventArrays(
            self.frame[rows],
            self.n_patients,
            self.patient[rows],
            np.searchsorted(self.patient[rows], np.arange(self.n_patients + 1)).astype(np.int64),
        )
        sub._cache.update({k: v[rows] for k, v in self._cache.items()})
        return sub


def event_arrays(events: pl.DataFrame, patients: pl.DataFrame) -> EventArrays:
    """The arrays of ``events`` (rows grouped by patient in the order of ``patients``)."""
    positions = patient_positions(events.get_column(PID), patients.get_column(PID))
    if positions.size and (positions.min() < 0 or np.any(positions[1:] < positions[:-1])):
        raise ValueError("events must hold each listed patient's rows together, in the order of the patient table")
    offsets = np.searchsorted(positions, np.arange(patients.height + 1)).astype(np.int64)
    return EventArrays(events, patients.height, positions, offsets)


def per_patient_frame(patients: pl.DataFrame, columns: Mapping[str, np.ndarray | pl.Series]) -> pl.DataFrame:
    """A one-row-per-patient frame: the patient ids and the given columns (NaN stays NaN: use
    :func:`nan_as_null` where a missing number should read as null)."""
    return patients.select(PID).with_columns(
        v if isinstance(v, pl.Series) and v.name == k else pl.Series(k, v) for k, v in columns.items()
    )


def nan_as_null(values: np.ndarray, name: str = "") -> pl.Series:
    """A float array as a Series with null where NaN."""
    return pl.Series(name, values).fill_nan(None)
