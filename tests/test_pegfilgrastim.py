"""Pegfilgrastim is its own vocabulary item (RxNorm 338036, mg) counted as G-CSF given wherever G-CSF is counted.

Runs the production ingest (``normalise_events``), vocabulary (codes, the generated page), the hematology graders
(through the engine), the assessment facts and ``tocsin cohort derive`` on small courses. The per-grader
conformance cases are data: ``ICAHT-GCSF-DAYS-PEGFILGRASTIM`` (icaht.yaml), ``PHT-REC-WANG-G2-PEGFILGRASTIM`` and
``PHT-SUPPORT-PEGFILGRASTIM`` (prolonged_cytopenia.yaml), ``pht_persisting_after_pegfilgrastim``
(situation/facts.yaml), ``CYTO-CD34-AFTER-PEGFILGRASTIM`` (packs/cytopenia_eha2023.yaml).
"""

from __future__ import annotations

import polars as pl
import pytest

from hematology_cases import normalised, raw_frame
from tocsin.cohort.derive import derive_from_events
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import normalise_events
from tocsin.core.guidance import assessment_facts
from tocsin.vocabulary import ItemDefinition, Vocabulary, load_vocabulary

VOCAB = load_vocabulary()
FILGRASTIM_RXNORM, PEGFILGRASTIM_RXNORM = "68442", "338036"  # docs/sources-verification.md, the g_csf row


def _rows_of(events: pl.DataFrame, *items: str) -> list[tuple[str, float]]:
    rows = events.filter(pl.col("item").cast(pl.Utf8).is_in(items)).sort("t")
    return list(zip(rows["item"].cast(pl.Utf8).to_list(), rows["num"].to_list()))


# ------------------------------------------------------------------------------------------ ingest


@pytest.mark.parametrize(
    ("value", "unit", "extra"),
    [("6", "mg", []), ("6000", "ug", []), ("6000", "mcg", []), ("0.1", "mg/kg", [[0, "weight", "60", "kg"]])],
)
def test_a_usual_pegfilgrastim_dose_is_accepted_as_pegfilgrastim_in_mg(value: str, unit: str, extra: list) -> None:
    events = normalised({"P": [*extra, [3, "pegfilgrastim", value, unit]]}).events
    assert _rows_of(events, "pegfilgrastim", "g_csf") == [("pegfilgrastim", 6.0)]


@pytest.mark.parametrize("name", ["Pegfilgrastim", "neulasta", "peg_filgrastim"])
def test_pegfilgrastim_names_resolve_to_its_own_item_and_filgrastim_names_to_g_csf(name: str) -> None:
    assert VOCAB.resolve_item(name) == "pegfilgrastim"
    assert {VOCAB.resolve_item(n) for n in ("g_csf", "GCSF", "filgrastim", "Filgrastim")} == {"g_csf"}


@pytest.mark.parametrize(("value", "unit"), [("6000", "mg"), ("60", "mg"), ("-1", "mg")])
def test_an_implausible_pegfilgrastim_dose_is_refused_naming_row_field_and_fix(value: str, unit: str) -> None:
    result = normalise_events(raw_frame({"P": [[3, "pegfilgrastim", value, unit], [4, "anc", "1.0", "10*9/L"]]}), VOCAB)
    errors = result.errors.filter(pl.col("severity") == "error").to_dicts()
    assert len(errors) == 1
    error = errors[0]
    assert (error["line"], error["field"], error["value"]) == (3, "value", value)
    message = error["message"]
    assert "implausible" in message and "'pegfilgrastim'" in message and "0.0..12.0 mg" in message
    assert error["fix"] == "check the value and its unit"
    assert _rows_of(result.events, "anc") == [("anc", 1.0)]  # the other rows are kept


def test_filgrastim_rows_are_g_csf_in_ug_as_before() -> None:
    events = normalised({"P": [[0, "weight", "60", "kg"], [3, "filgrastim", "300", "ug"], [4, "g_csf", "5", "ug/kg"]]})
    assert _rows_of(events.events, "g_csf", "pegfilgrastim") == [("g_csf", 300.0), ("g_csf", 300.0)]


# ------------------------------------------------------------------------------------------- codes


