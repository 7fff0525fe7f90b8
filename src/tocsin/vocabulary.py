"""The versioned item vocabulary: which items an event file may carry, in which units, with which values.

The table itself is data (``tocsin/data/vocabulary.yaml``); this module loads and validates it once,
answers look-ups (aliases, nearest valid name) and publishes it as JSON Schema.

Example
-------
>>> from tocsin.vocabulary import load_vocabulary
>>> vocab = load_vocabulary()
>>> vocab.resolve_item("Temp")
'temperature'
>>> vocab.items["temperature"].unit
'Cel'
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from tocsin.yaml_text import parse_yaml

ItemKind = Literal[
    "patient",
    "vital",
    "support",
    "neuro",
    "drug",
    "attribution",
    "lab",
    "blood_support",
    "kinetics",
    "disease_course",
    "outcome",
]
ValueType = Literal["number", "category", "boolean", "text", "date"]


class Codes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loinc: str | None = None
    rxnorm: str | None = None
    snomed: str | None = None
    verified: bool = True


class ItemDefinition(BaseModel):
    """One row of the vocabulary table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    item: str
    kind: ItemKind
    value_type: ValueType
    description: str = ""
    unit: str | None = None
    per_kg_unit: str | None = None
    range: tuple[float, float] | None = None
    integer: bool = False
    fraction_to_percent: bool = False
    molar_mass: float | None = Field(None, gt=0, description="g/mol: converts substance concentrations (mmol/L).")
    differential_of: str | None = Field(None, description="May be given as % of this item (same time).")
    limits: bool = Field(False, description="Rows may carry lln/uln/lloq in their own unit.")
    counted_as: str | None = Field(
        None, description="Another item whose administrations this one counts as (pegfilgrastim as g_csf)."
    )
    values: tuple[str, ...] = ()
    value_aliases: dict[str, str] = Field(default_factory=dict)
    codes: Codes = Field(default_factory=Codes)
    aliases: tuple[str, ...] = ()
    vasopressor: bool = False
    anti_cytokine: bool = False
    steroid: bool = False
    antipyretic: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ItemDefinition:
        if self.value_type == "number" and (self.unit is None or self.range is None):
            raise ValueError(f"numeric item {self.item!r} needs a canonical unit and a range")
        if self.value_type == "category" and not self.values:
            raise ValueError(f"category item {self.item!r} needs allowed values")
        if (self.molar_mass or self.differential_of or self.limits) and self.value_type != "number":
            raise ValueError(f"item {self.item!r}: molar_mass, differential_of and limits need a number item")
        bad = [v for v in self.value_aliases.values() if v not in self.values]
        if bad:
            raise ValueError(f"item {self.item!r}: value aliases point to unknown values {bad}")
        return self


