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


def test_read_item_rows_keeps_patients_without_such_rows_and_numbers_rows_in_event_order() -> None:
    from tocsin.core.arrays import read_item_rows

    items = pl.Enum(["anc", "plt", "temperature"])
    events = pl.DataFrame(
        {"patient_id": ["A", "A", "B", "C"], "t": [0.0, 1.0, 0.5, 2.0],
         "item": ["anc", "temperature", "temperature", "plt"], "num": [0.4, 38.5, 39.0, None]},
        schema_overrides={"patient_id": pl.Categorical, "item": items},
    )
    patients, read = read_item_rows(events, ["plt", "anc"])
    assert patients.cast(pl.Utf8).to_list() == ["A", "B", "C"]
    assert read.event_rows.tolist() == [0, 3] and read.patient.tolist() == [0, 2]
    assert read.rows_of("plt").tolist() == [1] and np.isnan(read.num[1])


def test_item_rows_from_codes_already_read_and_a_null_item() -> None:
    from tocsin.core.arrays import codes_of, event_codes, item_rows

    items = pl.Enum(["anc", "plt", "temperature"])
    events = pl.DataFrame(
        {"patient_id": ["A", "A", "B", "C", "C"], "t": [0.0, 1.0, 0.5, 2.0, 3.0],
         "item": ["anc", "temperature", "temperature", "plt", "anc"], "num": [0.4, 38.5, 39.0, None, 0.2]},
        schema_overrides={"patient_id": pl.Categorical, "item": items},
    )  # fmt: skip
    # The engine's read (with the patient table's codes) serves as well as the events' own.
    table = pl.DataFrame({"patient_id": ["C", "A", "B"]}, schema={"patient_id": pl.Categorical})
    for codes in (event_codes(events), codes_of(events, table)):
        patients, read = item_rows(events, codes, ["plt", "anc"])
        assert patients.cast(pl.Utf8).to_list() == ["A", "B", "C"] and read.items == ("plt", "anc")
        assert read.event_rows.tolist() == [0, 3, 4] and read.patient.tolist() == [0, 2, 2]
        assert read.slot.tolist() == [1, 0, 1] and read.t.tolist() == [0.0, 2.0, 3.0] and np.isnan(read.num[1])
    # A null item (the code past the categories) is no item's row.
    with_null = events.with_columns(pl.when(pl.col("t") == 2.0).then(None).otherwise(pl.col("item")).alias("item"))
    assert item_rows(with_null, event_codes(with_null), ["plt", "anc"])[1].event_rows.tolist() == [0, 4]


def test_physical_codes_of_an_enum_with_and_without_nulls_and_of_a_categorical() -> None:
    from tocsin.core.arrays import physical_codes

    items = pl.Enum(["anc", "plt", "temperature"])
    chunks = [pl.DataFrame({"item": values}, schema={"item": items}) for values in (["plt", "anc"], ["temperature"])]
    events = pl.concat(chunks, rechunk=False)  # Arrow indices of two chunks
    assert physical_codes(events, "item").tolist() == [1, 0, 2]
    with_null = physical_codes(pl.DataFrame({"item": ["plt", None]}, schema={"item": items}), "item")
    assert with_null[0] == 1 and np.isnan(with_null[1])
    ids = pl.DataFrame({"patient_id": ["B", "A", "B"]}, schema={"patient_id": pl.Categorical})
    codes = physical_codes(ids, "patient_id")
    assert codes[0] == codes[2] != codes[1]


def test_gather_rows_reads_the_rows_in_their_order_nulls_kept() -> None:
    from tocsin.core.arrays import gather_rows

    column = pl.Series("num", [0.5, None, 2.0])
    gathered = gather_rows(column, np.array([2, 1, 2], dtype=np.int64))
    assert gathered.name == "num" and gathered.to_list() == [2.0, None, 2.0]
    assert gather_rows(column, np.array([], dtype=np.int64)).len() == 0


def test_enum_codes_read_as_to_physical() -> None:
    from tocsin.core.arrays import enum_codes

    kind, wide = pl.Enum(["a", "b", "c"]), pl.Enum([f"x{i}" for i in range(300)])  # (codes of 8 and 16 bits)
    many = pl.Series([f"x{i}" for i in range(300)] + [None], dtype=wide)
    cases = [pl.Series(values, dtype=kind) for values in (["c", "a"], ["b", None], [None], [])]
    mixed = pl.Series(["a", "b", None, "b"], dtype=kind)
    # Slices start inside the Arrow buffers: the codes and the validity bits are read from the slice's offset.
    for series in [*cases, many, many[250:], mixed[1:], mixed[:2]]:
        expected = series.to_physical().to_numpy()
        found = enum_codes(series)
        assert np.array_equal(found, expected, equal_nan=True)
        assert found.dtype == expected.dtype or (series.null_count() and found.dtype.kind == "f")



def test_float_rows_of_every_number_type_and_of_flags_as_a_gather_and_cast_reads_them() -> None:
    """Float64 is read off its buffers; another type (the Boolean ``blq``, an integer column) is gathered at the rows
    before its cast. Either way each row reads as Polars' own gather and cast, a null as NaN, in the rows' order."""
    from tocsin.core.arrays import float_rows

    rows = np.array([4, 0, 2, 2, 5])
    columns = [
        pl.Series("num", [1.5, None, 3.0, 4.25, None, 6.0]),
        pl.Series("blq", [True, False, None, True, False, True]),
        pl.Series("count", [7, 8, None, 10, 11, 12], dtype=pl.Int32),
    ]
    for column in columns:
        expected = column.gather(rows).cast(pl.Float64).to_numpy()
        np.testing.assert_array_equal(float_rows(column, rows), expected)
        sliced = column.slice(1)  # a column whose first row is not its buffers' first: the bitmap's offset counts
        np.testing.assert_array_equal(float_rows(sliced, rows[:3]), sliced.gather(rows[:3]).cast(pl.Float64).to_numpy())
