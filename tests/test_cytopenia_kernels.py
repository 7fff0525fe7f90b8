"""Edge cases of the compiled CTCAE passes (``tocsin.core.kernels_cytopenia`` through ``grade_cytopenias`` and
``worst_cytopenia_grades``): an empty batch, a patient with no counts, a single value, a count without a value,
a patient whose rows are not adjacent, and transfusions exactly at the window edges."""

from __future__ import annotations

import polars as pl

from hematology_cases import normalised
from tocsin.core.arrays import event_codes
from tocsin.config import CytopeniaConfig
from tocsin.core.cytopenia_ctcae import GRADED_SCHEMA, cytopenias_and_worst, grade_cytopenias, worst_cytopenia_grades


def _events(patients: dict[str, list[list]]) -> pl.DataFrame:
    return normalised(patients).events


def test_an_empty_batch_gives_empty_frames_of_the_same_columns() -> None:
    events = _events({"P": [[1, "anc", 0.4, "10*9/L"]]}).head(0)
    graded = grade_cytopenias(events, CytopeniaConfig())
    assert graded.height == 0 and graded.schema == pl.Schema(GRADED_SCHEMA)
    worst = worst_cytopenia_grades(graded)
    assert worst.height == 0
    assert worst.columns == ["patient_id", "lineage", "scale", "worst_grade", "worst_t", "values", "unresolved"]


def test_a_patient_without_counts_has_no_rows_and_one_value_is_graded() -> None:
    events = _events({"A": [[1, "temperature", 38.5, "Cel"]], "B": [[2, "anc", 0.4, "10*9/L"]]})
    graded = grade_cytopenias(events, CytopeniaConfig())
    assert graded.select(pl.col("patient_id").cast(pl.Utf8), "grade", "rule").rows() == [("B", 4, "CYTO-CTCAE5-ANC-G4")]
    assert worst_cytopenia_grades(graded).select("worst_grade", "worst_t", "values", "unresolved").rows() == [
        (4, 2.0, 1, 0)
    ]


def test_a_count_without_a_value_is_not_graded_and_a_null_grade_has_no_worst_time() -> None:
    events = _events({"P": [[1, "anc", 1.0, "10*9/L"], [2, "hgb", 11.0, "g/dL"]]})
    events = events.with_columns(pl.when(pl.col("item") != "anc").then(pl.col("num")).alias("num"))
    graded = grade_cytopenias(events, CytopeniaConfig())
    assert graded.select("lineage", "grade", "missing").rows() == [("hgb", None, "lln")]
    assert worst_cytopenia_grades(graded).select("worst_grade", "worst_t", "values", "unresolved").rows() == [
        (None, None, 1, 1)
    ]


def test_transfusions_count_at_the_window_edges_and_only_for_their_patient() -> None:
    events = _events(
        {
            "A": [[1, "hgb", 9.0, "g/dL"], [2, "rbc_transfusion", 1, ""], [4, "hgb", 9.5, "g/dL"]],
            "B": [[2, "hgb", 9.0, "g/dL"]],
        }
    )
    graded = grade_cytopenias(events, CytopeniaConfig())
    # A: day 1 is exactly 24 h before the transfusion, day 4 is 48 h after; B has none.
    assert graded.select("t", "transfused", "grade").rows() == [(1.0, True, 3), (4.0, False, 2), (2.0, False, 2)]


def test_a_patient_whose_rows_are_not_adjacent_grades_as_if_they_were() -> None:
    events = _events(
        {"A": [[1, "hgb", 9.0, "g/dL"], [1.5, "rbc_transfusion", 1, ""]], "B": [[1, "anc", 0.8, "10*9/L"]]}
    )
    split = pl.concat([events.filter(pl.col("item") == "hgb"), events.filter(pl.col("item") != "hgb")])
    graded = grade_cytopenias(split, CytopeniaConfig())
    assert graded.select(pl.col("patient_id").cast(pl.Utf8), "transfused", "grade").rows() == [
        ("A", True, 3),
        ("B", None, 3),
    ]
    worst = worst_cytopenia_grades(graded)
    assert worst.select(pl.col("patient_id").cast(pl.Utf8), "lineage", "worst_grade").rows() == [
        ("A", "hgb", 3),
        ("B", "anc", 3),
    ]


def test_the_worst_grades_from_the_grading_codes_are_those_read_from_the_frame() -> None:
    # cytopenias_and_worst (grade_hematology's call, on the engine's codes) finds the worst grades from the codes
    # it graded with.
    events = _events(
        {
            "A": [[1, "hgb", 9.0, "g/dL"], [1.5, "rbc_transfusion", 1, ""], [3, "anc", 0.3, "10*9/L"]],
            "B": [[1, "anc", 0.8, "10*9/L"], [2, "plt", 30, "10*9/L"], [4, "anc", 0.4, "10*9/L"]],
            "C": [[2, "hgb", 11.0, "g/dL"], [3, "temperature", 38.5, "Cel"]],
        }
    )
    split = pl.concat([events.filter(pl.col("item") == "anc"), events.filter(pl.col("item") != "anc")])
    for batch in (events, split, events.head(0), events.filter(pl.col("item") == "temperature")):
        graded, worst = cytopenias_and_worst(batch, CytopeniaConfig(), read=event_codes(batch))
        assert graded.equals(grade_cytopenias(batch, CytopeniaConfig()))
        assert worst.equals(worst_cytopenia_grades(graded)) and worst.schema == worst_cytopenia_grades(graded).schema
