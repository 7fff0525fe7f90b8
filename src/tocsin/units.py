"""Unit conversion to each item's canonical UCUM unit, through ucumvert.

UCUM strings are never handed to pint directly: pint reads ``10*3/uL`` as 30/µL. ucumvert parses the
UCUM grammar and gives pint quantities. A conversion is reduced to ``canonical = value * scale +
offset`` (offset only for °F → °C), computed once per distinct (unit, canonical unit) pair, so the
columnar ingest can apply it to millions of rows with one join.

Building the ucumvert registry takes about 1.5 s of CPU, so the conversions between the units Tocsin
is commonly given are kept, as ucumvert computed them, in ``data/unit_conversions.json``
(``python -m tocsin.units`` rewrites it; a test recomputes every entry with ucumvert). Any other unit
is converted by ucumvert itself.

Example
-------
>>> conversion_for("[degF]", "Cel").apply(100.4)
38.0
>>> conversion_for("mg/dL", "mg/L").scale
10.0
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pint is imported with ucumvert, on first use (~0.1 s): most conversions come from the table
    import pint

# Spellings that flowsheets use but UCUM does not accept (or reads as something else: `C` is the
# coulomb). Keys are compared case-sensitively first, then in lower case.
UNIT_SPELLINGS: dict[str, str] = {
    "°C": "Cel",
    "C": "Cel",
    "degC": "Cel",
    "celsius": "Cel",
    "°F": "[degF]",
    "F": "[degF]",
    "degF": "[degF]",
    "fahrenheit": "[degF]",
    "mmHg": "mm[Hg]",
    "mm Hg": "mm[Hg]",
    "bpm": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "lpm": "L/min",
    "l/min": "L/min",
    "ml": "mL",
    "years": "a",
    "year": "a",
    "yr": "a",
    "y": "a",
    "units/min": "U/min",
    "units/h": "U/h",
    "K/uL": "10*3/uL",
    "10^3/uL": "10*3/uL",
    "10^9/L": "10*9/L",
    "score": "{score}",
    "points": "{score}",
    "fraction": "1",
    "x10^9/L": "10*9/L",
    "x10E9/L": "10*9/L",
    "G/L": "10*9/L",  # French/German "giga per litre"
    "/mm3": "/uL",
    "cells/uL": "/uL",
    "cells/mm3": "/uL",
    "{cells}/uL": "/uL",
    "copies/ug": "{copies}/ug",
    "copies/ug gDNA": "{copies}/ug",
    "copies/ug DNA": "{copies}/ug",
    "IU": "[iU]",
    "IU/kg": "[iU]/kg",
    "IU/L": "U/L",
    "units": "{unit}",
    "unit": "{unit}",
    "u": "{unit}",
    "bags": "{unit}",
}


class UnitError(ValueError):
    """A unit that cannot be parsed, or that does not convert to the item's canonical unit."""


@dataclass(frozen=True)
class Conversion:
    """``canonical = value * scale + offset``; ``per_kg`` means the result must still be × weight (kg)."""

    scale: float
    offset: float = 0.0
    per_kg: bool = False

    def apply(self, value: float) -> float:
        return round(value * self.scale + self.offset, 10)


@cache
def _registry() -> pint.UnitRegistry:
    from ucumvert import PintUcumRegistry  # imported on first use: most conversions come from the table

    return PintUcumRegistry()


def normalise_spelling(unit: str) -> str:
    """Map common non-UCUM spellings (°C, mcg, mmHg...) to UCUM; leave UCUM strings untouched."""
    u = unit.strip()
    if u in UNIT_SPELLINGS:
        return UNIT_SPELLINGS[u]
    if u.lower() in UNIT_SPELLINGS:
        return UNIT_SPELLINGS[u.lower()]
    return u.replace("mcg", "ug").replace("µ", "u").replace("μ", "u")


def _is_dimensionless(unit: str) -> bool:
    return unit in ("", "1") or (unit.startswith("{") and unit.endswith("}"))


def _quantity(unit: str) -> pint.Quantity:
    import pint

    try:
        parsed = _registry().from_ucum(unit)
    except Exception as exc:  # ucumvert raises lark/pint errors of several types
        raise UnitError(f"unit {unit!r} is not valid UCUM") from exc
    if not isinstance(parsed, pint.Quantity):
        raise UnitError(f"unit {unit!r} is not valid UCUM")
    return parsed


def _affine(source: pint.Quantity, target: pint.Quantity) -> tuple[float, float]:
    registry = _registry()
    zero = registry.Quantity(0.0, source.units).to(target.units).magnitude / target.magnitude
    one = registry.Quantity(1.0, source.units).to(target.units).magnitude / target.magnitude
    scale = (one - zero) * source.magnitude
    # 12 significant digits: float noise from pint (5/9 as 0.5555555555555429) must not leak out.
    return float(f"{scale:.12g}"), float(f"{zero:.12g}")


