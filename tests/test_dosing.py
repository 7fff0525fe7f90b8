"""Dose arithmetic and repeat limits: conformance cases as data, properties, and the drug-table validation.

The conformance cases (``tests/conformance/dosing.yaml``) are run through the production code:
``tocsin.core.dosing.dose_for`` for dose cases; for limit cases the doses become raw event rows, are
normalised by ``tocsin.core.events.normalise_events`` (so mg/kg entries are converted by the real ingest)
and ``administration_limits_batch`` answers. Nothing here computes a dose or a limit.
"""

from __future__ import annotations

import dataclasses
import doctest
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import tocsin.core.dosing
import tocsin.drugs
from tocsin.core.dosing import (
    LIMITS_COLUMNS,
    SUPPORTS_JUDGEMENT,
    administration_limits,
    administration_limits_batch,
    dose_for,
    doses_for,
)
from tocsin.core.events import normalise_events
from tocsin.drugs import DrugDataError, load_drugs, parse_drugs
from tocsin.vocabulary import load_vocabulary

CONFORMANCE = Path(__file__).parent / "conformance" / "dosing.yaml"
DOC = yaml.safe_load(CONFORMANCE.read_text(encoding="utf-8"))
INFUSION = datetime.fromisoformat(DOC["infusion_time"])
VOCAB = load_vocabulary()
DRUGS = load_drugs()
TOLERANCE = 1e-6
SUBSTRING_KEYS = {"basis_contains": "dose_basis", "reason_contains": "reason", "cautions_contain": "cautions"}


def _days(value: Any) -> float:
    """A clock time (ISO) as days since the case's infusion, or a day number as given."""
    if isinstance(value, str):
        return (datetime.fromisoformat(value) - INFUSION).total_seconds() / 86_400
    return float(value)


def _raw(case_id: str, spec: dict) -> pl.DataFrame:
    rows = [(DOC["infusion_time"], "infusion", "axi-cel", "")]
    if spec.get("weight") is not None:
        rows.append((DOC["infusion_time"], "weight", str(spec["weight"]), "kg"))
    rows += [(time, spec["drug"], str(value), unit) for time, value, unit in spec["doses"]]
    return pl.DataFrame(
        {
            "patient_id": [case_id] * len(rows),
            "time": [r[0] for r in rows],
            "day": [None] * len(rows),
            "item": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "unit": [r[3] for r in rows],
            "file": ["dosing.yaml"] * len(rows),
            "line": list(range(1, len(rows) + 1)),
        },
        schema_overrides={"day": pl.Utf8},
    )


def _matches(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(actual), float(expected), abs_tol=TOLERANCE)
    if isinstance(expected, list):
        return list(actual) == expected
    return actual == expected


def _check(case: dict, result: dict) -> None:
    problems = []
    for key, expected in case["expect"].items():
        if key in SUBSTRING_KEYS:
            text = result[SUBSTRING_KEYS[key]]
            text = " | ".join(text) if isinstance(text, list) else (text or "")
            if expected not in text:
                problems.append(f"{SUBSTRING_KEYS[key]} {text!r} does not contain {expected!r}")
        elif key not in result:
            problems.append(f"unknown expect key {key!r}")
        elif not _matches(result[key], expected):
            problems.append(f"{key} = {result[key]!r}, expected {expected!r}")
    assert not problems, f"{case['id']}: " + "; ".join(problems) + f"\n    result: {result}"


def _run_limits(case: dict) -> dict:
    spec = case["limits"]
    normalised = normalise_events(_raw(case["id"], spec), VOCAB)
    assert normalised.ok, normalised.problems.to_dicts()
    rules = DRUGS.drug(spec["drug"]).rules()
    if spec.get("rules"):
        rules = dataclasses.replace(rules, **spec["rules"])
    query = pl.DataFrame(
        {"patient_id": [case["id"]], "at": [_days(spec["at"])], "count_from": [spec.get("count_from")]},
        schema_overrides={"count_from": pl.Float64},
    )
    return administration_limits_batch(normalised.events, query, spec["drug"], rules).row(0, named=True)


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["id"] for c in DOC["cases"]])
def test_conformance_case(case: dict) -> None:
    assert str(case.get("source") or "").strip() and str(case.get("description") or "").strip()
    assert ("dose" in case) != ("limits" in case), f"{case['id']}: give exactly one of dose and limits"
    if "dose" in case:
        spec = case["dose"]
        result = dose_for(spec["drug"], spec["weight_kg"], spec["age_years"], regimen=spec.get("regimen")).as_dict()
    else:
        result = _run_limits(case)
    assert result["note"] == SUPPORTS_JUDGEMENT
    _check(case, result)


def test_case_ids_unique_and_every_boundary_covered() -> None:
    ids = [c["id"] for c in DOC["cases"]]
    assert len(ids) == len(set(ids))
    required = {
        "DOSE-TOCI-29KG",
        "DOSE-TOCI-29.9KG",
        "DOSE-TOCI-30KG",
        "DOSE-TOCI-100KG",
        "DOSE-TOCI-NO-WEIGHT",
        "DOSE-TOCI-ZERO-WEIGHT",
        "DOSE-TOCI-AGE-1.9",
        "LIM-TOCI-7H59",
        "LIM-TOCI-8H",
        "LIM-TOCI-24H-THREE",
        "LIM-TOCI-FOURTH-ALLOWED",
        "LIM-TOCI-FIFTH-REFUSED",
    }
    assert required <= set(ids), sorted(required - set(ids))


