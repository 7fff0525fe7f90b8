"""Drug dose rules and the corticosteroid equivalence table, kept as versioned data and validated on load.

``tocsin/data/drugs.yaml`` holds, per drug, the dose bands (by weight and age), the per-dose cap, the label
maximum, the repeat limits (interval, doses per rolling 24 h, doses in total), route and infusion time;
``tocsin/data/steroid_equivalence.yaml`` the equivalent anti-inflammatory doses. Every number carries its
source, a DOI or URL and a verification tag (``../shared/clinical/criteria.md`` §5-§6). The arithmetic on
them is in :mod:`tocsin.core.dosing` and :mod:`tocsin.core.steroid_exposure`.

A file that does not validate raises :class:`DrugDataError` naming the file, the drug and the field.

Example
-------
>>> from tocsin.drugs import load_drugs
>>> toci = load_drugs().drug("tocilizumab")
>>> toci.cap_mg, toci.rules().min_interval_hours, toci.rules().max_doses_total
(800.0, 8.0, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tocsin.core.events import ROUTES
from tocsin.vocabulary import Vocabulary, load_vocabulary
from tocsin.yaml_text import parse_yaml

Tag = Literal["V2", "V1", "M", "decision"]


class DrugDataError(ValueError):
    """A drug or equivalence file that does not validate; the message names file, drug and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cited(_Model):
    """Where a value comes from: citation (and where in it), DOI or URL, verification tag."""

    source: str = Field(min_length=1)
    ref: str = Field(min_length=1, description="DOI (doi:...) or URL.")
    tag: Tag


class Sourced(Cited):
    """A number with its source. ``caution`` records a disagreement between sources (criteria.md ⚠)."""

    value: float = Field(gt=0)
    caution: str = ""


class CountLimit(Sourced):
    @field_validator("value")
    @classmethod
    def _whole(cls, v: float) -> float:
        if v != int(v):
            raise ValueError("a number of doses must be a whole number")
        return v


class TotalLimit(CountLimit):
    scope: Literal["course", "episode"] = Field(
        description="What the total counts: every dose since infusion (course) or the doses of one episode."
    )


class RepeatLimits(_Model):
    min_interval_hours: Sourced | None = None
    max_doses_24h: CountLimit | None = None
    max_doses_total: TotalLimit | None = None


@dataclass(frozen=True)
class AdministrationRules:
    """The repeat limits as plain numbers (``None`` = no such limit), for the limit arithmetic.

    A guideline pack may tighten them, e.g. ``dataclasses.replace(rules, max_doses_total=2)`` for the NCCN
    tocilizumab-conservation option.
    """

    drug: str
    min_interval_hours: float | None = None
    max_doses_24h: int | None = None
    max_doses_total: int | None = None
    total_scope: Literal["course", "episode"] = "course"


