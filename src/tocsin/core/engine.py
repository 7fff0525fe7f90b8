"""The one grading engine: canonical events in, timelines, episodes and summaries out, for any batch size.

A bedside request is a batch of one; a registry is a batch of ten thousand. Both run the same column
expressions (DESIGN principle 2).

Example
-------
>>> import polars as pl
>>> from tocsin.config import GradingConfig
>>> from tocsin.core.engine import grade_events
>>> raw = pl.DataFrame({"patient_id": ["P", "P"], "day": ["0", "1.5"], "item": ["infusion", "temperature"],
...                     "value": ["axi-cel", "101.3"], "unit": ["", "[degF]"], "file": "x", "line": [2, 3]})
>>> result = grade_events(raw, GradingConfig())
>>> result.crs.summary["max_grade"].to_list()
[1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.arrays import EventCodes, codes_of, event_codes, item_rows, patient_codes
from tocsin.core.crs_astct2019 import grade_crs_astct2019
from tocsin.core.crs_course import mark_crs_course
from tocsin.core.crs_lee2014 import grade_crs_lee2014
from tocsin.core.cytopenia_ctcae import cytopenias_and_worst
from tocsin.core.episodes import episodes_and_summary, mark_stretches
from tocsin.core.events import IngestLimits, NormalisedEvents, normalise_events
from tocsin.core.evidence import Observation, evidence_columns, expand_evidence
from tocsin.core.icaht import grade_icaht, icaht_items
from tocsin.core.icans_astct2019 import grade_icans_astct2019
from tocsin.core.kernels_scores import last_kept_rows
from tocsin.core.kinetics import kinetics_nca
from tocsin.core.prolonged_cytopenia import pht_items, prolonged_cytopenia
from tocsin.core.scores.baseline import (
    ANCHOR_LYMPHODEPLETION,
    Input,
    baseline_of,
    distinct_patients,
    frames,
    lab_rows,
    position_of,
    windows_at,
)
from tocsin.core.scores.car_hematotox import INPUTS as HEMATOTOX_INPUTS
from tocsin.core.scores.car_hematotox import car_hematotox_columns
from tocsin.core.scores.easix import INPUTS as EASIX_INPUTS
from tocsin.core.scores.easix import easix_columns
from tocsin.core.scores.hscore import INPUTS as HSCORE_INPUTS
from tocsin.core.scores.hscore import LINEAGES as HSCORE_LINEAGES
from tocsin.core.scores.hscore import hscore_columns
from tocsin.core.scores.iec_hs import INFUSION_LABS, WINDOW_LABS, screen_columns
from tocsin.core.timeline import PID, Assessments, crs_state, icans_state
from tocsin.criteria import Scale, load_scale
from tocsin.vocabulary import Vocabulary, load_vocabulary

TIMELINE_COLUMNS = [PID, "t", "grade", "domain", "rule", "missing"]
#: The canonical event columns the graders read.
GRADED_COLUMNS = [PID, "t", "item", "num", "cat", "lln", "uln", "lloq", "blq", "route"]
EPISODE_COLUMNS = ["stretch", "quiet_since", "resolved_row"]
#: The event items the scores read: their labs, and the lymphodepletion a baseline is anchored at.
SCORE_ITEMS = sorted(
    {
        ANCHOR_LYMPHODEPLETION,
        *(source.item for inputs in (HEMATOTOX_INPUTS, EASIX_INPUTS, HSCORE_INPUTS, HSCORE_LINEAGES)
          for source in inputs.values()),
        *WINDOW_LABS,
        *INFUSION_LABS,
    }
)


def _shared_inputs(*score_inputs: dict[str, Input]) -> dict[str, str]:
    """Input name -> item of several scores read together; two items under one name could not share a read."""
    shared: dict[str, str] = {}
    for inputs in score_inputs:
        for name, source in inputs.items():
            if shared.setdefault(name, source.item) != source.item:
                raise RuntimeError(f"two scores name different items {name!r}: they cannot share a baseline read")
    return shared


#: The baseline labs CAR-HEMATOTOX and EASIX read (input name -> item), read once for both.
BASELINE_INPUTS = _shared_inputs(HEMATOTOX_INPUTS, EASIX_INPUTS)


@dataclass(frozen=True)
class ToxicityResult:
    """One toxicity's grades for a batch: the scale, the timeline, the episodes and a per-patient summary.

    ``timeline`` has one row per assessment (grade, domain, rule, missing) plus the state columns that
    ``observations`` read; :meth:`evidence` expands them into the observations behind each grade. It is built from
    the graded assessments on first use (a batch chunk's CRS timeline of ~50 columns cost ~9 ms, and a batch writes
    only six of them: :meth:`timeline_columns`).
    """

    scale: Scale
    episodes: pl.DataFrame
    summary: pl.DataFrame
    observations: tuple[Observation, ...]
    #: The graded assessments the timeline is built from, and the timeline's columns in order.
    assessments: Assessments = field(repr=False)
    timeline_names: tuple[str, ...] = field(repr=False)

    @cached_property
    def timeline(self) -> pl.DataFrame:
        """One row per assessment: the columns :attr:`timeline_names` (built once, on first use)."""
        return self.assessments.frame(self.timeline_names)

    def timeline_columns(self, names: Sequence[str]) -> pl.DataFrame:
        """``timeline.select(names)`` without building the columns not asked for (unless the timeline is built)."""
        if "timeline" in self.__dict__:  # built already: its columns cost nothing more
            return self.timeline.select(names)
        unknown = [name for name in names if name not in self.timeline_names]
        if unknown:
            raise pl.exceptions.ColumnNotFoundError(f"not columns of the {self.scale.scale} timeline: {unknown}")
        return self.assessments.frame(names)

    def evidence(self, patient_ids: list[str] | None = None) -> pl.DataFrame:
        """Long table (patient_id, t, item, day, value): the observations behind every graded row."""
        rows = self.timeline if patient_ids is None else self.timeline.filter(pl.col(PID).is_in(patient_ids))
        return expand_evidence(rows, list(self.observations))

    def explained(self, patient_ids: list[str] | None = None) -> pl.DataFrame:
        """The timeline with ``evidence`` (list of item/day/value) and ``missing`` (list of str) per row.

        Meant for a readable number of patients (reports, JSON, tests); batch consumers use
        :attr:`timeline` and :meth:`evidence`.
        """
        rows = self.timeline if patient_ids is None else self.timeline.filter(pl.col(PID).is_in(patient_ids))
        evidence = (
            expand_evidence(rows, list(self.observations))
            .group_by([PID, "t"])
            .agg(pl.struct("item", "day", "value").alias("evidence"))
        )
        missing = (
            pl.when(pl.col("missing") == "")
            .then(pl.lit([], pl.List(pl.Utf8)))
            .otherwise(pl.col("missing").str.split("; "))
        )
        return rows.join(evidence, on=[PID, "t"], how="left", maintain_order="left").with_columns(
            pl.col("evidence").fill_null([]), missing.alias("missing")
        )


def _toxicity_result(
    scale: Scale, graded: Assessments, observations: list[Observation], extra: list[str]
) -> ToxicityResult:
    keep = _timeline_columns(extra, observations)
    # Every rule id a grade cites must be one of the scale's rules (criteria data), or the output would
    # point to a rule nobody can look up. The rules are codes into a table of ids until the frame is built.
    rule = graded.text("rule")
    names = rule.source.to_list()
    # The codes cited, marked in a table with a last slot for the nulls (-1): a chunk's 150,000 codes in one
    # scatter, where np.unique sorted them (~0.5 ms).
    cited = np.zeros(len(names) + 1, dtype=np.bool_)
    cited[rule.index] = True
    unknown = {names[k] for k in np.flatnonzero(cited[:-1])} - {r.id for r in scale.rules}
    if unknown:
        raise RuntimeError(
            f"{scale.scale}: grading produced rule ids missing from its criteria file: {sorted(unknown)}"
        )
    episodes, summary = episodes_and_summary(graded)
    return ToxicityResult(scale, episodes, summary, tuple(observations), graded, tuple(keep))


#: Evidence columns by the identity of the specs (expressions are not hashable); the graders build their
#: specs once per scale (and set of vasopressors), and reading the columns of each expression costs ~0.2 ms.
_EVIDENCE_COLUMNS: dict[int, tuple[list[Observation], list[str]]] = {}


def _timeline_columns(extra: list[str], observations: list[Observation]) -> list[str]:
    """The columns a timeline keeps: its grades, the episode marks, and what its evidence specs read."""
    known = _EVIDENCE_COLUMNS.get(id(observations))
    if known is None or known[0] is not observations:
        known = _EVIDENCE_COLUMNS[id(observations)] = (observations, evidence_columns(observations))
    return list(dict.fromkeys([*TIMELINE_COLUMNS, *EPISODE_COLUMNS, *extra, *known[1]]))


@dataclass(frozen=True)
class HematologyResult:
    """Cytopenias (CTCAE, every value), ICAHT / T-ICAHT and prolonged cytopenia, per patient.

    ``cytopenia`` has one row per graded value; ``cytopenia_worst`` one per patient and lineage;
    ``icaht`` and ``pht`` one per patient (see ``docs/cytopenia.md`` and ``docs/icaht.md``).
    """

    cytopenia: pl.DataFrame
    cytopenia_worst: pl.DataFrame
    icaht: pl.DataFrame
    pht: pl.DataFrame


@dataclass(frozen=True)
class ScoreResults:
    """Baseline risk scores (one row per patient) and HLH screens at the last observation of each patient.

    See ``docs/scores.md``; the daily series are available from the score functions themselves.
    """

    car_hematotox: pl.DataFrame
    easix: pl.DataFrame
    hscore: pl.DataFrame
    iec_hs: pl.DataFrame
    car_hlh: pl.DataFrame


@dataclass(frozen=True)
class GradingResult:
    config: GradingConfig
    patients: pl.DataFrame
    crs: ToxicityResult
    icans: ToxicityResult
    hematology: HematologyResult
    scores: ScoreResults
    kinetics: pl.DataFrame
    errors: pl.DataFrame


def grade_crs(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: GradingConfig,
    vocabulary: Vocabulary,
    read: EventCodes | None = None,
) -> ToxicityResult:
    """CRS on the configured scale (``read``: the :func:`codes_of` the events and patients, when already read)."""
    state = crs_state(events, patients, vocabulary, config, read)
    course = mark_crs_course(state, config)
    if config.crs.scale == "lee2014":
        (graded, observations), scale = grade_crs_lee2014(course, config), load_scale("crs_lee2014")
    else:
        (graded, observations), scale = grade_crs_astct2019(course, config), load_scale("crs_astct2019")
    return _toxicity_result(scale, graded, observations, ["waived", "waiver_drug_ep", "waiver_t_ep"])


def grade_icans(
    events: pl.DataFrame, patients: pl.DataFrame, config: GradingConfig, read: EventCodes | None = None
) -> ToxicityResult:
    """ICANS, ASTCT 2019 (``read``: the :func:`codes_of` the events and patients, when already read)."""
    graded, observations = grade_icans_astct2019(icans_state(events, patients, config, read), config)
    # Recovery must be documented: an assessment that cannot be graded (ICE missing, grade -1) is not quiet.
    grade = graded["grade"]
    mark_stretches(graded, (grade >= 1) | (grade < 0), config.episodes.icans_resolution_hours)
    return _toxicity_result(load_scale("icans_astct2019"), graded, observations, [])


def grade_hematology(
    events: pl.DataFrame, patients: pl.DataFrame, config: GradingConfig, read: EventCodes | None = None
) -> HematologyResult:
    """CTCAE cytopenias and their worst grades, ICAHT and PHT (``read``: the :func:`codes_of` the events, when
    already read)."""
    # The codes read once for the three (each read costs ~0.1 ms for one course), and the rows of ICAHT's and
    # PHT's items read once for both (~0.2 ms for one course, each).
    read = read or event_codes(events)
    cytopenia, cytopenia_worst = cytopenias_and_worst(events, config.cytopenia, patients, read)
    items = [*icaht_items(config.icaht), *pht_items(config.prolonged_cytopenia)]
    rows = item_rows(events, read, list(dict.fromkeys(items)))
    return HematologyResult(
        cytopenia=cytopenia,
        cytopenia_worst=cytopenia_worst,
        icaht=grade_icaht(events, config.icaht, rows),
        pht=prolonged_cytopenia(events, config.prolonged_cytopenia, rows),
    )


#: Item kinds that record follow-up (response, progression, next therapy, last contact, death), not the patient's state.
FOLLOW_UP_KINDS = ("disease_course", "outcome")


def last_observation(events: pl.DataFrame, patients: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    """Per patient, ``at`` = the day of the last observation at or after infusion (the "now" of a course).

    Follow-up rows (:data:`FOLLOW_UP_KINDS`) are not observations: a last contact a year later would otherwise
    move the HLH screens to a day without any lab. Canonical events hold each patient's rows together in time
    order, so the last observation is the patient's last remaining row, found in one compiled pass
    (:func:`tocsin.core.kernels_scores.last_kept_rows`) over the item and patient codes: no group-by or join
    over every event."""
    ids = patients.get_column(PID)
    at = _last_observation_at(event_codes(events), events.get_column("t"), patient_codes(ids), vocabulary)
    return pl.DataFrame([ids, pl.Series("at", at)])


def _last_observation_at(
    read: EventCodes, t: pl.Series, patients: np.ndarray, vocabulary: Vocabulary
) -> np.ndarray:
    """:func:`last_observation`'s ``at`` per patient code of ``patients``, from the codes of the events."""
    rows = last_kept_rows(read.patient, read.item, _observed_items(vocabulary, tuple(read.categories)))
    times = t.to_numpy()[rows]
    position = position_of(patients, read.patient[rows])
    # Polars orders NaN above every number, so a NaN time counts as at or after infusion, as it did in a filter.
    found = (position >= 0) & ((times >= 0) | np.isnan(times))
    at = np.zeros(patients.size)
    at[position[found]] = times[found]
    return at


