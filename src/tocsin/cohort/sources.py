"""The tables a cohort derivation reads, from one grading run: the same tables for raw files and ``tocsin batch``.

:func:`cohort_tables` collects the engine's per-patient tables that a derivation reads, and adds what the grading
tables lack: the patients with their last follow-up day, the events of treatments, infections, the CAR-T dose,
disease course and outcome, and the CRS summary and episodes under *both* scales (ASTCT 2019 always, Lee 2014 as
the second scale; the run's configured scale is reused, the other one is graded here). ``tocsin batch`` writes them
beside its other tables, so a registry derives its patient table without grading again.

Example
-------
>>> import polars as pl
>>> from tocsin.config import GradingConfig
>>> from tocsin.core.engine import grade_normalised
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> raw = pl.DataFrame({"patient_id": "P", "day": ["0", "1.5", "9"], "item": ["infusion", "temperature", "death"],
...     "value": ["axi-cel", "38.6", "infection"], "unit": "", "file": "x", "line": [2, 3, 4]})
>>> normalised = normalise_events(raw, load_vocabulary())
>>> tables = cohort_tables(normalised, grade_normalised(normalised, GradingConfig()))
>>> tables["cohort_patients"].select("patient_id", "last_event_day").row(0)
('P', 9.0)
>>> tables["cohort_events"].get_column("item").to_list()
['death']
"""

from __future__ import annotations

import polars as pl

from tocsin.core.engine import GRADED_COLUMNS, GradingResult, ToxicityResult, grade_crs
from tocsin.core.events import NormalisedEvents
from tocsin.vocabulary import Vocabulary, load_vocabulary

PID = "patient_id"
CRS_SCALES = ("astct2019", "lee2014")
#: Item kinds whose rows the derivation reads itself (treatments, disease course, outcome).
EVENT_KINDS = ("drug", "disease_course", "outcome")
#: Infection work-up results (text items of kind lab) the derivation reads.
INFECTION_ITEMS = ("culture", "pcr", "mngs")
#: The infused CAR-T dose (items of kind patient, read for the baseline columns).
CELL_DOSE_ITEMS = ("car_t_dose_per_kg", "car_t_dose_total")
EVENT_COLUMNS = (PID, "t", "item", "num", "cat", "route")


def cohort_event_items(vocabulary: Vocabulary) -> list[str]:
    """The items kept in ``cohort_events``: drugs, disease course, outcome, infection results and the CAR-T dose."""
    extra = (*INFECTION_ITEMS, *CELL_DOSE_ITEMS)
    return [name for name, d in vocabulary.items.items() if d.kind in EVENT_KINDS or name in extra]


def _crs_tables(scale: str, crs: ToxicityResult) -> dict[str, pl.DataFrame]:
    return {f"crs_{scale}_summary": crs.summary, f"crs_{scale}_episodes": crs.episodes}


def cohort_tables(
    normalised: NormalisedEvents, result: GradingResult, vocabulary: Vocabulary | None = None
) -> dict[str, pl.DataFrame]:
    """Every table the derivation reads (``tocsin.cohort.derive.REQUIRED_TABLES``), by its ``tocsin batch`` name.

    Beside the engine's own per-patient tables (ICANS, ICAHT, PHT, scores, kinetics): ``cohort_patients``,
    ``cohort_events`` and ``crs_<scale>_summary`` / ``crs_<scale>_episodes`` for each of :data:`CRS_SCALES`.

    ``cohort_patients`` is the engine's patient table (infusion time, product, age, weight, sex, disease) plus
    ``last_event_day``: the day of the patient's last event at or after infusion (the censoring day of OS and
    PFS when no later ``last_contact`` says otherwise; null without any).
    """
    vocab = vocabulary or load_vocabulary()
    events = normalised.events
    last = (
        events.filter(pl.col("t") >= 0)
        .group_by(PID)
        .agg(pl.col("t").max().alias("last_event_day"))
        .with_columns(pl.col(PID).cast(pl.Utf8))
    )
    patients = result.patients.with_columns(pl.col(PID).cast(pl.Utf8)).join(
        last, on=PID, how="left", maintain_order="left"
    )
    kept = events.filter(pl.col("item").cast(pl.Utf8).is_in(cohort_event_items(vocab))).select(
        pl.col(PID).cast(pl.Utf8), "t", pl.col("item").cast(pl.Utf8), "num", pl.col("cat").cast(pl.Utf8), "route"
    )
    tables = {
        "cohort_patients": patients,
        "cohort_events": kept,
        "icans_summary": result.icans.summary,
        "icans_episodes": result.icans.episodes,
        "icaht": result.hematology.icaht,
        "pht": result.hematology.pht,
        "car_hematotox": result.scores.car_hematotox,
        "easix": result.scores.easix,
        "kinetics": result.kinetics,
    }
    configured = result.config.crs.scale
    for scale in CRS_SCALES:
        if scale == configured:
            crs = result.crs
        else:
            config = result.config.model_copy(update={"crs": result.config.crs.model_copy(update={"scale": scale})})
            crs = grade_crs(events.select(GRADED_COLUMNS), normalised.patients, config, vocab)
        tables.update(_crs_tables(scale, crs))
    return tables
