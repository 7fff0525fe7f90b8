"""Event columns as arrays: patient positions and row ranges for the compiled passes (core/arrays.py)."""

import numpy as np
import polars as pl
import pytest

from tocsin.core.arrays import event_arrays, nan_as_null, patient_positions, per_patient_frame


def _frame(ids: list[str], **columns: list) -> pl.DataFrame:
    return pl.DataFrame({"patient_id": ids, **columns}, schema_overrides={"patient_id": pl.Categorical})


def test_offsets_give_each_patients_rows_and_a_patient_without_rows_an_empty_range() -> None:
    patients = _frame(["A", "B", "C"])
    events = _frame(["A", "A", "C"], t=[0.0, 1.0, 2.0], num=[1.0, None, 3.0])
    batch = event_arrays(events, patients)
    assert batch.patient.tolist() == [0, 0, 2]
    assert batch.offsets.tolist() == [0, 2, 2, 3]
    assert np.isnan(batch.floats("num")[1])


def test_positions_of_text_ids_and_of_unlisted_patients() -> None:
    rows = pl.Series(["B", "X", "A"])
    assert patient_positions(rows, pl.Series(["A", "B"])).tolist() == [1, -1, 0]
    assert patient_positions(rows, pl.Series([], dtype=pl.Utf8)).tolist() == [-1, -1, -1]


def test_rows_out_of_patient_table_order_are_refused() -> None:
    with pytest.raises(ValueError, match="order of the patient table"):
        event_arrays(_frame(["B", "A"]), _frame(["A", "B"]))


def test_subset_keeps_ranges_and_cached_columns_aligned() -> None:
    patients = _frame(["A", "B"])
    batch = event_arrays(_frame(["A", "A", "B", "B"], num=[1.0, 2.0, 3.0, 4.0]), patients)
    batch.floats("num")
    sub = batch.subset(np.array([1, 3]))
    assert sub.offsets.tolist() == [0, 1, 2]
    assert sub.floats("num").tolist() == [2.0, 4.0]


def test_per_patient_frame_and_nan_as_null() -> None:
    frame = per_patient_frame(_frame(["A", "B"]), {"score": nan_as_null(np.array([1.0, np.nan]), "score")})
    assert frame.get_column("score").to_list() == [1.0, None]
