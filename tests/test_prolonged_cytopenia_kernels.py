"""The compiled pass of PHT (tocsin.core.kernels_pht) and the array edges of prolonged_cytopenia: an empty
batch, a patient without counts, one value, a null count, support before day 0, a negative-day support of
another patient, and the consecutive-value rules of the recovery definitions."""

from __future__ import annotations

import numpy as np
import polars as pl

from hematology_cases import normalised
from tocsin.config import IcahtConfig, ProlongedCytopeniaConfig
from tocsin.core.arrays import read_item_rows
from tocsin.core.icaht import grade_icaht, icaht_items
from tocsin.core.kernels_pht import summarise_series
from tocsin.core.prolonged_cytopenia import pht_items, prolonged_cytopenia, prolonged_cytopenia_lineages


def _summary(day: list[int], value: list[float], meets: list[list[bool]], consecutive: list[int], **kw: object):
    n = len(day)
    options = {"chosen": 0, "second_fall_min_grade": 3, "landmark_day": 28, "landmark_window_days": 3} | kw
    return summarise_series(
        np.array([0, n]),
        np.array(day),
        np.array(value, dtype=np.float64),
        np.array(kw.pop("grade", [4] * n), dtype=np.int8),
        np.array(meets, dtype=np.bool_).reshape(len(meets), n),
        np.array(consecutive).reshape(len(meets), 1),
        options["chosen"],
        options["second_fall_min_grade"],
        options["landmark_day"],
        options["landmark_window_days"],
    )


def test_empty_batch_of_series() -> None:
    out = summarise_series(
        np.array([0]), np.empty(0), np.empty(0), np.empty(0), np.zeros((3, 0)), np.zeros((3, 0)), 1, 3, 28, 3
    )
    assert out.recovery_day.shape == (3, 0) and out.landmark_row.size == 0


def test_one_value_is_its_nadir_and_never_a_recovery() -> None:
    out = _summary([28], [0.2], [[True]], [1])
    assert (out.nadir_row[0], out.landmark_row[0], out.recovery_day[0, 0], out.second_fall_day[0]) == (0, 0, -1, -1)


def test_recovery_needs_a_miss_before_and_the_whole_run() -> None:
    # Day 10 meets without a miss before it; from day 20 a run of 2 is needed and the last value stands alone.
    out = _summary([10, 15, 20, 21, 30], [1, 0.1, 1, 1, 1], [[True, False, True, True, True]], [2])
    assert out.recovery_day[0, 0] == 20
    assert out.recovery_after_landmark_day[0] == -1  # day 30 starts no run of 2: it is the last value
    out = _summary([10, 15, 20], [1, 0.1, 1], [[True, False, True]], [2])
    assert out.recovery_day[0, 0] == -1
    assert _summary([10, 15], [1, 0.1], [[True, False]], [0]).recovery_day[0, 0] == -1  # does not apply


def test_second_fall_counts_after_the_run_and_needs_the_grade() -> None:
    meets = [[False, True, True, False, False]]
    out = _summary([5, 10, 12, 14, 40], [0.1, 1, 1, 0.8, 0.2], meets, [2], grade=[4, 0, 0, 2, 4])
    assert (out.recovery_day[0, 0], out.second_fall_day[0]) == (10, 40)


def test_landmark_nearest_then_lower_then_earlier() -> None:
    assert _summary([26, 30], [2.0, 1.0], [[True, True]], [1]).landmark_row[0] == 1
    assert _summary([26, 30], [1.0, 1.0], [[True, True]], [1]).landmark_row[0] == 0
    assert _summary([27, 30], [2.0, 1.0], [[True, True]], [1]).landmark_row[0] == 0
    assert _summary([20, 40], [1.0, 1.0], [[True, True]], [1]).landmark_row[0] == -1


def test_empty_events_and_patient_without_counts() -> None:
    events = normalised({"A": [["3", "g_csf", "300", "ug"]], "B": [["28", "anc", "0.3", "10*9/L"]]}).events
    config = ProlongedCytopeniaConfig()
    assert prolonged_cytopenia(events.head(0), config).height == 0
    assert prolonged_cytopenia_lineages(events.head(0), config).height == 0
    out = prolonged_cytopenia(events, config)
    assert out.get_column("patient_id").cast(pl.Utf8).to_list() == ["A", "B"]
    a = out.row(0, named=True)
    assert a["pht"] is None and a["anc_recovered"] is None and a["g_csf_days"] == 1
    assert a["pht_unknown_lineages"] == "neutropenia, thrombocytopenia, anemia"
    b = out.row(1, named=True)
    assert (b["pht"], b["anc_landmark_grade"], b["g_csf_days"], b["pht_lineages"]) == (True, 4, 0, "neutropenia")


def test_support_before_day_0_counts_for_recovery_not_for_days() -> None:
    # G-CSF on day -1 bars the day-3 value (7 free days) of the same patient only.
    rows = [["-1", "g_csf", "300", "ug"], ["1", "anc", "0.2", "10*9/L"], ["3", "anc", "2.5", "10*9/L"]]
    events = normalised({"A": rows, "B": rows[1:]}).events
    out = prolonged_cytopenia(events, ProlongedCytopeniaConfig())
    assert out.get_column("anc_recovery_day_grade_le_2").to_list() == [None, 3]
    assert out.get_column("anc_recovery_day_threshold").to_list() == [None, None]  # needs 3 values
    assert out.get_column("g_csf_days").to_list() == [0, 0]


def test_one_read_for_icaht_and_pht_grades_as_their_own_reads() -> None:
    # grade_hematology reads the rows of both graders' items once: each grader must ignore the other's rows.
    rows = [["-2", "platelet_transfusion", "1", "{unit}"], ["1", "anc", "0.2", "10*9/L"], ["2", "g_csf", "300", "ug"],
            ["5", "plt", "15", "10*9/L"], ["6", "rbc_transfusion", "1", "{unit}"], ["9", "hgb", "7.5", "g/dL"],
            ["28", "anc", "0.4", "10*9/L"], ["33", "plt", "40", "10*9/L"], ["40", "last_contact", "alive", ""]]
    events = normalised({"A": rows, "B": rows[1:5], "C": [["3", "epo", "100", "[iU]"]]}).events
    icaht, pht = IcahtConfig(censor_at=["progression"]), ProlongedCytopeniaConfig()
    read = read_item_rows(events, list(dict.fromkeys([*pht_items(pht), *icaht_items(icaht)])))
    assert grade_icaht(events, icaht, read).equals(grade_icaht(events, icaht))
    assert prolonged_cytopenia(events, pht, read).equals(prolonged_cytopenia(events, pht))
