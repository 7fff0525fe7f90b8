"""Event, time and group columns: what is accepted, and what is refused with the row, patient and fix."""

from __future__ import annotations

import polars as pl
import pytest

from tocsin.stats.survival.inputs import SurvivalInputError, survival_inputs


def table(**columns):
    n = len(next(iter(columns.values())))
    return pl.DataFrame({"patient_id": [f"P{i + 1:02d}" for i in range(n)], **columns})


@pytest.mark.parametrize(
    "events",
    [[1, 0, 1], [True, False, True], ["true", "FALSE", "True"], [1.0, 0.0, 1.0], ["1", "0", "1"]],
    ids=["integers", "booleans", "words", "floats", "digits"],
)
def test_zero_one_and_true_false_are_accepted(events):
    inputs = survival_inputs(table(t=[1.0, 2.0, 3.0], e=events), "t", "e")
    assert inputs.event.tolist() == [True, False, True]


def test_explicit_codes_read_r_lung_coding():
    inputs = survival_inputs(
        table(t=[1.0, 2.0, 3.0], status=[2, 1, 2]), "t", "status", event_codes={"2"}, censor_codes={"1"}
    )
    assert inputs.event.tolist() == [True, False, True]


@pytest.mark.parametrize("code", [2, "dead"])
def test_ambiguous_event_codes_are_refused_with_row_patient_and_fix(code):
    events = [1, 0, code] if code == 2 else ["1", "0", code]
    with pytest.raises(SurvivalInputError) as error:
        survival_inputs(table(t=[1.0, 2.0, 3.0], e=events), "t", "e")
    message = str(error.value)
    assert "column 'e'" in message and "row 3 (patient P03)" in message
    assert "--event-code" in message and "--censor-code" in message


def test_a_code_outside_the_named_codes_is_refused():
    with pytest.raises(SurvivalInputError, match=r"row 2 \(patient P02\) = 3 is neither an event code \(2\)"):
        survival_inputs(table(t=[1.0, 2.0], s=[2, 3]), "t", "s", event_codes={"2"}, censor_codes={"1"})


def test_a_code_that_is_both_event_and_censoring_is_refused():
    with pytest.raises(SurvivalInputError, match="both event and censoring"):
        survival_inputs(table(t=[1.0], s=[1]), "t", "s", event_codes={"1"}, censor_codes={"1"})


@pytest.mark.parametrize(
    ("times", "phrase"),
    [
        ([1.0, -2.0, 3.0], "negative or not finite"),
        ([1.0, None, 3.0], "has no time"),
        (["1", "soon", "3"], "is not a number"),
        ([1.0, float("inf"), 3.0], "negative or not finite"),
    ],
    ids=["negative", "missing", "text", "infinite"],
)
def test_bad_times_are_refused_naming_the_row(times, phrase):
    with pytest.raises(SurvivalInputError) as error:
        survival_inputs(table(os_days=times, e=[1, 0, 1]), "os_days", "e")
    assert phrase in str(error.value) and "row 2 (patient P02)" in str(error.value)


def test_missing_event_and_group_are_refused():
    with pytest.raises(SurvivalInputError, match="row 1 .* has no event status"):
        survival_inputs(table(t=[1.0, 2.0], e=[None, 1]), "t", "e")
    with pytest.raises(SurvivalInputError, match="row 2 .* has no group"):
        survival_inputs(table(t=[1.0, 2.0], e=[1, 1], g=["a", None]), "t", "e", group="g")


def test_many_bad_rows_are_summarised():
    with pytest.raises(SurvivalInputError, match="and 3 more"):
        survival_inputs(table(t=[-1.0] * 8, e=[1] * 8), "t", "e")


def test_an_unknown_column_lists_the_table_columns():
    with pytest.raises(SurvivalInputError, match="no column\\(s\\) 'pfs_days'; the table has patient_id, t, e"):
        survival_inputs(table(t=[1.0], e=[1]), "pfs_days", "e")


def test_an_empty_table_is_refused():
    with pytest.raises(SurvivalInputError, match="no patients"):
        survival_inputs(pl.DataFrame({"t": [], "e": []}, schema={"t": pl.Float64, "e": pl.Int64}), "t", "e")
