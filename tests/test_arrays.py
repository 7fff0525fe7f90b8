"""Each event row's patient position in the patient table (core/arrays.py)."""

import numpy as np
import polars as pl

from tocsin.core.arrays import patient_positions, positions_in


def test_positions_of_categorical_ids_follow_the_patient_table() -> None:
    rows = pl.Series(["A", "A", "C"], dtype=pl.Categorical)
    table = pl.Series(["C", "B", "A"], dtype=pl.Categorical)
    assert patient_positions(rows, table).tolist() == [2, 2, 0]


def test_positions_of_text_ids_and_of_unlisted_patients() -> None:
    rows = pl.Series(["B", "X", "A"])
    assert patient_positions(rows, pl.Series(["A", "B"])).tolist() == [1, -1, 0]
    assert patient_positions(rows, pl.Series([], dtype=pl.Utf8)).tolist() == [-1, -1, -1]


def test_positions_in_an_unsorted_table_of_codes() -> None:
    assert positions_in(np.array([7, 3, 9, 5]), np.array([5, 9, 3])).tolist() == [-1, 2, 1, 0]
