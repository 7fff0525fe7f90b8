"""Tests of the synthetic cohort generator (tocsin.synth).

The checks re-derive what the labels claim from the events themselves (first fever, support tiers,
ICANS domains, episode separation), so a generator that drifts from its labels fails here.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import polars as pl
import pytest
import yaml

from tocsin.criteria import load_scale
from tocsin.synth import (
    EVENT_SCHEMA,
    LABEL_SCHEMA,
    OUTCOME_LABELS,
    PRODUCTS,
    SyntheticCohort,
    generate_cohort,
    write_cohort,
)

PRESSORS = ["norepinephrine", "epinephrine", "phenylephrine", "dopamine", "vasopressin"]
DEVICE_TIER: dict[str, int] = load_scale("crs_astct2019").table("oxygen_device_grade")
CONSCIOUSNESS_GRADE = {
    "awake": 0,
    "awakens_spontaneously": 1,
    "awakens_to_voice": 2,
    "awakens_to_touch": 3,
    "unarousable": 4,
}
# Units the generator writes on purpose besides an item's canonical and per-kg units.
DELIBERATE_UNITS = {
    "temperature": {"[degF]"},
    "crp": {"mg/dL"},
    "fio2": {"1"},
    "wbc": {"10*3/uL"},
    "anc": {"/uL"},
    "alc": {"/uL"},
    "plt": {"10*3/uL"},
    "hgb": {"g/L"},
    "creatinine": {"umol/L"},
    "car_t_dose_total": {"10*8"},
}
BASELINE_ITEMS = ["lymphodepletion", "anc", "plt", "hgb", "crp", "ferritin", "ldh", "creatinine"]
FOLLOW_UP_ITEMS = ["response", "progression", "next_therapy", "last_contact", "death"]
COMPLETE_RESPONSES = ["CR", "MRD_negative_CR", "CRi", "MRD_positive_CR"]


@pytest.fixture(scope="module")
def cohort() -> SyntheticCohort:
    return generate_cohort(500, seed=1)


@pytest.fixture(scope="module")
def vocabulary() -> dict[str, dict]:
    text = resources.files("tocsin").joinpath("data/vocabulary.yaml").read_text(encoding="utf-8")
    return {row["item"]: row for row in yaml.safe_load(text)["items"]}


def _celsius(events: pl.DataFrame) -> pl.DataFrame:
    """Temperature rows with the value in °C."""
    v = pl.col("value").cast(pl.Float64)
    return events.filter(pl.col("item") == "temperature").with_columns(
        pl.when(pl.col("unit") == "[degF]").then((v - 32) * 5 / 9).otherwise(v).alias("c")
    )


# ---------------------------------------------------------------------------------------------- shape
def test_columns_and_dtypes(cohort: SyntheticCohort) -> None:
    assert cohort.events.schema == pl.Schema(EVENT_SCHEMA)
    assert cohort.events.columns == ["patient_id", "day", "item", "value", "unit", "source"]
    assert cohort.labels.schema == pl.Schema(LABEL_SCHEMA)
    assert cohort.labels.columns == [
        "patient_id",
        "crs_max_grade",
        "crs_onset_day",
        "crs_episodes",
        "icans_max_grade",
        "icans_onset_day",
        "age",
        "product",
        "car_hematotox",
        "icaht_early_grade",
        "days_anc_le_500",
        "days_anc_le_100",
        "pht",
        "pht_lineage_count",
        "car_t_cmax",
        "car_t_tmax_day",
        *OUTCOME_LABELS,
        "car_t_dose_per_kg",
    ]
    assert cohort.labels.height == 500
    assert cohort.labels["patient_id"][0] == "SYN00001"
    assert cohort.events.null_count().sum_horizontal().item() == 0
    assert set(cohort.events["source"].unique()) == {"synth"}
    assert set(cohort.events["patient_id"].unique()) == set(cohort.labels["patient_id"])


def test_events_sorted_and_within_follow_up(cohort: SyntheticCohort) -> None:
    e = cohort.events
    # Only the lymphodepletion row and the baseline panel (days -6/-5) precede the infusion.
    before = e.filter(pl.col("day") < 0)
    assert before["day"].min() >= -6.0
    assert set(before["item"].unique()) == set(BASELINE_ITEMS)
    assert before.group_by("patient_id").len()["len"].unique().to_list() == [len(BASELINE_ITEMS)]
    # the 30-day course; only the disease course and outcome rows lie beyond it
    assert e.filter(~pl.col("item").is_in(FOLLOW_UP_ITEMS))["day"].max() < 30.0
    prev_pid, prev_day = pl.col("patient_id").shift(1), pl.col("day").shift(1)
    same_patient = pl.col("patient_id") == prev_pid
    in_order = (pl.col("patient_id") > prev_pid) | (same_patient & (pl.col("day") >= prev_day))
    assert e.select(in_order.fill_null(True).all()).item()


def test_every_patient_has_baseline_rows(cohort: SyntheticCohort) -> None:
    base = cohort.events.filter(
        pl.col("day") == 0.0, pl.col("item").is_in(["infusion", "age", "weight", "sex", "disease"])
    )
    counts = base.group_by("patient_id").agg(pl.col("item").n_unique())
    assert counts.height == 500 and counts["item"].min() == 5
    infusion = base.filter(pl.col("item") == "infusion").select("patient_id", pl.col("value").alias("product"))
    joined = cohort.labels.join(infusion, on="patient_id")
    assert (joined["product"] == joined["product_right"]).all()
    assert set(joined["product"]) <= set(PRODUCTS)


def test_one_car_t_dose_row_at_the_infusion_per_label(cohort: SyntheticCohort) -> None:
    """Per kg for axi-cel, brexu-cel, cilta-cel and children's tisa-cel; a total for liso-cel, ide-cel and adults'
    tisa-cel (10*8 in lymphoma); within each product's label range."""
    doses = cohort.events.filter(pl.col("item").str.starts_with("car_t_dose"))
    assert doses.height == 500 and doses["patient_id"].n_unique() == 500 and (doses["day"] == 0.0).all()
    weights = cohort.events.filter(pl.col("item") == "weight").select(
        "patient_id", pl.col("value").cast(float).alias("kg")
    )
    table = (
        doses.join(cohort.labels.select("patient_id", "product", "car_t_dose_per_kg"), on="patient_id")
        .join(weights, on="patient_id")
        .with_columns(pl.col("value").cast(float))
    )
    kinds = {(p, i, u) for p, i, u in table.select("product", "item", "unit").unique().rows()}
    for product in ("axi-cel", "brexu-cel", "cilta-cel"):
        assert {(i, u) for p, i, u in kinds if p == product} == {("car_t_dose_per_kg", "10*6/kg")}
    assert {(i, u) for p, i, u in kinds if p in ("liso-cel", "ide-cel")} == {("car_t_dose_total", "10*6")}
    assert ("tisa-cel", "car_t_dose_total", "10*8") in kinds and ("tisa-cel", "car_t_dose_per_kg", "10*6/kg") in kinds
    total = pl.when(pl.col("unit") == "10*8").then(pl.col("value") * 100).otherwise(pl.col("value"))
    per_kg = table.with_columns(
        pl.when(pl.col("unit") == "10*6/kg").then(pl.col("value")).otherwise(total / pl.col("kg")).alias("per_kg"),
        pl.when(pl.col("unit") == "10*6/kg").then(pl.col("value") * pl.col("kg")).otherwise(total).alias("total"),
    )
    # the label is rounded to 6 decimals, as derive rounds a dose computed from the weight
    assert per_kg.select((pl.col("per_kg").round(6) - pl.col("car_t_dose_per_kg")).abs().max()).item() < 1e-9
    ranges = {"axi-cel": (1.6, 2.4), "cilta-cel": (0.5, 1.0), "brexu-cel": (0.8, 2.4)}
    for product, (lo, hi) in ranges.items():
        rows = per_kg.filter(pl.col("product") == product)
        assert lo <= rows["per_kg"].min() and rows["per_kg"].max() <= hi, product
    caps = {"axi-cel": 200, "brexu-cel": 200, "cilta-cel": 100, "liso-cel": 120, "ide-cel": 510, "tisa-cel": 600}
    for product, cap in caps.items():
        assert per_kg.filter(pl.col("product") == product)["total"].max() <= cap + 1e-9, product


