"""CAR-T cellular kinetics: conformance cases as data, run through the production code, plus properties.

Every case in ``tests/conformance/kinetics.yaml`` becomes raw event rows (an infusion row at day 0 per
patient, with the case's product), goes through ``tocsin.core.events.normalise_events`` and then
``tocsin.core.kinetics`` (``kinetics_nca``, ``expansion_phase``, ``cohort_time_to_peak``); the test only
builds input and compares output. Expected values are hand-computed in each case's description.

Properties (hypothesis): scaling every level (and limit) by k scales Cmax, Clast and the AUCs by k and
leaves Tmax, Tlast and the half-life unchanged; row order never changes anything; one assay's samples
never change another assay's parameters.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tocsin.config import GradingConfig, KineticsConfig
from tocsin.core.events import normalise_events
from tocsin.core.kinetics import PHASES, cohort_time_to_peak, expansion_phase, kinetics_nca
from tocsin.criteria import load_scale
from tocsin.vocabulary import load_vocabulary

CASES_FILE = Path(__file__).parent / "conformance" / "kinetics.yaml"
DOC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
CASES: list[dict] = DOC["cases"]
VOCAB = load_vocabulary()
REL, ABS = 1e-8, 1e-9
CASE_KEYS = {
    "id",
    "source",
    "description",
    "rules",
    "config",
    "product",
    "events",
    "patients",
    "expect",
    "expect_rows",
    "expect_phase",
    "expect_cohort",
}
RAW_COLUMNS = ["patient_id", "day", "item", "value", "unit", "lloq"]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def raw_frame(patients: list[dict], file: str = "kinetics.csv") -> pl.DataFrame:
    """Raw rows as the readers give them (all text, file and line): an infusion row per patient, then its
    events ``[day, item, value, unit]`` or ``[day, item, value, unit, lloq]``."""
    rows: list[tuple] = []
    for patient in patients:
        rows.append((patient["id"], "0", "infusion", patient.get("product", "axi-cel"), "", None))
        for event in patient["events"]:
            day, item, value, unit, *rest = event
            rows.append((patient["id"], repr(float(day)), item, _text(value), unit, _text(rest[0]) if rest else None))
    return pl.DataFrame(rows, orient="row", schema={c: pl.Utf8 for c in RAW_COLUMNS}).with_columns(
        pl.lit(file).alias("file"), pl.int_range(2, len(rows) + 2, dtype=pl.Int64).alias("line")
    )


def _patients(case: dict) -> list[dict]:
    if "patients" in case:
        return case["patients"]
    return [{"id": case["id"], "product": case.get("product", "axi-cel"), "events": case["events"]}]


def _same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(actual), float(expected), rel_tol=REL, abs_tol=ABS)
    return actual == expected


def _compare(actual: dict, expected: dict, skip: set[str], label: str) -> list[str]:
    problems = []
    for key, value in expected.items():
        if key in skip:
            continue
        if key not in actual:
            problems.append(f"{label}: no output column {key!r} (columns: {sorted(actual)})")
        elif not _same(actual[key], value):
            problems.append(f"{label}: {key} = {actual[key]!r}, expected {value!r}")
    return problems


def _run(case: dict) -> list[str]:
    normalised = normalise_events(raw_frame(_patients(case)), VOCAB)
    assert normalised.errors.height == 0, f"{case['id']}: input rows refused: {normalised.errors.to_dicts()}"
    config = KineticsConfig.model_validate(case.get("config") or {})
    events, patients = normalised.events, normalised.patients
    nca = kinetics_nca(events, patients, config)
    problems: list[str] = []
    if "expect_rows" in case and nca.height != case["expect_rows"]:
        problems.append(f"{case['id']}: {nca.height} rows, expected {case['expect_rows']}")
    for want in case.get("expect") or []:
        patient = want.get("patient", case["id"])
        rows = nca.filter((pl.col("patient_id") == patient) & (pl.col("item") == want["item"])).to_dicts()
        if len(rows) != 1:
            problems.append(f"{case['id']}: {len(rows)} rows for {patient}/{want['item']}, expected 1")
            continue
        problems += _compare(rows[0], want, {"patient", "item"}, f"{case['id']} {patient}/{want['item']}")
    reference = pl.concat([cohort_time_to_peak(nca), cohort_time_to_peak(nca, by_product=False)])
    for want in case.get("expect_cohort") or []:
        product = pl.col("product").is_null() if want["product"] is None else pl.col("product") == want["product"]
        rows = reference.filter((pl.col("item") == want["item"]) & product).to_dicts()
        if len(rows) != 1:
            problems.append(f"{case['id']}: {len(rows)} cohort rows for {want['item']}/{want['product']}")
            continue
        problems += _compare(rows[0], want, {"item", "product"}, f"{case['id']} cohort {want['product']}")
    for want in case.get("expect_phase") or []:
        patient = want.get("patient", case["id"])
        queries = pl.DataFrame({"patient_id": [patient], "t": [float(want["t"])]})
        with_reference = {"patients": patients, "reference": reference} if want.get("reference") else {}
        got = expansion_phase(events, queries, config, known_at_t=want.get("known_at_t", False), **with_reference)
        assert got.height == 1
        label = f"{case['id']} phase {patient} at {want['t']}"
        problems += _compare(got.row(0, named=True), want, {"patient", "t", "known_at_t", "reference"}, label)
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict) -> None:
    problems = _run(case)
    assert not problems, "\n".join(problems)


def test_cases_are_well_formed_and_cover_every_rule() -> None:
    scale = load_scale("kinetics_nca")
    rule_ids = {r.id for r in scale.rules}
    assert DOC["scale"] == scale.scale
    counts = Counter(c["id"] for c in CASES)
    assert not [i for i, n in counts.items() if n > 1], f"duplicate case ids: {counts.most_common(3)}"
    covered: set[str] = set()
    for case in CASES:
        assert set(case) <= CASE_KEYS, f"{case['id']}: unknown keys {sorted(set(case) - CASE_KEYS)}"
        assert str(case.get("source") or "").strip(), f"{case['id']}: no source"
        assert str(case.get("description") or "").strip(), f"{case['id']}: no description"
        assert ("events" in case) != ("patients" in case), f"{case['id']}: give events or patients"
        assert case.get("expect") or case.get("expect_phase") or case.get("expect_cohort"), f"{case['id']}: nothing"
        assert set(case["rules"]) <= rule_ids, f"{case['id']}: unknown rules {set(case['rules']) - rule_ids}"
        covered |= set(case["rules"])
        for want in case.get("expect_phase") or []:
            assert want.get("phase") in (*PHASES, None), f"{case['id']}: unknown phase {want.get('phase')!r}"
    assert rule_ids <= covered, f"rules without a case: {sorted(rule_ids - covered)}"


def test_every_rule_names_its_source() -> None:
    scale = load_scale("kinetics_nca")
    sources = scale.table("sources")
    assert set(sources) == {r.id for r in scale.rules}
    assert all(str(text).strip() for text in sources.values())


def test_default_config_is_part_of_the_grading_config() -> None:
    assert GradingConfig().kinetics == KineticsConfig()
    assert GradingConfig().kinetics.blq_rule == "pre_peak_zero_post_peak_excluded"


def test_linear_auc_agrees_with_numpy_trapezoid() -> None:
    """Independent reference for rising (linear) segments: numpy's trapezoid on the same points."""
    days, levels = [10.0, 20.0, 28.0], [50.0, 100.0, 260.0]
    normalised = normalise_events(
        raw_frame([{"id": "P", "events": [[d, "car_t_copies", c, "{copies}/ug"] for d, c in zip(days, levels)]}]),
        VOCAB,
    )
    nca = kinetics_nca(normalised.events, normalised.patients, KineticsConfig())
    expected = float(np.trapezoid([0.0, *levels], [0.0, *days]))
    assert nca.item(0, "auc_0_28") == pytest.approx(expected, rel=1e-12)
    assert nca.item(0, "auc_0_tlast") == pytest.approx(expected, rel=1e-12)


