"""Guideline packs: management rules by toxicity and grade, kept as versioned data and validated on load.

A pack (``tocsin/data/packs/<name>.yaml``) names a guideline, its version and citation, and lists rules. A
rule fires for a (patient, time) when its grade condition and every ``when`` condition hold over the
assessment facts (:mod:`tocsin.core.guidance.facts`). A condition names any fact column, so a pack can use a
fact that another module adds later; a rule whose fact is missing is reported as "cannot evaluate: needs
<fact>", never treated as false.

Condition language (one string per condition)::

    crs_grade >= 2          # ==, !=, <, <=, >, >=
    crs_grade in [2, 3]     # membership
    crs_active              # the fact is true
    not crs_active          # the fact is false

A centre copies a pack file, changes a value and loads it with ``tocsin assess --pack-file FILE``; a file
that does not validate raises :class:`PackError` naming the file, the rule and the field, with the fix.

References: ASCO 2021 (Santomasso, doi:10.1200/JCO.21.01992); EBMT/EHA 2021 (Hayden, Ann Oncol 2022;33:259,
doi:10.1016/j.annonc.2021.12.003); the source papers (``../shared/seeds/README.md``); criteria.md §5.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tocsin.drugs import DrugTable, load_drugs

#: ``cytopenia`` rules (prolonged cytopenia, ICAHT) carry no grade condition: they fire on their ``when`` facts.
Toxicity = Literal["crs", "icans", "cytopenia", "any"]
Evidence = Literal["guideline", "expert_consensus", "case_level"]
Tag = Literal["V2", "V1", "M", "decision"]
OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "in")
_CONDITION = re.compile(
    r"^\s*(?:(?P<neg>not)\s+(?P<bare_neg>\w+)|(?P<fact>\w+)\s*(?:(?P<op>==|!=|<=|>=|<|>|\bin\b)\s*(?P<value>.+))?)\s*$"
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class PackError(ValueError):
    """A pack file that does not validate; the message names the file, the rule, the field and the fix."""


class Condition(BaseModel):
    """One parsed condition: ``fact op value`` (``op`` ``is_true`` / ``is_false`` for a bare fact)."""

    model_config = ConfigDict(frozen=True)
    fact: str
    op: Literal["==", "!=", "<=", ">=", "<", ">", "in", "is_true", "is_false"]
    value: Any = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        m = _CONDITION.match(text)
        if not m:
            raise ValueError(
                f"cannot read condition {text!r}: write 'fact OP value' (OP one of {', '.join(OPERATORS)}), "
                "'fact' or 'not fact'"
            )
        if m["neg"]:
            return cls(fact=m["bare_neg"], op="is_false")
        if m["op"] is None:
            return cls(fact=m["fact"], op="is_true")
        try:
            value = yaml.safe_load(m["value"])
        except yaml.YAMLError:
            raise ValueError(f"cannot read condition {text!r}: the value {m['value']!r} is not a number, list or word")

        if m["op"] == "in" and not isinstance(value, list):
            raise ValueError(f"condition {text!r}: 'in' needs a list, e.g. 'crs_grade in [2, 3]'")
        if m["op"] != "in" and not isinstance(value, int | float | str | bool):
            raise ValueError(f"condition {text!r}: the value must be a number, true/false or a string")
        return cls(fact=m["fact"], op=m["op"], value=value)

    def text(self) -> str:
        if self.op == "is_true":
            return self.fact
        if self.op == "is_false":
            return f"not {self.fact}"
        return f"{self.fact} {self.op} {self.value}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """One management rule of a pack (see the module docstring for the condition language)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    toxicity: Toxicity
    kind: Literal["suggestion", "alert"] = "suggestion"
    grade: list[int] | None = Field(default=None, description="Grades of the toxicity the rule applies to.")
    min_grade: int | None = Field(default=None, ge=0, le=5)
    when: list[str] = Field(default_factory=list, description="Further conditions over named facts.")
    action: str = Field(
        min_length=1, description="What to do, with {fact} placeholders (e.g. a dose the facts compute)."
    )
    drug: str | None = Field(default=None, description="A drugs.yaml id: the dose comes from dose_for.")
    regimen: str | None = None
    agent: str | None = Field(default=None, description="A drug without dose rules in drugs.yaml (no mg dose).")
    frequency: str | None = Field(default=None, description="Overrides the regimen's frequency text.")
    suppresses: list[str] = Field(default_factory=list, description="Alerts only: drugs not to suggest.")
    severity: Literal["info", "warning", "contraindication"] = "info"
    rank: int = Field(ge=1, description="1 = first; ties keep the pack order.")
    because: str = Field(min_length=1, description="Why, with {fact} placeholders filled from the facts.")
    what_would_change: str = Field(min_length=1)
    evidence: Evidence
    tag: Tag
    citation: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Where in the citation the rule is stated.")

    @field_validator("grade")
    @classmethod
    def _grades(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(g < 0 or g > 5 for g in v)):
            raise ValueError("grade must be a non-empty list of grades 0-5, e.g. [2] or [3, 4]")
        return v

    @field_validator("when")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        for text in v:
            Condition.parse(text)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.grade is not None and self.min_grade is not None:
            raise ValueError("give either grade or min_grade, not both")
        if (self.grade is not None or self.min_grade is not None) and self.toxicity not in ("crs", "icans"):
            raise ValueError("a grade condition needs toxicity crs or icans (cytopenia rules use 'when' facts)")
        if self.drug and self.agent:
            raise ValueError("give either drug (dosed from drugs.yaml) or agent (not dosed), not both")
        if self.regimen and not self.drug:
            raise ValueError("regimen needs drug")
        if self.kind == "alert" and (self.drug or self.agent):
            raise ValueError("an alert names no drug to give; list the drugs it forbids under suppresses")
        if self.suppresses and self.kind != "alert":
            raise ValueError("suppresses is for alerts")
        for name in _PLACEHOLDER.findall(self.because):
            if not re.fullmatch(r"\w+", name):
                raise ValueError(f"because: placeholder {{{name}}} must name a fact")
        return self

    def conditions(self) -> list[Condition]:
        """The grade condition (on ``<toxicity>_grade``) followed by the ``when`` conditions."""
        grade = f"{self.toxicity}_grade"
        out = []
        if self.grade is not None:
            out.append(
                Condition(fact=grade, op="in", value=self.grade)
                if len(self.grade) > 1
                else Condition(fact=grade, op="==", value=self.grade[0])
            )
        if self.min_grade is not None:
            out.append(Condition(fact=grade, op=">=", value=self.min_grade))
        return out + [Condition.parse(t) for t in self.when]

    def facts(self) -> list[str]:
        """Every fact the rule reads (conditions, ``action`` and ``because`` placeholders), in order, once each."""
        names = [c.fact for c in self.conditions()] + _PLACEHOLDER.findall(self.action + self.because)
        return list(dict.fromkeys(names))


