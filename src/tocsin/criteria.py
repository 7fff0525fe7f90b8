"""Grading criteria kept as versioned data (``tocsin/data/criteria/*.yaml``), loaded and validated here.

Each scale file carries its citation, DOI, fixed tables (device tiers, ICE bands...) and its rules with
stable ids; the grading code refers to rules by id and reads its tables from here, so a criterion is
changed in one reviewed place, never as a literal scattered through the code.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict

from tocsin.yaml_text import parse_yaml


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    grade: int | None
    domain: str
    text: str


class Scale(BaseModel):
    """One grading scale: identity, citation, tables and rules."""

    model_config = ConfigDict(extra="allow", frozen=True)
    scale: str
    title: str
    version: str
    citation: str
    doi: str
    rules: tuple[Rule, ...]

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"{self.scale} has no rule {rule_id!r}")

    def table(self, name: str) -> Any:
        return getattr(self, name)


@cache
def known_scales() -> tuple[str, ...]:
    """Every criteria file shipped in ``tocsin/data/criteria`` (file name without ``.yaml``)."""
    files = resources.files("tocsin.data.criteria").iterdir()
    return tuple(sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml")))


@cache
def load_scale(name: str) -> Scale:
    if name not in known_scales():
        raise KeyError(f"unknown scale {name!r}; known: {', '.join(known_scales())}")
    text = resources.files("tocsin.data.criteria").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return Scale.model_validate(parse_yaml(text))
