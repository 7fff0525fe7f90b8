"""Baseline risk scores and HLH screens: conformance cases as data, run through the production code.

Every case in ``tests/conformance/scores/scores.yaml`` is one patient. Its rows become raw event rows (the
infusion at day 0 is added here), ``tocsin.core.events.normalise_events`` makes them canonical, and the
production function of the case's ``score`` computes the row that ``expect`` is compared with (for the
time-point scores at ``at``; ``expect_days`` compares the rows of the daily screen by day). Nothing here
scores: the test only builds input and compares output.

Properties: the input unit never changes CAR-HEMATOTOX; worse baseline labs never lower it.
"""

from __future__ import annotations

import doctest
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.config import ScoresConfig
from tocsin.core.events import normalise_events
from tocsin.core.scores import baseline, car_hematotox, easix, hscore, iec_hs
from tocsin.criteria import load_scale
from tocsin.vocabulary import load_vocabulary

CASES_FILE = Path(__file__).parent / "conformance" / "scores" / "scores.yaml"
DOC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
TOLERANCE = 1e-6
VOCAB = load_vocabulary()
#: score name -> (production function, criteria scale, evaluated at a time).
SCORES: dict[str, tuple[Any, str, bool]] = {
    "car_hematotox": (car_hematotox.car_hematotox, "car_hematotox", False),
    "easix": (easix.easix, "easix", False),
    "hscore": (hscore.hscore, "hscore", True),
    "iec_hs": (iec_hs.iec_hs_screen, "iec_hs", True),
    "car_hlh": (iec_hs.car_hlh_screen, "iec_hs", True),
}
CASE_KEYS = {"id", "score", "source", "description", "config", "profile", "at", "events", "expect", "expect_days"}
RULE_COLUMNS = ("rule", "easix_rule", "m_easix_rule")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _rows(case: dict) -> list[list]:
    profile = DOC["profiles"].get(case.get("profile"), []) if case.get("profile") else []
    own = case.get("events") or []
    replaced = {(float(r[0]), r[1]) for r in own}
    return [r for r in profile if (float(r[0]), r[1]) not in replaced] + list(own)


def raw_frame(patient: str, rows: list[list]) -> pl.DataFrame:
    """Raw event rows ``[day, item, value, unit, {uln, lln}]`` after a day-0 infusion row."""
    rows = [[0, "infusion", "axi-cel", ""], *rows]
    limits = [r[4] if len(r) > 4 else {} for r in rows]
    return pl.DataFrame(
        {
            "patient_id": [patient] * len(rows),
            "day": [repr(float(r[0])) for r in rows],
            "item": [r[1] for r in rows],
            "value": [_text(r[2]) for r in rows],
            "unit": [_text(r[3]) for r in rows],
            "uln": [_text(lim.get("uln")) or None for lim in limits],
            "lln": [_text(lim.get("lln")) or None for lim in limits],
            "file": ["scores.yaml"] * len(rows),
            "line": list(range(1, len(rows) + 1)),
        }
    )


def _same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and not isinstance(expected, bool):
        return math.isclose(float(actual), float(expected), abs_tol=TOLERANCE)
    return actual == expected


def _compare(row: dict, expect: dict, label: str) -> list[str]:
    problems = []
    for key, want in expect.items():
        if key == "missing_rules":
            got = [m.split(":")[0] for m in row["missing"]]
        else:
            assert key in row, f"{label}: no output column {key!r}"
            got = row[key]
        if not _same(got, want):
            problems.append(f"{label}: {key} = {got!r}, expected {want!r}")
    return problems


