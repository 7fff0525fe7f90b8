"""Each event row's patient as a position in the patient table, for the compiled passes of the graders.

The graders read their columns once as NumPy arrays and do the per-patient work in compiled loops over the
sorted rows (DESIGN principle 2: the same code for a batch of one and of ten thousand). A loop needs each
row's patient as a number: its position in the patient table, whose rows the output frames follow.

Example
-------
>>> import polars as pl
>>> patient_positions(pl.Series(["B", "A", "X"]), pl.Series(["A", "B"])).tolist()
[1, 0, -1]
"""

from __future__ import annotations

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