class Vocabulary(BaseModel):
    """The whole table, indexed by canonical item name."""

    model_config = ConfigDict(frozen=True)
    version: str
    items: dict[str, ItemDefinition]

    _aliases: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_aliases(self) -> Vocabulary:
        seen: dict[str, str] = {}
        for name, definition in self.items.items():
            for alias in (name, *definition.aliases):
                key = alias.lower()
                if key in seen and seen[key] != name:
                    raise ValueError(f"alias {alias!r} is used by both {seen[key]!r} and {name!r}")
                seen[key] = name
        self._aliases = seen
        for name, definition in self.items.items():
            if definition.differential_of and definition.differential_of not in self.items:
                raise ValueError(f"item {name!r}: differential_of names unknown item {definition.differential_of!r}")
            _check_counted_as(name, definition, self.items)
        return self

    @property
    def alias_map(self) -> dict[str, str]:
        """Every accepted spelling (lower case) -> canonical item name."""
        return self._aliases

    def resolve_item(self, name: str) -> str | None:
        return self.alias_map.get(name.strip().lower())

    def nearest_item(self, name: str) -> str | None:
        """The closest valid item name, for the "did you mean" part of an error message."""
        # Whole-string similarity: partial scorers let two-letter aliases ("mp") win for any typo.
        from rapidfuzz import fuzz, process  # only for a misspelt name: ~30 ms at every process's start

        match = process.extractOne(name.strip().lower(), list(self.alias_map), scorer=fuzz.ratio)
        if match is None or match[1] < 60:
            return None
        return self.alias_map[match[0]]

    def counted_with(self, item: str) -> tuple[str, ...]:
        """``item`` and the items that count as it (``counted_as``), e.g. ``("g_csf", "pegfilgrastim")``: what a
        count of "``item`` given" (days given, support before a recovery) reads. Each keeps its own unit, range
        and codes, so a dose is never read in another drug's unit."""
        if item not in self.items:
            raise KeyError(f"unknown vocabulary item {item!r}")
        return (item, *(n for n, d in self.items.items() if d.counted_as == item))

    def names_where(self, **flags: Any) -> list[str]:
        """Items whose attributes equal the given values, e.g. ``names_where(vasopressor=True)``."""
        return [n for n, d in self.items.items() if all(getattr(d, k) == v for k, v in flags.items())]

    def markdown(self) -> str:
        """The table as a Markdown page (docs/vocabulary.md is generated from it)."""
        lines = [
            f"# Event vocabulary (version {self.version})",
            "",
            "Generated from `src/tocsin/data/vocabulary.yaml` by `tocsin schema`; do not edit by hand.",
            "Numbers are converted to the canonical UCUM unit on entry (original value and unit kept).",
            "",
            "| item | kind | type | canonical unit | accepted range / values | codes | aliases | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, d in self.items.items():
            if d.value_type == "number":
                allowed = f"{d.range[0]:g}–{d.range[1]:g}" + (
                    f" (also {d.per_kg_unit} × weight)" if d.per_kg_unit else ""
                )
            elif d.values:
                allowed = ", ".join(f"`{v}`" for v in d.values)
            else:
                allowed = d.value_type
            codes = ", ".join(f"{k.upper()} {v}" for k, v in d.codes.model_dump(exclude={"verified"}).items() if v)
            if codes and not d.codes.verified:
                codes += " (to verify)"
            notes = [" ".join(d.description.split())]
            if d.limits:
                notes.append("Rows may carry `lln`/`uln`/`lloq`; `<x` or `BLQ` = below quantification.")
            if d.differential_of:
                notes.append(f"Also accepted in % of `{d.differential_of}` (same time).")
            if d.molar_mass:
                notes.append(f"Substance units converted with M = {d.molar_mass:g} g/mol.")
            if d.counted_as:
                notes.append(f"Counted as `{d.counted_as}` given (days given, support before a recovery).")
            lines.append(
                f"| `{name}` | {d.kind} | {d.value_type} | {d.unit or ''} | {allowed} | {codes} | "
                f"{', '.join(d.aliases)} | {' '.join(n for n in notes if n)} |"
            )
        return "\n".join(lines) + "\n"

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (2020-12) of one event row, generated from the table."""
        item_names = sorted(self.alias_map)
        branches = []
        for name, d in sorted(self.items.items()):
            names = sorted({name, *d.aliases})
            value: dict[str, Any]
            if d.value_type == "number":
                value = {"type": ["number", "string"], "description": f"{d.range[0]}..{d.range[1]} {d.unit}"}
            elif d.value_type == "category":
                value = {"enum": sorted({*d.values, *d.value_aliases})}
            elif d.value_type == "boolean":
                value = {"enum": [True, False, "true", "false", "yes", "no", "1", "0"]}
            else:
                value = {"type": "string"}
            branch: dict[str, Any] = {
                "if": {"properties": {"item": {"enum": names}}},
                "then": {"properties": {"value": value}},
            }
            if d.unit:
                branch["then"]["properties"]["unit"] = {
                    "type": "string",
                    "description": f"UCUM, convertible to {d.unit}"
                    + (f" (or {d.per_kg_unit}, multiplied by weight)" if d.per_kg_unit else ""),
                }
            branches.append(branch)
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://tocsin.example/schema/event/{self.version}",
            "title": f"Tocsin event row (vocabulary {self.version})",
            "type": "object",
            "required": ["patient_id", "item", "value"],
            "oneOf": [{"required": ["time"]}, {"required": ["day"]}],
            "properties": {
                "patient_id": {"type": "string", "minLength": 1},
                "time": {"type": "string", "format": "date-time"},
                "day": {"type": "number", "description": "days since infusion (day 0 = infusion)"},
                "item": {"enum": item_names},
                "value": {},
                "unit": {"type": "string"},
                "source": {"type": "string"},
                "note": {"type": "string"},
            },
            "allOf": branches,
        }


def _check_counted_as(name: str, definition: ItemDefinition, items: dict[str, ItemDefinition]) -> None:
    """``counted_as`` names another item of the same kind that is counted as no other: one level, so that
    :meth:`Vocabulary.counted_with` is the whole group and a count cannot loop."""
    target = definition.counted_as
    if target is None:
        return
    if target not in items or target == name:
        raise ValueError(f"item {name!r}: counted_as names unknown item {target!r}; give another item's name")
    if items[target].kind != definition.kind:
        raise ValueError(
            f"item {name!r}: counted_as {target!r} is of kind {items[target].kind}, not {definition.kind}; "
            "count an item only as one of its own kind"
        )
    if items[target].counted_as:
        raise ValueError(
            f"item {name!r}: counted_as {target!r}, which is itself counted as {items[target].counted_as!r}; "
            f"name {items[target].counted_as!r} directly"
        )


@cache
def load_vocabulary() -> Vocabulary:
    """Load and validate the packaged vocabulary table (cached: it is immutable)."""
    text = resources.files("tocsin.data").joinpath("vocabulary.yaml").read_text(encoding="utf-8")
    raw = parse_yaml(text)
    items = {row["item"]: ItemDefinition.model_validate(row) for row in raw["items"]}
    return Vocabulary(version=str(raw["version"]), items=items)