def test_a_batch_gives_the_same_rows_as_each_patient_alone() -> None:
    """One engine for one patient and for many: a patient's row does not depend on the rest of the batch."""
    patients = [p for case in CASES for p in _patients(case) if "patients" not in case]
    normalised = normalise_events(raw_frame(patients), VOCAB)
    batch = kinetics_nca(normalised.events, normalised.patients, KineticsConfig())
    for patient in patients[:6]:
        alone = normalise_events(raw_frame([patient]), VOCAB)
        single = kinetics_nca(alone.events, alone.patients, KineticsConfig())
        assert_frame_equal(batch.filter(pl.col("patient_id") == patient["id"]), single, check_dtypes=False)


def test_phase_keeps_query_order_and_columns() -> None:
    case = next(c for c in CASES if c["id"] == "CK-003")
    normalised = normalise_events(raw_frame(_patients(case)), VOCAB)
    queries = pl.DataFrame(
        {"patient_id": ["CK-003"] * 3 + ["nobody"], "t": [20.0, 8.0, 14.0, 1.0], "note": list("abcd")}
    )
    got = expansion_phase(normalised.events, queries, KineticsConfig())
    assert got.get_column("note").to_list() == list("abcd")
    assert got.get_column("phase").to_list() == ["after_peak", "before_peak", "at_peak", None]


