"""Prolonged hematologic toxicity (PHT) at day 28, recovery and biphasic cytopenia, for a whole batch at once.

Seed 003: Wang J et al., Front Immunol 2023;14:1139559, doi:10.3389/fimmu.2023.1139559 ("patients with
anemia, thrombocytopenia, and/or neutropenia on D28 were considered to be experiencing PHT"; recovery =
back to grade <= 2 without transfusion or G-CSF; complete recovery = normal; recurrence after recovery).
The absolute recovery definitions are those of EHA/EBMT 2023 (doi:10.1182/blood.2023020578; neutrophils
>= 0.5 x10^9/L on 3 measurements, CIBMTR) and T-ICAHT 2025 (doi:10.1182/blood.2025028833; platelets >= 20
x10^9/L untransfused for 7 days). Cut-offs and rule ids are data (``data/criteria/pht_wang2023.yaml``,
including the CTCAE v5.0 cytopenia bands this module grades with); local decisions are
:class:`tocsin.config.ProlongedCytopeniaConfig`; ``docs/icaht.md`` explains both. The per-patient work is
NumPy on the batch's columns and one compiled pass over each lineage's daily values
(:mod:`tocsin.core.kernels_pht`): the same code for one course and for a batch.

Per patient and lineage (neutrophils ``anc``, platelets ``plt``, hemoglobin ``hgb``), on the daily lowest
values (day = ``floor(t)``, day 0 = infusion) observed before the end of observation (progression or next
therapy as configured, last contact, death):

* landmark value: the day nearest to ``landmark_day`` within ``landmark_window_days`` (ties: the lower
  value), graded by CTCAE v5.0 (grade 1 below the row's LLN, else the configured LLN); cytopenic when the
  grade is at least ``min_grade``. PHT = any cytopenic lineage; uni-, bi- or trilineage by their number;
  unknown (null) when no lineage is cytopenic but one has no landmark value.
* a daily value *meets* a recovery definition when it is at or above its level and no support item of the
  definition was given on that day or in the days before it allows; a recovery is the first of the
  required consecutive measurements that meet it, after a value that did not (so there was something to
  recover from). ``recovery_day_threshold`` / ``_grade_le_2`` / ``_normal`` are the three definitions;
  ``recovered`` and the biphasic watch use the configured one.
* second fall: after the recovery run, a value that no longer meets the definition and has at least
  ``second_fall_min_grade``: biphasic (recurrent) cytopenia.

Example
-------
>>> import polars as pl
>>> from tocsin.config import ProlongedCytopeniaConfig
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> rows = [("0", "infusion", "axi-cel", ""), ("14", "anc", "0.3", "10*9/L"), ("21", "anc", "1.6", "10*9/L"),
...     ("28", "anc", "0.8", "10*9/L"), ("28", "plt", "120", "10*9/L"), ("28", "hgb", "9.1", "g/dL")]
>>> raw = pl.DataFrame({"patient_id": "P", "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": "x", "line": list(range(2, 8))})
>>> out = prolonged_cytopenia(normalise_events(raw, load_vocabulary()).events, ProlongedCytopeniaConfig())
>>> out.select("pht", "pht_pattern", "pht_lineages", "anc_landmark_grade", "anc_recovery_day_grade_le_2",
...     "anc_second_fall_day", "biphasic").row(0)
(True, 'trilineage', 'neutropenia, thrombocytopenia, anemia', 3, 21, 28, True)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from tocsin.config import ProlongedCytopeniaConfig
from tocsin.core.cytopenia_ctcae import criteria_tables
from tocsin.core.arrays import ItemRows, gather_rows, read_item_rows
from tocsin.core.icaht import observation_ends, observation_end_items
from tocsin.core.kernels_pht import summarise_series
from tocsin.core.timeline import Column, NullableInt, Text, frame_of, labels
from tocsin.criteria import load_scale

PID = "patient_id"
SCALE = load_scale("pht_wang2023")
LINEAGES: list[dict] = list(SCALE.table("lineages"))
#: Recovery definitions, in output order.
DEFINITIONS = ("threshold", "grade_le_2", "normal")
_PATTERNS = {0: "none", 1: "unilineage", 2: "bilineage", 3: "trilineage"}
_LINEAGE_COLUMNS = (
    "landmark_day",
    "landmark_value",
    "landmark_grade",
    "landmark_supported",
    "cytopenic",
    "nadir",
    "nadir_day",
    *(f"recovery_day_{d}" for d in DEFINITIONS),
    "recovered",
    "recovery_after_landmark_day",
    "second_fall_day",
    "biphasic",
)


def _lln(item: str, config: ProlongedCytopeniaConfig) -> float:
    return {"anc": config.anc_lln, "plt": config.plt_lln, "hgb": config.hgb_lln}[item]


def _support_items() -> list[str]:
    return sorted({s for lineage in LINEAGES for s in lineage["support_items"]})


def _ctcae_v5_bands() -> dict[str, list[dict[str, float]]]:
    """Per lineage, the numeric CTCAE v5.0 bands (grade, below) of the cytopenia criteria data, worst first
    (grade 1 "< LLN" is applied apart, with the day's LLN)."""
    tables = criteria_tables("ctcae5")
    return {
        item: [{"grade": b.grade, "below": float(b.below)} for b in tables[item].bands if b.below != "lln"]
        for item in (lineage["item"] for lineage in LINEAGES)
    }


class _Daily(NamedTuple):
    """The daily lowest values of every series (one patient's days of one lineage, in day order): series ``s``
    at ``offsets[s]:offsets[s + 1]``, series by lineage (in the order of ``LINEAGES``), then by patient."""

    offsets: np.ndarray
    series_patient: np.ndarray
    series_lineage: np.ndarray
    lineage: np.ndarray  # per day: index in LINEAGES
    patient: np.ndarray
    day: np.ndarray
    value: np.ndarray
    lln: np.ndarray  # the day's highest LLN, else the configured one


def _observed(read: ItemRows, rows: np.ndarray, end_t: np.ndarray) -> np.ndarray:
    """Of ``rows``, those from day 0 to the end of observation (all when it does not end)."""
    t = read.t[rows]
    return rows[(t >= 0) & ~(t > end_t[read.patient[rows]])]


def _daily(read: ItemRows, lln: np.ndarray, end_t: np.ndarray, config: ProlongedCytopeniaConfig) -> _Daily:
    """Daily lowest value per patient and lineage (day = ``floor(t)``) of the counts from day 0 to the end of
    observation, with the day's highest LLN (else the configured one)."""
    rows = [_observed(read, read.rows_of(ln["item"]), end_t) for ln in LINEAGES]
    rows = [r[~np.isnan(read.num[r])] for r in rows]
    lineage = np.repeat(np.arange(len(LINEAGES)), [r.size for r in rows])
    rows = np.concatenate(rows)
    patient, day = read.patient[rows], np.floor(read.t[rows]).astype(np.int64)
    new_day = np.ones(rows.size, dtype=np.bool_)
    new_day[1:] = (patient[1:] != patient[:-1]) | (day[1:] != day[:-1]) | (lineage[1:] != lineage[:-1])
    first = np.flatnonzero(new_day)
    value = np.minimum.reduceat(read.num[rows], first) if first.size else np.empty(0)
    highest = np.fmax.reduceat(lln[rows], first) if first.size else np.empty(0)
    lineage, patient, day = lineage[first], patient[first], day[first]
    configured = np.array([_lln(ln["item"], config) for ln in LINEAGES])[lineage]
    new_series = np.ones(first.size, dtype=np.bool_)
    new_series[1:] = (patient[1:] != patient[:-1]) | (lineage[1:] != lineage[:-1])
    series_first = np.flatnonzero(new_series)
    return _Daily(
        np.append(series_first, first.size),
        patient[series_first],
        lineage[series_first],
        lineage,
        patient,
        day,
        value,
        np.where(np.isnan(highest), configured, highest),
    )


def _latest_support_days(read: ItemRows, daily: _Daily) -> dict[str, np.ndarray]:
    """Per support item and daily value: the latest day (NaN: none) the patient was given it, at or before the
    value's day. Any row of the item counts (before day 0 or after the end of observation too)."""
    latest: dict[str, np.ndarray] = {}
    # A patient's support days are in order, so (patient, day) keys are sorted for the search.
    key = (daily.patient << 32) + daily.day
    for item in _support_items():
        rows = read.rows_of(item)
        if rows.size == 0:
            latest[item] = np.full(key.size, np.nan)
            continue
        given_day = np.floor(read.t[rows]).astype(np.int64)
        found = np.searchsorted((read.patient[rows] << 32) + given_day, key, side="right") - 1
        same_patient = (found >= 0) & (read.patient[rows][found.clip(min=0)] == daily.patient)
        latest[item] = np.where(same_patient, given_day[found.clip(min=0)], np.nan)
    return latest


def _supported(
    daily: _Daily, gaps: np.ndarray, items: list[str], rules: list[tuple[list[str], int]]
) -> np.ndarray:
    """Per daily value: a support item of its lineage's rule (``rules[lineage]``: items, support-free days) was
    given on its day or in the free days before it. ``gaps``: per support item (rows in the order of ``items``)
    and daily value, the days since the item was last given (NaN: never). Every rule's items at once: item by
    item it was three calls per lineage and item, some 70 calls a course."""
    # Per item and lineage: the free days of the lineage's rule, -inf where the item is not in the rule.
    free_days = np.full((len(items), len(rules)), -np.inf)
    for lineage, (rule_items, days) in enumerate(rules):
        free_days[[items.index(item) for item in rule_items], lineage] = days
    return (gaps <= free_days[:, daily.lineage]).any(axis=0)


def _grades(daily: _Daily) -> np.ndarray:
    """CTCAE v5.0 grade of each daily value: the first band of its lineage (in the data's order) it is below,
    else grade 1 below its LLN, else 0."""
    grade = (daily.value < daily.lln).astype(np.int8)
    bands = _ctcae_v5_bands()
    for lineage, spec in enumerate(LINEAGES):
        of_lineage = daily.lineage == lineage
        for band in reversed(bands[spec["item"]]):
            grade[of_lineage & (daily.value < band["below"])] = band["grade"]
    return grade


def _recovery_rules(definition: str, config: ProlongedCytopeniaConfig) -> tuple[np.ndarray, list, np.ndarray]:
    """Per lineage: the level a daily value must reach for ``definition`` (NaN: does not apply; ``normal``:
    its LLN, given apart), the support items and free days that bar it, and the consecutive values needed
    (0: the definition does not apply to the lineage)."""
    items = [ln["item"] for ln in LINEAGES]
    if definition == "threshold":
        table = SCALE.table("threshold_recovery")
        rules = [table.get(item, {}) for item in items]
        level = np.array([float(r["at_least"]) if r else np.nan for r in rules])
        support = [(r.get("support_items", []), r.get("support_free_days", 0)) for r in rules]
        return level, support, np.array([r.get("consecutive", 0) for r in rules])
    support = [(ln["support_items"], config.support_free_days) for ln in LINEAGES]
    if definition == "normal":
        level = np.full(len(items), np.nan)
    else:  # grade <= 2: at or above the grade-3 cut-off
        bands = _ctcae_v5_bands()
        level = np.array([float(next(b["below"] for b in bands[item] if b["grade"] == 3)) for item in items])
    return level, support, np.full(len(items), config.recovery_consecutive_values)


def _per_series(values: np.ndarray, index: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """``values`` at ``index`` as floats, ``fill`` where the index is -1 (none)."""
    taken = values[index.clip(min=0)].astype(np.float64) if values.size else np.full(index.size, fill)
    return np.where(index >= 0, taken, fill)


def _column(values: np.ndarray, dtype: pl.DataType) -> Column:
    """A :func:`tocsin.core.timeline.frame_of` column of ``dtype`` from floats, null where NaN (integers and
    booleans as a :class:`NullableInt`, -1 for null)."""
    if dtype == pl.Float64:
        return values
    return NullableInt(np.where(np.isnan(values), -1, values), dtype)  # type: ignore[arg-type]


def _columns(item: str, block: np.ndarray, filled: np.ndarray) -> dict[str, Column]:
    """One lineage's :data:`_LINEAGE_COLUMNS` (rows of ``block``, NaN = null; ``filled``: the same with -1 for
    NaN) as the :func:`_column` of each, named ``<item>_<column>``."""
    return {
        f"{item}_{name}": block[k] if _DTYPES[name] == pl.Float64 else NullableInt(filled[k], _DTYPES[name])
        for k, name in enumerate(_LINEAGE_COLUMNS)
    }


def pht_items(config: ProlongedCytopeniaConfig) -> list[str]:
    """The items PHT reads: the lineages' counts, their support items and the items that end the observation."""
    items = [*(ln["item"] for ln in LINEAGES), *_support_items(), *observation_end_items(config.censor_at)]
    return list(dict.fromkeys(items))


def _lineage_table(
    events: pl.DataFrame, config: ProlongedCytopeniaConfig, rows: tuple[pl.Series, ItemRows] | None
) -> tuple[pl.Series, dict, _Daily]:
    """The patients and, per series of :func:`_daily`, the columns of :func:`prolonged_cytopenia_lineages`
    as floats (NaN = null); the support days of every patient under ``support_<item>`` keys. ``rows``: the
    read of at least :func:`pht_items` (None: read here)."""
    supports = _support_items()
    patients, read = rows or read_item_rows(events, pht_items(config))
    lln = gather_rows(events.get_column("lln"), read.event_rows).to_numpy().astype(np.float64, copy=False)
    end_t, _ = observation_ends(read, config.censor_at)
    daily = _daily(read, lln, end_t, config)
    grade = _grades(daily)
    latest = _latest_support_days(read, daily)
    gaps = np.array([daily.day - latest[item] for item in supports]).reshape(len(supports), daily.day.size)
    meets, consecutive = np.zeros((len(DEFINITIONS), daily.day.size), dtype=np.bool_), []
    for d, definition in enumerate(DEFINITIONS):
        level, support, needed = _recovery_rules(definition, config)
        at_level = daily.value >= (daily.lln if definition == "normal" else level[daily.lineage])
        meets[d] = at_level & ~_supported(daily, gaps, supports, support)
        consecutive.append(needed[daily.series_lineage])
    landmark_rules = [(ln["support_items"], config.support_free_days) for ln in LINEAGES]
    landmark_supported = _supported(daily, gaps, supports, landmark_rules)
    chosen = DEFINITIONS.index(config.recovery)
    summary = summarise_series(
        daily.offsets,
        daily.day,
        daily.value,
        grade,
        meets,
        np.array(consecutive, dtype=np.int64).reshape(len(DEFINITIONS), -1),
        chosen,
        config.second_fall_min_grade,
        config.landmark_day,
        config.landmark_window_days,
    )
    landmark, nadir = summary.landmark_row, summary.nadir_row
    day_or_nan = [np.where(days >= 0, days, np.nan) for days in summary.recovery_day]
    landmark_grade = _per_series(grade, landmark)
    second_fall = np.where(summary.second_fall_day >= 0, summary.second_fall_day, np.nan)
    table = {
        "landmark_day": _per_series(daily.day, landmark),
        "landmark_value": _per_series(daily.value, landmark),
        "landmark_grade": landmark_grade,
        "landmark_supported": _per_series(landmark_supported, landmark),
        "cytopenic": np.where(np.isnan(landmark_grade), np.nan, landmark_grade >= config.min_grade),
        "nadir": _per_series(daily.value, nadir),
        "nadir_day": _per_series(daily.day, nadir),
        **{f"recovery_day_{d}": days for d, days in zip(DEFINITIONS, day_or_nan, strict=True)},
        "recovered": (summary.recovery_day[chosen] >= 0).astype(np.float64),
        "recovery_after_landmark_day": np.where(
            summary.recovery_after_landmark_day >= 0, summary.recovery_after_landmark_day, np.nan
        ),
        "second_fall_day": second_fall,
        "biphasic": (~np.isnan(second_fall)).astype(np.float64),
    }
    days, after_landmark = _support_day_counts(read, end_t, supports, config.landmark_day)
    for i, item in enumerate(supports):
        table[f"support_{item}"] = days[i], after_landmark[i]
    return patients, table, daily


def _support_day_counts(
    read: ItemRows, end_t: np.ndarray, supports: list[str], landmark_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per support item and patient (supports x patients): the days it was given from day 0 to the end of
    observation, and those after the landmark day. All items at once (item by item: some 15 calls each)."""
    rows = _observed(read, read.rows_of(*supports), end_t)
    support_of_slot = np.full(len(read.items), -1, dtype=np.int64)
    support_of_slot[[read.items.index(item) for item in supports]] = np.arange(len(supports))
    support = support_of_slot[read.slot[rows]]
    # By support item, each in event order: a patient's days of one item are then adjacent and in order.
    order = np.argsort(support, kind="stable")
    rows, support = rows[order], support[order]
    patient, day = read.patient[rows], np.floor(read.t[rows]).astype(np.int64)
    new_day = np.ones(rows.size, dtype=np.bool_)
    new_day[1:] = (patient[1:] != patient[:-1]) | (day[1:] != day[:-1]) | (support[1:] != support[:-1])
    cell = support[new_day] * read.n_patients + patient[new_day]
    shape, size = (len(supports), read.n_patients), len(supports) * read.n_patients
    days = np.bincount(cell, minlength=size).reshape(shape)
    return days, np.bincount(cell[day[new_day] > landmark_day], minlength=size).reshape(shape)


_DTYPES: dict[str, pl.DataType] = {
    "landmark_day": pl.Int32,
    "landmark_value": pl.Float64,
    "landmark_grade": pl.Int8,
    "landmark_supported": pl.Boolean,
    "cytopenic": pl.Boolean,
    "nadir": pl.Float64,
    "nadir_day": pl.Int32,
    **{f"recovery_day_{d}": pl.Int32 for d in DEFINITIONS},
    "recovered": pl.Boolean,
    "recovery_after_landmark_day": pl.Int32,
    "second_fall_day": pl.Int32,
    "biphasic": pl.Boolean,
}


def prolonged_cytopenia_lineages(events: pl.DataFrame, config: ProlongedCytopeniaConfig) -> pl.DataFrame:
    """One row per patient and lineage with a value from day 0 (``item`` anc / plt / hgb, ``term``).

    Columns: ``landmark_day``, ``landmark_value``, ``landmark_grade`` (CTCAE v5.0), ``landmark_supported``
    (a support item of the lineage in the support-free days before the landmark value), ``cytopenic``;
    ``nadir``, ``nadir_day``; ``recovery_day_threshold``, ``recovery_day_grade_le_2``, ``recovery_day_normal``;
    ``recovered`` and ``recovery_after_landmark_day`` (configured definition); ``second_fall_day``,
    ``biphasic``. Counts in 10*9/L, hemoglobin in g/dL, days since infusion. See :func:`prolonged_cytopenia`.
    Rows by lineage, then patient.
    """
    patients, table, daily = _lineage_table(events, config, None)
    lineage = daily.series_lineage
    return frame_of(
        {
            PID: Text(patients, daily.series_patient),
            "item": labels([ln["item"] for ln in LINEAGES], lineage),
            "term": labels([ln["term"] for ln in LINEAGES], lineage),
            **{name: _column(table[name], _DTYPES[name]) for name in _LINEAGE_COLUMNS},
        }
    )


def _terms(flags: list[np.ndarray]) -> Text:
    """Per patient, the terms of the lineages flagged (``flags[lineage]``), comma-separated ('' when none)."""
    code = sum(flag.astype(np.int64) << i for i, flag in enumerate(flags))
    names = [", ".join(ln["term"] for i, ln in enumerate(LINEAGES) if c >> i & 1) for c in range(1 << len(LINEAGES))]
    return labels(names, code)


def prolonged_cytopenia(
    events: pl.DataFrame, config: ProlongedCytopeniaConfig, rows: tuple[pl.Series, ItemRows] | None = None
) -> pl.DataFrame:
    """PHT at the landmark day, lineages, recovery and biphasic cytopenia: one row per patient of ``events``.

    ``events`` are canonical events (:func:`tocsin.core.events.normalise_events`, sorted by patient and
    time); ``rows``: the patients and rows of ``events`` (:func:`tocsin.core.arrays.read_item_rows`) of at
    least :func:`pht_items`, when one read serves several graders (~0.3 ms for one course). Columns:

    * ``pht`` (true / false / null = cannot be excluded), ``pht_rule`` (rule id of pht_wang2023),
      ``pht_lineage_count``, ``pht_pattern`` (none / unilineage / bilineage / trilineage),
      ``pht_lineages`` and ``pht_unknown_lineages`` (terms, comma-separated), ``biphasic``,
      ``biphasic_lineages``, ``recovery_definition``, ``recovery_rule``;
    * per lineage ``anc_`` / ``plt_`` / ``hgb_``: the columns of :func:`prolonged_cytopenia_lineages`;
    * support beside it: ``g_csf_days``, ``gm_csf_days``, ``platelet_transfusion_days``,
      ``rbc_transfusion_days``, ``epo_days``, ``tpo_ra_days`` and each ``*_days_after_landmark``.

    References: Wang 2023, doi:10.3389/fimmu.2023.1139559; EHA/EBMT 2023, doi:10.1182/blood.2023020578;
    T-ICAHT 2025, doi:10.1182/blood.2025028833; CTCAE v5.0 (criteria.md §3.1).
    """
    patients, table, daily = _lineage_table(events, config, rows)
    n = patients.len()
    # Per patient and lineage: its series (-1 when the patient has no value of the lineage).
    series_of = np.full((len(LINEAGES), n), -1, dtype=np.int64)
    series_of[daily.series_lineage, daily.series_patient] = np.arange(daily.series_lineage.size)
    # One gather per lineage of all its columns (a gather per column was a fifth of the time of one course).
    per_series = np.array([table[name] for name in _LINEAGE_COLUMNS], dtype=np.float64)
    wide, framed = {}, {}
    for i, ln in enumerate(LINEAGES):
        block, has = np.full((len(_LINEAGE_COLUMNS), n), np.nan), series_of[i] >= 0
        block[:, has] = per_series[:, series_of[i, has]]
        wide |= {(ln["item"], name): values for name, values in zip(_LINEAGE_COLUMNS, block, strict=True)}
        # The lineage's integer and boolean columns with -1 for null by one call (one per column: ~40 calls).
        framed |= _columns(ln["item"], block, np.where(np.isnan(block), -1, block))
    cytopenic = [wide[ln["item"], "cytopenic"] == 1 for ln in LINEAGES]
    unknown = [np.isnan(wide[ln["item"], "landmark_grade"]) for ln in LINEAGES]
    biphasic = [wide[ln["item"], "biphasic"] == 1 for ln in LINEAGES]
    count, unknown_count = np.sum(cytopenic, axis=0, dtype=np.int64), np.sum(unknown, axis=0, dtype=np.int64)
    known = (count > 0) | (unknown_count == 0)
    rule_code = np.where(count > 0, 0, np.where(unknown_count == 0, 1, 2))
    recovery_rule = {
        "threshold": ", ".join(rule["rule"] for rule in SCALE.table("threshold_recovery").values()),
        "grade_le_2": SCALE.table("grade_le_2_rule"),
        "normal": SCALE.table("normal_rule"),
    }[config.recovery]
    supports, same = _support_items(), np.zeros(n, dtype=np.int64)
    # Built from few buffers (frame_of): a Series per column cost ~0.7 ms for one course, these ~0.3 ms.
    # The patients are a gather too: hstacking a frame onto them reads its columns back, ~25 µs.
    return frame_of(
        {
            PID: Text(patients, np.arange(n)),
            "pht": NullableInt(np.where(known, count > 0, -1), pl.Boolean),
            "pht_rule": labels(["PHT-DAY28", "PHT-DAY28-NONE", "PHT-DAY28-UNKNOWN"], rule_code),
            "pht_lineage_count": NullableInt(count, pl.Int8),
            "pht_pattern": labels(list(_PATTERNS.values()), np.where(known, count, -1)),
            "pht_lineages": _terms(cytopenic),
            "pht_unknown_lineages": _terms(unknown),
            "biphasic": np.any(biphasic, axis=0),
            "biphasic_lineages": _terms(biphasic),
            "recovery_definition": labels([config.recovery], same),
            "recovery_rule": labels([recovery_rule], same),
            **framed,
            **{f"{s}_days": NullableInt(table[f"support_{s}"][0], pl.Int32) for s in supports},
            **{f"{s}_days_after_landmark": NullableInt(table[f"support_{s}"][1], pl.Int32) for s in supports},
        }
    )
