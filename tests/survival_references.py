"""The published survival references (tests/fixtures/survival/references.yaml) and the data sets they use."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from lifelines.datasets import load_leukemia, load_lung

FIXTURES = Path(__file__).parent / "fixtures" / "survival"


@cache
def references() -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / "references.yaml").read_text())


def cases(section: str) -> list[dict[str, Any]]:
    return references()[section]


@cache
def dataset(name: str) -> pl.DataFrame:
    """The data set a reference case names, as a patient table (see the header of references.yaml)."""
    if name == "aml":
        return pl.read_csv(FIXTURES / "aml.csv")
    if name == "lung":
        return pl.from_pandas(load_lung()).with_row_index("patient_id")
    if name == "gehan":
        return pl.from_pandas(load_leukemia()).with_row_index("patient_id")
    raise KeyError(name)