def test_reference_without_patients_is_refused() -> None:
    with pytest.raises(ValueError, match="patients"):
        expansion_phase(
            pl.DataFrame(), pl.DataFrame({"patient_id": ["P"], "t": [1.0]}), KineticsConfig(), reference=pl.DataFrame()
        )


# ----------------------------------------------------------------------------------------- properties
DAYS = st.lists(st.integers(min_value=1, max_value=400).map(lambda d: d / 2), min_size=1, max_size=12, unique=True)


@st.composite
def series(draw: st.DrawFn, item: str = "car_t_copies") -> list[list]:
    """Samples of one assay: distinct days, integer levels, some BLQ (limit 5)."""
    days = sorted(draw(DAYS))
    events = []
    for day in days:
        if draw(st.integers(0, 5)) == 0:
            events.append([day, item, "BLQ", "{copies}/ug" if item == "car_t_copies" else "/uL", 5])
        else:
            events.append([day, item, draw(st.integers(1, 10_000)), "{copies}/ug" if item == "car_t_copies" else "/uL"])
    return events


CONFIGS = st.builds(
    KineticsConfig,
    blq_rule=st.sampled_from(["pre_peak_zero_post_peak_excluded", "pre_peak_zero_post_peak_half_lloq", "all_zero"]),
)
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _nca(patients: list[dict], config: KineticsConfig) -> pl.DataFrame:
    normalised = normalise_events(raw_frame(patients), VOCAB)
    assert normalised.errors.height == 0, normalised.errors.to_dicts()
    return kinetics_nca(normalised.events, normalised.patients, config)


def _scaled(events: list[list], k: float) -> list[list]:
    out = []
    for day, item, value, unit, *lloq in events:
        level = value if value == "BLQ" else value * k
        out.append([day, item, level, unit, *(limit * k for limit in lloq)])
    return out


@PROPERTY_SETTINGS
@given(events=series(), k=st.sampled_from([0.5, 2.0, 10.0, 1000.0]), config=CONFIGS)
def test_scaling_levels_scales_exposure_and_keeps_times(events: list[list], k: float, config: KineticsConfig) -> None:
    base = _nca([{"id": "P", "events": events}], config).row(0, named=True)
    scaled = _nca([{"id": "P", "events": _scaled(events, k)}], config).row(0, named=True)
    for column in ("cmax", "clast", "auc_0_28", "auc_0_tlast", "day0_value"):
        if base[column] is None:
            assert scaled[column] is None, column
        else:
            assert scaled[column] == pytest.approx(base[column] * k, rel=1e-9, abs=1e-9), column
    for column in ("tmax_day", "tlast_day", "peak_confirmed", "half_life_points", "half_life_from_day"):
        assert scaled[column] == base[column], column
    for column in ("half_life_days", "half_life_r2_adj"):
        if base[column] is None:
            assert scaled[column] is None, column
        else:
            assert scaled[column] == pytest.approx(base[column], rel=1e-7), column


@PROPERTY_SETTINGS
@given(events=series(), other=series("car_t_cells"), order=st.randoms(use_true_random=False), config=CONFIGS)
def test_row_order_never_changes_anything(events: list[list], other: list[list], order, config: KineticsConfig) -> None:
    patients = [{"id": "P", "events": events}, {"id": "Q", "events": events + other}]
    raw = raw_frame(patients)
    normalised = normalise_events(raw, VOCAB)
    expected = kinetics_nca(normalised.events, normalised.patients, config)
    shuffled_raw = raw.sample(fraction=1.0, shuffle=True, seed=order.randint(0, 2**31))
    again = normalise_events(shuffled_raw, VOCAB)
    assert_frame_equal(kinetics_nca(again.events, again.patients, config), expected)
    # The kinetics code itself does not rely on the events being sorted.
    shuffled_events = normalised.events.sample(fraction=1.0, shuffle=True, seed=order.randint(0, 2**31))
    assert_frame_equal(kinetics_nca(shuffled_events, normalised.patients, config), expected)
    queries = pl.DataFrame({"patient_id": ["Q", "P", "Q"], "t": [3.0, 10.0, 40.0]})
    for known_at_t in (False, True):
        assert_frame_equal(
            expansion_phase(shuffled_events, queries, config, known_at_t=known_at_t),
            expansion_phase(normalised.events, queries, config, known_at_t=known_at_t),
        )


@PROPERTY_SETTINGS
@given(events=series(), other=series("car_t_cells"), config=CONFIGS)
def test_assays_are_never_mixed(events: list[list], other: list[list], config: KineticsConfig) -> None:
    alone = _nca([{"id": "P", "events": events}], config)
    together = _nca([{"id": "P", "events": events + other}], config)
    assert_frame_equal(together.filter(pl.col("item") == "car_t_copies"), alone)