def _run(case: dict) -> None:
    function, scale_name, timed = SCORES[case["score"]]
    n = normalise_events(raw_frame(case["id"], _rows(case)), VOCAB)
    assert n.ok, f"{case['id']}: input rows refused: {n.problems.to_dicts()}"
    config = ScoresConfig.model_validate(case.get("config") or {})
    kwargs = {"at": case["at"]} if timed and "at" in case else {}
    out = function(n.events, n.patients, config, **kwargs)
    known = {r.id for r in load_scale(scale_name).rules}
    for column in RULE_COLUMNS:
        if column in out.columns:
            assert set(out.get_column(column).drop_nulls()) <= known, f"{case['id']}: rule id not in criteria data"
    problems: list[str] = []
    if "expect" in case:
        assert out.height == 1, f"{case['id']}: expected one row, got {out.height}"
        problems += _compare(out.row(0, named=True), case["expect"], case["id"])
    for day, expect in (case.get("expect_days") or {}).items():
        rows = out.filter(pl.col("day") == int(day)).to_dicts()
        assert len(rows) == 1, f"{case['id']}: expected one row for day {day}, got {len(rows)}"
        problems += _compare(rows[0], expect, f"{case['id']} day {day}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["id"] for c in DOC["cases"]])
def test_case(case: dict) -> None:
    _run(case)


def test_cases_are_well_formed_and_cite_a_source() -> None:
    counts = Counter(c["id"] for c in DOC["cases"])
    assert not [i for i, k in counts.items() if k > 1], "duplicate case ids"
    for case in DOC["cases"]:
        assert set(case) <= CASE_KEYS, f"{case['id']}: unknown keys {sorted(set(case) - CASE_KEYS)}"
        assert case["score"] in SCORES, f"{case['id']}: unknown score {case['score']!r}"
        assert str(case.get("source") or "").strip() and str(case.get("description") or "").strip(), case["id"]
        assert case.get("expect") or case.get("expect_days"), f"{case['id']}: nothing expected"
        assert case.get("events") or case.get("profile"), f"{case['id']}: no events"
        assert not case.get("profile") or case["profile"] in DOC["profiles"], f"{case['id']}: unknown profile"
    assert {c["score"] for c in DOC["cases"]} == set(SCORES), "every score has conformance cases"


def test_every_score_rule_has_a_doi() -> None:
    for name in ("car_hematotox", "easix", "hscore", "iec_hs"):
        for rule in load_scale(name).rules:
            assert "doi:" in rule.text, f"{name} {rule.id}: no DOI in the rule text"


@pytest.mark.parametrize("module", [baseline, car_hematotox, easix, hscore, iec_hs])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_unknown_easix_cutoff_is_refused_with_the_known_ones() -> None:
    n = normalise_events(raw_frame("P", [[-6, "ldh", 200, "U/L"]]), VOCAB)
    with pytest.raises(ValueError, match="korell2022"):
        easix.easix(n.events, n.patients, ScoresConfig(easix_cutoff="nope"))


def test_batch_gives_each_patient_its_own_row_in_patient_order() -> None:
    frames = [
        raw_frame("A", [[-6, "plt", 60, "10*9/L"]]),
        raw_frame("B", []),
        raw_frame("C", [[-6, "plt", 200, "10*9/L"]]),
    ]
    n = normalise_events(pl.concat(frames), VOCAB)
    out = car_hematotox.car_hematotox(n.events, n.patients)
    assert out.get_column("patient_id").cast(pl.Utf8).to_list() == ["A", "B", "C"]
    assert out.get_column("plt_points").to_list() == [2, None, 0]


# ------------------------------------------------------------------------------------------------ properties
# Decimal strings keep every value exact in each unit, so only the unit differs between the two inputs.
_PLT = st.decimals(min_value=Decimal("1"), max_value=Decimal("400"), places=1) | st.sampled_from(
    [Decimal("75"), Decimal("175")]
)
_ANC = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5"), places=2) | st.just(Decimal("1.2"))
_HGB = st.decimals(min_value=Decimal("5"), max_value=Decimal("16"), places=1) | st.just(Decimal("9.0"))
_CRP = st.decimals(min_value=Decimal("0"), max_value=Decimal("200"), places=1) | st.just(Decimal("30"))
_FER = st.decimals(min_value=Decimal("10"), max_value=Decimal("5000"), places=0) | st.sampled_from(
    [Decimal("650"), Decimal("2000")]
)
_RULES = st.sampled_from(["developer_group", "independent_tracker"])
_SCORED = ("score", "plt_points", "anc_points", "hgb_points", "crp_points", "ferritin_points")


def _hematotox(rows: list[list], rule: str) -> dict:
    n = normalise_events(raw_frame("P", [[-5, "lymphodepletion", "Flu/Cy", ""], *rows]), VOCAB)
    assert n.ok, n.problems.to_dicts()
    out = car_hematotox.car_hematotox(n.events, n.patients, ScoresConfig(hematotox_boundary_rule=rule))
    return out.select(_SCORED).row(0, named=True)


@settings(max_examples=40, deadline=None)
@given(plt=_PLT, anc=_ANC, hgb=_HGB, crp=_CRP, fer=_FER, rule=_RULES)
def test_unit_choice_never_changes_hematotox(
    plt: Decimal, anc: Decimal, hgb: Decimal, crp: Decimal, fer: Decimal, rule: str
) -> None:
    canonical = [
        [-6, "plt", plt, "10*9/L"],
        [-6, "anc", anc, "10*9/L"],
        [-6, "hgb", hgb, "g/dL"],
        [-6, "crp", crp, "mg/L"],
        [-6, "ferritin", fer, "ng/mL"],
    ]
    other = [
        [-6, "plt", plt * 1000, "/uL"],
        [-6, "anc", anc * 1000, "/uL"],
        [-6, "hgb", hgb * 10, "g/L"],
        [-6, "crp", crp / 10, "mg/dL"],
        [-6, "ferritin", fer, "ug/L"],
    ]
    assert _hematotox(canonical, rule) == _hematotox(other, rule)


@settings(max_examples=40, deadline=None)
@given(
    plt=_PLT,
    anc=_ANC,
    hgb=_HGB,
    crp=_CRP,
    fer=_FER,
    worse=st.tuples(*[st.decimals(min_value=Decimal("0"), max_value=Decimal("1"), places=2)] * 5),
    rule=_RULES,
)
def test_worse_baseline_never_lowers_hematotox(
    plt: Decimal, anc: Decimal, hgb: Decimal, crp: Decimal, fer: Decimal, worse: tuple, rule: str
) -> None:
    better = [
        [-6, "plt", plt, "10*9/L"],
        [-6, "anc", anc, "10*9/L"],
        [-6, "hgb", hgb, "g/dL"],
        [-6, "crp", crp, "mg/L"],
        [-6, "ferritin", fer, "ng/mL"],
    ]
    d_plt, d_anc, d_hgb, d_crp, d_fer = worse
    worse_rows = [
        [-6, "plt", plt * (1 - d_plt), "10*9/L"],
        [-6, "anc", anc * (1 - d_anc), "10*9/L"],
        [-6, "hgb", hgb * (1 - d_hgb / 2), "g/dL"],
        [-6, "crp", crp * (1 + d_crp), "mg/L"],
        [-6, "ferritin", fer * (1 + d_fer), "ng/mL"],
    ]
    first, second = _hematotox(better, rule), _hematotox(worse_rows, rule)
    assert second["score"] >= first["score"]
    for key in _SCORED[1:]:
        assert second[key] >= first[key], key