#: Input units, besides the vocabulary's own, whose conversions are kept in the table.
COMMON_INPUT_UNITS = (
    "[degF]",
    "Cel",
    "K",
    "mg/dL",
    "mg/L",
    "g/L",
    "g/dL",
    "ug/L",
    "ug/mL",
    "ng/mL",
    "pg/mL",
    "ng/L",
    "mmol/L",
    "umol/L",
    "10*3/uL",
    "10*9/L",
    "/uL",
    "10*6/L",
    "ug/min",
    "ug/kg/min",
    "ug/h",
    "mg/h",
    "mg/kg",
    "mg",
    "g",
    "ug",
    "U/min",
    "U/h",
    "mU/min",
    "L/min",
    "mL/min",
    "%",
    "1",
    "kg",
    "g",
    "[lb_av]",
    "a",
    "mo",
    "wk",
    "d",
    "mm[Hg]",
    "kPa",
    "/min",
    "/h",
    "mL",
    "L",
    "U/L",
    "/uL",
    "10*6/kg",
    "10*8",  # CAR-T doses (2 x 10^8 cells): a unit left out made every batch worker build the UCUM registry (~1 s)
    "10*9",
    "10*8/kg",
    "[iU]",
    "{unit}",
)
_TABLE = "unit_conversions.json"


def _key(unit: str, canonical: str, per_kg_unit: str | None, molar_mass: float | None = None) -> str:
    return (
        f"{unit} -> {canonical}"
        + (f" | {per_kg_unit}" if per_kg_unit else "")
        + (f" | {molar_mass:g} g/mol" if molar_mass else "")
    )


#: A conversion target: canonical unit, optional per-kg unit, optional molar mass (g/mol).
Target = tuple[str, str | None, float | None]


@cache
def _known() -> dict[str, Conversion]:
    text = resources.files("tocsin.data").joinpath(_TABLE).read_text(encoding="utf-8")
    return {k: Conversion(**v) for k, v in json.loads(text).items()}


def compute_conversion_table(targets: set[Target]) -> dict[str, dict[str, float | bool]]:
    """Every convertible (input unit, target) pair, computed with ucumvert."""
    table: dict[str, dict[str, float | bool]] = {}
    inputs = sorted({*COMMON_INPUT_UNITS, *(c for c, _, _ in targets), *(k for _, k, _ in targets if k)})
    for canonical, per_kg_unit, molar_mass in sorted(targets, key=str):
        for unit in inputs:
            try:
                conversion = _compute(unit, canonical, per_kg_unit, molar_mass)
            except UnitError:
                continue
            table[_key(unit, canonical, per_kg_unit, molar_mass)] = asdict(conversion)
    return table


def vocabulary_targets() -> set[Target]:
    """The conversion targets of every numeric vocabulary item."""
    from tocsin.vocabulary import load_vocabulary

    return {(d.unit, d.per_kg_unit, d.molar_mass) for d in load_vocabulary().items.values() if d.unit}


@cache
def conversion_for(
    unit: str, canonical: str, per_kg_unit: str | None = None, molar_mass: float | None = None
) -> Conversion:
    """How to turn a value in ``unit`` into ``canonical`` (or into ``per_kg_unit`` × weight).

    With ``molar_mass`` (g/mol), a substance concentration (mmol/L) converts to a mass concentration.
    Raises :class:`UnitError` with the accepted units when the unit is unknown or incompatible.
    """
    ucum = normalise_spelling(unit)
    known = _known().get(_key(ucum, canonical, per_kg_unit, molar_mass))
    return known if known is not None else _compute(ucum, canonical, per_kg_unit, molar_mass)


def _compute(ucum: str, canonical: str, per_kg_unit: str | None, molar_mass: float | None = None) -> Conversion:
    unit = ucum
    if _is_dimensionless(canonical) and _is_dimensionless(ucum):
        return Conversion(1.0)
    accepted = canonical + (f" or {per_kg_unit}" if per_kg_unit else "")
    if ucum == "" or (ucum.startswith("{") and ucum.endswith("}")):
        raise UnitError(f"unit is missing; give it in {accepted}")
    source = _quantity(ucum)
    target = _quantity(canonical) if not _is_dimensionless(canonical) else None
    if target is not None and source.dimensionality == target.dimensionality:
        scale, offset = _affine(source, target)
        return Conversion(scale, offset)
    if target is not None and molar_mass is not None:
        molar = _quantity("mol/L")
        mass = _quantity("g/L")
        if source.dimensionality == molar.dimensionality and target.dimensionality == mass.dimensionality:
            to_mol_per_l, _ = _affine(source, molar)
            g_per_l_to_target, _ = _affine(mass, target)
            return Conversion(float(f"{to_mol_per_l * molar_mass * g_per_l_to_target:.12g}"))
    if per_kg_unit is not None:
        per_kg_target = _quantity(per_kg_unit)
        if source.dimensionality == per_kg_target.dimensionality:
            scale, offset = _affine(source, per_kg_target)
            return Conversion(scale, offset, per_kg=True)
    raise UnitError(f"unit {unit!r} does not convert to {accepted}")


def _write_table() -> Path:
    path = Path(str(resources.files("tocsin.data").joinpath(_TABLE)))
    table = compute_conversion_table(vocabulary_targets())
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print(f"wrote {_write_table()}")
