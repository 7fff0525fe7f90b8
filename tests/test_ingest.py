"""Ingest: bad input gets a clear error naming the row, the field and the fix, and nothing valid is lost.

Runs the production validation (``tocsin.core.events.normalise_events``), the engine
(``tocsin.core.engine.grade_events``) and the file readers (``tocsin.adapters.files``) on small raw
frames and files. Every error row must name file, line, patient, field, value, message and fix.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tocsin.config import GradingConfig
from tocsin.core.engine import grade_events
from tocsin.core.events import ERROR_SCHEMA, IngestLimits, NormalisedEvents, normalise_events
from tocsin.adapters.files import InputFileError, read_event_file, read_event_files
from tocsin.vocabulary import load_vocabulary

VOCAB = load_vocabulary()
COLUMNS = ["patient_id", "time", "day", "item", "value", "unit"]


def raw(rows: list[tuple], file: str = "events.csv") -> pl.DataFrame:
    """Raw frame as the readers give it: rows are (patient_id, time, day, item, value, unit), all text;
    lines start at 2 (line 1 is the CSV header)."""
    return pl.DataFrame(
        [tuple(None if v is None else str(v) for v in r) for r in rows],
        orient="row",
        schema={c: pl.Utf8 for c in COLUMNS},
    ).with_columns(pl.lit(file).alias("file"), pl.int_range(2, len(rows) + 2, dtype=pl.Int64).alias("line"))


def day_rows(*rows: tuple) -> list[tuple]:
    """(day, item, value, unit) rows for patient P, after a day-0 infusion row (line 2)."""
    return [("P", None, "0", "infusion", "axi-cel", ""), *[("P", None, *r) for r in rows]]


def normalise(rows: list[tuple], limits: IngestLimits | None = None) -> NormalisedEvents:
    return normalise_events(raw(rows), VOCAB, limits or IngestLimits())


def only_error(n: NormalisedEvents, severity: str = "error") -> dict:
    errors = n.errors.filter(pl.col("severity") == severity).to_dicts()
    assert len(errors) == 1, f"expected exactly one {severity}, got {errors}"
    return errors[0]


def event_lines(n: NormalisedEvents) -> list[int]:
    return sorted(n.events["line"].to_list())


# ------------------------------------------------------------------------------------ error table
def test_error_table_has_the_documented_columns() -> None:
    n = normalise(day_rows(("1", "temprature", "38.5", "Cel")))
    assert n.errors.columns == list(ERROR_SCHEMA)
    assert n.errors.columns == ["file", "line", "patient_id", "field", "value", "message", "fix", "severity"]
    assert not n.ok and n.problems.height == 1


# ----------------------------------------------------------------------------------------- items
def test_unknown_item_is_refused_with_a_did_you_mean() -> None:
    n = normalise(day_rows(("1", "temprature", "38.5", "Cel"), ("1", "sbp", "85", "mm[Hg]")))
    e = only_error(n)
    assert (e["file"], e["line"], e["patient_id"], e["field"], e["value"]) == (
        "events.csv",
        3,
        "P",
        "item",
        "temprature",
    )
    assert e["message"] == "unknown item 'temprature'"
    assert "did you mean 'temperature'?" in e["fix"]
    assert event_lines(n) == [2, 4]  # the valid sbp row and the infusion are kept


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("Temperatur", "temperature"),
        ("noradrenalin", "norepinephrine"),
        ("tocilizumb", "tocilizumab"),
        ("oxygen_flw", "oxygen_flow"),
    ],
)
def test_did_you_mean_names_the_nearest_item(typo: str, meant: str) -> None:
    e = only_error(normalise(day_rows(("1", typo, "1", ""))))
    assert f"did you mean '{meant}'?" in e["fix"]


@pytest.mark.parametrize(("typo", "meant"), [("tempp", "temperature"), ("spo", "spo2")])
def test_did_you_mean_does_not_suggest_an_unrelated_item(typo: str, meant: str) -> None:
    e = only_error(normalise(day_rows(("1", typo, "38.5", "Cel"))))
    assert f"did you mean '{meant}'?" in e["fix"], e["fix"]


def test_item_aliases_and_case_are_accepted() -> None:
    n = normalise(day_rows(("1", "Temp", "38.5", "Cel"), ("1", "NORADRENALINE", "5", "ug/min")))
    assert n.ok
    assert n.events.filter(pl.col("line") > 2)["item"].to_list() == ["temperature", "norepinephrine"]


# ----------------------------------------------------------------------------------------- units
def test_unknown_unit_is_refused() -> None:
    e = only_error(normalise(day_rows(("1", "temperature", "38.5", "furlong"))))
    assert (e["line"], e["field"], e["value"]) == (3, "unit", "furlong")
    assert "not valid UCUM" in e["message"] and "temperature" in e["message"]
    assert "UCUM" in e["fix"]


def test_incompatible_unit_is_refused() -> None:
    for _ in range(2):  # the second time, the pair's conversion (here its problem) is the one read the first time
        e = only_error(normalise(day_rows(("1", "temperature", "38.5", "kg"))))
        assert (e["line"], e["field"], e["value"]) == (3, "unit", "kg")
        assert e["message"] == "unit 'kg' does not convert to Cel (item 'temperature')"


def test_missing_unit_on_a_dimensioned_item_is_refused() -> None:
    e = only_error(normalise(day_rows(("1", "temperature", "38.5", ""))))
    assert e["field"] == "unit"
    assert "unit is missing" in e["message"] and "Cel" in e["message"]


# ---------------------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("item", "value", "unit", "accepted"),
    [
        ("temperature", "400", "Cel", "25.0..45.0 Cel"),
        ("temperature", "400", "[degF]", "25.0..45.0 Cel"),  # 204.4 Cel
        ("oxygen_flow", "-1", "L/min", "0.0..80.0 L/min"),
        ("sbp", "0", "mm[Hg]", "20.0..300.0 mm[Hg]"),
        ("ice_score", "11", "{score}", "0.0..10.0 {score}"),
    ],
)
def test_implausible_value_is_refused(item: str, value: str, unit: str, accepted: str) -> None:
    n = normalise(day_rows(("1", item, value, unit), ("1", "temperature", "37.0", "Cel")))
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (3, "value", value)
    assert "implausible" in e["message"] and f"'{item}'" in e["message"] and accepted in e["message"]
    assert e["fix"] == "check the value and its unit"
    assert event_lines(n) == [2, 4]


def test_non_integer_ice_score_is_refused() -> None:
    e = only_error(normalise(day_rows(("1", "ice_score", "7.5", ""))))
    assert (e["line"], e["field"], e["value"]) == (3, "value", "7.5")
    assert e["message"] == "'7.5' must be a whole number for 'ice_score'"
    assert "integer" in e["fix"]


def test_an_ice_score_outside_its_range_and_not_whole_is_reported_once_as_implausible() -> None:
    """The range check comes first; a row it refuses is not reported again for its fraction."""
    e = only_error(normalise(day_rows(("1", "ice_score", "12.5", ""))))
    assert (e["line"], e["field"], e["value"]) == (3, "value", "12.5")
    assert "implausible" in e["message"]


def test_non_numeric_value_is_refused() -> None:
    e = only_error(normalise(day_rows(("1", "temperature", "hot", "Cel"))))
    assert (e["field"], e["value"]) == ("value", "hot")
    assert "not a number" in e["message"]


def test_category_value_not_allowed_lists_the_allowed_values() -> None:
    e = only_error(normalise(day_rows(("1", "oxygen", "helmet", ""))))
    assert (e["line"], e["field"], e["value"]) == (3, "value", "helmet")
    assert e["message"] == "'helmet' is not an allowed value of 'oxygen'"
    assert e["fix"].startswith("use one of: ")
    listed = e["fix"].removeprefix("use one of: ").split(", ")
    assert listed == list(VOCAB.items["oxygen"].values)
    assert {"room_air", "nasal_cannula", "high_flow_nasal_cannula", "cpap", "mechanical_ventilation"} <= set(listed)


def test_every_row_of_a_refused_value_is_reported_and_the_same_text_is_read_per_item() -> None:
    # Values are read once per distinct (item, value) pair: a refused pair refuses each of its rows, and the
    # same text under another item is read by that item's rules.
    n = normalise(
        day_rows(
            ("1", "oxygen", "helmet", ""),
            ("1", "global_aphasia", "yes", ""),
            ("2", "oxygen", "HFNC", ""),
            ("3", "oxygen", "helmet", ""),
            ("3", "seizure", "yes", ""),
            ("4", "oxygen", "hfnc", ""),
        )
    )
    errors = n.errors.sort("line").to_dicts()
    assert [(e["line"], e["field"], e["value"]) for e in errors] == [
        (3, "value", "helmet"), (6, "value", "helmet"), (7, "value", "yes")
    ]
    assert errors[2]["message"] == "'yes' is not an allowed value of 'seizure'"
    kept = n.events.sort("line")
    assert kept["line"].to_list() == [2, 4, 5, 8]
    assert kept["cat"].to_list() == ["axi-cel", "true", "high_flow_nasal_cannula", "high_flow_nasal_cannula"]


def test_category_aliases_are_mapped() -> None:
    n = normalise(day_rows(("1", "oxygen", "HFNC", ""), ("1", "consciousness", "drowsy", "")))
    assert n.ok
    assert n.events.filter(pl.col("line") > 2)["cat"].to_list() == ["high_flow_nasal_cannula", "awakens_spontaneously"]


# ------------------------------------------------------------------------------------------ time
def test_unparseable_day_is_refused() -> None:
    n = normalise(day_rows(("day 3", "temperature", "38.5", "Cel"), ("3", "temperature", "38.5", "Cel")))
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (3, "day", "day 3")
    assert e["message"] == "day 'day 3' is not a number"
    assert "2.5" in e["fix"]
    assert event_lines(n) == [2, 4]


def test_unparseable_iso_time_is_refused() -> None:
    rows = [
        ("P", "2024-05-01T10:00", None, "infusion", "axi-cel", ""),
        ("P", "2024-05-0x", None, "temperature", "38.5", "Cel"),
        ("P", "2024-05-02T10:00", None, "temperature", "38.5", "Cel"),
    ]
    n = normalise(rows)
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (3, "time", "2024-05-0x")
    assert "not ISO 8601" in e["message"]
    assert "2024-05-01T08:00" in e["fix"]
    assert event_lines(n) == [2, 4]


def test_row_without_time_or_day_is_refused() -> None:
    n = normalise(day_rows((None, "temperature", "38.5", "Cel"), ("", "sbp", "100", "mm[Hg]")))
    errors = n.problems.to_dicts()
    assert [(e["line"], e["field"]) for e in errors] == [(3, "time"), (4, "time")]
    assert all(e["message"] == "row has neither time nor day" for e in errors)
    assert all("ISO 8601" in e["fix"] and "day since infusion" in e["fix"] for e in errors)


def test_patient_without_infusion_row_is_refused_and_others_are_kept() -> None:
    rows = [
        *day_rows(("1", "temperature", "38.5", "Cel")),
        ("Q", None, "1", "temperature", "39.0", "Cel"),
        ("Q", None, "2", "sbp", "80", "mm[Hg]"),
    ]
    n = normalise(rows)
    errors = n.problems.to_dicts()
    assert [(e["line"], e["patient_id"], e["field"]) for e in errors] == [(4, "Q", "item"), (5, "Q", "item")]
    assert errors[0]["message"] == "patient 'Q' has no infusion row, so day 0 is unknown"
    assert errors[0]["fix"] == "add a row: Q,<time or day 0>,infusion,<product>"
    assert event_lines(n) == [2, 3]
    result = grade_events(raw(rows), GradingConfig())
    assert result.crs.summary["patient_id"].to_list() == ["P"]
    assert result.crs.summary["max_grade"].to_list() == [1]


def test_second_infusion_row_is_refused_and_the_first_is_kept() -> None:
    rows = [*day_rows(("1", "temperature", "38.5", "Cel")), ("P", None, "5", "infusion", "axi-cel", "")]
    n = normalise(rows)
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (4, "item", "infusion")
    assert e["message"] == "second infusion row for patient 'P' (the first is at line 2)"
    assert "re-infusion is a new course" in e["fix"]
    infusion = n.events.filter(pl.col("item") == "infusion")
    assert infusion.select("line", "t").rows() == [(2, 0.0)]
    assert n.events.filter(pl.col("item") == "temperature")["t"].to_list() == [1.0]


def test_clock_time_needs_an_infusion_time() -> None:
    rows = [
        ("P", None, "0", "infusion", "axi-cel", ""),
        ("P", "2024-05-02T10:00", None, "temperature", "38.5", "Cel"),
        ("P", None, "1", "sbp", "85", "mm[Hg]"),
    ]
    n = normalise(rows)
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (3, "time", "2024-05-02T10:00")
    assert e["message"] == "row has a clock time but the patient's infusion row has only a day"
    assert e["fix"] == "give the infusion row a time, or give this row a day"
    assert event_lines(n) == [2, 4]


def test_iso_times_become_days_since_infusion() -> None:
    rows = [
        ("P", "2024-05-01T10:00", None, "infusion", "axi-cel", ""),
        ("P", "2024-05-03T22:00", None, "temperature", "38.6", "Cel"),
        ("P", "2024-04-29T10:00:00", None, "temperature", "37.0", "Cel"),
        ("P", "2024-05-02T04:00", None, "sbp", "120", "mm[Hg]"),
        ("P", None, "3", "temperature", "37.2", "Cel"),
    ]  # a day and clock times may be mixed per row
    n = normalise(rows)
    assert n.ok, n.errors.to_dicts()
    t = dict(zip(n.events["line"].to_list(), n.events["t"].to_list(), strict=True))
    assert t == {2: 0.0, 3: 2.5, 4: -2.0, 5: 0.75, 6: 3.0}
    assert n.patients["infusion_time"].to_list() == [datetime(2024, 5, 1, 10, 0)]
    crs = grade_events(raw(rows), GradingConfig()).crs.timeline
    assert crs.filter(pl.col("t") == 2.5)["grade"].to_list() == [1]


@pytest.mark.parametrize(
    ("infusion", "later", "day"),
    [
        ("2024-05-01T10:00", "2024-05-03T22:00:00Z", 2.5),
        ("2024-05-01T10:00", "2024-05-03T22:00:00+02:00", 2.5 - 2 / 24),
        ("2024-05-01T10:00Z", "2024-05-03T22:00", 2.5),
    ],
    ids=["Z-after-naive", "offset-after-naive", "naive-after-Z"],
)
def test_iso_times_with_and_without_zone_in_one_file(infusion: str, later: str, day: float) -> None:
    n = normalise([("P", infusion, None, "infusion", "axi-cel", ""), ("P", later, None, "temperature", "38.6", "Cel")])
    assert n.ok, n.errors.to_dicts()
    assert n.events.filter(pl.col("item") == "temperature")["t"].to_list() == [pytest.approx(day)]


def test_time_in_the_future_is_refused_when_now_is_given() -> None:
    rows = [
        ("P", "2024-05-01T10:00", None, "infusion", "axi-cel", ""),
        ("P", "2024-05-03T22:00", None, "temperature", "38.6", "Cel"),
        ("P", "2024-06-01T08:00", None, "temperature", "39.0", "Cel"),
    ]
    n = normalise(rows, IngestLimits(not_after=datetime(2024, 5, 10, 12, 0)))
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (4, "time", "2024-06-01T08:00")
    assert e["message"] == "time is in the future"
    assert event_lines(n) == [2, 3]
    assert normalise(rows).ok  # the core has no clock: without `not_after` nothing is in the future


def test_row_before_the_earliest_day_is_refused() -> None:
    n = normalise(day_rows(("-31", "temperature", "38.5", "Cel"), ("-5", "temperature", "38.5", "Cel")))
    e = only_error(n)
    assert (e["line"], e["field"]) == (3, "time")
    assert "before the earliest plausible day" in e["message"]
    assert event_lines(n) == [2, 4]


# ------------------------------------------------------------------------------ values and units kept
def test_original_value_and_unit_are_kept_and_100_4_degF_is_exactly_38_Cel() -> None:
    n = normalise(
        day_rows(
            ("1", "temperature", "100.4", "[degF]"), ("1.5", "temperature", "100.4", "°F"), ("2", "crp", "5", "mg/dL")
        )
    )
    assert n.ok
    rows = n.events.filter(pl.col("line") > 2).select("item", "num", "orig_value", "orig_unit").rows()
    assert rows == [
        ("temperature", 38.0, "100.4", "[degF]"),
        ("temperature", 38.0, "100.4", "°F"),
        ("crp", 50.0, "5", "mg/dL"),
    ]
    # 38.0 is the fever threshold (>= 38.0): the converted value must meet it exactly
    crs = grade_events(raw(day_rows(("1", "temperature", "100.4", "[degF]"))), GradingConfig()).crs.timeline
    assert crs.select("t", "grade", "domain").rows() == [(1.0, 1, "fever")]


def test_decimal_comma_is_read() -> None:
    n = normalise(day_rows(("1", "temperature", "38,5", "Cel")))
    assert n.ok
    assert n.events.filter(pl.col("item") == "temperature")["num"].to_list() == [38.5]


def test_per_kg_drug_without_weight_is_kept_with_a_warning_and_still_waives_fever() -> None:
    rows = day_rows(
        ("1", "temperature", "38.9", "Cel"),
        ("1", "sbp", "120", "mm[Hg]"),
        ("1.25", "tocilizumab", "8", "mg/kg"),
        ("1.75", "temperature", "36.8", "Cel"),
        ("1.75", "oxygen", "nasal_cannula", ""),
        ("1.75", "oxygen_flow", "2", "L/min"),
        ("1.75", "sbp", "118", "mm[Hg]"),
    )
    n = normalise(rows)
    assert n.ok  # a warning does not refuse the row
    w = only_error(n, "warning")
    assert (w["line"], w["field"], w["value"]) == (5, "unit", "mg/kg")
    assert "kept" in w["message"] and "weight" in w["message"]
    assert "weight" in w["fix"]
    toci = n.events.filter(pl.col("item") == "tocilizumab").row(0, named=True)
    assert (toci["num"], toci["orig_value"], toci["orig_unit"]) == (None, "8", "mg/kg")
    # fever 38.9 at day 1 counts 24 h: at day 2.5 the patient is afebrile, on O2 — graded through the waiver
    rows.append(("P", None, "2.5", "temperature", "36.9", "Cel"))
    crs = grade_events(raw(rows), GradingConfig()).crs.timeline
    assert crs.filter(pl.col("t") == 2.5).select("grade", "domain", "waived").rows() == [(2, "hypoxia", True)]


def test_per_kg_drug_with_weight_is_converted_to_mg() -> None:
    n = normalise(day_rows(("0", "weight", "70", "kg"), ("1", "tocilizumab", "8", "mg/kg")))
    assert n.errors.height == 0
    assert n.events.filter(pl.col("item") == "tocilizumab")["num"].to_list() == [560.0]


# ------------------------------------------------------------------------------------ CAR-T dose
def test_car_t_dose_per_kg_and_total_are_kept_in_their_own_units() -> None:
    """Per kg (10*6/kg, 10*5/kg) and total (10*6, 10*8) doses are two items; neither needs the weight."""
    n = normalise(
        day_rows(
            ("0", "cell_dose", "2", "10*6/kg"),  # alias of car_t_dose_per_kg
            ("0", "car_t_dose_per_kg", "5", "10*5/kg"),
            ("0", "car_t_dose_total", "3.5", "10*8"),
            ("0", "cart_dose_total", "100", "10*6"),
        )
    )
    assert n.errors.height == 0  # no weight row, and no warning: a per-kg cell dose is the quantity itself
    doses = n.events.filter(pl.col("item").cast(pl.Utf8).str.starts_with("car_t_dose")).sort("line")
    assert doses.select(pl.col("item").cast(pl.Utf8), "num", "orig_value", "orig_unit").rows() == [
        ("car_t_dose_per_kg", 2.0, "2", "10*6/kg"),
        ("car_t_dose_per_kg", 0.5, "5", "10*5/kg"),
        ("car_t_dose_total", 350.0, "3.5", "10*8"),
        ("car_t_dose_total", 100.0, "100", "10*6"),
    ]


def test_car_t_dose_with_weight_is_not_multiplied() -> None:
    n = normalise(day_rows(("0", "weight", "70", "kg"), ("0", "car_t_dose", "2", "10*6/kg")))
    assert n.errors.height == 0
    assert n.events.filter(pl.col("item") == "car_t_dose_per_kg")["num"].to_list() == [2.0]


@pytest.mark.parametrize(
    ("item", "value", "unit", "message"),
    [
        ("car_t_dose_per_kg", "200", "10*6/kg", "200 10*6/kg is implausible for 'car_t_dose_per_kg'"),
        ("car_t_dose_per_kg", "0", "10*6/kg", "0 10*6/kg is implausible for 'car_t_dose_per_kg'"),
        ("car_t_dose_total", "2", "10*11", "2 10*11 is implausible for 'car_t_dose_total' (= 200000.0 10*6"),
        ("car_t_dose_total", "0.01", "10*6", "0.01 10*6 is implausible for 'car_t_dose_total'"),
    ],
)
def test_implausible_car_t_dose_is_refused(item: str, value: str, unit: str, message: str) -> None:
    e = only_error(normalise(day_rows(("0", item, value, unit))))
    assert (e["line"], e["field"], e["value"]) == (3, "value", value)
    assert message in e["message"]


def test_total_car_t_dose_in_a_per_kg_item_names_the_unit() -> None:
    """A flat dose under the per-kg item (or the reverse) is refused with the accepted unit, never guessed."""
    e = only_error(normalise(day_rows(("0", "cell_dose", "2", "10*8"))))
    assert (e["field"], e["value"]) == ("unit", "10*8")
    assert e["message"] == "unit '10*8' does not convert to 10*6/kg (item 'car_t_dose_per_kg')"
    e = only_error(normalise(day_rows(("0", "car_t_dose_total", "2", "10*6/kg"))))
    assert e["message"] == "unit '10*6/kg' does not convert to 10*6 (item 'car_t_dose_total')"


def test_per_kg_vasopressor_without_weight_is_refused() -> None:
    n = normalise(day_rows(("1", "norepinephrine", "0.1", "ug/kg/min"), ("1", "temperature", "38.5", "Cel")))
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (3, "unit", "ug/kg/min")
    assert e["message"] == "'norepinephrine' in ug/kg/min needs the patient's weight"
    assert "weight" in e["fix"]
    assert event_lines(n) == [2, 4]


def test_per_kg_vasopressor_with_weight_is_multiplied_by_the_first_weight() -> None:
    n = normalise(
        day_rows(("0", "weight", "80", "kg"), ("1", "norepinephrine", "0.1", "ug/kg/min"), ("2", "weight", "75", "kg"))
    )
    assert n.ok
    assert n.events.filter(pl.col("item") == "norepinephrine")["num"].to_list() == [8.0]


def test_fio2_fraction_and_percent_agree() -> None:
    n = normalise(day_rows(("1", "fio2", "0.4", ""), ("1.5", "fio2", "0.4", "1"), ("2", "fio2", "40", "%")))
    assert n.ok
    assert n.events.filter(pl.col("item") == "fio2")["num"].to_list() == [40.0, 40.0, 40.0]


# ------------------------------------------------------------------------------------ nothing lost
def test_every_row_is_either_kept_or_reported_exactly_once() -> None:
    rows = day_rows(
        ("1", "temperature", "38.5", "Cel"),  # 3 ok
        ("1", "temprature", "38.5", "Cel"),  # 4 unknown item
        ("1", "temperature", "38.5", "furlong"),  # 5 unknown unit
        ("1", "temperature", "38.5", "kg"),  # 6 incompatible unit
        ("1", "temperature", "400", "Cel"),  # 7 implausible
        ("1", "oxygen_flow", "-1", "L/min"),  # 8 negative
        ("1", "ice_score", "7.5", ""),  # 9 not an integer
        ("1", "oxygen", "helmet", ""),  # 10 not allowed
        ("x", "sbp", "80", "mm[Hg]"),  # 11 bad day
        (None, "sbp", "80", "mm[Hg]"),  # 12 no time
        ("1", "norepinephrine", "0.1", "ug/kg/min"),  # 13 needs weight
        ("1.5", "sbp", "85", "mm[Hg]"),  # 14 ok
        ("2", "ice_score", "6", ""),  # 15 ok
        ("2", "oxygen", "nasal_cannula", ""),  # 16 ok
        ("2", "temperature", "", "Cel"),  # 17 empty value
        ("2", "global_aphasia", "maybe", ""),  # 18 not a boolean
    )
    rows.append(("P", None, "0", "infusion", "again", ""))  # 19 second infusion
    n = normalise(rows)
    kept = event_lines(n)
    refused = sorted(n.problems["line"].to_list())
    assert kept == [2, 3, 14, 15, 16]
    assert refused == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18, 19]
    assert sorted(kept + refused) == list(range(2, 20))
    for e in n.problems.to_dicts():
        assert e["file"] == "events.csv" and e["patient_id"] == "P"
        assert e["field"] in ("item", "unit", "value", "day", "time")
        assert e["message"] and e["fix"], e
    # and the kept rows are graded
    result = grade_events(raw(rows), GradingConfig())
    assert result.crs.timeline.filter(pl.col("t") == 1.5)["grade"].to_list() == [2]
    assert result.icans.timeline.filter(pl.col("t") == 2)["grade"].to_list() == [2]


# ----------------------------------------------------------------------------------------- files
EVENTS = [
    {"patient_id": "P", "day": 0.0, "item": "infusion", "value": "axi-cel", "unit": ""},
    {"patient_id": "P", "day": 0.0, "item": "weight", "value": "70", "unit": "kg"},
    {"patient_id": "P", "day": 1.5, "item": "temperature", "value": "38.5", "unit": "Cel"},
    {"patient_id": "P", "day": 1.5, "item": "oxygen", "value": "nasal_cannula", "unit": ""},
    {"patient_id": "P", "day": 1.5, "item": "oxygen_flow", "value": "4", "unit": "L/min"},
    {"patient_id": "P", "day": 2.25, "item": "norepinephrine", "value": "0.05", "unit": "ug/kg/min"},
    {"patient_id": "P", "day": 2.25, "item": "ice_score", "value": "7", "unit": ""},
    {"patient_id": "P", "day": 2.75, "item": "tocilizumab", "value": "560", "unit": "mg"},
    {"patient_id": "Q", "day": 0.0, "item": "infusion", "value": "tisa-cel", "unit": ""},
    {"patient_id": "Q", "day": 3.0, "item": "temperature", "value": "101.3", "unit": "[degF]"},
]
SAME = ["patient_id", "t", "item", "num", "cat", "orig_value", "orig_unit"]


def _write_all(tmp_path: Path) -> dict[str, Path]:
    frame = pl.DataFrame(EVENTS)
    paths = {"csv": tmp_path / "events.csv", "parquet": tmp_path / "events.parquet", "jsonl": tmp_path / "events.jsonl"}
    frame.with_columns(pl.col("day").map_elements(lambda d: f"{d:g}", return_dtype=pl.Utf8)).write_csv(paths["csv"])
    frame.write_parquet(paths["parquet"])  # day stays a float column
    with paths["jsonl"].open("w", encoding="utf-8") as fh:
        for event in EVENTS:
            row = dict(event)
            if row["item"] in ("temperature", "oxygen_flow", "ice_score", "tocilizumab"):
                row["value"] = json.loads(row["value"])  # JSON numbers, as an exporter would write them
            if not row["unit"]:
                del row["unit"]
            fh.write(json.dumps(row) + "\n")
    return paths


def test_csv_parquet_and_jsonl_give_the_same_events(tmp_path: Path) -> None:
    paths = _write_all(tmp_path)
    results = {}
    for fmt, path in paths.items():
        frame = read_event_files([path])
        assert frame["file"].unique().to_list() == [str(path)]
        n = normalise_events(frame, VOCAB)
        assert n.ok and n.errors.height == 0, (fmt, n.errors.to_dicts())
        results[fmt] = n.events.select(SAME).sort("patient_id", "t", "item").to_dicts()
    assert results["parquet"] == results["csv"]
    assert results["jsonl"] == results["csv"]
    nums = {(r["patient_id"], r["item"]): r["num"] for r in results["csv"]}
    assert nums[("P", "norepinephrine")] == 3.5
    assert nums[("Q", "temperature")] == 38.5
    assert len(results["csv"]) == len(EVENTS)


def test_file_line_numbers_name_the_row_in_the_file(tmp_path: Path) -> None:
    paths = _write_all(tmp_path)
    csv = read_event_file(paths["csv"])
    jsonl = read_event_file(paths["jsonl"])
    parquet = read_event_file(paths["parquet"])
    assert csv["line"].to_list()[:3] == [2, 3, 4]  # line 1 is the header
    assert jsonl["line"].to_list()[:3] == [1, 2, 3]
    assert parquet["line"].to_list()[:3] == [1, 2, 3]
    text = paths["csv"].read_text().splitlines()
    row = csv.filter(pl.col("item") == "norepinephrine").row(0, named=True)
    assert "norepinephrine" in text[row["line"] - 1]


def test_error_names_the_file_and_line_of_a_bad_csv_row(tmp_path: Path) -> None:
    path = tmp_path / "ward.csv"
    path.write_text(
        "patient_id,day,item,value,unit\nP,0,infusion,axi-cel,\nP,1,temperature,38.5,Cel\nP,1,tempp,38.5,Cel\n",
        encoding="utf-8",
    )
    n = normalise_events(read_event_files([path]), VOCAB)
    e = only_error(n)
    assert (e["file"], e["line"], e["field"], e["value"]) == (str(path), 4, "item", "tempp")


def test_csv_missing_a_required_column_raises_input_file_error(tmp_path: Path) -> None:
    path = tmp_path / "no_item.csv"
    path.write_text("patient_id,day,value,unit\nP,0,axi-cel,\n", encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        read_event_files([path])
    assert str(path) in str(info.value)
    assert "missing column(s) item" in str(info.value)


def test_csv_without_time_or_day_column_raises_input_file_error(tmp_path: Path) -> None:
    path = tmp_path / "no_time.csv"
    path.write_text("patient_id,item,value,unit\nP,infusion,axi-cel,\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="'time'.*'day'"):
        read_event_files([path])


def test_unknown_file_format_and_missing_file_raise_input_file_error(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    path.write_bytes(b"not really")
    with pytest.raises(InputFileError, match="unknown format"):
        read_event_files([path])
    with pytest.raises(InputFileError, match="no such file"):
        read_event_files([tmp_path / "absent.csv"])


# ------------------------------------------------------------------- labs, limits and kinetics
def with_limits(rows: list[tuple], limits: dict[int, dict[str, str]]) -> pl.DataFrame:
    """``raw(rows)`` plus lln/uln/lloq columns; ``limits`` maps a row index to its limit values."""
    frame = raw(rows)
    columns = {c: [limits.get(i, {}).get(c) for i in range(len(rows))] for c in ("lln", "uln", "lloq")}
    return frame.with_columns(pl.Series(c, v, dtype=pl.Utf8) for c, v in columns.items())


def test_counts_in_per_microlitre_and_hb_in_mmol_per_litre_are_converted_with_their_limits() -> None:
    rows = day_rows(("1", "wbc", "4000", "/uL"), ("1", "hgb", "6.2", "mmol/L"), ("1", "plt", "25", "10^9/L"))
    n = normalise_events(with_limits(rows, {1: {"lln": "4000"}, 2: {"lln": "7.5", "uln": "10"}}), VOCAB)
    assert n.ok
    got = {r["item"]: r for r in n.events.to_dicts()}
    assert got["wbc"]["num"] == 4.0 and got["wbc"]["lln"] == 4.0
    # 1 mmol/L Hb (monomer) = 1.61145 g/dL (M = 16 114.5 g/mol)
    assert got["hgb"]["num"] == pytest.approx(9.99099) and got["hgb"]["lln"] == pytest.approx(12.085875)
    assert got["hgb"]["uln"] == pytest.approx(16.1145)
    assert got["plt"]["num"] == 25.0 and got["plt"]["lln"] is None


def test_differential_percent_uses_the_wbc_at_the_same_time_or_is_refused() -> None:
    n = normalise(day_rows(("1", "wbc", "2.0", "10*9/L"), ("1", "anc", "40", "%"), ("2", "anc", "40", "%")))
    assert n.events.filter(pl.col("item") == "anc")["num"].to_list() == [0.8]
    error = only_error(n)
    assert (error["line"], error["field"]) == (5, "unit")
    assert "wbc" in error["message"] and "absolute" in error["fix"]


def test_below_quantification_values_keep_their_limit() -> None:
    rows = day_rows(
        ("3", "car_t_copies", "<5", "copies/ug gDNA"),
        ("4", "car_t_copies", "BLQ", "{copies}/ug"),
        ("5", "car_t_copies", "BLQ", "{copies}/ug"),
    )
    n = normalise_events(with_limits(rows, {3: {"lloq": "10"}}), VOCAB)
    kept = n.events.filter(pl.col("item") == "car_t_copies").select("line", "num", "lloq", "blq").to_dicts()
    assert kept == [
        {"line": 3, "num": None, "lloq": 5.0, "blq": True},
        {"line": 5, "num": None, "lloq": 10.0, "blq": True},
    ]
    error = only_error(n)
    assert (error["line"], error["field"]) == (4, "lloq") and "lloq column" in error["fix"]


def test_below_quantification_is_not_accepted_for_items_without_limits() -> None:
    error = only_error(normalise(day_rows(("1", "temperature", "<37", "Cel"))))
    assert (error["field"], error["line"]) == ("value", 3)


def test_limits_on_items_that_take_none_warn_and_bad_limits_are_refused() -> None:
    rows = day_rows(("1", "temperature", "38.2", "Cel"), ("1", "alc", "0.2", "10*9/L"))
    n = normalise_events(with_limits(rows, {1: {"lln": "36"}, 2: {"lln": "abc"}}), VOCAB)
    warning, error = only_error(n, "warning"), only_error(n)
    assert (warning["line"], warning["field"]) == (3, "lln")
    assert (error["line"], error["field"], error["value"]) == (4, "lln", "abc")
    assert n.events.filter(pl.col("item") == "temperature")["lln"].to_list() == [None]


def test_response_categories_are_case_insensitive() -> None:
    n = normalise(day_rows(("28", "response", "mrd-negative CR", ""), ("28", "response", "cr", "")))
    assert n.ok and n.events.filter(pl.col("item") == "response")["cat"].to_list() == ["MRD_negative_CR", "CR"]


def test_routes_are_normalised_and_unknown_routes_refused() -> None:
    rows = day_rows(
        ("7", "dexamethasone", "2", "mg"),
        ("7", "dexamethasone", "10", "mg"),
        ("7", "prednisone", "5", "mg"),
        ("7", "temperature", "38", "Cel"),
    )
    frame = raw(rows).with_columns(pl.Series("route", [None, "Intrathecal", "IV", "nasal", "iv"], dtype=pl.Utf8))
    n = normalise_events(frame, VOCAB)
    kept = n.events.filter(pl.col("item") != "infusion").select("line", "route").to_dicts()
    assert kept == [{"line": 3, "route": "intrathecal"}, {"line": 4, "route": "iv"}, {"line": 6, "route": None}]
    error, warning = only_error(n), only_error(n, "warning")
    assert (error["line"], error["field"], error["value"]) == (5, "route", "nasal")
    assert (warning["line"], warning["field"]) == (6, "route")


def test_a_differential_above_100_percent_is_refused() -> None:
    error = only_error(normalise(day_rows(("1", "wbc", "2.0", "10*9/L"), ("1", "anc", "140", "%"))))
    assert (error["line"], error["field"], error["value"]) == (4, "value", "140")
    assert "between 0 and 100" in error["fix"]


# ------------------------------------------------------------------ edge cases of the array passes
def test_an_empty_batch_gives_empty_tables_of_the_documented_types() -> None:
    n = normalise([])
    assert n.events.height == 0 and n.errors.height == 0 and n.patients.height == 0
    assert n.events.schema["item"] == pl.Enum(list(VOCAB.items))
    assert n.patients.schema["infusion_time"] == pl.Datetime("us")
    assert n.patients.columns == ["patient_id", "infusion_time", "product", "age_years", "weight", "sex", "disease"]


def test_a_batch_of_one_row_and_a_patient_with_only_an_infusion() -> None:
    n = normalise([("P", None, "0", "infusion", "axi-cel", "")])
    assert n.ok and n.events.select("item", "t", "cat").rows() == [("infusion", 0.0, "axi-cel")]
    assert n.patients.select("patient_id", "product").rows() == [("P", "axi-cel")]


def test_labels_with_surrounding_blanks_are_stripped_and_nan_is_not_a_number() -> None:
    rows = [
        (" P", None, "0", "infusion", "axi-cel", ""),
        ("P ", None, "1", "temperature", "38.5", " Cel"),
        ("P", None, "1", "temperature", "nan", "Cel"),
        ("P", None, "1", "oxygen", "room\u3000air", ""),  # an ideographic space separates words too
    ]
    n = normalise(rows)
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (4, "value", "nan")
    assert n.events["patient_id"].cast(pl.Utf8).unique().to_list() == ["P"]
    assert n.events.select("line", "num", "cat").rows() == [
        (2, None, "axi-cel"),
        (3, 38.5, None),
        (5, None, "room_air"),
    ]


def test_rows_out_of_order_are_sorted_by_patient_time_file_and_line() -> None:
    rows = [
        ("Q", None, "0", "infusion", "tisa-cel", ""),
        ("P", None, "2", "temperature", "38.5", "Cel"),
        ("P", None, "0", "infusion", "axi-cel", ""),
        ("Q", None, "1", "temperature", "37.5", "Cel"),
        ("P", None, "1", "temperature", "39.5", "Cel"),
    ]
    n = normalise(rows)
    assert n.ok
    assert n.events.select(pl.col("patient_id").cast(pl.Utf8), "t").rows() == sorted(
        n.events.select(pl.col("patient_id").cast(pl.Utf8), "t").rows()
    )
    products = dict(n.patients.select(pl.col("patient_id").cast(pl.Utf8), "product").rows())
    assert products == {"P": "axi-cel", "Q": "tisa-cel"}


def test_a_blq_limit_written_after_lt_replaces_the_lloq_column_and_is_converted() -> None:
    rows = day_rows(("3", "car_t_copies", "<5", "copies/ug gDNA"), ("4", "car_t_copies", "20", "copies/ug gDNA"))
    n = normalise_events(with_limits(rows, {1: {"lloq": "10"}, 2: {"lloq": "abc"}}), VOCAB)
    e = only_error(n)
    assert (e["line"], e["field"], e["value"]) == (4, "lloq", "abc")
    kept = n.events.filter(pl.col("item") == "car_t_copies").select("line", "lloq", "blq").rows()
    assert kept == [(3, 5.0, True)]


def test_inputs_of_different_layouts_one_after_another_read_alike() -> None:
    """The typing expressions are built once per input layout: a layout seen before (or a new one in between)
    must not change how the next input is read."""
    rows = day_rows(("1", "temperature", "38.5", "Cel"), ("2", "sex", "female", ""))
    text_days = raw(rows)
    number_days = text_days.with_columns(pl.col("day").cast(pl.Float64))
    with_route = text_days.with_columns(pl.lit(None, pl.Utf8).alias("route"))
    first = normalise_events(text_days, VOCAB)
    for frame in (number_days, with_route, text_days, number_days):
        again = normalise_events(frame, VOCAB)
        assert again.events.equals(first.events)
        assert again.errors.height == 0 and again.patients.equals(first.patients)


def test_distinct_item_value_pairs_are_numbered_by_first_appearance_with_null_a_value_of_its_own() -> None:
    import numpy as np

    from tocsin.core.events import _distinct_pairs

    values = pl.Series(["b", "a", None, "b", "a", "c", None])
    pair, first = _distinct_pairs(np.array([1, 1, 1, 1, 2, 2, 1]), values)
    assert pair.tolist() == [0, 1, 2, 0, 3, 4, 2] and first.tolist() == [0, 1, 2, 4, 5]
    assert [x.tolist() for x in _distinct_pairs(np.zeros(0, np.int64), pl.Series([], dtype=pl.Utf8))] == [[], []]


# ------------------------------------------------------------------------------ internal read paths
def test_item_value_pairs_are_numbered_alike_in_python_and_by_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A course's few non-number rows are paired in Python, a batch's by codes: the same numbering either way."""
    from tocsin.core import events

    rng = np.random.default_rng(7)
    codes = rng.integers(0, 5, 300)
    values = pl.Series([None if v == 3 else ["yes", "no", " yes", "Yes"][v] for v in rng.integers(0, 4, 300).tolist()])
    in_python = events._distinct_pairs(codes, values)
    monkeypatch.setattr(events, "_FEW_PAIRED_ROWS", -1)
    by_codes = events._distinct_pairs(codes, values)
    for a, b in zip(in_python, by_codes, strict=True):
        np.testing.assert_array_equal(a, b)
    assert in_python[1][0] == 0 and np.all(np.diff(in_python[1]) > 0)  # first rows, in order of appearance