def test_pegfilgrastim_carries_its_own_rxnorm_code_and_filgrastim_keeps_68442() -> None:
    peg = VOCAB.items[VOCAB.resolve_item("pegfilgrastim")]
    assert (peg.codes.rxnorm, peg.codes.verified) == (PEGFILGRASTIM_RXNORM, True)
    assert VOCAB.items[VOCAB.resolve_item("filgrastim")].codes.rxnorm == FILGRASTIM_RXNORM


def test_the_published_vocabulary_lists_pegfilgrastim_with_338036_and_not_under_g_csf() -> None:
    rows = {line.split("|")[1].strip(): line for line in VOCAB.markdown().splitlines() if line.startswith("| `")}
    assert f"RXNORM {PEGFILGRASTIM_RXNORM}" in rows["`pegfilgrastim`"]
    assert f"RXNORM {FILGRASTIM_RXNORM}" not in rows["`pegfilgrastim`"]
    assert "pegfilgrastim" not in rows["`g_csf`"].split("|")[7]  # not an alias of filgrastim any more
    assert "pegfilgrastim" in VOCAB.json_schema()["properties"]["item"]["enum"]


# ------------------------------------------------------------------------------ counted as G-CSF


def test_g_csf_is_counted_with_pegfilgrastim_and_other_items_only_with_themselves() -> None:
    assert VOCAB.counted_with("g_csf") == ("g_csf", "pegfilgrastim")
    assert VOCAB.counted_with("gm_csf") == ("gm_csf",)
    assert VOCAB.counted_with("platelet_transfusion") == ("platelet_transfusion",)


@pytest.mark.parametrize(
    ("counted_as", "message"),
    [
        ("nothing", "unknown item 'nothing'"),
        ("peg", "unknown item 'peg'"),
        ("crp", "is of kind lab"),
        ("pegfilgrastim", "itself counted as 'g_csf'"),
    ],
)
def test_a_bad_counted_as_in_the_vocabulary_is_refused(counted_as: str, message: str) -> None:
    items = {name: VOCAB.items[name] for name in ("crp", "g_csf", "pegfilgrastim")}
    items["peg"] = ItemDefinition.model_validate(
        {"item": "peg", "kind": "blood_support", "value_type": "number", "unit": "mg", "range": [0, 12],
         "counted_as": counted_as}
    )  # fmt: skip
    with pytest.raises(ValueError, match=message):
        Vocabulary(version="test", items=items)


def _course() -> dict[str, list[list]]:
    """PHT at day 28 with ANC grade 4 on day 32: P had filgrastim, Q pegfilgrastim 6 mg, R nothing."""
    counts = [[28, "anc", "0.3", "10*9/L"], [28, "plt", "160", "10*9/L"], [28, "hgb", "12.5", "g/dL"],
              [32, "anc", "0.4", "10*9/L"]]  # fmt: skip
    return {
        "P": [[10, "filgrastim", "300", "ug"], [11, "g_csf", "300", "ug"], *counts],
        "Q": [[10, "pegfilgrastim", "6", "mg"], *counts],
        "R": counts,
    }


def test_pegfilgrastim_is_g_csf_given_in_the_assessment_facts() -> None:
    events = normalised(_course())
    result = grade_normalised(events, GradingConfig())
    queries = pl.DataFrame({"patient_id": ["P", "Q", "R", "Q"], "at": [32.0, 32.0, 32.0, 9.0]})
    facts = assessment_facts(result, events.events, queries)
    assert facts["g_csf_given"].to_list() == [True, True, False, False]


def test_pegfilgrastim_counts_as_g_csf_days_in_icaht_pht_and_cohort_derive() -> None:
    events = normalised(_course())
    hematology = grade_normalised(events, GradingConfig()).hematology
    icaht = {r["patient_id"]: r for r in hematology.icaht.iter_rows(named=True)}
    pht = {r["patient_id"]: r for r in hematology.pht.iter_rows(named=True)}
    derived = {r["patient_id"]: r for r in derive_from_events(events).table.iter_rows(named=True)}
    assert [(icaht[p]["g_csf_days_early"], icaht[p]["g_csf_first_day"]) for p in "PQR"] == [(2, 10), (1, 10), (0, None)]
    assert [pht[p]["g_csf_days"] for p in "PQR"] == [2, 1, 0]
    assert [derived[p]["g_csf_days"] for p in "PQR"] == [2, 1, 0]
    assert "pegfilgrastim_days" not in hematology.pht.columns  # one G-CSF column, its name unchanged
