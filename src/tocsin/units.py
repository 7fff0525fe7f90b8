"""Unit conversion to each item's canonical UCUM unit, through ucumvert.

UCUM strings are never handed to pint directly: pint reads ``10*3/uL`` as 30/µL. ucumvert parses the
UCUM grammar and gives pint quantities. A conversion is reduced to ``canonical = value * scale +
offset`` (offset only for °F → °C), computed once per distinct (unit, canonical unit) pair, so the
columnar ingest can apply it to millions of rows with one join.

Example
-------
>>> conversion_for("[degF]", "Cel").apply(100.4)
38.0
>>> conversion_for("mg/dL", "mg/L").scale
10.0
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pint
from ucumvert import PintUcumRegistry

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
def _registry() -> PintUcumRegistry:
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
    return float(scale), float(zero)


@cache
def conversion_for(unit: str, canonical: str, per_kg_unit: str | None = None) -> Conversion:
    """How to turn a value in ``unit`` into ``canonical`` (or into ``per_kg_unit`` × weight).

    Raises :class:`UnitError` with the accepted units when the unit is unknown or incompatible.
    """
    ucum = normalise_spelling(unit)
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
    if per_kg_unit is not None:
        per_kg_target = _quantity(per_kg_unit)
        if source.dimensionality == per_kg_target.dimensionality:
            scale, offset = _affine(source, per_kg_target)
            return Conversion(scale, offset, per_kg=True)
    raise UnitError(f"unit {unit!r} does not convert to {accepted}")