# ---------------------------------------------------------------------------------------------- determinism
def test_same_seed_same_cohort() -> None:
    a, b = generate_cohort(40, seed=11), generate_cohort(40, seed=11)
    assert a.events.equals(b.events)
    assert a.labels.equals(b.labels)


def test_patients_do_not_depend_on_cohort_size() -> None:
    small, large = generate_cohort(7, seed=11), generate_cohort(60, seed=11)
    ids = small.labels["patient_id"].to_list()
    assert large.labels.filter(pl.col("patient_id").is_in(ids)).equals(small.labels)
    assert large.events.filter(pl.col("patient_id").is_in(ids)).equals(small.events)


def test_different_seeds_differ() -> None:
    a, b = generate_cohort(40, seed=1), generate_cohort(40, seed=2)
    assert not a.events.equals(b.events)
    assert not a.labels.equals(b.labels)


def test_argument_checks() -> None:
    with pytest.raises(ValueError):
        generate_cohort(-1, seed=1)
    with pytest.raises(ValueError):
        generate_cohort(3, seed=1, days=7)
    with pytest.raises(ValueError):
        generate_cohort(3, seed=1.5)  # type: ignore[arg-type]
    empty = generate_cohort(0, seed=1)
    assert empty.events.height == 0 and empty.labels.height == 0
    assert empty.events.schema == pl.Schema(EVENT_SCHEMA)


def test_days_sets_follow_up() -> None:
    c = generate_cohort(20, seed=4, days=14)
    assert c.events.filter(~pl.col("item").is_in(FOLLOW_UP_ITEMS))["day"].max() < 14.0
    # follow-up events still come after day 30 (the day-28 response lies after a 14-day course, too)
    later = c.events.filter(pl.col("item").is_in(["progression", "next_therapy", "last_contact", "death"]))
    assert later["day"].min() > 30.0
    daily_crp = c.events.filter(pl.col("item") == "crp", pl.col("day") >= 0)
    assert daily_crp.group_by("patient_id").len()["len"].to_list() == [14] * 20
    # the early ICAHT window (days 0-30) is not covered, nor is day 28 within +/- 3 days: no claim
    assert c.labels["icaht_early_grade"].null_count() == 20 and c.labels["pht"].null_count() == 20
    assert c.labels["car_hematotox"].null_count() == 0


