"""The compiled passes of PHT (tocsin.core.kernels_pht), against NumPy and Python references on random rows, and
the array edges of prolonged_cytopenia: an empty batch, a patient without counts, one value, a null count,
support before day 0, a negative-day support of another patient, and the consecutive-value rules of the recovery
definitions."""

from __future__ import annotations

import numpy as np
import polars as pl

from hematology_cases import normalised
from tocsin.config import IcahtConfig, ProlongedCytopeniaConfig
from tocsin.core.arrays import read_item_rows
from tocsin.core.icaht import grade_icaht, icaht_items
from tocsin.core.kernels_pht import LANDMARK_VALUE, NADIR, daily_series, patient_columns, summarise_series
from tocsin.core.prolonged_cytopenia import (
    LINEAGES,
    _lln,
    _slots,
    _tables,
    pht_items,
    prolonged_cytopenia,
    prolonged_cytopenia_lineages,
)


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


# ------------------------------------------------------------------------ daily_series and patient_columns
def _daily_reference(rows: tuple, n_patients: int, slots: tuple, configured_lln, bands: tuple, recovery: tuple,
                     landmark_day: int) -> tuple:  # fmt: skip
    """:func:`daily_series` as NumPy on whole columns (as prolonged_cytopenia computed it before)."""
    patient, t, num, lln, slot = rows
    lineage_of, support_of, ends = (table[slot] for table in slots)
    level, at_lln, free_days, needed = recovery
    end_t = np.full(n_patients, np.nan)
    for row in np.flatnonzero(ends)[::-1]:
        end_t[patient[row]] = t[row]
    observed = (t >= 0) & ~(t > end_t[patient])
    picked = [np.flatnonzero((lineage_of == ln) & observed & ~np.isnan(num)) for ln in range(configured_lln.size)]
    lineage = np.repeat(np.arange(configured_lln.size), [r.size for r in picked])
    at = np.concatenate(picked).astype(np.int64)
    day = np.floor(t[at]).astype(np.int64)
    new = np.ones(at.size, dtype=bool)
    new[1:] = (patient[at][1:] != patient[at][:-1]) | (day[1:] != day[:-1]) | (lineage[1:] != lineage[:-1])
    first = np.flatnonzero(new)
    value = np.minimum.reduceat(num[at], first) if first.size else np.empty(0)
    highest = np.fmax.reduceat(lln[at], first) if first.size else np.empty(0)
    lineage, who, day = lineage[first], patient[at][first], day[first]
    day_lln = np.where(np.isnan(highest), configured_lln[lineage], highest)
    new_series = np.ones(first.size, dtype=bool)
    new_series[1:] = (who[1:] != who[:-1]) | (lineage[1:] != lineage[:-1])
    series_first = np.flatnonzero(new_series)
    gaps = []
    for s in range(free_days.shape[1]):
        given = np.flatnonzero(support_of == s)
        given_day = np.floor(t[given]).astype(np.int64)
        found = np.searchsorted((patient[given] << 32) + given_day, (who << 32) + day, side="right") - 1
        same = (found >= 0) & (patient[given][found.clip(min=0)] == who) if given.size else np.zeros(day.size, bool)
        gaps.append(np.where(same, day - given_day[found.clip(min=0)] if given.size else 0, np.nan))
    gaps = np.array(gaps).reshape(free_days.shape[1], day.size)
    supported = [(gaps <= free_days[r][:, lineage]).any(axis=0) for r in range(free_days.shape[0])]
    grade = (value < day_lln).astype(np.int8)
    for b in reversed(range(bands[0].shape[1])):
        below = value < bands[1][lineage, b]
        grade[below] = bands[0][lineage, b][below]
    meets = np.array([(value >= (day_lln if at_lln[d] else level[d, lineage])) & ~supported[d]
                      for d in range(level.shape[0])]).reshape(level.shape[0], day.size)  # fmt: skip
    days, after = np.zeros((free_days.shape[1], n_patients), int), np.zeros((free_days.shape[1], n_patients), int)
    for s in range(free_days.shape[1]):
        for p in range(n_patients):
            given = np.unique(np.floor(t[(support_of == s) & observed & (patient == p)]))
            days[s, p], after[s, p] = given.size, (given > landmark_day).sum()
    return (np.append(series_first, first.size), who[series_first], lineage[series_first], day, value, grade,
            meets, supported[-1], needed[:, lineage[series_first]], days, after)  # fmt: skip


def _random_rows(rng: np.random.Generator, n_patients: int) -> tuple:
    """Rows of anc/plt/hgb counts, support items, ends of observation and other items, a patient's in time order."""
    per_patient = rng.integers(0, 90, n_patients)
    patient = np.repeat(np.arange(n_patients), per_patient)
    t = np.concatenate([[], *(np.sort(rng.uniform(-5, 45, n)) for n in per_patient)])
    # Mostly counts (slots 0-2), supports (3-6, 9), rarely an end of observation (7-8).
    odds = np.array([6, 6, 6, 2, 2, 2, 1, 0.05, 0.1, 1])
    slot = rng.choice(10, t.size, p=odds / odds.sum()).astype(np.int8)
    num = rng.choice([0.05, 0.3, 0.6, 1.2, 2.0, 9.0, 30.0, 60.0, 120.0, 200.0, np.nan], t.size)
    lln = rng.choice([np.nan, np.nan, 1.0, 12.0, 150.0], t.size)
    return patient, t, num, lln, slot


