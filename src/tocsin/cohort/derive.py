"""One row per patient from graded courses: the analysis table of a CAR-T cohort paper (``tocsin cohort derive``).

The derivation reads the engine's per-patient tables (CRS under ASTCT 2019 and Lee 2014, ICANS, ICAHT, PHT,
CAR-HEMATOTOX, EASIX, kinetics) and the events it needs beyond them (drugs, infection results, response,
progression, death), as :func:`tocsin.cohort.sources.cohort_tables` assembles them from one grading run or
``tocsin batch`` stores them. It grades nothing itself, so raw files and a batch directory give the same
table, and 100,000 already graded patients derive in seconds (a handful of joins of per-patient tables).

Every column, its unit and its rule are in ``data/cohort_columns.yaml`` (rendered in docs/cohort_columns.md);
the output is checked against it (:func:`tocsin.cohort.columns.conform`). The choices where the literature
differs are in docs/cohort.md. In short: days are days since infusion (day 0 = infusion); a count of
administrations is 0 when none is recorded, a dose total is null when one dose has no mg amount; a grade is
null when nothing could be graded (never a silent 0); OS and PFS are censored at the last event on or after
day 0 (``last_contact`` included); relapse/NRM is the competing-risk pair of cmprsk's ``cuminc`` with
``cencode = 0`` (Gray RJ, Ann Stat 1988;16:1141-1154, doi:10.1214/aos/1176350951).

Example
-------
>>> import polars as pl
>>> from tocsin.config import GradingConfig
>>> from tocsin.core.engine import grade_normalised
>>> from tocsin.core.events import normalise_events
>>> from tocsin.cohort.sources import cohort_tables
>>> from tocsin.vocabulary import load_vocabulary
>>> rows = [("0", "infusion", "axi-cel", ""), ("1", "temperature", "38.6", "Cel"), ("1.25", "tocilizumab", "600", "mg"),
...     ("20", "progression", "PET", ""), ("41", "death", "progression", "")]
>>> raw = pl.DataFrame({"patient_id": "P", "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": "x", "line": list(range(2, 7))})
>>> normalised = normalise_events(raw, load_vocabulary())
>>> tables = cohort_tables(normalised, grade_normalised(normalised, GradingConfig()))
>>> derived = derive_patients(tables)
>>> derived.table.select("crs_max_grade", "tocilizumab_first_hours_from_crs_onset", "pfs_days", "os_days",
...     "relapse_nrm_status").row(0)
(1, 6.0, 20.0, 41.0, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from tocsin.cohort.columns import conform, load_columns
from tocsin.cohort.sources import CELL_DOSE_ITEMS, PID, cohort_tables
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import NormalisedEvents
from tocsin.core.kinetics import auc_column
from tocsin.core.prolonged_cytopenia import DEFINITIONS
from tocsin.core.situation import infection_results
from tocsin.core.steroid_exposure import steroid_exposure
from tocsin.units import conversion_for
from tocsin.vocabulary import Vocabulary, load_vocabulary

#: The tables :func:`derive_patients` reads (the names ``tocsin batch`` writes them under).
REQUIRED_TABLES = (
    "cohort_patients",
    "cohort_events",
    "crs_astct2019_summary",
    "crs_astct2019_episodes",
    "crs_lee2014_summary",
    "icans_summary",
    "icans_episodes",
    "icaht",
    "pht",
    "car_hematotox",
    "easix",
    "kinetics",
)
#: Days after infusion (exclusive bounds) whose dose rows make the infused dose: day 0 and a fractionated infusion
#: over the next days; a second infusion from day 14 on is not the first product's dose.
CELL_DOSE_WINDOW = (-1.0, 14.0)
#: Responses that are progression (PFS event): progressive disease.
PROGRESSION_RESPONSES = ("PD",)


class DeriveInputError(ValueError):
    """The tables cannot be derived from (a table or column missing, a patient twice); the message says which."""


@dataclass(frozen=True)
class DerivedPatients:
    """``table``: one row per patient, the columns of ``data/cohort_columns.yaml`` in that order (sorted by
    patient_id); ``method``: the dictionary version and the configuration it was derived under."""

    table: pl.DataFrame
    method: dict


def _keyed(frame: pl.DataFrame, *columns: pl.Expr | str) -> pl.DataFrame:
    """``patient_id`` as text (Categorical codes differ between batch parts) and the selected columns."""
    return frame.select(pl.col(PID).cast(pl.Utf8), *columns)


def _items(events: pl.DataFrame, *items: str) -> pl.DataFrame:
    return events.filter(pl.col("item").is_in(list(items)))


def _in_vocabulary_unit(score_table: pl.DataFrame, lab: str, vocabulary: Vocabulary) -> pl.Expr:
    """``<lab>_value`` of a score table converted to the lab's vocabulary unit: the scores report a lab in the
    unit their paper uses (CRP in mg/dL), the patient table in the unit every other Tocsin output uses (mg/L)."""
    item = vocabulary.items[lab]
    units = score_table.get_column(f"{lab}_unit").drop_nulls().unique().to_list()
    # the item's molar mass too, as ingest converts it: that is the key of the kept conversion table (without
    # it g/dL -> g/dL missed the table and built the ucumvert registry, about 1.5 s of CPU per derivation)
    scale = {unit: conversion_for(unit, item.unit, molar_mass=item.molar_mass).scale for unit in units}
    factor = pl.col(f"{lab}_unit").replace_strict(scale, default=None, return_dtype=pl.Float64)
    return (pl.col(f"{lab}_value") * factor).round(10).alias(f"baseline_{lab}")


def _baseline(tables: Mapping[str, pl.DataFrame], vocabulary: Vocabulary) -> pl.DataFrame:
    patients = _keyed(
        tables["cohort_patients"],
        "product",
        "age_years",
        "sex",
        "disease",
        pl.col("weight").alias("weight_kg"),
        pl.col("last_event_day").alias("last_follow_up_day"),
    )
    hematotox = _keyed(
        tables["car_hematotox"],
        *(
            _in_vocabulary_unit(tables["car_hematotox"], lab, vocabulary)
            for lab in ("anc", "plt", "hgb", "crp", "ferritin")
        ),
        pl.col("score").alias("car_hematotox_score"),
        pl.col("category").alias("car_hematotox_risk"),
    )
    easix = _keyed(
        tables["easix"],
        *(_in_vocabulary_unit(tables["easix"], lab, vocabulary) for lab in ("ldh", "creatinine")),
        "easix",
        "m_easix",
    )
    lymphodepletion = (
        _items(tables["cohort_events"], "lymphodepletion")
        .sort(PID, "t")
        .group_by(PID)
        .agg(pl.col("cat").first().alias("lymphodepletion_regimen"), pl.col("t").first().alias("lymphodepletion_day"))
    )
    return (
        patients.join(hematotox, on=PID, how="left")
        .join(easix, on=PID, how="left")
        .join(lymphodepletion, on=PID, how="left")
        .join(_cell_dose(tables["cohort_events"]), on=PID, how="left")
        .with_columns(
            # each dose as recorded, else the other one converted with the patient's first weight (null without)
            pl.coalesce("_per_kg", (pl.col("_total") / pl.col("weight_kg")).round(6)).alias("car_t_dose_per_kg"),
            pl.coalesce("_total", (pl.col("_per_kg") * pl.col("weight_kg")).round(6)).alias("car_t_dose_total"),
        )
        .drop("_per_kg", "_total")
    )


def _cell_dose(events: pl.DataFrame) -> pl.DataFrame:
    """Per patient, the recorded CAR-T dose per kg (10^6/kg) and total (10^6): the sum of the rows of the first
    infusion (:data:`CELL_DOSE_WINDOW`, so that a fractionated infusion adds up and a re-infusion weeks later does
    not), null where none was recorded."""
    first, last = CELL_DOSE_WINDOW
    rows = _items(events, *CELL_DOSE_ITEMS).filter((pl.col("t") > first) & (pl.col("t") < last))

    def recorded(item: str, alias: str) -> pl.Expr:
        chosen = pl.col("num").filter(pl.col("item") == item)
        return pl.when(chosen.count() > 0).then(chosen.sum().round(6)).alias(alias)

    return rows.group_by(PID).agg(
        recorded("car_t_dose_per_kg", "_per_kg").cast(pl.Float64),
        recorded("car_t_dose_total", "_total").cast(pl.Float64),
    )


def _toxicity(summary: pl.DataFrame, episodes: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """Max grade, onset, summed duration, ongoing and episodes of one toxicity; null for ungraded patients."""
    per_episode = (
        _keyed(episodes, "episode", "duration_days", "ongoing")
        .sort(PID, "episode")
        .group_by(PID)
        .agg(pl.col("duration_days").sum().alias(f"{prefix}_duration_days"), pl.col("ongoing").last())
    )
    graded = pl.col("max_grade").is_not_null()
    return (
        _keyed(summary, "max_grade", "onset_day", "n_episodes")
        .join(per_episode, on=PID, how="left")
        .select(
            PID,
            pl.col("max_grade").alias(f"{prefix}_max_grade"),
            pl.col("onset_day").alias(f"{prefix}_onset_day"),
            f"{prefix}_duration_days",
            pl.when(graded).then(pl.col("ongoing").fill_null(False)).alias(f"{prefix}_ongoing"),
            pl.when(graded).then(pl.col("n_episodes")).alias(f"{prefix}_n_episodes"),
        )
    )


def _crs_icans(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    crs = _toxicity(tables["crs_astct2019_summary"], tables["crs_astct2019_episodes"], "crs")
    lee = _keyed(tables["crs_lee2014_summary"], pl.col("max_grade").alias("crs_max_grade_lee2014"))
    icans = _toxicity(tables["icans_summary"], tables["icans_episodes"], "icans")
    return crs.join(lee, on=PID, how="full", coalesce=True).join(icans, on=PID, how="full", coalesce=True)


def escalation_agents(vocabulary: Vocabulary) -> list[str]:
    """Anticytokine items other than tocilizumab and the corticosteroids (anakinra, siltuximab, etanercept...)."""
    return sorted(
        name for name, d in vocabulary.items.items() if d.anti_cytokine and not d.steroid and name != "tocilizumab"
    )


def _treatments(events: pl.DataFrame, config: GradingConfig, vocabulary: Vocabulary) -> pl.DataFrame:
    # Bridging or premedication before the infusion is not toxicity management.
    events = events.filter(pl.col("t") >= 0)
    tocilizumab = (
        _items(events, "tocilizumab")
        .group_by(PID)
        .agg(
            pl.len().alias("tocilizumab_doses"),
            pl.when(pl.col("num").is_not_null().all()).then(pl.col("num").sum()).alias("tocilizumab_total_mg"),
            pl.col("t").min().alias("tocilizumab_first_day"),
        )
    )
    steroids = _keyed(
        steroid_exposure(events, config.steroids).summary,
        pl.col("doses").alias("steroid_doses"),
        pl.col("days_on_steroids").alias("steroid_days"),
        pl.when("complete").then(pl.col("mp_eq_mg")).alias("steroid_mp_equivalent_mg"),
        pl.when("complete").then(pl.col("dex_eq_mg")).alias("steroid_dex_equivalent_mg"),
        pl.col("doses_without_mg").alias("steroid_doses_without_mg"),
    )
    escalation = (
        _items(events, *escalation_agents(vocabulary))
        .group_by(PID)
        .agg(pl.col("item").unique().sort().alias("_agents"))
        .select(
            PID,
            pl.col("_agents").list.join("; ").alias("escalation_agents"),
            pl.col("_agents").list.len().alias("escalation_n_agents"),
        )
    )
    return tocilizumab.join(steroids, on=PID, how="full", coalesce=True).join(
        escalation, on=PID, how="full", coalesce=True
    )


def _hematologic(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    icaht = _keyed(
        tables["icaht"],
        pl.col("early_grade").alias("icaht_early_grade"),
        pl.col("late_grade").alias("icaht_late_grade"),
        pl.col("t_early_grade").alias("t_icaht_early_grade"),
        pl.col("t_late_grade").alias("t_icaht_late_grade"),
    )

    def recovery_day(lineage: str) -> pl.Expr:
        """The recovery day under the definition the PHT table was graded with (``recovery_definition``)."""
        return pl.coalesce(
            pl.when(pl.col("recovery_definition") == d).then(pl.col(f"{lineage}_recovery_day_{d}")) for d in DEFINITIONS
        ).alias(f"{lineage}_recovery_day")

    pht = _keyed(
        tables["pht"],
        pl.col("pht").alias("pht_day28"),
        pl.when(pl.col("pht").is_not_null()).then(pl.col("pht_lineage_count")).alias("pht_lineage_count"),
        recovery_day("anc"),
        recovery_day("plt"),
        "recovery_definition",
        "g_csf_days",
    )
    return icaht.join(pht, on=PID, how="full", coalesce=True)


def _kinetics(kinetics: pl.DataFrame, config: GradingConfig) -> pl.DataFrame:
    rank = {assay: i for i, assay in enumerate(config.cohort.kinetics_assays)}
    auc = auc_column(config.kinetics)
    if auc not in kinetics.columns:
        raise DeriveInputError(
            f"the kinetics table has no {auc} (kinetics.auc_end_day = {config.kinetics.auc_end_day:g}); "
            "derive with the configuration the tables were graded under"
        )
    return (
        _keyed(kinetics, "item", "unit", "cmax", "tmax_day", pl.col(auc).alias("auc_0_28"))
        .filter(pl.col("item").is_in(list(rank)))
        .sort(PID, pl.col("item").replace_strict(rank, return_dtype=pl.Int64))
        .group_by(PID)
        .first()
        .rename({"item": "kinetics_assay", "unit": "kinetics_unit"})
    )


def _course(events: pl.DataFrame, config: GradingConfig) -> pl.DataFrame:
    """Infections, response at the landmark, death and progression (the inputs of the time-to-event columns)."""
    cfg = config.cohort
    death = (
        _items(events, "death")
        .sort(PID, "t")
        .group_by(PID)
        .agg(pl.col("t").first().alias("death_day"), pl.col("cat").first().alias("death_cause"))
    )
    progression = (
        events.filter(
            (pl.col("t") > 0)
            & (
                (pl.col("item") == "progression")
                | ((pl.col("item") == "response") & pl.col("cat").is_in(PROGRESSION_RESPONSES))
            )
        )
        .group_by(PID)
        .agg(pl.col("t").min().alias("progression_day"))
    )
    distance = (pl.col("t") - cfg.response_day).abs()
    response = (
        _items(events, "response")
        .filter(distance <= cfg.response_window_days)
        .sort(PID, distance, "t")
        .group_by(PID)
        .agg(pl.col("cat").first().alias("response_day28"), pl.col("t").first().alias("response_day28_day"))
    )
    in_window = (pl.col("t") >= 0) & (
        pl.lit(True) if cfg.infection_until_day is None else pl.col("t") <= cfg.infection_until_day
    )
    results = infection_results(_items(events, "culture", "pcr", "mngs"), config.situation).filter(in_window)
    fatal = (
        death.filter(pl.col("death_cause") == "infection")
        .select(PID, pl.col("death_day").alias("t"), pl.lit(True).alias("positive"), pl.lit(False).alias("viral"))
        .filter(in_window)
    )
    infections = (
        pl.concat([results.select(PID, "t", "positive", "viral"), fatal])
        .group_by(PID)
        .agg(
            pl.col("positive").any().alias("infection_any"),
            pl.col("t").filter(pl.col("positive")).min().alias("infection_first_day"),
            pl.col("viral").any().alias("infection_viral"),
        )
    )
    return (
        death.join(progression, on=PID, how="full", coalesce=True)
        .join(response, on=PID, how="full", coalesce=True)
        .join(infections, on=PID, how="full", coalesce=True)
    )


def _time_to_event() -> list[pl.Expr]:
    died, progressed = pl.col("death_day").is_not_null(), pl.col("progression_day").is_not_null()
    censor = pl.col("last_follow_up_day")
    relapse_first = progressed & (~died | (pl.col("progression_day") <= pl.col("death_day")))
    return [
        pl.when(died).then(pl.col("death_day")).otherwise(censor).alias("os_days"),
        pl.when(died).then(1).when(censor.is_not_null()).then(0).alias("os_event"),
        pl.when(progressed | died)
        .then(pl.min_horizontal("progression_day", "death_day"))
        .otherwise(censor)
        .alias("pfs_days"),
        pl.when(progressed | died).then(1).when(censor.is_not_null()).then(0).alias("pfs_event"),
        pl.when(relapse_first)
        .then(pl.col("progression_day"))
        .when(died)
        .then(pl.col("death_day"))
        .otherwise(censor)
        .alias("relapse_nrm_days"),
        pl.when(relapse_first | (died & (pl.col("death_cause") == "progression")))
        .then(1)
        .when(died)
        .then(2)
        .when(censor.is_not_null())
        .then(0)
        .alias("relapse_nrm_status"),
    ]


def derive_patients(
    tables: Mapping[str, pl.DataFrame], config: GradingConfig | None = None, vocabulary: Vocabulary | None = None
) -> DerivedPatients:
    """The patient table of ``tables`` (:data:`REQUIRED_TABLES`, as :func:`~tocsin.cohort.sources.cohort_tables`
    builds them); ``config.cohort`` holds the derivation's own choices, ``config.steroids`` and
    ``config.situation`` those it shares with decision support. Raises :class:`DeriveInputError` when a
    table is absent."""
    config = config or GradingConfig()
    vocab = vocabulary or load_vocabulary()
    missing = [name for name in REQUIRED_TABLES if name not in tables]
    if missing:
        raise DeriveInputError(f"missing table(s) {', '.join(missing)}")
    events = _keyed(
        tables["cohort_events"],
        "t",
        pl.col("item").cast(pl.Utf8),
        "num",
        pl.col("cat").cast(pl.Utf8),
        pl.col("route").cast(pl.Utf8),
    )
    table = (
        _baseline({**tables, "cohort_events": events}, vocab)
        .join(_crs_icans(tables), on=PID, how="left")
        .join(_treatments(events, config, vocab), on=PID, how="left")
        .join(_hematologic(tables), on=PID, how="left")
        .join(_kinetics(tables["kinetics"], config), on=PID, how="left")
        .join(_course(events, config), on=PID, how="left")
        .with_columns(
            pl.col("tocilizumab_doses", "steroid_doses", "steroid_days", "steroid_doses_without_mg").fill_null(0),
            pl.col("escalation_n_agents").fill_null(0),
            pl.col("escalation_agents").fill_null(""),
            ((pl.col("tocilizumab_first_day") - pl.col("crs_onset_day")) * 24)
            .round(6)
            .alias("tocilizumab_first_hours_from_crs_onset"),
            pl.when(pl.col("tocilizumab_doses").is_null())
            .then(0.0)
            .otherwise(pl.col("tocilizumab_total_mg"))
            .alias("tocilizumab_total_mg"),
        )
        .with_columns(_time_to_event())
        .sort(PID)
    )
    duplicated = table.filter(pl.col(PID).is_duplicated()).get_column(PID).unique().sort()
    if duplicated.len():
        raise DeriveInputError(
            f"patient_id {', '.join(duplicated.head(5).to_list())} appear(s) more than once in cohort_patients; "
            "grade each patient's events in one run"
        )
    dictionary = load_columns()
    return DerivedPatients(
        table=conform(table, dictionary),
        method={"columns_version": dictionary.version, "config": config.describe()},
    )


def derive_from_events(
    normalised: NormalisedEvents, config: GradingConfig | None = None, vocabulary: Vocabulary | None = None
) -> DerivedPatients:
    """Grade validated events (CRS under both scales) and derive their patient table: the raw-file path of
    ``tocsin cohort derive``, equal to deriving from the tables ``tocsin batch --cohort`` wrote."""
    config = config or GradingConfig()
    vocab = vocabulary or load_vocabulary()
    result = grade_normalised(normalised, config, vocab)
    return derive_patients(cohort_tables(normalised, result, vocab), config, vocab)
