"""Prolonged hematologic toxicity, recovery and biphasic cytopenia: conformance cases and properties.

Every case in ``tests/conformance/prolonged_cytopenia.yaml`` becomes raw event rows (infusion at day 0),
goes through ``tocsin.core.events.normalise_events`` and
``tocsin.core.prolonged_cytopenia.prolonged_cytopenia`` under the default ``ProlongedCytopeniaConfig`` with
the case's overrides; the test only builds input and compares output.

Properties (hypothesis): a lower count never lowers the landmark grade nor turns PHT off; the unit a
count is written in never changes a result; counts after the end of observation change nothing.
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
from tocsin.config import GradingConfig, ProlongedCytopeniaConfig
from tocsin.core.prolonged_cytopenia import SCALE, prolonged_cytopenia, prolonged_cytopenia_lineages

CASES_FILE = Path(__file__).parent / "conformance" / "prolonged_cytopenia.yaml"
DOC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
CASES: list[dict] = DOC["cases"]
CASE_KEYS = {"id", "source", "description", "config", "events", "series", "expect", "reason_contains"}


def _run(patients: dict[str, list[list]], config: ProlongedCytopeniaConfig | None = None) -> pl.DataFrame:
    return prolonged_cytopenia(normalised(patients).events, config or ProlongedCytopeniaConfig())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict) -> None:
    config = ProlongedCytopeniaConfig.model_validate(case.get("config") or {})
    out = _run({case["id"]: case_events(case)}, config)
    assert out.height == 1
    row = out.row(0, named=True)
    rule_ids = {r.id for r in SCALE.rules}
    assert row["pht_rule"] in rule_ids
    assert set(row["recovery_rule"].split(", ")) <= rule_ids
    problems = check_row(row, case)
    assert not problems, "\n".join(problems)


def test_cases_are_well_formed() -> None:
    assert DOC["runner"] == "tests/test_prolonged_cytopenia_conformance.py"
    assert not [i for i, n in Counter(c["id"] for c in CASES).items() if n > 1]
    for case in CASES:
        assert set(case) <= CASE_KEYS, f"{case['id']}: unknown keys {set(case) - CASE_KEYS}"
        assert str(case.get("source") or "").strip() and str(case.get("description") or "").strip(), case["id"]
        assert case.get("expect"), case["id"]


def test_lineage_table_has_one_row_per_patient_and_lineage() -> None:
    events = normalised({"P": [[28, "anc", 0.4, "10*9/L"], [28, "plt", 40, "10*9/L"]], "Q": [[5, "hgb", 9, "g/dL"]]})
    long = prolonged_cytopenia_lineages(events.events, ProlongedCytopeniaConfig())
    assert sorted(zip(long["patient_id"].cast(pl.Utf8), long["item"], strict=True)) == [
        ("P", "anc"),
        ("P", "plt"),
        ("Q", "hgb"),
    ]


def test_config_section_is_part_of_the_grading_config() -> None:
    config = GradingConfig.model_validate({"prolonged_cytopenia": {"landmark_day": 30, "recovery": "normal"}})
    assert config.prolonged_cytopenia.landmark_day == 30 and config.prolonged_cytopenia.recovery == "normal"


# ------------------------------------------------------------------------------------------- properties
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAYS = list(range(0, 80, 3))
anc_values = st.lists(st.one_of(st.none(), st.integers(0, 4000)), min_size=len(DAYS), max_size=len(DAYS))
plt_values = st.lists(st.one_of(st.none(), st.integers(0, 300)), min_size=len(DAYS), max_size=len(DAYS))
factors = st.lists(st.sampled_from([1.0, 1.0, 0.5, 0.1]), min_size=len(DAYS), max_size=len(DAYS))


def _course(anc: list, plt: list, unit: str = "/uL") -> list[list]:
    factor = 1 if unit == "/uL" else 1000
    rows = [[d, "anc", v / factor, unit] for d, v in zip(DAYS, anc, strict=True) if v is not None]
    return rows + [[d, "plt", v, "10*9/L"] for d, v in zip(DAYS, plt, strict=True) if v is not None]


@SETTINGS
@given(anc=anc_values, plt=plt_values, down=factors)
def test_lower_counts_never_lower_the_landmark_grade(anc: list, plt: list, down: list) -> None:
    low_anc = [None if v is None else int(v * f) for v, f in zip(anc, down, strict=True)]
    low_plt = [None if v is None else int(v * f) for v, f in zip(plt, down, strict=True)]
    out = _run({"base": _course(anc, plt), "low": _course(low_anc, low_plt)})
    base, low = out.row(0, named=True), out.row(1, named=True)
    for column in ("anc_landmark_grade", "plt_landmark_grade", "pht_lineage_count"):
        if base[column] is not None:
            assert low[column] >= base[column], f"{column}: {base[column]} -> {low[column]}"
    if base["pht"]:
        assert low["pht"]


@SETTINGS
@given(anc=anc_values, plt=plt_values)
def test_unit_never_changes_a_result(anc: list, plt: list) -> None:
    assert_frame_equal(_run({"P": _course(anc, plt)}), _run({"P": _course(anc, plt, unit="10*9/L")}))


@SETTINGS
@given(anc=anc_values, plt=plt_values, end=st.integers(10, 70))
def test_counts_after_the_end_of_observation_change_nothing(anc: list, plt: list, end: int) -> None:
    course = [e for e in _course(anc, plt) if e[0] <= end] + [[end + 0.5, "next_therapy", "chemo", ""]]
    later = [[d, "anc", 0, "/uL"] for d in range(end + 1, 120, 2)] + [[end + 2, "g_csf", 300, "ug"]]
    assert_frame_equal(_run({"P": course}), _run({"P": [*course, *later]}))