# ---------------------------------------------------------------------------------------------- vocabulary
def test_items_units_and_values_in_vocabulary(cohort: SyntheticCohort, vocabulary: dict[str, dict]) -> None:
    e = cohort.events
    assert set(e["item"].unique()) <= set(vocabulary)
    number = pl.col("value").cast(pl.Float64, strict=False)
    summary = e.group_by("item", "unit").agg(
        number.is_null().sum().alias("not_numbers"),
        number.min().alias("lo"),
        number.max().alias("hi"),
        (number != number.round(0)).sum().alias("fractional"),
        pl.col("value").str.contains(r"\.").sum().alias("dots"),
        pl.col("value").unique().head(50).alias("values"),
        pl.col("value").str.contains(r"^<\d+$").sum().alias("blq"),
    )
    for item, unit, not_numbers, lo, hi, fractional, dots, values, blq in summary.iter_rows():
        spec = vocabulary[item]
        if spec["value_type"] == "number":
            allowed = {spec["unit"], spec.get("per_kg_unit")} | DELIBERATE_UNITS.get(item, set())
            assert unit in allowed, (item, unit)
            if spec["kind"] == "kinetics":  # below the limit of quantification: "<5"
                not_numbers -= blq
            assert not_numbers == 0, item
            if spec.get("integer"):
                assert fractional == 0 and dots == 0, item
            if unit == spec["unit"]:
                assert spec["range"][0] <= lo and hi <= spec["range"][1], (item, lo, hi)
        else:
            assert unit == "", (item, unit)
            if spec["value_type"] == "category":
                assert set(values) <= set(spec["values"]), item


def test_converted_values_in_range(cohort: SyntheticCohort) -> None:
    temps = _celsius(cohort.events)
    assert temps["c"].min() >= 35.0 and temps["c"].max() <= 41.5
    crp = cohort.events.filter(pl.col("item") == "crp", pl.col("unit") == "mg/dL")["value"].cast(pl.Float64)
    assert crp.max() * 10 <= 1000
    fio2 = cohort.events.filter(pl.col("item") == "fio2", pl.col("unit") == "1")["value"].cast(pl.Float64)
    assert fio2.min() >= 0.21 and fio2.max() <= 1.0


def test_mixed_units_present(cohort: SyntheticCohort) -> None:
    pairs = set(cohort.events.select("item", "unit").unique().iter_rows())
    for pair in [
        ("temperature", "Cel"),
        ("temperature", "[degF]"),
        ("crp", "mg/L"),
        ("crp", "mg/dL"),
        ("norepinephrine", "ug/min"),
        ("norepinephrine", "ug/kg/min"),
        ("fio2", "%"),
        ("fio2", "1"),
    ]:
        assert pair in pairs, pair
    # Each patient keeps one temperature and one CRP unit; roughly 30 % use the alternative.
    per_patient = (
        cohort.events.filter(pl.col("item").is_in(["temperature", "crp"]))
        .group_by("patient_id", "item")
        .agg(pl.col("unit").n_unique().alias("n"), pl.col("unit").first().alias("unit"))
    )
    assert per_patient["n"].max() == 1
    share_f = (per_patient.filter(pl.col("item") == "temperature")["unit"] == "[degF]").mean()
    share_dl = (per_patient.filter(pl.col("item") == "crp")["unit"] == "mg/dL").mean()
    assert 0.2 < share_f < 0.4 and 0.2 < share_dl < 0.4
    # Per-kg norepinephrine only for patients with a weight row (all patients have one).
    weighted = set(cohort.events.filter(pl.col("item") == "weight")["patient_id"])
    assert set(cohort.events.filter(pl.col("unit") == "ug/kg/min")["patient_id"]) <= weighted


# ---------------------------------------------------------------------------------------------- cohort shape
def test_label_distribution(cohort: SyntheticCohort) -> None:
    labels = cohort.labels
    share = {g: (labels["crs_max_grade"] == g).mean() for g in range(5)}
    assert 0.12 <= share[0] <= 0.30
    assert 0.25 <= share[1] <= 0.48
    assert 0.18 <= share[2] <= 0.40
    assert 0.04 <= share[3] <= 0.18
    assert 0.01 <= share[4] <= 0.10
    assert 0.18 <= (labels["icans_max_grade"] > 0).mean() <= 0.42
    assert set(labels["icans_max_grade"].unique()) == {0, 1, 2, 3, 4}
    assert 0.04 <= (labels["age"] < 12).mean() <= 0.17
    crs = labels.filter(pl.col("crs_max_grade") > 0)
    assert crs["crs_onset_day"].min() >= 1.0 and crs["crs_onset_day"].max() < 8.0
    assert crs["crs_onset_day"].null_count() == 0
    assert labels.filter(pl.col("crs_max_grade") == 0)["crs_onset_day"].null_count() == (share[0] * 500)
    assert 0.03 <= (crs["crs_episodes"] == 2).mean() <= 0.25
    axi = labels.filter(pl.col("product") == "axi-cel")["crs_onset_day"].median()
    cilta = labels.filter(pl.col("product") == "cilta-cel")["crs_onset_day"].median()
    assert axi < cilta  # axi-cel CRS starts earlier
    icans = labels.filter(pl.col("icans_max_grade") > 0)
    assert icans["icans_onset_day"].min() >= 3.0 and icans["icans_onset_day"].max() < 11.0
    per_patient = cohort.events.height / labels.height
    assert 2000 <= per_patient <= 3500


def test_children_are_assessed_with_capd(cohort: SyntheticCohort) -> None:
    scored = (
        cohort.events.filter(pl.col("item").is_in(["ice_score", "capd_score"]))
        .group_by("patient_id")
        .agg(pl.col("item").unique())
        .join(cohort.labels, on="patient_id")
    )
    for items, age in scored.select("item", "age").iter_rows():
        assert items == (["capd_score"] if age < 12 else ["ice_score"])


