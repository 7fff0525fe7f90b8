"""Files generated from data stay in sync with it: the unit table, the vocabulary page, the JSON Schema."""

import json
from pathlib import Path


from tocsin import units
from tocsin.units import Conversion, compute_conversion_table, conversion_for, vocabulary_targets
from tocsin.vocabulary import load_vocabulary

ROOT = Path(__file__).resolve().parents[1]


def test_every_kept_conversion_is_what_ucumvert_computes() -> None:
    recomputed = compute_conversion_table(vocabulary_targets())
    kept = json.loads((ROOT / "src/tocsin/data/unit_conversions.json").read_text())
    assert kept == recomputed, "run `python -m tocsin.units` to refresh src/tocsin/data/unit_conversions.json"


def test_a_unit_outside_the_table_is_still_converted_by_ucumvert() -> None:
    conversion_for.cache_clear()
    units._known.cache_clear()
    assert conversion_for("mmol/L", "mmol/L") == Conversion(1.0)
    assert conversion_for("kg/m2", "kg/m2").scale == 1.0  # not in the table: computed live


def test_vocabulary_page_and_schema_are_current() -> None:
    vocabulary = load_vocabulary()
    assert (ROOT / "docs/vocabulary.md").read_text() == vocabulary.markdown(), (
        "run `tocsin schema --out docs/event.schema.json --markdown docs/vocabulary.md`"
    )
    assert json.loads((ROOT / "docs/event.schema.json").read_text()) == vocabulary.json_schema()