def test_ranks_by_counting_and_by_sorting_agree() -> None:
    """Category codes are process-wide, so they may be far larger than a frame's rows: then ranked by sorting."""
    from tocsin.core import events

    codes = np.array([5, 3, 5, 9, 3, 0], dtype=np.uint32)
    counted = events._ranks(codes)
    sorted_ = events._ranks(codes + np.uint32(10_000_000))  # beyond the counting table's bound
    np.testing.assert_array_equal(counted[0] + 10_000_000, sorted_[0])
    for a, b in zip(counted[1:], sorted_[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert counted[1].tolist() == [2, 1, 2, 3, 1, 0] and counted[2].tolist() == [5, 1, 0, 3]


# ------------------------------------------------------------------------------- compiled passes
def _many_patients(count: int, blank_ids: bool) -> pl.DataFrame:
    """The rows of every kind of problem and reading, for ``count`` patients (over the height from which ingest
    codes the texts by its compiled passes): some patients weighed, some with a count given as % of another."""
    rows: list[tuple] = []
    for k in range(count):
        patient = f" P{k} " if blank_ids and k % 7 == 0 else f"P{k}"
        block = [
            ("0", "infusion", "axi-cel", ""),
            ("1", "temperature", "38.5", "Cel"),
            ("1", "temprature", "38.5", "Cel"),  # unknown item
            ("1", "temperature", "38.5", "furlong" if k % 3 == 0 else "[degF]"),  # unknown unit / converted
            ("1", "temperature", "400", "Cel"),  # implausible
            ("1", "temperature", "38,5", "Cel"),  # decimal comma
            ("1", "temperature", " 38.7 ", "Cel"),  # blanks around a number
            ("1", "temperature", "abc", "Cel"),  # not a number
            ("1", "ice_score", "7.5" if k % 2 else "7", ""),  # not a whole number / whole
            ("1", "ice_score", "12.5", ""),  # outside the range and not whole: the range is reported
            ("1", "oxygen", "helmet" if k % 5 == 0 else "nasal_cannula", ""),
            ("1", "norepinephrine", "0.1", "ug/kg/min"),  # per kg: needs the weight
            ("1.5", "car_t_copies", "<5" if k % 2 else "BLQ", "{copies}/ug"),  # below quantification
            ("2", "wbc", "4.2", "10*9/L"),
            ("2", "anc", "50", "%"),  # % of the WBC at the same time
            ("3", "anc", "40", "%"),  # no WBC at the same time
            ("2", "temperature", "", "Cel"),  # empty value
            ("x", "sbp", "80", "mm[Hg]"),  # bad day
        ]
        if k % 2 == 0:
            block.append(("0", "weight", "70", "kg"))
        rows += [(patient, None, *r) for r in block]
    return raw(rows)


@pytest.mark.parametrize("blank_ids", [False, True], ids=["ids", "ids-with-blanks"])
def test_a_large_input_read_by_the_compiled_passes_gives_what_the_plain_reading_gives(
    blank_ids: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tocsin.core import events

    frame = _many_patients(3_700, blank_ids)
    assert frame.height > events._CODED_HEIGHT
    coded = normalise_events(frame, VOCAB, IngestLimits())
    monkeypatch.setattr(events, "_CODED_HEIGHT", frame.height + 1)
    plain = normalise_events(frame, VOCAB, IngestLimits())
    assert coded.events.height > 0 and coded.errors.height > 0
    for name in ("events", "errors", "patients"):
        got, expected = getattr(coded, name), getattr(plain, name)
        assert got.schema == expected.schema, name
        assert got.equals(expected), name
    assert set(coded.errors.get_column("field")) >= {"item", "unit", "value", "day"}


def test_the_patient_table_takes_each_item_from_the_patients_first_row_of_it() -> None:
    rows = [
        ("Q", None, "0", "infusion", "tisa-cel", ""),
        ("Q", None, "5", "weight", "80", "kg"),
        ("P", None, "0", "infusion", "axi-cel", ""),
        ("P", None, "2", "weight", "71", "kg"),
        ("P", None, "1", "weight", "70", "kg"),  # earlier in time, later in the file: the first row of P's course
        ("P", None, "1", "sex", "female", ""),
        ("P", None, "3", "sex", "male", ""),
        ("P", None, "1", "age", "64", "a"),
        ("R", None, "0", "infusion", "cilta-cel", ""),
        ("Q", None, "1", "weight", "79", "kg"),
    ]
    n = normalise(rows)
    assert n.errors.height == 0
    table = {row["patient_id"]: row for row in n.patients.with_columns(pl.col("patient_id").cast(pl.Utf8)).to_dicts()}
    assert table["P"]["weight"] == 70.0 and table["P"]["sex"] == "female" and table["P"]["age_years"] == 64.0
    assert table["Q"]["weight"] == 79.0 and table["Q"]["sex"] is None and table["Q"]["product"] == "tisa-cel"
    assert table["R"]["weight"] is None and table["R"]["product"] == "cilta-cel" and table["R"]["age_years"] is None