class DoseBand(Cited):
    """One dose for the patients whose weight and age fall in the band (min inclusive, below exclusive)."""

    per_kg_mg: float | None = Field(None, gt=0)
    fixed_mg: float | None = Field(None, gt=0)
    cap_mg: float | None = Field(None, gt=0, description="A cap of this band only (e.g. a paediatric maximum).")
    weight_min_kg: float | None = Field(None, ge=0)
    weight_below_kg: float | None = Field(None, gt=0)
    age_min_years: float | None = Field(None, ge=0)
    age_below_years: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> DoseBand:
        if (self.per_kg_mg is None) == (self.fixed_mg is None):
            raise ValueError("a band gives exactly one of per_kg_mg and fixed_mg")
        for low, high in ((self.weight_min_kg, self.weight_below_kg), (self.age_min_years, self.age_below_years)):
            if low is not None and high is not None and low >= high:
                raise ValueError(f"empty band: minimum {low} is not below {high}")
        return self

    @property
    def weight_range(self) -> tuple[float, float]:
        return (self.weight_min_kg or 0.0, self.weight_below_kg or float("inf"))

    @property
    def age_range(self) -> tuple[float, float]:
        return (self.age_min_years or 0.0, self.age_below_years or float("inf"))

    @property
    def needs_weight(self) -> bool:
        return self.per_kg_mg is not None or self.weight_min_kg is not None or self.weight_below_kg is not None

    @property
    def needs_age(self) -> bool:
        return self.age_min_years is not None or self.age_below_years is not None

    def conditions(self) -> str:
        """Who the band is for, in words ("weight >= 30 kg"); empty when it applies to everyone."""
        return " and ".join(
            f"{name} {op} {value:g} {unit}"
            for name, op, value, unit in (
                ("weight", ">=", self.weight_min_kg, "kg"),
                ("weight", "<", self.weight_below_kg, "kg"),
                ("age", ">=", self.age_min_years, "y"),
                ("age", "<", self.age_below_years, "y"),
            )
            if value is not None
        )

    def describe(self) -> str:
        amount = f"{self.per_kg_mg:g} mg/kg" if self.per_kg_mg is not None else f"{self.fixed_mg:g} mg"
        cap = f" (max {self.cap_mg:g} mg)" if self.cap_mg is not None else ""
        conditions = self.conditions()
        return amount + cap + (f" if {conditions}" if conditions else "")


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class Regimen(_Model):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    frequency: str = Field(min_length=1)
    bands: tuple[DoseBand, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _bands_do_not_overlap(self) -> Regimen:
        # First match wins, so an overlap would make the order of the file a silent dose rule.
        for i, a in enumerate(self.bands):
            for b in self.bands[i + 1 :]:
                if _overlap(a.weight_range, b.weight_range) and _overlap(a.age_range, b.age_range):
                    raise ValueError(f"regimen {self.id!r}: bands '{a.describe()}' and '{b.describe()}' overlap")
        return self


class Drug(_Model):
    id: str = Field(min_length=1, description="The vocabulary item name of the drug.")
    name: str
    route: str
    infusion_minutes: Sourced | None = None
    min_age_years: Sourced | None = None
    max_dose_mg: Sourced | None = Field(None, description="Per-dose cap of the guidelines.")
    label_max_dose_mg: Sourced | None = Field(None, description="Per-dose maximum of the product label.")
    limits: RepeatLimits = RepeatLimits()
    regimens: tuple[Regimen, ...] = Field(min_length=1)
    caution: str = ""

    @field_validator("route")
    @classmethod
    def _known_route(cls, v: str) -> str:
        if v not in ROUTES:
            raise ValueError(f"route {v!r} is not one of {', '.join(ROUTES)}")
        return v

    @model_validator(mode="after")
    def _unique_regimens(self) -> Drug:
        ids = [r.id for r in self.regimens]
        if len(set(ids)) != len(ids):
            raise ValueError(f"regimen ids are not unique: {ids}")
        return self

    @property
    def cap_mg(self) -> float | None:
        """The per-dose ceiling: the lower of the guideline cap and the label maximum (None = neither known)."""
        caps = [c.value for c in (self.max_dose_mg, self.label_max_dose_mg) if c is not None]
        return min(caps) if caps else None

    def regimen(self, regimen_id: str | None = None) -> Regimen:
        """The named regimen, or the drug's first (default) regimen."""
        if regimen_id is None:
            return self.regimens[0]
        for r in self.regimens:
            if r.id == regimen_id:
                return r
        raise KeyError(f"{self.id} has no regimen {regimen_id!r}; known: {', '.join(r.id for r in self.regimens)}")

    def rules(self) -> AdministrationRules:
        lim = self.limits
        return AdministrationRules(
            drug=self.id,
            min_interval_hours=lim.min_interval_hours.value if lim.min_interval_hours else None,
            max_doses_24h=int(lim.max_doses_24h.value) if lim.max_doses_24h else None,
            max_doses_total=int(lim.max_doses_total.value) if lim.max_doses_total else None,
            total_scope=lim.max_doses_total.scope if lim.max_doses_total else "course",
        )

    def _sourced(self) -> list[Sourced]:
        values = [self.infusion_minutes, self.min_age_years, self.max_dose_mg, self.label_max_dose_mg]
        values += [self.limits.min_interval_hours, self.limits.max_doses_24h, self.limits.max_doses_total]
        return [v for v in values if v is not None]

    def citations(self) -> tuple[str, ...]:
        """Every distinct reference behind the drug's numbers."""
        cited: list[Cited] = [*self._sourced(), *(b for r in self.regimens for b in r.bands)]
        return tuple(dict.fromkeys(c.ref for c in cited))

    def cautions(self) -> tuple[str, ...]:
        """The drug's caution and those of its numbers (where sources disagree)."""
        return tuple(c for c in (self.caution, *(v.caution for v in self._sourced())) if c)


class Rounding(_Model):
    decimals: int = Field(ge=0, le=3)
    source: str
    tag: Tag


class DrugTable(_Model):
    version: str
    rounding: Rounding
    awaiting_vocabulary: tuple[str, ...] = ()
    drugs: tuple[Drug, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_drugs(self) -> DrugTable:
        ids = [d.id for d in self.drugs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"drug ids are not unique: {ids}")
        return self

    def drug(self, drug_id: str) -> Drug:
        for d in self.drugs:
            if d.id == drug_id:
                return d
        raise KeyError(f"no dose rules for drug {drug_id!r}; known: {', '.join(d.id for d in self.drugs)}")


class SteroidEquivalence(Cited):
    """Equivalent anti-inflammatory doses (mg) of the corticosteroids, relative to ``reference_drug``."""

    version: str
    caution: str = ""
    reference_drug: str
    equivalent_mg: dict[str, float]

    @model_validator(mode="after")
    def _reference_listed(self) -> SteroidEquivalence:
        if self.reference_drug not in self.equivalent_mg:
            raise ValueError(f"reference drug {self.reference_drug!r} has no equivalent dose")
        bad = [k for k, v in self.equivalent_mg.items() if not v > 0]
        if bad:
            raise ValueError(f"equivalent doses must be > 0: {bad}")
        return self


def _errors(exc: ValidationError, data: Any, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "drugs" and isinstance(loc[1], int):
            entry = data["drugs"][loc[1]] if isinstance(data.get("drugs"), list) else {}
            drug_id = entry.get("id", f"#{loc[1] + 1}") if isinstance(entry, dict) else f"#{loc[1] + 1}"
            where, loc = f" drug '{drug_id}'", loc[2:]
        field = ".".join(str(p) for p in loc) or "(whole entry)"
        lines.append(f"{source}:{where} field '{field}': {err['msg']}")
    return "\n".join(lines)


def _parse(model: type[_Model], text: str, source: str) -> Any:
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise DrugDataError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DrugDataError(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DrugDataError(_errors(exc, data, source)) from exc


def parse_drugs(text: str, source: str = "drugs.yaml", vocabulary: Vocabulary | None = None) -> DrugTable:
    """Validate a drug file's text (a centre's copy, read by an adapter, or the packaged one).

    Every drug id must be a drug item of the event vocabulary, or be listed in ``awaiting_vocabulary``.
    """
    table = _parse(DrugTable, text, source)
    vocab = vocabulary or load_vocabulary()
    drug_items = set(vocab.names_where(kind="drug"))
    for d in table.drugs:
        if d.id not in drug_items and d.id not in table.awaiting_vocabulary:
            raise DrugDataError(
                f"{source}: drug '{d.id}' field 'id': not a drug item of the vocabulary "
                f"(known: {', '.join(sorted(drug_items))}); list it under awaiting_vocabulary until it is added"
            )
    return table


def parse_steroid_equivalence(
    text: str, source: str = "steroid_equivalence.yaml", vocabulary: Vocabulary | None = None
) -> SteroidEquivalence:
    """Validate an equivalence table; every steroid of the vocabulary must have an equivalent dose
    (a steroid without one would silently drop out of the exposure)."""
    table = _parse(SteroidEquivalence, text, source)
    vocab = vocabulary or load_vocabulary()
    missing = sorted(set(vocab.names_where(steroid=True)) - set(table.equivalent_mg))
    if missing:
        raise DrugDataError(f"{source}: field 'equivalent_mg': no equivalent dose for the steroid items {missing}")
    return table


def _packaged(name: str) -> str:
    return resources.files("tocsin.data").joinpath(name).read_text(encoding="utf-8")


@cache
def load_drugs() -> DrugTable:
    """The packaged drug table (``tocsin/data/drugs.yaml``), validated once per process."""
    return parse_drugs(_packaged("drugs.yaml"))


@cache
def load_steroid_equivalence() -> SteroidEquivalence:
    """The packaged equivalence table (``tocsin/data/steroid_equivalence.yaml``)."""
    return parse_steroid_equivalence(_packaged("steroid_equivalence.yaml"))