# ------------------------------------------------------------------------------------ labels vs events
def test_onset_is_the_first_fever(cohort: SyntheticCohort) -> None:
    temps = _celsius(cohort.events)
    first = temps.filter(pl.col("c") >= 38.0).group_by("patient_id").agg(pl.col("day").min().alias("first"))
    joined = cohort.labels.join(first, on="patient_id", how="left")
    assert (joined["crs_onset_day"].is_null() == joined["first"].is_null()).all()
    assert (joined["crs_onset_day"] == joined["first"]).fill_null(True).all()
    assert (joined["crs_max_grade"] > 0).eq(joined["first"].is_not_null()).all()
    # nothing near the threshold, in either unit, so rounding cannot move a value across 38.0 °C
    assert temps.filter(pl.col("c").is_between(37.65, 38.15)).is_empty()


SUPPORT_ITEMS = ["oxygen", "oxygen_flow", *PRESSORS, "sbp", "map", "spo2", "antipyretic", "temperature"]


def _support_state(events: pl.DataFrame) -> pl.DataFrame:
    """Support, vital-sign and antipyretic rows with the oxygen device and each vasopressor rate in force."""
    events = events.filter(pl.col("item").is_in(SUPPORT_ITEMS))
    fill = [
        pl.when(pl.col("item") == "oxygen")
        .then(pl.col("value"))
        .forward_fill()
        .over("patient_id")
        .fill_null("room_air")
        .alias("device"),
        *[
            pl.when(pl.col("item") == p)
            .then(pl.col("value").cast(pl.Float64, strict=False))
            .forward_fill()
            .over("patient_id")
            .fill_null(0.0)
            .alias(p)
            for p in PRESSORS
        ],
    ]
    df = events.with_columns(fill)
    return df.with_columns(
        pl.sum_horizontal([(pl.col(p) > 0).cast(pl.Int8) for p in PRESSORS if p != "vasopressin"]).alias("n_pressors"),
        pl.any_horizontal([pl.col(p) > 0 for p in PRESSORS]).alias("any_pressor"),
    )


def test_no_support_outside_episodes(cohort: SyntheticCohort) -> None:
    state = _support_state(cohort.events).join(cohort.labels, on="patient_id")
    supported = state.filter((pl.col("device") != "room_air") | pl.col("any_pressor"))
    # never in patients without CRS or with grade 1, never before the onset fever
    assert supported.filter(pl.col("crs_max_grade") < 2).is_empty()
    assert supported.filter(pl.col("day") < pl.col("crs_onset_day")).is_empty()
    low_bp = state.filter(pl.col("item") == "sbp", pl.col("value").cast(pl.Int32, strict=False) < 90)
    assert low_bp.filter((pl.col("crs_max_grade") < 2) | (pl.col("day") < pl.col("crs_onset_day"))).is_empty()
    low_map = state.filter(pl.col("item") == "map", pl.col("value").cast(pl.Int32, strict=False) < 65)
    assert low_map.filter(pl.col("crs_max_grade") < 2).is_empty()
    low_spo2 = state.filter(
        pl.col("item") == "spo2", pl.col("value").cast(pl.Int32, strict=False) < 92, pl.col("device") == "room_air"
    )
    assert low_spo2.filter(pl.col("crs_max_grade") < 2).is_empty()
    # every vasopressor that was started is stopped with a rate-0 row; oxygen ends on room air
    last = state.group_by("patient_id").agg(pl.col("device").last(), pl.col("any_pressor").last())
    assert (last["device"] == "room_air").all() and not last["any_pressor"].any()


def test_crs_grade_matches_support(cohort: SyntheticCohort) -> None:
    """Max grade = the highest ASTCT tier of the support written (fever alone = 1)."""
    state = _support_state(cohort.events).join(cohort.labels.select("patient_id", "age"), on="patient_id")
    threshold = pl.when(pl.col("age") >= 10).then(90.0).otherwise(70.0 + 2 * pl.col("age"))
    flow = (
        pl.when(pl.col("item") == "oxygen_flow")
        .then(pl.col("value").cast(pl.Float64, strict=False))
        .forward_fill()
        .over("patient_id")
        .fill_null(0.0)
    )
    tiers = (
        state.with_columns(flow.alias("flow"))
        .with_columns(
            pl.col("device").replace_strict(DEVICE_TIER, return_dtype=pl.Int8).alias("o2"),
            pl.when(pl.col("n_pressors") >= 2)
            .then(4)
            .when(pl.col("any_pressor"))
            .then(3)
            .when((pl.col("item") == "sbp") & (pl.col("value").cast(pl.Float64, strict=False) < threshold))
            .then(2)
            .otherwise(0)
            .alias("bp"),
        )
        .with_columns(
            pl.when((pl.col("device") == "nasal_cannula") & (pl.col("flow") > 6))
            .then(3)
            .otherwise(pl.col("o2"))
            .alias("o2")
        )
    )
    fever = _celsius(cohort.events).group_by("patient_id").agg((pl.col("c") >= 38).any().cast(pl.Int8).alias("fever"))
    derived = (
        tiers.group_by("patient_id")
        .agg(pl.max_horizontal(pl.col("o2").max(), pl.col("bp").max()).alias("support"))
        .join(fever, on="patient_id")
        .select("patient_id", pl.max_horizontal("support", "fever").cast(pl.Int8).alias("derived"))
    )
    joined = cohort.labels.join(derived, on="patient_id")
    assert (joined["crs_max_grade"] == joined["derived"]).all()
    # every grade >= 3 via vasopressors uses no more than two non-vasopressin agents at once
    assert tiers["n_pressors"].max() <= 2