#: Per vocabulary (by identity) and item categories: :func:`_observed_items`' mask, with the vocabulary it is for.
_OBSERVED: dict[tuple[int, tuple[str, ...]], tuple[Vocabulary, np.ndarray]] = {}


def _observed_items(vocabulary: Vocabulary, categories: tuple[str, ...]) -> np.ndarray:
    """Per item code, whether its rows are observations of the course (not follow-up); the last entry, a null
    item, is none. Built once per vocabulary and categories (~40 µs of a course's scores)."""
    key = (id(vocabulary), categories)
    cached = _OBSERVED.get(key)
    if cached is None or cached[0] is not vocabulary:
        if len(_OBSERVED) > 16:  # vocabularies are few: never grow without bound
            _OBSERVED.clear()
        follow_up = {name for name, item in vocabulary.items.items() if item.kind in FOLLOW_UP_KINDS}
        cached = _OBSERVED[key] = (vocabulary, np.array([name not in follow_up for name in categories] + [False]))
    return cached[1]


def score_patients(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: GradingConfig,
    vocabulary: Vocabulary,
    read: EventCodes | None = None,
) -> ScoreResults:
    """The baseline scores and HLH screens of every patient (``read``: the :func:`codes_of` the events and
    patients, when already read; else read here, once for every score)."""
    # HScore and the HLH screens describe a moment, not the baseline: a course is screened as it stands at its
    # last observation (the bedside question); the daily series come from the score functions.
    read = read or codes_of(events, patients)
    ids = patients.get_column(PID).cast(pl.Categorical)
    codes = read.table if read.table is not None else patient_codes(ids)  # an event_codes read has no table codes
    windows = windows_at(ids, _last_observation_at(read, events.get_column("t"), codes, vocabulary), codes)
    table = distinct_patients(ids, codes)
    # The score labs read once, as arrays, for every score's picks.
    labs = lab_rows(events, SCORE_ITEMS, read)
    # CAR-HEMATOTOX and EASIX take their labs at the same anchor with the same lookback: one read serves both.
    baseline = baseline_of(labs, table, BASELINE_INPUTS, config.scores.baseline_lookback_days)
    # The five frames are cut from one set of buffers (a Series each costs a few µs, whatever its length).
    hematotox, easix, hscore, iec_hs, car_hlh = frames(
        car_hematotox_columns(baseline, config.scores),
        easix_columns(baseline, config.scores),
        hscore_columns(labs, windows, config.scores),
        *screen_columns(labs, table, windows, config.scores),
    )
    return ScoreResults(car_hematotox=hematotox, easix=easix, hscore=hscore, iec_hs=iec_hs, car_hlh=car_hlh)