def test_docstring_examples() -> None:
    for module in (tocsin.core.dosing, tocsin.drugs):
        assert doctest.testmod(module).failed == 0


# ------------------------------------------------------------------------------------ other entry points
def test_scalar_limits_equal_the_batch_row() -> None:
    events = pl.DataFrame(
        {"patient_id": ["A", "A", "B"], "t": [1.0, 1.2, 1.0], "item": ["tocilizumab"] * 3, "num": [640.0] * 3}
    )
    with pytest.raises(ValueError, match="name the patient_id"):
        administration_limits(events, 1.3, "tocilizumab")
    scalar = administration_limits(events, 1.3, "tocilizumab", patient_id="A")
    batch = administration_limits_batch(events, pl.DataFrame({"patient_id": ["A"], "at": [1.3]}), "tocilizumab")
    assert batch.columns == list(LIMITS_COLUMNS)
    row = batch.row(0, named=True)
    assert {k: v for k, v in scalar.as_dict().items() if k != "rules"} == {
        k: row[k] for k in scalar.as_dict() if k != "rules"
    }
    assert scalar.rules == DRUGS.drug("tocilizumab").rules() and scalar.note == SUPPORTS_JUDGEMENT


def test_limits_refuse_a_drug_that_is_not_an_event_item() -> None:
    events = pl.DataFrame({"patient_id": ["A"], "t": [1.0], "item": ["tocilizumab"], "num": [640.0]})
    query = pl.DataFrame({"patient_id": ["A"], "at": [1.0]})
    enum_events = events.cast({"item": pl.Enum(VOCAB.names_where(kind="drug"))})
    with pytest.raises(ValueError, match="not an item of the events' vocabulary"):
        administration_limits_batch(enum_events, query, "ruxolitinib", DRUGS.drug("tocilizumab").rules())


def test_doses_for_a_patient_table() -> None:
    patients = pl.DataFrame(
        {"patient_id": ["A", "B", "C", "D"], "weight": [120.0, 29.0, None, 120.0], "age_years": [50.0, 9.0, 40.0, 50.0]}
    )
    out = doses_for(patients, "tocilizumab")
    assert out["patient_id"].to_list() == ["A", "B", "C", "D"]
    assert out["dose_mg"].to_list() == [800.0, 348.0, None, 800.0]
    assert out["status"].to_list() == ["ok", "ok", "needs_data", "ok"]
    assert out["note"].unique().to_list() == [SUPPORTS_JUDGEMENT]


# ------------------------------------------------------------------------------------ drug table validation
def _table_text(**changes: Any) -> str:
    data = yaml.safe_load((Path(tocsin.drugs.__file__).parent / "data" / "drugs.yaml").read_text(encoding="utf-8"))
    for key, value in changes.items():
        target, *path = key.split(".")
        node = data["drugs"][int(target)]
        for part in path[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[path[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"0.max_dose_mg.value": -800},
            "drugs.yaml: drug 'tocilizumab' field 'max_dose_mg.value': Input should be greater than 0",
        ),
        ({"0.route": "nasal"}, "drug 'tocilizumab' field 'route': Value error, route 'nasal' is not one of"),
        ({"0.limits.max_doses_total.value": 4.5}, "drug 'tocilizumab' field 'limits.max_doses_total.value'"),
        ({"0.regimens.0.bands.1.weight_below_kg": 31}, "overlap"),
        ({"0.regimens.0.bands.0.fixed_mg": 100}, "exactly one of per_kg_mg and fixed_mg"),
        ({"0.max_dose_mg.tag": "V3"}, "field 'max_dose_mg.tag'"),
        ({"1.id": "siltuximabb"}, "drug 'siltuximabb' field 'id': not a drug item of the vocabulary"),
    ],
)
def test_invalid_drug_table_names_file_drug_and_field(changes: dict, message: str) -> None:
    with pytest.raises(DrugDataError) as error:
        parse_drugs(_table_text(**changes))
    assert message in str(error.value)


def test_drug_table_is_consistent_with_the_vocabulary() -> None:
    drug_items = set(VOCAB.names_where(kind="drug"))
    for drug in DRUGS.drugs:
        assert (drug.id in drug_items) != (drug.id in DRUGS.awaiting_vocabulary), drug.id
        assert drug.citations(), drug.id
    # The tocilizumab rules of criteria.md §5.1, as the table states them.
    toci = DRUGS.drug("tocilizumab")
    assert (toci.cap_mg, toci.min_age_years.value, toci.infusion_minutes.value) == (800, 2, 60)
    assert toci.rules() == tocsin.drugs.AdministrationRules("tocilizumab", 8.0, 3, 4, "episode")


