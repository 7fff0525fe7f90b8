"""ICAHT and T-ICAHT: conformance cases as data, run through the production code, plus properties.

Every case in ``tests/conformance/icaht.yaml`` becomes raw event rows (infusion at day 0), goes through
``tocsin.core.events.normalise_events`` and ``tocsin.core.icaht.grade_icaht`` under the default
``IcahtConfig`` with the case's overrides; the test only builds input and compares output.

Properties (hypothesis, DESIGN principle 8): a lower count never lowers a grade (nor its bounds); the unit
a count is written in never changes a result; counts after the end of observation change nothing;
grading a batch equals grading each patient alone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hematology_cases import case_events, check_row, normalised
from tocsin.config import GradingConfig, IcahtConfig
from tocsin.core.icaht import N_SCALE, T_SCALE, grade_icaht

CASES_FILE = Path(__file__).parent / "conformance" / "icaht.yaml"
DOC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
CASES: list[dict] = DOC["cases"]
CASE_KEYS = {"id", "source", "description", "config", "events", "series", "expect", "reason_contains"}
RULE_COLUMNS = {"early_rule": N_SCALE, "late_rule": N_SCALE, "t_early_rule": T_SCALE, "t_late_rule": T_SCALE}


def _grade(patients: dict[str, list[list]], config: IcahtConfig | None = None) -> pl.DataFrame:
    return grade_icaht(normalised(patients).events, config or IcahtConfig())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict) -> None:
    config = IcahtConfig.model_validate(case.get("config") or {})
    out = _grade({case["id"]: case_events(case)}, config)
    assert out.height == 1
    row = out.row(0, named=True)
    for column, scale in RULE_COLUMNS.items():
        assert row[column] is None or row[column] in {r.id for r in scale.rules}, f"{column} {row[column]!r}"
    problems = check_row(row, case)
    assert not problems, "\n".join(problems)


def test_cases_are_well_formed() -> None:
    assert DOC["runner"] == "tests/test_icaht_conformance.py"
    assert not [i for i, n in Counter(c["id"] for c in CASES).items() if n > 1]
    for case in CASES:
        assert set(case) <= CASE_KEYS, f"{case['id']}: unknown keys {set(case) - CASE_KEYS}"
        assert str(case.get("source") or "").strip() and str(case.get("description") or "").strip(), case["id"]
        assert case.get("expect"), case["id"]


def test_every_grading_rule_has_a_case() -> None:
    covered = {v for c in CASES for k, v in c["expect"].items() if k in RULE_COLUMNS}
    graded = {r.id for scale in (N_SCALE, T_SCALE) for r in scale.rules if r.grade is not None}
    assert graded <= covered, f"rules without a conformance case: {sorted(graded - covered)}"


def test_config_section_is_part_of_the_grading_config() -> None:
    config = GradingConfig.model_validate({"icaht": {"late_end_day": 180, "censor_at": ["next_therapy"]}})
    assert config.icaht.late_end_day == 180 and config.icaht.censor_at == ["next_therapy"]
    assert config.fingerprint() != GradingConfig().fingerprint()


# ------------------------------------------------------------------------------------------- properties
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAYS = 60
counts_uL = st.lists(st.one_of(st.none(), st.integers(0, 3000)), min_size=DAYS, max_size=DAYS)
platelets = st.lists(st.one_of(st.none(), st.integers(0, 200)), min_size=DAYS, max_size=DAYS)
scales = st.lists(st.sampled_from([1.0, 1.0, 0.5, 0.2, 0.0]), min_size=DAYS, max_size=DAYS)


def _course(anc: list, plt: list, anc_unit: str = "/uL", transfusions: tuple[int, ...] = ()) -> list[list]:
    factor = {"/uL": 1, "10*9/L": 1000, "10*3/uL": 1000}[anc_unit]
    rows: list[list] = [[d, "anc", v / factor, anc_unit] for d, v in enumerate(anc) if v is not None]
    rows += [[d, "plt", v, "10*9/L"] for d, v in enumerate(plt) if v is not None]
    rows += [[d, "platelet_transfusion", 1, "{unit}"] for d in transfusions]
    return rows


GRADES = [f"{p}{w}_grade{b}" for p in ("", "t_") for w in ("early", "late") for b in ("_min", "_max", "")]


@SETTINGS
@given(anc=counts_uL, plt=platelets, down=scales, transfusions=st.lists(st.integers(0, DAYS - 1), max_size=3))
def test_lower_counts_never_lower_a_grade(anc: list, plt: list, down: list, transfusions: list) -> None:
    lower_anc = [None if v is None else int(v * f) for v, f in zip(anc, down, strict=True)]
    lower_plt = [None if v is None else int(v * f) for v, f in zip(plt, down, strict=True)]
    out = _grade(
        {
            "base": _course(anc, plt, transfusions=tuple(transfusions)),
            "low": _course(lower_anc, lower_plt, transfusions=tuple(transfusions)),
        }
    )
    base, low = out.row(0, named=True), out.row(1, named=True)
    for column in GRADES:
        if base[column] is not None and low[column] is not None:
            assert low[column] >= base[column], f"{column}: {base[column]} -> {low[column]}"


@SETTINGS
@given(anc=counts_uL, plt=platelets, unit=st.sampled_from(["10*9/L", "10*3/uL"]))
def test_unit_never_changes_a_result(anc: list, plt: list, unit: str) -> None:
    a = _grade({"P": _course(anc, plt)})
    b = _grade({"P": _course(anc, plt, anc_unit=unit)})
    assert_frame_equal(a, b)


@SETTINGS
@given(
    anc=counts_uL,
    plt=platelets,
    end=st.integers(5, DAYS - 1),
    item=st.sampled_from(["progression", "next_therapy", "death", "last_contact"]),
)
def test_counts_after_the_end_of_observation_change_nothing(anc: list, plt: list, end: int, item: str) -> None:
    ended = [*_course(anc[: end + 1], plt[: end + 1]), [end + 0.5, item, "x" if item != "death" else "other", ""]]
    later = [[d, "anc", 0, "/uL"] for d in range(end + 1, DAYS + 50)] + [
        [d, "plt", 1, "10*9/L"] for d in range(end + 1, DAYS)
    ]
    a = _grade({"P": ended})
    b = _grade({"P": [*ended, *later, [150, "progression", "PET", ""]]})
    assert_frame_equal(a, b)


@SETTINGS
@given(first=counts_uL, second=counts_uL, plt=platelets)
def test_batch_equals_each_patient_alone(first: list, second: list, plt: list) -> None:
    both = _grade({"A": _course(first, plt), "B": _course(second, plt)})
    alone = pl.concat([_grade({"A": _course(first, plt)}), _grade({"B": _course(second, plt)})])
    assert_frame_equal(
        both.with_columns(pl.col("patient_id").cast(pl.Utf8)), alone.with_columns(pl.col("patient_id").cast(pl.Utf8))
    )