class Pack(_Model):
    """A named, versioned guideline pack."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    citation: str = Field(min_length=1)
    doi: str = Field(min_length=1, description="doi:... or a URL")
    evidence_note: str = Field(min_length=1, description="What kind of evidence the pack rests on, honestly.")
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Pack:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice: rule ids must be unique")
            seen.add(rule.id)
        return self

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)


def _where(raw: dict, loc: tuple) -> str:
    """'rule <id> field <path>' for a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules") or []
        rid = (
            rules[loc[1]].get("id", f"#{loc[1] + 1}")
            if loc[1] < len(rules) and isinstance(rules[loc[1]], dict)
            else f"#{loc[1] + 1}"
        )
        field = ".".join(str(p) for p in loc[2:]) or "(rule)"
        return f"rule {rid!r} field {field!r}"
    return f"field {'.'.join(str(p) for p in loc) or '(pack)'!r}"


def _check_drugs(pack: Pack, drugs: DrugTable, source: str) -> None:
    """Every drug and regimen a rule names must exist in the drug table (a typo would drop the dose)."""
    known = {d.id: d for d in drugs.drugs}
    for rule in pack.rules:
        names = ([rule.drug] if rule.drug else []) + list(rule.suppresses)
        for name in names:
            if name not in known:
                raise PackError(
                    f"{source}: rule {rule.id!r} field 'drug': unknown drug {name!r}; "
                    f"fix: use one of {', '.join(sorted(known))} (drugs.yaml), or 'agent' for a drug without dose rules"
                )
        if rule.drug and rule.regimen:
            regimens = [r.id for r in known[rule.drug].regimens]
            if rule.regimen not in regimens:
                raise PackError(
                    f"{source}: rule {rule.id!r} field 'regimen': {rule.regimen!r} is not a regimen of "
                    f"{rule.drug}; fix: use one of {', '.join(regimens)}"
                )


def parse_pack(text: str, source: str, drugs: DrugTable | None = None) -> Pack:
    """Validate a pack file's text; raise :class:`PackError` naming ``source``, the rule, the field and the fix."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackError(f"{source}: not valid YAML ({exc}); fix: check indentation and quoting") from exc
    if not isinstance(raw, dict):
        raise PackError(f"{source}: a pack is a mapping with name, version, title, citation, doi, rules")
    try:
        pack = Pack.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise PackError(
            f"{source}: {_where(raw, tuple(first['loc']))}: {first['msg']}{more}; fix: see docs/assess.md (pack format)"
        ) from exc
    _check_drugs(pack, drugs or load_drugs(), source)
    return pack


def _packaged() -> Any:
    return resources.files("tocsin").joinpath("data", "packs")


def pack_names() -> list[str]:
    """The packaged packs (file names without ``.yaml``)."""
    return sorted(p.name.removesuffix(".yaml") for p in _packaged().iterdir() if p.name.endswith(".yaml"))


@cache
def load_pack(name: str) -> Pack:
    """A packaged pack by name (``asco2021``, ``ebmt2021``, ``source_papers``)."""
    if name not in pack_names():
        raise PackError(f"unknown pack {name!r}; fix: use one of {', '.join(pack_names())} or --pack-file FILE")
    return parse_pack(_packaged().joinpath(f"{name}.yaml").read_text(encoding="utf-8"), f"{name}.yaml")
