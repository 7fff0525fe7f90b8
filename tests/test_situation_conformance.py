"""Situation facts and prophylaxis reminders (docs/situation.md) on the hand-built courses of
tests/conformance/situation/*.yaml, plus properties (row order; a positive result is not forgotten in its window)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import normalise_events
from tocsin.core.situation import FACT_COLUMNS, prophylaxis_reminders, situation_facts
from tocsin.vocabulary import load_vocabulary

FILES = sorted((Path(__file__).parent / "conformance" / "situation").glob("*.yaml"))
DOCS = [yaml.safe_load(f.read_text()) for f in FILES]
CASES = [c for d in DOCS for c in d.get("cases", [])]
REMINDER_CASES = [c for d in DOCS for c in d.get("reminder_cases", [])]


def _raw(events: list[list], patient: str = "P") -> pl.DataFrame:
    rows = [(patient, "0", "infusion", "axi-cel", "")] + [(patient, str(e[0]), e[1], str(e[2]), e[3]) for e in events]
    raw = pl.DataFrame(rows, orient="row", schema=["patient_id", "day", "item", "value", "unit"])
    return raw.with_columns(file=pl.lit("case.yaml"), line=pl.int_range(2, raw.height + 2))


def _facts(raw: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    normalised = normalise_events(raw, load_vocabulary())
    assert normalised.errors.height == 0, normalised.errors.to_dicts()
    result = grade_normalised(normalised, GradingConfig())
    return situation_facts(result, normalised.events, queries)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_fact(case: dict) -> None:
    facts = _facts(_raw(case["events"]), pl.DataFrame({"patient_id": ["P"], "at": [float(case["at"])]})).row(
        0, named=True
    )
    for fact, expected in case.get("expect", {}).items():
        assert facts[fact] == expected, (fact, facts[fact], facts.get(f"{fact}_because"), facts.get(f"{fact}_needs"))
        if expected is not None and f"{fact}_because" in facts:
            assert facts[f"{fact}_because"], f"{fact} decided without a reason"
    for fact, text in case.get("needs", {}).items():
        assert facts[fact] is None and text in (facts[f"{fact}_needs"] or ""), (fact, facts[f"{fact}_needs"])
    for fact, text in case.get("expect_contains", {}).items():
        assert text in (facts[fact] or ""), (fact, facts[fact])


@pytest.mark.parametrize("case", REMINDER_CASES, ids=[c["id"] for c in REMINDER_CASES])
def test_reminder(case: dict) -> None:
    normalised = normalise_events(_raw(case["events"]), load_vocabulary())
    assert normalised.errors.height == 0, normalised.errors.to_dicts()
    out = prophylaxis_reminders(normalised.events, pl.DataFrame({"patient_id": ["P"], "at": [float(case["at"])]}))
    rows = {r["reminder"]: r for r in out.iter_rows(named=True)}
    for reminder, expected in case["expect"].items():
        for key, value in expected.items():
            assert rows[reminder][key] == value, (reminder, key, rows[reminder])


def _batch() -> pl.DataFrame:
    """Every case course as its own patient, in one batch."""
    return pl.concat([_raw(c["events"], patient=c["id"]) for c in CASES]).with_columns(
        line=pl.int_range(2, pl.len() + 2)
    )


def test_batch_gives_the_same_facts_as_each_case_alone_and_row_order_does_not_matter() -> None:
    raw = _batch()
    queries = pl.DataFrame({"patient_id": [c["id"] for c in CASES], "at": [float(c["at"]) for c in CASES]})
    straight = _facts(raw, queries)
    shuffled_raw = raw.sample(fraction=1.0, shuffle=True, seed=7)
    order = pl.int_range(0, queries.height, eager=True).shuffle(seed=3)
    shuffled = _facts(shuffled_raw, queries.with_row_index("_i")[order.to_list()])
    restored = shuffled.with_columns(_i=order).sort("_i").drop("_i")
    assert restored.equals(straight.select(restored.columns))
    # In a batch, a patient without levels gets the cohort's time to peak (marked as such), not "unknown".
    cohort = {"expansion_phase", "expansion_phase_basis"}
    for case, row in zip(CASES, straight.iter_rows(named=True), strict=True):
        for fact, expected in case.get("expect", {}).items():
            assert fact in cohort or row[fact] == expected, (case["id"], fact)
    unknown = straight.filter(pl.col("patient_id") == "expansion_phase_unknown")
    assert unknown["expansion_phase_basis"].item() == "cohort reference"
    assert straight.columns == ["patient_id", "at", *FACT_COLUMNS]


def test_a_later_query_never_unsees_a_positive_culture_within_its_window() -> None:
    raw = _raw(
        [[3.0, "culture", "positive:E. coli", ""], [5.0, "culture", "negative", ""], [6.0, "pct", "0.1", "ng/mL"]]
    )
    days = [3.0 + 0.5 * i for i in range(int(14 / 0.5))]  # window (at - 14, at]
    facts = _facts(raw, pl.DataFrame({"patient_id": "P", "at": days}))
    assert facts["possible_infection"].to_list() == [True] * len(days)
    assert _facts(raw, pl.DataFrame({"patient_id": ["P"], "at": [17.0]}))["possible_infection"].item() is False