def test_support_starts_while_febrile_or_after_tocilizumab(cohort: SyntheticCohort) -> None:
    """Any reading of the ASTCT fever waiver gives the same grade: each escalation is either
    charted with a temperature >= 38 °C at the same time, or follows tocilizumab in the episode."""
    e = cohort.events
    temps = _celsius(e).select("patient_id", "day", (pl.col("c") >= 38).alias("febrile"))
    starts = e.filter(
        ((pl.col("item") == "oxygen") & (pl.col("value") != "room_air"))
        | (pl.col("item").is_in(PRESSORS) & (pl.col("value") != "0"))
    )
    toci = e.filter(pl.col("item") == "tocilizumab").group_by("patient_id").agg(pl.col("day").alias("toci"))
    checked = starts.join(temps, on=["patient_id", "day"], how="left").join(toci, on="patient_id", how="left")
    assert checked.height > 0
    for _pid, day, febrile, tocis in checked.select("patient_id", "day", "febrile", "toci").iter_rows():
        after_toci = tocis is not None and any(t < day for t in tocis)
        assert febrile or after_toci, (_pid, day)


def test_icans_labels_match_assessments(cohort: SyntheticCohort) -> None:
    e = cohort.events
    ice = pl.col("value").cast(pl.Int32, strict=False)
    graded = e.filter(
        pl.col("item").is_in(["ice_score", "capd_score", "consciousness", "seizure", "cerebral_edema"])
    ).with_columns(
        pl.when(pl.col("item") == "ice_score")
        .then(pl.when(ice == 10).then(0).when(ice >= 7).then(1).when(ice >= 3).then(2).otherwise(3))
        .when(pl.col("item") == "capd_score")
        .then(pl.when(ice == 0).then(0).when(ice <= 8).then(1).otherwise(3))
        .when(pl.col("item") == "consciousness")
        .then(pl.col("value").replace_strict(CONSCIOUSNESS_GRADE, default=None, return_dtype=pl.Int32))
        .when(pl.col("item") == "seizure")
        .then(pl.when(pl.col("value") == "rapidly_resolving").then(3).otherwise(4))
        .otherwise(pl.when(pl.col("value") == "focal").then(3).otherwise(4))
        .alias("g")
    )
    derived = graded.group_by("patient_id").agg(
        pl.col("g").max().alias("g"), pl.col("day").filter(pl.col("g") >= 1).min().alias("onset")
    )
    joined = cohort.labels.join(derived, on="patient_id", how="left")
    assert (joined["icans_max_grade"] == joined["g"]).all()
    assert (joined["icans_onset_day"].is_null() == joined["onset"].is_null()).all()
    assert (joined["icans_onset_day"] == joined["onset"]).fill_null(True).all()
    # ICE 0 only with a depressed level of consciousness (ICE 0 while awake would need global aphasia)
    at_zero = e.filter(pl.col("item") == "ice_score", pl.col("value") == "0").join(
        e.filter(pl.col("item") == "consciousness"), on=["patient_id", "day"]
    )
    assert at_zero["value_right"].is_in(["awakens_to_touch", "unarousable"]).all()


def test_two_episodes_are_separated_by_48_quiet_hours(cohort: SyntheticCohort) -> None:
    temps = _celsius(cohort.events).select("patient_id", "day", "item", (pl.col("c") >= 38).alias("fever"))
    state = _support_state(cohort.events).join(temps, on=["patient_id", "day", "item"], how="left")
    active = state.filter(
        pl.col("fever").fill_null(False)
        | (pl.col("item") == "antipyretic")
        | (pl.col("device") != "room_air")
        | pl.col("any_pressor")
        | ((pl.col("item") == "oxygen") & (pl.col("value") == "room_air"))
        | (pl.col("item").is_in(PRESSORS) & (pl.col("value") == "0"))
    )
    gaps = active.with_columns((pl.col("day").diff().over("patient_id") * 24).alias("gap_h"))
    # within an episode activity is (at least) hourly; between episodes there are >= 48 quiet hours
    assert gaps.filter(pl.col("gap_h").is_between(24, 48, closed="left")).is_empty()
    clusters = gaps.group_by("patient_id").agg((1 + (pl.col("gap_h") >= 48).sum()).alias("n"))
    joined = cohort.labels.join(clusters, on="patient_id", how="left").with_columns(pl.col("n").fill_null(0))
    assert (joined["crs_episodes"] == joined["n"]).all()
    assert joined.filter(pl.col("crs_episodes") == 2).height > 0


def test_tocilizumab_dose_and_timing(cohort: SyntheticCohort) -> None:
    weight = cohort.events.filter(pl.col("item") == "weight").select(
        "patient_id", pl.col("value").cast(pl.Float64).alias("kg")
    )
    toci = (
        cohort.events.filter(pl.col("item") == "tocilizumab")
        .join(weight, on="patient_id")
        .with_columns(pl.col("value").cast(pl.Float64).alias("mg"))
    )
    assert (toci["unit"] == "mg").all() and toci["mg"].max() <= 800
    expected = pl.min_horizontal(
        pl.lit(800.0), (pl.when(pl.col("kg") < 30).then(12).otherwise(8) * pl.col("kg")).round(0)
    )
    assert toci.select((pl.col("mg") - expected).abs().max()).item() < 0.5
    spacing = toci.select("patient_id", (pl.col("day").diff().over("patient_id") * 24).alias("h"))
    assert spacing["h"].drop_nulls().min() >= 8.0
    graded = cohort.labels.filter(pl.col("crs_max_grade") >= 2)["patient_id"]
    assert set(toci["patient_id"]) == set(graded)


