"""Corticosteroid exposure: conformance cases as data and properties, run through the production code.

Each case of ``tests/conformance/steroid_exposure.yaml`` becomes raw event rows (with a ``route`` column),
normalised by ``tocsin.core.events.normalise_events`` and measured by
``tocsin.core.steroid_exposure.steroid_exposure``; nothing here converts a dose.
"""

from __future__ import annotations

import doctest
import math
from pathlib import Path
from typing import Any, get_args

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import tocsin.core.steroid_exposure
from tocsin.config import GradingConfig, SteroidConfig, SteroidRoute
from tocsin.core.dosing import SUPPORTS_JUDGEMENT
from tocsin.core.events import ROUTES, normalise_events
from tocsin.core.steroid_exposure import DAILY_COLUMNS, SUMMARY_COLUMNS, steroid_exposure
from tocsin.drugs import load_steroid_equivalence
from tocsin.vocabulary import load_vocabulary

DOC = yaml.safe_load((Path(__file__).parent / "conformance" / "steroid_exposure.yaml").read_text(encoding="utf-8"))
VOCAB = load_vocabulary()
TOLERANCE = 1e-6


def _raw(patients: dict[str, tuple[float | None, list[list]]]) -> pl.DataFrame:
    """Raw rows for {patient: (weight, [[day, item, value, unit, route?], ...])}, infusion at day 0."""
    rows = []
    for patient, (weight, events) in patients.items():
        rows.append((patient, "0", "infusion", "axi-cel", "", None))
        if weight is not None:
            rows.append((patient, "0", "weight", str(weight), "kg", None))
        rows += [(patient, repr(float(e[0])), e[1], str(e[2]), e[3], e[4] if len(e) > 4 else None) for e in events]
    return pl.DataFrame(
        rows, orient="row", schema={c: pl.Utf8 for c in ("patient_id", "day", "item", "value", "unit", "route")}
    ).with_columns(pl.lit("steroid_exposure.yaml").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))


def _same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return math.isclose(float(actual), float(expected), abs_tol=TOLERANCE)


def _compare(got: dict, want: dict, label: str) -> list[str]:
    return [f"{label}: {k} = {got.get(k)!r}, expected {v!r}" for k, v in want.items() if not _same(got.get(k), v)]


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["id"] for c in DOC["cases"]])
def test_conformance_case(case: dict) -> None:
    assert str(case.get("source") or "").strip() and str(case.get("description") or "").strip()
    normalised = normalise_events(_raw({case["id"]: (case.get("weight"), case["events"])}), VOCAB)
    assert normalised.ok, normalised.problems.to_dicts()
    splits = None
    if case.get("t_split") is not None:
        splits = pl.DataFrame({"patient_id": [case["id"]], "t_split": [float(case["t_split"])]})
    out = steroid_exposure(normalised.events, SteroidConfig(**case.get("config", {})), splits)
    assert out.note == SUPPORTS_JUDGEMENT
    summary = out.summary.filter(pl.col("patient_id") == case["id"]).to_dicts()
    assert len(summary) == 1
    problems = _compare(summary[0], case["expect"], case["id"])
    if "expect_daily" in case:
        daily = out.daily.to_dicts()
        assert len(daily) == len(case["expect_daily"]), f"{case['id']}: daily rows {daily}"
        for got, want in zip(daily, case["expect_daily"], strict=True):
            problems += _compare(got, want, f"{case['id']} day {want['day']}")
    assert not problems, "\n".join(problems) + f"\n    summary: {summary[0]}"


def test_output_columns_and_method() -> None:
    out = steroid_exposure(pl.DataFrame({"patient_id": ["A"], "t": [1.0], "item": ["dexamethasone"], "num": [10.0]}))
    assert out.daily.columns == list(DAILY_COLUMNS) and out.summary.columns == list(SUMMARY_COLUMNS)
    assert out.method["dexamethasone_equivalent_mg"] == 0.75 and out.method["null_route"] == "systemic"
    assert out.method["mp_equivalent_mg_per_mg"]["prednisone"] == pytest.approx(0.8)


def test_every_patient_gets_a_summary_row() -> None:
    events = pl.DataFrame(
        {"patient_id": ["A", "B"], "t": [1.0, 1.0], "item": ["dexamethasone", "temperature"], "num": [10.0, 38.5]}
    )
    summary = steroid_exposure(events).summary
    assert summary.select("patient_id", "doses", "dex_eq_mg").rows() == [("A", 1, 10.0), ("B", 0, 0.0)]


def test_config_and_table_agree_and_routes_are_the_ingest_routes() -> None:
    table = load_steroid_equivalence()
    assert SteroidConfig().dexamethasone_equivalent_mg == table.equivalent_mg["dexamethasone"]
    assert set(get_args(SteroidRoute)) == set(ROUTES)
    assert GradingConfig().steroids == SteroidConfig()
    assert set(VOCAB.names_where(steroid=True)) <= set(table.equivalent_mg)


def test_docstring_examples() -> None:
    assert doctest.testmod(tocsin.core.steroid_exposure).failed == 0


# ------------------------------------------------------------------------------------ properties
STEROIDS = sorted(VOCAB.names_where(steroid=True))
doses = st.lists(
    st.tuples(
        st.integers(min_value=-2 * 24, max_value=30 * 24).map(lambda h: h / 24),
        st.sampled_from(STEROIDS),
        st.integers(min_value=1, max_value=600).map(lambda n: n / 4),  # 0.25..150 mg: plausible for every steroid
        st.sampled_from(["mg", "mg/kg", "g", "ug"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(given_doses=doses, weight=st.integers(min_value=20, max_value=150))
def test_the_unit_of_the_input_never_changes_the_exposure(given_doses: list, weight: int) -> None:
    """The same doses entered in mg and in another unit (mg/kg, g, ug) give the same exposure."""
    per_unit = {"mg": 1.0, "mg/kg": 1.0 / weight, "g": 1e-3, "ug": 1e3}
    in_mg = [[day, item, mg, "mg", "iv"] for day, item, mg, _ in given_doses]
    in_units = [[day, item, repr(mg * per_unit[unit]), unit, "iv"] for day, item, mg, unit in given_doses]
    normalised = normalise_events(_raw({"MG": (weight, in_mg), "UNITS": (weight, in_units)}), VOCAB)
    assert normalised.ok, normalised.problems.to_dicts()
    summary = steroid_exposure(normalised.events).summary.sort(pl.col("patient_id").cast(pl.Utf8))
    mg_row, unit_row = summary.to_dicts()
    for column in ("mp_eq_mg", "dex_eq_mg", "doses", "days_on_steroids"):
        assert math.isclose(mg_row[column], unit_row[column], rel_tol=1e-6, abs_tol=1e-4), column


@settings(max_examples=40, deadline=None)
@given(given_doses=doses, split=st.integers(min_value=-48, max_value=720).map(lambda h: h / 24))
def test_before_and_after_add_up_to_the_total(given_doses: list, split: float) -> None:
    rows = [[day, item, mg, "mg"] for day, item, mg, _ in given_doses]
    normalised = normalise_events(_raw({"P": (70, rows)}), VOCAB)
    splits = pl.DataFrame({"patient_id": ["P"], "t_split": [split]})
    row = steroid_exposure(normalised.events, splits=splits).summary.row(0, named=True)
    for kind in ("mp", "dex"):
        parts = row[f"{kind}_eq_before_mg"] + row[f"{kind}_eq_after_mg"]
        assert math.isclose(parts, row[f"{kind}_eq_mg"], rel_tol=1e-9, abs_tol=1e-9)