# ------------------------------------------------------------------------------------ properties
REGIMENS = [(d.id, r.id) for d in DRUGS.drugs for r in d.regimens]
weights = st.one_of(st.none(), st.just(math.nan), st.floats(min_value=-5, max_value=400))
ages = st.one_of(st.none(), st.floats(min_value=0, max_value=100))


@settings(max_examples=400, deadline=None)
@given(regimen=st.sampled_from(REGIMENS), weight=weights, age=ages)
def test_no_dose_ever_exceeds_the_cap_or_the_label_maximum(regimen: tuple[str, str], weight, age) -> None:
    drug_id, regimen_id = regimen
    calc = dose_for(drug_id, weight, age, regimen=regimen_id)
    drug = DRUGS.drug(drug_id)
    assert calc.note == SUPPORTS_JUDGEMENT
    if calc.status != "ok":
        assert calc.dose_mg is None and calc.reason
        return
    assert calc.dose_mg > 0
    for ceiling in (drug.max_dose_mg, drug.label_max_dose_mg):
        if ceiling is not None:
            assert calc.dose_mg <= ceiling.value
    assert calc.cap_mg is None or calc.dose_mg <= calc.cap_mg
    assert calc.dose_mg <= round(calc.uncapped_mg, 1)
    if calc.per_kg_mg is not None:
        assert weight is not None and weight > 0  # never a per-kg mg dose without a weight


def _limits(doses: list[float], at: list[float], count_from: float | None = None) -> pl.DataFrame:
    events = pl.DataFrame(
        {
            "patient_id": ["P"] * len(doses),
            "t": doses,
            "item": ["tocilizumab"] * len(doses),
            "num": [640.0] * len(doses),
        },
        schema_overrides={"t": pl.Float64, "patient_id": pl.Utf8, "item": pl.Utf8},
    )
    query = pl.DataFrame({"patient_id": ["P"] * len(at), "at": at, "count_from": [count_from] * len(at)})
    return administration_limits_batch(events, query.cast({"count_from": pl.Float64}), "tocilizumab")


def _next(row: dict) -> float:
    return math.inf if row["next_allowed_at"] is None else row["next_allowed_at"]


# Times on a one-minute grid over 4 days: the 8 h and 24 h boundaries are hit exactly.
minutes = st.integers(min_value=0, max_value=4 * 24 * 60).map(lambda m: 1.0 + m / 1440)


@settings(max_examples=300, deadline=None)
@given(doses=st.lists(minutes, max_size=6), queries=st.lists(minutes, min_size=2, max_size=6))
def test_asking_later_never_gives_an_earlier_next_allowed_time(doses: list[float], queries: list[float]) -> None:
    queries = sorted(queries)
    rows = _limits(doses, queries).to_dicts()
    for earlier, later in zip(rows, rows[1:]):
        assert _next(later) >= _next(earlier), (doses, earlier, later)
        # A dose an earlier answer forbade stays forbidden until its window has passed.
        if not earlier["allowed_now"] and later["at"] < _next(earlier):
            assert not later["allowed_now"], (doses, earlier, later)
    for row in rows:
        assert row["allowed_now"] == (row["next_allowed_at"] is not None and row["next_allowed_at"] <= row["at"] + 1e-9)
        assert (row["reason"] is None) == row["allowed_now"]


@settings(max_examples=300, deadline=None)
@given(doses=st.lists(minutes, max_size=6), extra=minutes, at=minutes)
def test_next_allowed_time_is_monotone_in_the_doses_given(doses: list[float], extra: float, at: float) -> None:
    before = _limits(doses, [at]).row(0, named=True)
    after = _limits([*doses, extra], [at]).row(0, named=True)
    assert _next(after) >= _next(before)
    assert after["doses_left"] <= before["doses_left"]


@settings(max_examples=100, deadline=None)
@given(doses=st.lists(minutes, min_size=1, max_size=6), at=minutes, seed=st.integers(0, 1000))
def test_row_order_does_not_change_the_limits(doses: list[float], at: float, seed: int) -> None:
    events = pl.DataFrame(
        {"patient_id": ["P"] * len(doses), "t": doses, "item": ["tocilizumab"] * len(doses), "num": [1.0] * len(doses)}
    )
    query = pl.DataFrame({"patient_id": ["P"], "at": [at]})
    straight = administration_limits_batch(events, query, "tocilizumab")
    shuffled = administration_limits_batch(events.sample(fraction=1.0, shuffle=True, seed=seed), query, "tocilizumab")
    assert straight.equals(shuffled)


def test_a_drug_without_repeat_rules_is_always_allowed_and_gives_no_reason() -> None:
    """Siltuximab has no repeat interval or dose cap in the sources read (docs/dosing.md)."""
    events = pl.DataFrame(
        {"patient_id": ["A", "A"], "t": [1.0, 1.2], "item": ["siltuximab", "siltuximab"], "num": [700.0, 700.0]}
    )
    limits = administration_limits_batch(events, pl.DataFrame({"patient_id": ["A"], "at": [1.3]}), "siltuximab")
    assert limits.select("doses_given", "allowed_now", "reason").row(0) == (2, True, None)
