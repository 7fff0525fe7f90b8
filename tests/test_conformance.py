"""Conformance suite: the grading criteria as data, run through the production engine.

Every case in ``tests/conformance/*.yaml`` is one patient: its ``events`` (``[day, item, value, unit]``)
become raw event rows (the infusion row at day 0, and ``age`` / ``weight`` rows when given, are added
here), ``tocsin.core.engine.grade_events`` grades them under the default ``GradingConfig`` plus the
file's scale and the case's ``config`` overrides, and the ``expect`` checks are applied to the
timeline row at day ``at`` (the CRS timeline for the CRS files, the ICANS timeline for the ICANS file,
and for ``episodes.yaml`` the toxicity named by the case's ``toxicity``, default ``crs``).

Nothing here grades: the test only builds input and compares output (DESIGN: "copies of the code inside
test files prove nothing"). A case whose expected value is taken from the criteria but which the
production code does not meet is kept with ``xfail: "reason"`` (strict: it fails loudly once fixed).

Case keys: id, source, description, config, age, weight, toxicity, events, expect, expect_episodes,
xfail. ``expect`` keys: at (required), grade (int or null), domain, rule, missing (exact list), waived,
evidence_items (items that must appear in the evidence), evidence_absent (items that must not).
``expect_episodes`` lists *all* episodes of the patient (the count is checked); within each entry only
the listed keys are compared, floats with a 1e-6 tolerance.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tocsin.config import GradingConfig
from tocsin.core.engine import grade_events

CONFORMANCE_DIR = Path(__file__).parent / "conformance"
TOLERANCE = 1e-6
MIN_CASES = 80

#: Scale of a file -> (default toxicity, config overrides implied by the scale).
SCALES: dict[str, tuple[str, dict]] = {
    "crs_astct2019": ("crs", {"crs": {"scale": "astct2019"}}),
    "crs_lee2014": ("crs", {"crs": {"scale": "lee2014"}}),
    "icans_astct2019": ("icans", {}),
    "episodes": ("crs", {}),
}
CASE_KEYS = {
    "id",
    "source",
    "description",
    "config",
    "age",
    "weight",
    "toxicity",
    "events",
    "expect",
    "expect_episodes",
    "xfail",
}
EXPECT_KEYS = {"at", "grade", "domain", "rule", "missing", "waived", "evidence_items", "evidence_absent"}
EPISODE_KEYS = {
    "episode",
    "onset_day",
    "peak_grade",
    "peak_day",
    "resolved_day",
    "duration_days",
    "ongoing",
    "recurrence",
}


def _load_files() -> list[tuple[Path, dict]]:
    docs = [(path, yaml.safe_load(path.read_text(encoding="utf-8"))) for path in sorted(CONFORMANCE_DIR.glob("*.yaml"))]
    # A file naming its own `runner` (kinetics, dosing, steroid exposure...) is run by that test module.
    return [(path, doc) for path, doc in docs if not doc.get("runner")]


FILES = _load_files()
CASES: list[tuple[str, str, dict]] = [
    (path.name, doc["scale"], case) for path, doc in FILES for case in doc.get("cases") or []
]


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _deep_merge(out[key], value) if nested else value
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _raw_frame(file_name: str, case: dict) -> pl.DataFrame:
    rows: list[tuple[float, str, Any, str]] = [(0.0, "infusion", "axi-cel", "")]
    if case.get("age") is not None:
        rows.append((0.0, "age", case["age"], "a"))
    if case.get("weight") is not None:
        rows.append((0.0, "weight", case["weight"], "kg"))
    for event in case["events"]:
        assert len(event) == 4, f"{case['id']}: event {event!r} is not [day, item, value, unit]"
        rows.append((float(event[0]), event[1], event[2], event[3]))
    return pl.DataFrame(
        {
            "patient_id": [case["id"]] * len(rows),
            "day": [repr(float(r[0])) for r in rows],
            "item": [r[1] for r in rows],
            "value": [_text(r[2]) for r in rows],
            "unit": [_text(r[3]) for r in rows],
            "file": [file_name] * len(rows),
            "line": list(range(1, len(rows) + 1)),
        }
    )


def _same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(actual) == expected and isinstance(actual, bool) == isinstance(expected, bool)
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(actual), float(expected), abs_tol=TOLERANCE)
    return actual == expected


def _check_row(timeline: pl.DataFrame, expect: dict, label: str) -> list[str]:
    unknown = set(expect) - EXPECT_KEYS
    assert not unknown, f"{label}: unknown expect keys {sorted(unknown)}"
    at = float(expect["at"])
    rows = timeline.filter((pl.col("t") - at).abs() < TOLERANCE).to_dicts()
    if len(rows) != 1:
        days = timeline["t"].to_list()
        return [f"{label} at day {at}: expected one timeline row, found {len(rows)} (timeline days: {days})"]
    row = rows[0]
    problems = []
    for key in ("grade", "domain", "rule", "waived"):
        if key in expect and not _same(row.get(key), expect[key]):
            problems.append(f"{label} at day {at}: {key} = {row.get(key)!r}, expected {expect[key]!r}")
    if "missing" in expect and list(row["missing"]) != list(expect["missing"]):
        problems.append(f"{label} at day {at}: missing = {row['missing']!r}, expected {expect['missing']!r}")
    evidence_items = {e["item"] for e in row["evidence"]}
    for item in expect.get("evidence_items", []):
        if item not in evidence_items:
            problems.append(f"{label} at day {at}: '{item}' not in evidence {sorted(evidence_items)}")
    for item in expect.get("evidence_absent", []):
        if item in evidence_items:
            problems.append(f"{label} at day {at}: '{item}' must not be in evidence {sorted(evidence_items)}")
    if problems:
        problems.append(
            f"    row: grade={row['grade']} domain={row['domain']} rule={row['rule']} "
            f"missing={row['missing']} waived={row.get('waived')} evidence={row['evidence']}"
        )
    return problems


def _check_episodes(episodes: pl.DataFrame, expected: list[dict], label: str) -> list[str]:
    actual = episodes.sort("episode").to_dicts()
    if len(actual) != len(expected):
        return [f"{label}: {len(actual)} episodes, expected {len(expected)}: {actual}"]
    problems = []
    for got, want in zip(actual, expected, strict=True):
        unknown = set(want) - EPISODE_KEYS
        assert not unknown, f"{label}: unknown episode keys {sorted(unknown)}"
        for key, value in want.items():
            if not _same(got[key], value):
                problems.append(f"{label} episode {got['episode']}: {key} = {got[key]!r}, expected {value!r}")
    if problems:
        problems.append(f"    episodes: {actual}")
    return problems


def _run(file_name: str, scale: str, case: dict) -> None:
    toxicity, scale_config = SCALES[scale]
    toxicity = case.get("toxicity", toxicity)
    config = GradingConfig.model_validate(_deep_merge(scale_config, case.get("config") or {}))
    result = grade_events(_raw_frame(file_name, case), config)
    refused = result.errors.filter(pl.col("severity") == "error")
    assert refused.height == 0, f"{case['id']}: input rows refused: {refused.to_dicts()}"
    tox = result.crs if toxicity == "crs" else result.icans
    timeline = tox.explained([case["id"]])
    known_rules = {r.id for r in tox.scale.rules}
    assert set(timeline.get_column("rule").drop_nulls()) <= known_rules, f"{case['id']}: rule id not in criteria data"
    problems: list[str] = []
    for expect in case.get("expect") or []:
        problems += _check_row(timeline, expect, case["id"])
    if "expect_episodes" in case:
        problems += _check_episodes(
            tox.episodes.filter(pl.col("patient_id") == case["id"]), case["expect_episodes"], case["id"]
        )
    assert not problems, "\n".join(problems)


def _params() -> list:
    params = []
    for file_name, scale, case in CASES:
        marks = [pytest.mark.xfail(reason=case["xfail"], strict=True)] if case.get("xfail") else []
        params.append(pytest.param(file_name, scale, case, id=case["id"], marks=marks))
    return params


@pytest.mark.parametrize(("file_name", "scale", "case"), _params())
def test_case(file_name: str, scale: str, case: dict) -> None:
    _run(file_name, scale, case)


def test_expected_files_present() -> None:
    names = {path.name for path, _ in FILES}
    assert {"crs_astct2019.yaml", "crs_lee2014.yaml", "icans_astct2019.yaml", "episodes.yaml"} <= names


def test_case_ids_unique_across_files() -> None:
    counts = Counter(case["id"] for _, _, case in CASES)
    assert not [i for i, n in counts.items() if n > 1], f"duplicate case ids: {counts.most_common(5)}"


def test_every_case_is_well_formed_and_cites_a_source() -> None:
    for path, doc in FILES:
        assert doc.get("scale") in SCALES, f"{path.name}: unknown scale {doc.get('scale')!r}"
        for case in doc["cases"]:
            assert set(case) <= CASE_KEYS, f"{case.get('id')}: unknown keys {sorted(set(case) - CASE_KEYS)}"
            assert str(case.get("source") or "").strip(), f"{path.name}: case {case.get('id')} has no source"
            assert str(case.get("description") or "").strip(), f"{case['id']}: no description"
            assert case.get("events"), f"{case['id']}: no events"
            assert case.get("expect") or case.get("expect_episodes"), f"{case['id']}: nothing expected"
            assert case.get("toxicity", "crs") in ("crs", "icans"), f"{case['id']}: bad toxicity"


def test_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} conformance cases (need >= {MIN_CASES})"
