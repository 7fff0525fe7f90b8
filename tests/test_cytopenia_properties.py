"""Property tests of CTCAE cytopenia grading (``tocsin.core.cytopenia_ctcae.grade_cytopenias``).

Each example is a random course of ANC, platelet, hemoglobin, lymphocyte and WBC values (often exactly at a
cut-off or an LLN), with red cell and platelet transfusions, written as raw event rows, normalised by
``normalise_events`` and graded by the production function. Nothing here grades: the tests compare runs.

a. a lower count never gives a lower grade (same course, every value lowered or kept);
b. the unit a value is written in never changes a result (10*9/L, 10^9/L, G/L, 10*3/uL, /uL, cells/mm3 for
   counts; g/dL and g/L for hemoglobin);
c. grading a batch equals grading each patient alone;
d. an LLN only decides between grades 0 and 1: every grade known without it is the same with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tocsin.config import CytopeniaConfig
from tocsin.core.cytopenia_ctcae import LINEAGES, grade_cytopenias
from tocsin.core.events import normalise_events
from tocsin.vocabulary import load_vocabulary

SCALE = float(os.environ.get("TOCSIN_PROPERTY_SCALE", "1"))
PROPERTY_SETTINGS = settings(
    max_examples=max(1, int(40 * SCALE)), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
VOCABULARY = load_vocabulary()
SLOTS_PER_DAY = 4
SLOTS = range(1, 10 * SLOTS_PER_DAY + 1)
#: Values are drawn in cells/uL (counts) and hundredths of g/dL (hemoglobin), so every unit is exact.
RANGES = {"anc": (0, 6000), "plt": (0, 400_000), "hgb": (300, 1700), "alc": (0, 4000), "wbc": (0, 15_000)}
#: Every CTCAE v5.0/v6.0 cut-off and the LLNs below, in the same integer units: examples hit them exactly.
CUTS = {
    "anc": [100, 500, 1000, 1500, 1800],
    "plt": [10_000, 25_000, 50_000, 75_000, 150_000],
    "hgb": [800, 1000, 1200],
    "alc": [200, 500, 800, 1000],
    "wbc": [1000, 2000, 3000, 4000],
}
#: Units and the divisor from the drawn integer to a value written in that unit.
COUNT_UNITS = {"10*9/L": 1000, "10^9/L": 1000, "G/L": 1000, "10*3/uL": 1000, "/uL": 1, "cells/mm3": 1}
HGB_UNITS = {"g/dL": 100, "g/L": 10}
REFERENCE_LLN = {"anc": 1.8, "plt": 150.0, "hgb": 12.0, "alc": 1.0, "wbc": 4.0}
CONFIGS = st.builds(
    CytopeniaConfig,
    scale=st.sampled_from(["ctcae5", "ctcae6"]),
    ctcae6_lymphocytes=st.sampled_from(["not_graded", "ctcae5"]),
    transfusion_raises_grade=st.booleans(),
)


@dataclass(frozen=True)
class Lab:
    slot: int
    lineage: str
    amount: int  # cells/uL, or hundredths of g/dL
    lln: int | None = None  # same integer unit
    unit: str = ""

    def written(self, amount: int) -> str:
        units = HGB_UNITS if self.lineage == "hgb" else COUNT_UNITS
        return format((Decimal(amount) / units[self.unit]).normalize(), "f")


@st.composite
def labs(draw: st.DrawFn) -> list[Lab]:
    """At most one value per lineage and time, so that two runs can be matched on (t, lineage)."""
    out = {}
    for _ in range(draw(st.integers(1, 25))):
        lineage = draw(st.sampled_from(LINEAGES))
        low, high = RANGES[lineage]
        amount = draw(st.one_of(st.integers(low, high), st.sampled_from(CUTS[lineage])))
        lln = draw(st.one_of(st.none(), st.sampled_from(CUTS[lineage])))
        unit = draw(st.sampled_from(list(HGB_UNITS if lineage == "hgb" else COUNT_UNITS)))
        slot = draw(st.sampled_from(SLOTS))
        out[(slot, lineage)] = Lab(slot, lineage, amount, lln, unit)
    return list(out.values())


transfusions = st.lists(
    st.tuples(st.sampled_from(SLOTS), st.sampled_from(["rbc_transfusion", "platelet_transfusion"])), max_size=4
)


def raw_rows(patient: str, course: list[Lab], given: list[tuple[int, str]]) -> list[dict]:
    rows = [{"patient_id": patient, "day": "0", "item": "infusion", "value": "axi-cel", "unit": "", "lln": None}]
    for lab in course:
        rows.append(
            {
                "patient_id": patient,
                "day": str(Decimal(lab.slot) / SLOTS_PER_DAY),
                "item": lab.lineage,
                "value": lab.written(lab.amount),
                "unit": lab.unit,
                "lln": None if lab.lln is None else lab.written(lab.lln),
            }
        )
    for slot, item in given:
        rows.append(
            {"patient_id": patient, "day": str(Decimal(slot) / SLOTS_PER_DAY), "item": item, "value": "1", "unit": ""}
        )
    return rows


def graded(patients: dict[str, tuple[list[Lab], list[tuple[int, str]]]], config: CytopeniaConfig) -> pl.DataFrame:
    rows = [row for name, (course, given) in patients.items() for row in raw_rows(name, course, given)]
    raw = pl.DataFrame(rows, schema={c: pl.String for c in ("patient_id", "day", "item", "value", "unit", "lln")})
    raw = raw.with_columns(pl.lit("course.csv").alias("file"), pl.int_range(2, raw.height + 2).alias("line"))
    normalised = normalise_events(raw, VOCABULARY)
    assert normalised.ok, normalised.problems.to_dicts()
    out = grade_cytopenias(normalised.events, config, normalised.patients)
    return out.with_columns(pl.col("patient_id").cast(pl.String))


def one(frame: pl.DataFrame, patient: str) -> pl.DataFrame:
    return frame.filter(pl.col("patient_id") == patient).drop("patient_id").sort("t", "lineage")


@PROPERTY_SETTINGS
@given(labs(), transfusions, CONFIGS, st.data(), st.booleans())
def test_a_lower_count_never_gives_a_lower_grade(
    course: list[Lab], given: list, config: CytopeniaConfig, data: st.DataObject, with_lln: bool
) -> None:
    if with_lln:
        config = config.model_copy(update={"lln_reference": REFERENCE_LLN})
    lower = [replace(lab, amount=data.draw(st.integers(RANGES[lab.lineage][0], lab.amount))) for lab in course]
    both = graded({"high": (course, given), "low": (lower, given)}, config)
    pairs = one(both, "high").join(one(both, "low"), on=["t", "lineage"], suffix="_low")
    assert pairs.height == len(course)
    worse = pairs.filter(pl.col("grade").is_not_null() & pl.col("grade_low").is_not_null())
    assert (worse["grade_low"] >= worse["grade"]).all(), worse.filter(pl.col("grade_low") < pl.col("grade"))


@PROPERTY_SETTINGS
@given(labs(), transfusions, CONFIGS, st.data())
def test_the_unit_never_changes_a_result(
    course: list[Lab], given: list, config: CytopeniaConfig, data: st.DataObject
) -> None:
    def other_unit(lab: Lab) -> Lab:
        return replace(lab, unit=data.draw(st.sampled_from(list(HGB_UNITS if lab.lineage == "hgb" else COUNT_UNITS))))

    both = graded({"a": (course, given), "b": ([other_unit(lab) for lab in course], given)}, config)
    assert one(both, "a").equals(one(both, "b"))


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(labs(), transfusions), min_size=2, max_size=4), CONFIGS)
def test_a_batch_grades_as_each_patient_alone(courses: list, config: CytopeniaConfig) -> None:
    patients = {f"P{i}": course for i, course in enumerate(courses)}
    batch = graded(patients, config)
    for name, course in patients.items():
        assert one(batch, name).equals(one(graded({name: course}, config), name))


@PROPERTY_SETTINGS
@given(labs(), transfusions, CONFIGS)
def test_an_lln_only_decides_between_grades_0_and_1(course: list[Lab], given: list, config: CytopeniaConfig) -> None:
    without = one(graded({"P": (course, given)}, config), "P")
    with_lln = one(graded({"P": (course, given)}, config.model_copy(update={"lln_reference": REFERENCE_LLN})), "P")
    pairs = without.join(with_lln, on=["t", "lineage"], suffix="_lln")
    known = pairs.filter(pl.col("grade").is_not_null())
    assert (known["grade"] == known["grade_lln"]).all()
    decided = pairs.filter(pl.col("missing").str.contains("lln") & ~pl.col("missing_lln").str.contains("lln"))
    assert decided["grade_lln"].is_in([0, 1]).all()


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(labs(), transfusions), min_size=1, max_size=3), CONFIGS, st.randoms(use_true_random=False))
def test_events_out_of_time_order_grade_the_same(courses: list, config: CytopeniaConfig, rng) -> None:
    rows = [row for i, (course, given) in enumerate(courses) for row in raw_rows(f"P{i}", course, given)]
    raw = pl.DataFrame(rows, schema={c: pl.String for c in ("patient_id", "day", "item", "value", "unit", "lln")})
    raw = raw.with_columns(pl.lit("course.csv").alias("file"), pl.int_range(2, raw.height + 2).alias("line"))
    events = normalise_events(raw, VOCABULARY).events
    shuffled = events[rng.sample(range(events.height), events.height)]
    key = ["patient_id", "t", "lineage"]
    assert grade_cytopenias(shuffled, config).sort(key).equals(grade_cytopenias(events, config).sort(key))