# ---------------------------------------------------------------------------------------------- writer, speed
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_cohort_round_trip(tmp_path: Path, fmt: str) -> None:
    cohort = generate_cohort(5, seed=3)
    paths = write_cohort(cohort, tmp_path / "out", fmt)  # type: ignore[arg-type]
    assert [p.name for p in paths] == [f"events.{fmt}", f"labels.{fmt}"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    if fmt == "parquet":
        events, labels = pl.read_parquet(paths[0]), pl.read_parquet(paths[1])
    else:
        events = pl.read_csv(paths[0], schema=EVENT_SCHEMA, empty_string_is_null=False)
        labels = pl.read_csv(paths[1], schema=LABEL_SCHEMA)
    assert events.equals(cohort.events)
    assert labels.equals(cohort.labels)


def test_write_cohort_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_cohort(generate_cohort(1, seed=1), tmp_path, "xlsx")  # type: ignore[arg-type]


def test_runtime_2000_patients() -> None:
    start = time.perf_counter()
    cohort = generate_cohort(2000, seed=5)
    elapsed = time.perf_counter() - start
    assert cohort.labels.height == 2000
    assert 2000 <= cohort.events.height / 2000 <= 3500
    assert elapsed < 60.0, f"2,000 patients took {elapsed:.1f} s"


# ---------------------------------------------------------------------------------------------- hematology
def _counts(events: pl.DataFrame, items: list[str]) -> pl.DataFrame:
    """Count rows in canonical units: 10^9/L (from /uL), Hb in g/dL (from g/L), CRP in mg/L (from mg/dL)."""
    v = pl.col("value").cast(pl.Float64)
    factor = (
        pl.when(pl.col("unit") == "/uL")
        .then(0.001)
        .when(pl.col("unit") == "g/L")
        .then(0.1)
        .when(pl.col("unit") == "mg/dL")
        .then(10.0)
        .otherwise(1.0)
    )
    return events.filter(pl.col("item").is_in(items)).with_columns((v * factor).alias("x"))


def _early_icaht(anc: list[float]) -> tuple[int, int, int]:
    """Reference early ICAHT for complete daily counts of days 0-30 (Liang's rules, criteria.md §3.3):
    recoveries of 1-2 days between neutropenic days are bridged, longest stretch, never-recovered grade 4."""

    def flags(limit: float) -> list[bool]:
        below = [a <= limit for a in anc] + [False]
        out = list(below)
        i = 0
        while i < len(below):
            if below[i]:
                i += 1
                continue
            j = i
            while j < len(below) and not below[j]:
                j += 1
            if i > 0 and j < len(below) and j - i < 3:
                out[i:j] = [True] * (j - i)
            i = j
        return out[:31]

    def longest(f: list[bool]) -> tuple[int, int]:
        best = run = 0
        for x in f:
            run = run + 1 if x else 0
            best = max(best, run)
        return best, run  # longest, the run that holds on day 30

    (d500, last500), (d100, _) = longest(flags(0.5)), longest(flags(0.1))
    if (last500 and 30 - last500 + 1 <= 3) or d100 >= 14 or d500 >= 31:
        return 4, d500, d100
    if d100 >= 7 or d500 >= 14:
        return 3, d500, d100
    return (2 if d500 >= 7 else 1 if d500 >= 1 else 0), d500, d100


def test_blood_counts_daily_in_mixed_units(cohort: SyntheticCohort) -> None:
    e = cohort.events
    cbc = e.filter(pl.col("item").is_in(["wbc", "anc", "alc", "plt", "hgb"]), pl.col("day") >= 0)
    per_day = cbc.group_by("patient_id", "item").agg(pl.col("day").floor().n_unique().alias("days"), pl.len())
    assert per_day["days"].unique().to_list() == [30] and per_day["len"].unique().to_list() == [30]
    pairs = set(e.select("item", "unit").unique().iter_rows())
    for pair in [
        ("anc", "/uL"),
        ("anc", "10*9/L"),
        ("hgb", "g/L"),
        ("hgb", "g/dL"),
        ("plt", "10*3/uL"),
        ("creatinine", "umol/L"),
        ("creatinine", "mg/dL"),
        ("g_csf", "ug/kg"),
        ("g_csf", "ug"),
    ]:
        assert pair in pairs, pair
    wide = (
        _counts(cbc, ["wbc", "anc", "alc"])
        .pivot(on="item", index=["patient_id", "day"], values="x")
        .filter(pl.col("wbc") + 1e-9 < pl.col("anc") + pl.col("alc"))
    )
    assert wide.height == 0
    for item in ["g_csf", "platelet_transfusion", "rbc_transfusion"]:
        assert e.filter(pl.col("item") == item)["patient_id"].n_unique() >= 10, item


def test_lymphodepletion_follows_the_baseline_panel(cohort: SyntheticCohort) -> None:
    e = cohort.events.filter(pl.col("day") < 0)
    ld = e.filter(pl.col("item") == "lymphodepletion")
    assert set(ld["value"]) == {"Flu/Cy"} and (ld["day"].floor() == -5).all()
    last_lab = e.filter(pl.col("item") != "lymphodepletion").group_by("patient_id").agg(pl.col("day").max())
    joined = ld.join(last_lab, on="patient_id")
    assert (joined["day_right"] < joined["day"]).all()


def test_hematology_label_distribution(cohort: SyntheticCohort) -> None:
    labels = cohort.labels
    share = {g: (labels["icaht_early_grade"] == g).mean() for g in range(5)}
    assert share[0] + share[1] >= 0.45  # Rejeski 2023: most patients grade 0-1
    assert 0.08 <= share[3] + share[4] <= 0.25  # ~10-20 % grade 3-4
    assert min(share.values()) > 0
    assert 0.25 <= (labels["car_hematotox"] >= 2).mean() <= 0.55
    assert 0.5 <= labels["pht"].mean() <= 0.9
    assert set(labels["pht_lineage_count"].unique()) == {0, 1, 2, 3}
    tmax = labels["car_t_tmax_day"].drop_nulls().floor()
    assert tmax.is_in([7.0, 10.0, 14.0]).mean() >= 0.95 and tmax.len() >= 480
    # nadir (first lowest ANC) on day 3-10 for most patients
    anc = _counts(cohort.events.filter(pl.col("day") >= 0), ["anc"])
    nadir = anc.sort("patient_id", "x", "day").group_by("patient_id").agg(pl.col("day").first().floor())
    assert nadir["day"].is_between(3, 10).mean() >= 0.8


def test_hematology_labels_rederived_from_events(cohort: SyntheticCohort) -> None:
    e, labels = cohort.events, cohort.labels.sort("patient_id")
    # early ICAHT from the daily ANC (day 29 carried to day 30, as the grader's edge rule does)
    anc = _counts(e.filter(pl.col("day") >= 0), ["anc"]).sort("patient_id", "day")
    series = anc.group_by("patient_id", maintain_order=True).agg(pl.col("x"))
    derived = [_early_icaht([*xs, xs[-1]]) for xs in series["x"].to_list()]
    assert [g for g, _, _ in derived] == labels["icaht_early_grade"].to_list()
    assert [d for _, d, _ in derived] == labels["days_anc_le_500"].to_list()
    assert [d for _, _, d in derived] == labels["days_anc_le_100"].to_list()
    # PHT: any lineage below its default LLN on day 28
    day28 = _counts(e.filter(pl.col("day").floor() == 28), ["anc", "plt", "hgb"])
    lln = pl.col("item").replace_strict({"anc": 1.8, "plt": 150.0, "hgb": 12.0}, return_dtype=pl.Float64)
    low = day28.group_by("patient_id").agg((pl.col("x") < lln).sum().alias("n")).sort("patient_id")
    assert low["n"].to_list() == labels["pht_lineage_count"].to_list()
    assert (low["n"] > 0).to_list() == labels["pht"].to_list()
    # CAR-HEMATOTOX from the panel before lymphodepletion (developer-group boundaries)
    base = _counts(e.filter(pl.col("day") < 0), ["anc", "plt", "hgb", "crp", "ferritin"])
    wide = base.pivot(on="item", index="patient_id", values="x").sort("patient_id")
    score = (
        pl.when(pl.col("plt") < 75).then(2).when(pl.col("plt") <= 175).then(1).otherwise(0)
        + (pl.col("anc") <= 1.2).cast(pl.Int32)
        + (pl.col("hgb") <= 9.0).cast(pl.Int32)
        + (pl.col("crp") >= 30.0 - 1e-9).cast(pl.Int32)
        + pl.when(pl.col("ferritin") > 2000).then(2).when(pl.col("ferritin") >= 650).then(1).otherwise(0)
    )
    assert wide.select(score.alias("score"))["score"].to_list() == labels["car_hematotox"].to_list()
    # CAR-T: Tmax = the first sample with the highest quantifiable level
    cart = e.filter(pl.col("item") == "car_t_copies").with_columns(
        pl.col("value").cast(pl.Float64, strict=False).alias("x")
    )
    peak = (
        cart.drop_nulls("x")
        .sort("patient_id", pl.col("x"), "day", descending=[False, True, False])
        .group_by("patient_id")
        .agg(pl.col("day").first(), pl.col("x").first())
    )
    joined = labels.join(peak, on="patient_id", how="left")
    assert (joined["day"].is_null() == joined["car_t_tmax_day"].is_null()).all()
    assert ((joined["day"] - joined["car_t_tmax_day"]).abs().drop_nulls() < 1e-9).all()
    # below quantification after the peak in some, written "<5"
    after = cart.join(joined.select("patient_id", "car_t_tmax_day"), on="patient_id").filter(
        pl.col("day") > pl.col("car_t_tmax_day"), pl.col("value") == "<5"
    )
    assert after["patient_id"].n_unique() >= 25


# ---------------------------------------------------------------------------------------------- outcomes
def _km(time: pl.Series, event: pl.Series, at: float) -> float:
    """Kaplan-Meier survival at ``at``."""
    frame = pl.DataFrame({"t": time, "e": event.cast(pl.Boolean)}).sort("t")
    s = 1.0
    for t, deaths in frame.filter(pl.col("e"), pl.col("t") <= at).group_by("t").len().sort("t").iter_rows():
        s *= 1 - deaths / frame.filter(pl.col("t") >= t).height
    return s


def _with_disease(cohort: SyntheticCohort) -> pl.DataFrame:
    disease = cohort.events.filter(pl.col("item") == "disease").select("patient_id", pl.col("value").alias("disease"))
    return cohort.labels.join(disease, on="patient_id")


def test_follow_up_rows_after_the_course(cohort: SyntheticCohort) -> None:
    e = cohort.events
    ends = e.filter(pl.col("item").is_in(["death", "last_contact"])).group_by("patient_id").len()
    assert ends.height == 500 and ends["len"].unique().to_list() == [1]  # dead or followed to the data cut
    later = e.filter(pl.col("item").is_in(["progression", "next_therapy", "death", "last_contact"]))
    assert later["day"].min() > 30.0
    assert e.filter(pl.col("item") == "progression").group_by("patient_id").len()["len"].max() == 1
    contact = e.filter(pl.col("item") == "last_contact")["day"]
    assert contact.min() >= 182.0 and contact.max() < 731.0  # administrative censoring 6-24 months after infusion
    assert set(e.filter(pl.col("item") == "death")["value"]) == {"progression", "infection", "other"}
    assert set(e.filter(pl.col("item") == "last_contact")["value"]) == {"alive"}


def test_outcomes_are_consistent(cohort: SyntheticCohort) -> None:
    e = cohort.events
    last = e.group_by("patient_id").agg(pl.col("day").max().alias("last"), pl.col("item").last().alias("last_item"))
    assert set(last["last_item"]) == {"death", "last_contact"}  # nothing after death or the last contact
    progression = (
        e.filter((pl.col("item") == "progression") | ((pl.col("item") == "response") & (pl.col("value") == "PD")))
        .group_by("patient_id")
        .agg(pl.col("day").min().alias("progression"))
    )
    death = e.filter(pl.col("item") == "death").select("patient_id", pl.col("day").alias("death"), "value")
    by_progression = death.filter(pl.col("value") == "progression").join(progression, on="patient_id", how="left")
    assert (by_progression["progression"] < by_progression["death"]).all()
    therapy = e.filter(pl.col("item") == "next_therapy").join(progression, on="patient_id", how="left")
    assert (therapy["progression"] < therapy["day"]).all()
    labels = cohort.labels
    assert (labels["pfs_days"] <= labels["os_days"]).all()
    assert (labels["pfs_event"] >= labels["os_event"]).all()
    assert (labels["relapse_nrm_days"] == labels["pfs_days"]).all()


def test_outcome_labels_rederived_from_events(cohort: SyntheticCohort) -> None:
    """OS, PFS, relapse/NRM and the day-28 response as docs/cohort.md defines them, from the rows written."""
    e = cohort.events

    def first(item: str, name: str, value: pl.Expr | None = None) -> pl.DataFrame:
        rows = e.filter(pl.col("item") == item) if value is None else e.filter(pl.col("item") == item, value)
        return rows.group_by("patient_id").agg(pl.col("day").min().alias(name), pl.col("value").first().alias(item))

    pd_response = first("response", "pd", pl.col("value") == "PD").drop("response")
    day28 = (
        e.filter(pl.col("item") == "response", (pl.col("day") - 28).abs() <= 7)
        .group_by("patient_id")
        .agg(pl.len().alias("n28"), pl.col("value").first().alias("r28"))
    )
    table = (
        cohort.labels.join(first("death", "death_day"), on="patient_id", how="left")
        .join(first("last_contact", "contact"), on="patient_id", how="left")
        .join(first("progression", "progression_day"), on="patient_id", how="left")
        .join(pd_response, on="patient_id", how="left")
        .join(day28, on="patient_id", how="left")
        .with_columns(pl.min_horizontal("progression_day", "pd").alias("progressed"))
    )
    assert (table["n28"] == 1).all() and (table["r28"] == table["response_day28"]).all()
    died = table["death_day"].is_not_null()
    assert (table["os_event"] == died.cast(pl.Int8)).all()
    assert (table["os_days"] == table["death_day"].fill_null(table["contact"])).all()
    pfs = pl.min_horizontal("progressed", "death_day").fill_null(pl.col("contact"))
    assert table.select((pl.col("pfs_days") == pfs).all()).item()
    assert (table["pfs_event"] == (table["progressed"].is_not_null() | died).cast(pl.Int8)).all()
    status = pl.when(pl.col("progressed").is_not_null()).then(1).when(pl.col("death_day").is_not_null()).then(2)
    assert table.select((pl.col("relapse_nrm_status") == status.otherwise(0)).all()).item()


def test_response_and_survival_are_plausible(cohort: SyntheticCohort) -> None:
    """Approximate pivotal-trial figures (tocsin.synth docstring) within the noise of 500 patients."""
    labels = _with_disease(cohort)
    responses = cohort.events.filter(pl.col("item") == "response", pl.col("value").is_in(COMPLETE_RESPONSES))
    complete = set(responses["patient_id"])
    axi = labels.filter(pl.col("product") == "axi-cel", pl.col("disease").is_in(["DLBCL", "HGBL", "PMBCL"]))
    assert 0.45 <= axi["patient_id"].is_in(list(complete)).mean() <= 0.72  # ZUMA-1 CR ~54-58 %
    b_all = labels.filter(pl.col("disease") == "B-ALL")
    assert 0.65 <= b_all["response_day28"].is_in(COMPLETE_RESPONSES).mean() <= 0.92  # ELIANA CR/CRi 81 %
    myeloma = labels.filter(pl.col("disease") == "MM").with_columns(pl.col("patient_id").is_in(list(complete)))
    cr = dict(myeloma.group_by("product").agg(pl.col("patient_id").mean()).iter_rows())
    assert cr["cilta-cel"] > cr["ide-cel"] + 0.2  # CARTITUDE-1 sCR 67 %, KarMMa CR 33 %
    lbcl = labels.filter(pl.col("disease").is_in(["DLBCL", "HGBL", "PMBCL"]))
    assert 0.28 <= _km(lbcl["pfs_days"], lbcl["pfs_event"], 365) <= 0.58  # 12-month PFS ~40-50 %
    in_cr = labels.filter(pl.col("response_day28").is_in(COMPLETE_RESPONSES))
    not_cr = labels.filter(~pl.col("response_day28").is_in(COMPLETE_RESPONSES))
    assert _km(in_cr["pfs_days"], in_cr["pfs_event"], 365) > _km(not_cr["pfs_days"], not_cr["pfs_event"], 365) + 0.1
    nrm = labels.with_columns((pl.col("relapse_nrm_status") == 2).alias("nrm"))
    assert 0.03 <= nrm["nrm"].mean() <= 0.11
    by_icaht = dict(nrm.group_by(pl.col("icaht_early_grade") >= 3).agg(pl.col("nrm").mean()).iter_rows())
    assert by_icaht[True] > by_icaht[False]
