"""Conformance of the guideline packs through `tocsin assess` (cases: tests/conformance/packs/*.yaml).

Each case is a course, a time and what the pack must and must not suggest; the runner writes the course
(a named base course plus the case's own `events`) as an event CSV and runs the production CLI with --json
(`pack` may list several packs: --pack repeated). Also: every rule of every packaged pack is named
by a case or by the seed replay (test_assess.py), and the packs load and validate.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from tocsin.cli import app
from tocsin.core.guidance import load_pack, pack_names

CASES_DIR = Path(__file__).parent / "conformance" / "packs"
COURSES = {
    "crs2": [
        ("1", "temperature", "39", "Cel"),
        ("1", "oxygen", "nasal_cannula", ""),
        ("1", "oxygen_flow", "2", "L/min"),
    ],
    "crs3": [("1", "temperature", "39", "Cel"), ("1", "norepinephrine", "0.1", "ug/kg/min")],
    "crs4": [("1", "temperature", "39", "Cel"), ("1", "oxygen", "mechanical_ventilation", "")],
    "icans_only": [("1", "temperature", "37", "Cel"), ("1", "ice_score", "5", "")],
    "icans_crs": [
        ("1", "temperature", "39", "Cel"),
        ("1", "oxygen", "nasal_cannula", ""),
        ("1", "oxygen_flow", "2", "L/min"),
        ("1", "ice_score", "5", ""),
    ],
    # Cytopenia cases bring their own counts: no CRS assessment, so no stale CRS grade fires CRS rules.
    "none": [],
}


def _cases() -> list[dict]:
    out = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        out += yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]
    return out


def write_course(tmp_path: Path, case: dict) -> Path:
    rows = [("0", "infusion", "axi-cel", ""), ("0", "age", "50", "a")]
    if case.get("weight", 70) is not None:
        rows.append(("0", "weight", str(case.get("weight", 70)), "kg"))
    rows += COURSES[case.get("course", "crs2")]
    rows += [(repr(d), "tocilizumab", "8", "mg/kg") for d in case.get("doses", [])]
    rows += [(repr(float(d)), i, v, u) for d, i, v, u in case.get("events", [])]
    path = tmp_path / "course.csv"
    path.write_text(
        "patient_id,day,item,value,unit\n" + "".join(f"P,{d},{i},{v},{u}\n" for d, i, v, u in rows), encoding="utf-8"
    )
    return path


def assess_json(path: Path, at: float, pack: str | list[str]) -> dict:
    packs = [pack] if isinstance(pack, str) else pack
    args = [arg for name in packs for arg in ("--pack", name)]
    result = CliRunner().invoke(app, ["assess", str(path), "--at", repr(at), *args, "--json"])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_pack_case(case: dict, tmp_path: Path) -> None:
    doc = assess_json(write_course(tmp_path, case), case["at"], case["pack"])
    by_rule = {s["rule"]: s for s in doc["suggestions"]}
    for want in case.get("expect", []):
        got = by_rule.get(want["rule"])
        assert got is not None, f"{case['id']}: {want['rule']} not suggested ({sorted(by_rule)})"
        for key, value in want.items():
            if key == "action_contains":
                assert value in got["action"], (case["id"], got["action"])
            elif key == "next_allowed_at" and value is not None:
                assert got[key] == pytest.approx(value, abs=1e-3), (case["id"], key)
            else:
                assert got[key] == value, (case["id"], key, got[key])
    for rule in case.get("absent", []):
        assert rule not in by_rule, f"{case['id']}: {rule} must not be suggested"
    messages = " | ".join(a["message"] for a in doc["alerts"])
    for text in case.get("alerts", []):
        assert text in messages, f"{case['id']}: alert {text!r} missing from {messages!r}"
    unevaluated = {u["rule"] for u in doc["cannot_evaluate"]}
    for rule in case.get("cannot_evaluate", []):
        assert rule in unevaluated, f"{case['id']}: {rule} should be 'cannot evaluate'"
    assert doc["note"]


def test_every_pack_loads() -> None:
    assert set(pack_names()) >= {"asco2021", "ebmt2021", "source_papers", "cytopenia_eha2023"}
    for name in pack_names():
        pack = load_pack(name)
        assert pack.rules and pack.doi


def test_every_cytopenia_rule_fires_in_a_case() -> None:
    """Each rule of cytopenia_eha2023 fires in at least one CLI case: suggestions by rule id, alerts by message."""
    cases = [c for c in _cases() if "cytopenia_eha2023" in ([c["pack"]] if isinstance(c["pack"], str) else c["pack"])]
    fired = {want["rule"] for c in cases for want in c.get("expect", [])}
    alert_texts = [text for c in cases for text in c.get("alerts", [])]
    for rule in load_pack("cytopenia_eha2023").rules:
        if rule.kind == "alert":
            assert any(rule.action.startswith(text) for text in alert_texts), rule.id
        else:
            assert rule.id in fired, rule.id
