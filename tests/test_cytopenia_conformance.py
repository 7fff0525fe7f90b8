"""Conformance suite for CTCAE cytopenia grading: ``tests/conformance/cytopenia_ctcae.yaml`` through production.

Every case is one patient: its ``events`` (``[day, item, value, unit]`` or ``[day, item, value, unit, lln]``)
become raw event rows after a day-0 infusion row (and a ``sex`` row when the case names one), are normalised by
``tocsin.core.events.normalise_events`` and graded by ``tocsin.core.cytopenia_ctcae.grade_cytopenias`` under
``CytopeniaConfig`` plus the case's ``config`` overrides. Each ``expect`` row names a day (``at``) and a
``lineage``; exactly one graded row must match, and every other key is compared with that row's column.

Nothing here grades (DESIGN: "copies of the code inside test files prove nothing"). A case whose expected
value the production code does not meet stays with ``xfail: "reason"`` (strict).
"""

from __future__ import annotations

import doctest
from pathlib import Path

import polars as pl
import pytest
import yaml

from tocsin.config import CytopeniaConfig, GradingConfig
from tocsin.core.cytopenia_ctcae import GRADED_SCHEMA, LINEAGES, SCALE_FILES, grade_cytopenias, worst_cytopenia_grades
from tocsin.core.events import normalise_events
from tocsin.criteria import load_scale
from tocsin.vocabulary import load_vocabulary

from hematology_cases import raw_frame, same

CASES_FILE = Path(__file__).parent / "conformance" / "cytopenia_ctcae.yaml"
DOC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
CASES: list[dict] = DOC["cases"]
CASE_KEYS = {"id", "source", "description", "config", "sex", "events", "expect", "xfail"}
EXPECT_KEYS = {"at", "lineage"} | (set(GRADED_SCHEMA) - {"patient_id", "t", "lineage"})
TOLERANCE = 1e-6
VOCABULARY = load_vocabulary()


def _raw_frame(case: dict) -> pl.DataFrame:
    sex = [[0, "sex", case["sex"], ""]] if case.get("sex") else []
    return raw_frame({case["id"]: sex + list(case["events"])}, file=CASES_FILE.name)


def _graded(case: dict) -> pl.DataFrame:
    config = CytopeniaConfig.model_validate(case.get("config") or {})
    normalised = normalise_events(_raw_frame(case), VOCABULARY)
    refused = normalised.errors.filter(pl.col("severity") == "error")
    assert refused.height == 0, f"{case['id']}: input rows refused: {refused.to_dicts()}"
    return grade_cytopenias(normalised.events, config, normalised.patients)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c["id"], marks=[pytest.mark.xfail(reason=c["xfail"], strict=True)] if "xfail" in c else [])
        for c in CASES
    ],
)
def test_case(case: dict) -> None:
    graded = _graded(case)
    problems = []
    for expect in case["expect"]:
        unknown = set(expect) - EXPECT_KEYS
        assert not unknown, f"{case['id']}: unknown expect keys {sorted(unknown)}"
        rows = graded.filter(
            ((pl.col("t") - float(expect["at"])).abs() < TOLERANCE) & (pl.col("lineage") == expect["lineage"])
        ).to_dicts()
        label = f"{case['id']} day {expect['at']} {expect['lineage']}"
        if len(rows) != 1:
            problems.append(f"{label}: expected one graded row, found {len(rows)}")
            continue
        for key, value in expect.items():
            if key not in ("at", "lineage") and not same(rows[0][key], value):
                problems.append(f"{label}: {key} = {rows[0][key]!r}, expected {value!r}\n    row: {rows[0]}")
    assert not problems, "\n".join(problems)


def test_every_case_is_well_formed_and_cites_a_source() -> None:
    assert DOC["runner"] == "tests/test_cytopenia_conformance.py"
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in CASES:
        assert set(case) <= CASE_KEYS, f"{case.get('id')}: unknown keys {sorted(set(case) - CASE_KEYS)}"
        assert str(case.get("source") or "").strip(), f"{case['id']}: no source"
        assert str(case.get("description") or "").strip(), f"{case['id']}: no description"
        assert case.get("events") and case.get("expect"), f"{case['id']}: no events or nothing expected"
        assert all(e["lineage"] in LINEAGES for e in case["expect"]), f"{case['id']}: unknown lineage"


def test_every_expected_rule_is_in_the_criteria_data() -> None:
    known = {r.id for name in SCALE_FILES.values() for r in load_scale(name).rules}
    expected = {e["rule"] for c in CASES for e in c["expect"] if "rule" in e}
    assert expected <= known, f"rule ids not in the criteria files: {sorted(expected - known)}"


def test_every_numeric_rule_of_both_versions_is_exercised() -> None:
    """Every rule that a number (or a transfusion, or the v6.0 lymphocyte decision) can produce is the
    expected rule of some case; only anemia grade 4 is never assigned from data."""
    expected = {e["rule"] for c in CASES for e in c["expect"] if "rule" in e}
    assignable = {r.id for name in SCALE_FILES.values() for r in load_scale(name).rules} - {
        "CYTO-CTCAE5-HGB-G4",
        "CYTO-CTCAE6-HGB-G4",
    }
    assert assignable <= expected, f"rules no case expects: {sorted(assignable - expected)}"


def test_the_grading_config_carries_the_cytopenia_section() -> None:
    assert GradingConfig().cytopenia == CytopeniaConfig()
    assert GradingConfig.model_validate({"cytopenia": {"scale": "ctcae6"}}).cytopenia.scale == "ctcae6"


def test_the_module_example_runs() -> None:
    from tocsin.core import cytopenia_ctcae

    failures, tried = doctest.testmod(cytopenia_ctcae)
    assert tried > 0 and failures == 0


def test_the_summary_gives_the_worst_grade_and_when_it_was_first_reached() -> None:
    case = {
        "id": "SUMMARY",
        "events": [
            [1, "anc", 0.8, "10*9/L"],
            [2, "anc", 0.3, "10*9/L"],
            [3, "anc", 0.4, "10*9/L"],
            [1, "hgb", 11.0, "g/dL"],
            [2, "hgb", 9.0, "g/dL"],
        ],
    }
    summary = worst_cytopenia_grades(_graded(case)).sort("lineage")
    assert summary.select("lineage", "worst_grade", "worst_t", "values", "unresolved").rows() == [
        ("anc", 4, 2.0, 3, 0),
        ("hgb", 2, 2.0, 2, 1),
    ]
