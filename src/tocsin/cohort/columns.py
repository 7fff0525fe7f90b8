"""The data dictionary of the patient table: one documented entry per column (``data/cohort_columns.yaml``).

:func:`conform` is the gate every derived table passes: a column that the dictionary does not document, or a
documented column that is missing, is a programming error and raises; each column is cast to its documented
type and the columns are put in dictionary order. :func:`columns_markdown` renders ``docs/cohort_columns.md``
(``python -m tocsin.cohort.columns`` rewrites it; ``tests/test_cohort_derive.py`` checks it is current).

Example
-------
>>> dictionary = load_columns()
>>> dictionary.columns[0].name, dictionary.columns[0].type
('patient_id', 'string')
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

from tocsin.yaml_text import parse_yaml

ColumnType = Literal["string", "integer", "float", "boolean"]
POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.Utf8(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
}
GROUP_TITLES = {
    "baseline": "Baseline",
    "crs_icans": "CRS and ICANS",
    "treatments": "Treatments",
    "hematologic": "Hematologic toxicity",
    "kinetics": "CAR-T kinetics",
    "infections": "Infections",
    "response": "Response",
    "time_to_event": "Time to event",
}


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: ColumnType
    unit: str
    group: Literal[
        "baseline", "crs_icans", "treatments", "hematologic", "kinetics", "infections", "response", "time_to_event"
    ]
    definition: str
    source: str


class ColumnDictionary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: POLARS_TYPES[c.type] for c in self.columns}


@cache
def load_columns() -> ColumnDictionary:
    """The packaged dictionary, validated (names are unique)."""
    text = resources.files("tocsin.data").joinpath("cohort_columns.yaml").read_text(encoding="utf-8")
    dictionary = ColumnDictionary.model_validate(parse_yaml(text))
    duplicated = {n for n in dictionary.names if dictionary.names.count(n) > 1}
    if duplicated:
        raise ValueError(f"cohort_columns.yaml: column(s) listed twice: {sorted(duplicated)}")
    return dictionary


def conform(table: pl.DataFrame, dictionary: ColumnDictionary | None = None) -> pl.DataFrame:
    """``table`` with exactly the documented columns, in dictionary order, each cast to its documented type."""
    dictionary = dictionary or load_columns()
    undocumented = [c for c in table.columns if c not in dictionary.names]
    absent = [c for c in dictionary.names if c not in table.columns]
    if undocumented or absent:
        raise RuntimeError(
            "derived patient table does not match src/tocsin/data/cohort_columns.yaml: "
            f"undocumented {undocumented}, not derived {absent}"
        )
    return table.select(pl.col(name).cast(dtype) for name, dtype in dictionary.schema.items())


def columns_markdown(dictionary: ColumnDictionary | None = None) -> str:
    """``docs/cohort_columns.md``: one table per group (name, type, unit, definition, source)."""
    dictionary = dictionary or load_columns()

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = [
        "# Patient table columns (`tocsin cohort derive`)",
        "",
        f"Generated from `src/tocsin/data/cohort_columns.yaml` (version {dictionary.version}) by "
        "`python -m tocsin.cohort.columns`; do not edit by hand. Days are days since infusion (day 0 = the "
        "infusion); null = missing (see [cohort.md](cohort.md) for the rules).",
    ]
    for group, title in GROUP_TITLES.items():
        lines += ["", f"## {title}", "", "| column | type | unit | definition | source |", "|---|---|---|---|---|"]
        for c in dictionary.columns:
            if c.group == group:
                unit = f"`{c.unit}`" if c.unit else ""
                lines.append(f"| `{c.name}` | {c.type} | {unit} | {cell(c.definition)} | {cell(c.source)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/cohort_columns.md")
    target.write_text(columns_markdown(), encoding="utf-8")
    print(f"wrote {target}")