def grade_normalised(
    normalised: NormalisedEvents, config: GradingConfig, vocabulary: Vocabulary | None = None
) -> GradingResult:
    """Grade already validated events (the errors, if any, are carried along for reporting)."""
    vocab = vocabulary or load_vocabulary()
    # The graders read values, never the provenance columns (original text, file, source): every filter
    # of a million-row frame would otherwise copy those strings. (Picked by ``frame[names]``, which takes the columns
    # as they are; a ``select`` of the same names plans a query, ~0.1 ms.)
    events, patients = normalised.events[GRADED_COLUMNS], normalised.patients
    read = codes_of(events, patients)  # once for the graders that take it
    return GradingResult(
        config=config,
        patients=patients,
        crs=grade_crs(events, patients, config, vocab, read),
        icans=grade_icans(events, patients, config, read),
        hematology=grade_hematology(events, patients, config, read),
        scores=score_patients(events, patients, config, vocab, read),
        kinetics=kinetics_nca(events, patients, config.kinetics, read),
        errors=normalised.errors,
    )


def grade_events(
    raw: pl.DataFrame, config: GradingConfig, limits: IngestLimits | None = None, vocabulary: Vocabulary | None = None
) -> GradingResult:
    """Validate, normalise and grade raw event rows (rows with errors are left out and reported)."""
    vocab = vocabulary or load_vocabulary()
    normalised = normalise_events(raw, vocab, limits or IngestLimits(earliest_day=config.earliest_day))
    return grade_normalised(normalised, config, vocab)