def _kernel_tables(config: ProlongedCytopeniaConfig) -> tuple:
    items = ("anc", "plt", "hgb", "g_csf", "platelet_transfusion", "rbc_transfusion", "epo", "death", "progression",
             "tpo_ra")  # fmt: skip
    tables = _tables(tuple(_lln(ln["item"], config) for ln in LINEAGES), config.support_free_days,
                     config.recovery_consecutive_values)  # fmt: skip
    return _slots(items, tuple(config.censor_at)), tables


def test_daily_series_is_the_reference_on_random_rows() -> None:
    rng = np.random.default_rng(3)
    for config in (ProlongedCytopeniaConfig(), ProlongedCytopeniaConfig(support_free_days=0, censor_at=[])):
        slots, tables = _kernel_tables(config)
        for n_patients in (0, 1, 3, 40):
            rows = _random_rows(rng, n_patients)
            found = daily_series(rows, n_patients, slots, tables.configured_lln, tables.bands, tables.recovery, 28)
            expected = _daily_reference(rows, n_patients, slots, tables.configured_lln, tables.bands,
                                        tables.recovery, 28)  # fmt: skip
            for name, a, b in zip(found._fields, found, expected, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)


def _patients_reference(n_patients: int, series, summary, chosen: int, min_grade: int) -> tuple:
    """:func:`patient_columns` with NaN for null, lineage by lineage (as prolonged_cytopenia computed it)."""
    n_definitions = summary.recovery_day.shape[0]
    ints = np.full((3, 7 + n_definitions + 4, n_patients), np.nan)
    for s, (p, ln) in enumerate(zip(series.series_patient, series.series_lineage, strict=True)):
        at, nadir = summary.landmark_row[s], summary.nadir_row[s]
        grade = series.grade[at] if at >= 0 else np.nan
        ints[ln, :, p] = [
            series.day[at] if at >= 0 else np.nan, series.value[at] if at >= 0 else np.nan, grade,
            series.landmark_supported[at] if at >= 0 else np.nan, np.nan if np.isnan(grade) else grade >= min_grade,
            series.value[nadir], series.day[nadir],
            *(d if d >= 0 else np.nan for d in summary.recovery_day[:, s]), summary.recovery_day[chosen, s] >= 0,
            summary.recovery_after_landmark_day[s] if summary.recovery_after_landmark_day[s] >= 0 else np.nan,
            summary.second_fall_day[s] if summary.second_fall_day[s] >= 0 else np.nan, summary.second_fall_day[s] >= 0,
        ]  # fmt: skip
    cytopenic, unknown, biphasic = ints[:, 4] == 1, np.isnan(ints[:, 2]), ints[:, -1] == 1
    count, n_unknown = cytopenic.sum(axis=0), unknown.sum(axis=0)
    known = (count > 0) | (n_unknown == 0)
    bits = np.array([1, 2, 4])[:, None]
    summary_rows = [np.where(known, count > 0, -1), np.where(count > 0, 0, np.where(n_unknown == 0, 1, 2)), count,
                    np.where(known, count, -1), (cytopenic * bits).sum(axis=0), (unknown * bits).sum(axis=0),
                    biphasic.any(axis=0), (biphasic * bits).sum(axis=0)]  # fmt: skip
    return ints, np.array(summary_rows).reshape(8, n_patients)


def test_patient_columns_are_the_reference_on_random_series() -> None:
    rng = np.random.default_rng(5)
    config = ProlongedCytopeniaConfig()
    slots, tables = _kernel_tables(config)
    for n_patients in (0, 1, 3, 40):
        series = daily_series(_random_rows(rng, n_patients), n_patients, slots, tables.configured_lln, tables.bands,
                              tables.recovery, 28)  # fmt: skip
        summary = summarise_series(series.offsets, series.day, series.value, series.grade, series.meets,
                                   series.consecutive, 1, 3, 28, 3)  # fmt: skip
        ints, floats, patients = patient_columns(n_patients, 3, series, summary, 1, 3)
        expected, expected_patients = _patients_reference(n_patients, series, summary, 1, 3)
        value_rows = [LANDMARK_VALUE, NADIR]  # the floats; the other rows are integers with -1 for null
        np.testing.assert_array_equal(floats[:, value_rows], expected[:, value_rows])
        integers = np.where(np.isnan(expected), -1, expected)
        np.testing.assert_array_equal(np.delete(ints, value_rows, axis=1), np.delete(integers, value_rows, axis=1))
        np.testing.assert_array_equal(patients, expected_patients)
