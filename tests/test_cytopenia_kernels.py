"""Edge cases of the compiled CTCAE passes (``tocsin.core.kernels_cytopenia`` through ``grade_cytopenias`` and
``worst_cytopenia_grades``): an empty batch, a patient with no counts, a single value, a count without a value,
a patient whose rows are not adjacent, and transfusions exactly at the window edges; and ``ctcae_rows`` against a
plain Python reference on random rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from hematology_cases import normalised
from tocsin.core.arrays import event_codes
from tocsin.config import CytopeniaConfig
from tocsin.core.cytopenia_ctcae import (
    GRADED_SCHEMA,
    _grading,
    _lineage_of_item,
    _visiting_order,
    cytopenias_and_worst,
    grade_cytopenias,
    worst_cytopenia_grades,
)
from tocsin.core.kernels_cytopenia import STATE_NEEDS_LLN, STATE_NOT_GRADED, STATE_RAISED, ctcae_rows


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


# ------------------------------------------------------------------------------------------ ctcae_rows
_ITEMS = ("anc", "plt", "hgb", "alc", "wbc", "platelet_transfusion", "rbc_transfusion", "crp")


def _rows_reference(patient, t, item, num, blq_flag, lloq, own_lln, reference, lineage_of_item,
                    supported_of_item, g, raises: bool, before_h: float, after_h: float) -> tuple:  # fmt: skip
    """:func:`ctcae_rows` value by value in plain Python: a transfusion is near when one of the patient's for the
    lineage lies within the hours before or after; the grade is the first band (from grade 4) the value is
    below, the raise and the missing codes as the criteria say."""
    out = []
    for row in range(t.size):
        blq = blq_flag[row] == 1
        lineage = -1 if np.isnan(num[row]) and not blq else lineage_of_item[item[row]]
        if lineage < 0:
            continue
        value = lloq[row] if np.isnan(num[row]) else num[row]
        lln = reference[row] if np.isnan(own_lln[row]) else own_lln[row]
        transfused = -1
        if g.supported[lineage]:
            given = [t[r] for r in range(t.size) if patient[r] == patient[row] and num[r] > 0
                     and supported_of_item[item[r]] == lineage]  # fmt: skip
            transfused = int(any(-before_h <= (when - t[row]) * 24 <= after_h for when in given))

        def grade_of(x: float) -> int:
            for grade in (4, 3, 2, 1):
                below = lln if g.cut_at_lln[lineage, grade] else g.cut[lineage, grade]
                if x < below or (blq and x == below):
                    return grade
            return 0 if not np.isnan(lln if g.cut_at_lln[lineage, 1] else g.cut[lineage, 1]) else -1

        numeric, worst = grade_of(value), grade_of(0.0)
        tx = g.transfusion_grade[lineage]
        raised = raises and transfused == 1 and tx >= 0 and numeric < tx
        grade = tx if raised else numeric
        if g.not_graded[lineage]:
            state, missing = STATE_NOT_GRADED, 4
        else:
            state = STATE_RAISED if raised else grade if grade >= 0 else STATE_NEEDS_LLN
            missing = (state == STATE_NEEDS_LLN) + 2 * (blq and (grade < 0 or (worst >= 0 and grade < worst)))
        source = 0 if not np.isnan(own_lln[row]) else -1 if np.isnan(lln) else 1
        out.append((row, lineage, value, blq, lln, source, grade, state, missing, transfused))
    return tuple(np.array([o[i] for o in out], dtype=float).reshape(-1) for i in range(10))


@pytest.mark.parametrize(
    ("scale", "lymphocytes", "raises"),
    [("ctcae5", "ctcae5", True), ("ctcae6", "not_graded", True), ("ctcae6", "ctcae5", False)],
)
def test_ctcae_rows_is_the_reference_on_random_rows(scale: str, lymphocytes: str, raises: bool) -> None:
    rng = np.random.default_rng(11)
    g = _grading(scale, lymphocytes)
    lineage_of_item, supported_of_item, _ = _lineage_of_item(_ITEMS, g.transfusion_items)
    for n in (0, 1, 5, 300):
        patient = np.sort(rng.integers(0, 6, n))
        if n > 2:  # one patient's rows in two runs: visited together
            patient[-1] = patient[0]
        t = np.sort(rng.uniform(-2, 30, n))
        item = rng.integers(0, len(_ITEMS) + 1, n)  # the last: a null item
        num = rng.choice([0.0, 0.2, 0.5, 0.9, 1.2, 7.0, 9.5, 30.0, 60.0, 120.0, np.nan], n)
        blq_flag = rng.choice([0.0, 1.0, np.nan], n)
        lloq = rng.choice([0.5, 1.0, 50.0, np.nan], n)
        own_lln = rng.choice([np.nan, 1.8, 12.0, 150.0], n)
        reference = rng.choice([np.nan, 2.0, 11.5, 140.0], n)
        columns = (patient, t, item, num, blq_flag, lloq, own_lln, reference, lineage_of_item, supported_of_item)
        found = ctcae_rows(_visiting_order(patient), *columns, g.cut, g.cut_at_lln, g.transfusion_grade, g.supported,
                           g.not_graded, raises, 6.0, 12.0, 24.0)  # fmt: skip
        expected = _rows_reference(*columns, g, raises, 6.0, 12.0)
        for a, b in zip(found, expected, strict=True):
            np.testing.assert_array_equal(a.astype(float), b)
