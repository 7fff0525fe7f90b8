"""Timeline: the patient's state at every assessment time, built as arrays for a whole batch.

Every state column is "the last value seen" within the patient, so one pass over sorted events serves one
patient or ten thousand. How long an observation stays valid is a parameter of the grading config:

* support is a state until changed: an oxygen device until the next ``oxygen`` row, each vasopressor
  until a row with rate 0;
* a fever counts for ``crs.fever_window_hours`` after it was measured; a blood pressure for
  ``crs.bp_validity_hours``; ICE/CAPD and consciousness for ``icans.neuro_validity_hours``; a seizure
  for ``icans.seizure_validity_hours`` unless a later row says ``none``;
* an ``alternative_cause`` (``finding:cause``) holds until a later ``finding:none``;
* treatment given so far (anti-cytokine or antipyretic) is tracked with its drug and time.

Assessment times are the distinct times at which any item relevant to the toxicity was recorded; the
state at that time includes every row at that time.

An eager Polars operation costs 20–500 µs however few its rows, and the state took about forty of them per
toxicity; so the state is NumPy arrays over the toxicity's rows (:class:`ToxicityRows`), the latest row of
every signal at every assessment comes from one compiled pass (the loop of
:func:`tocsin.core.segments.latest_rows_loop`), and the text columns are gathered once when the timeline frame is
built (:class:`Assessments`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.arrays import EventCodes, codes_of, enum_codes, gather_rows, patient_codes, positions_in
from tocsin.core.polars_handles import (
    PySeries, cut_columns, frame_from, gather_series, masked_series, numeric_series, sliced,
)
from tocsin.core.segments import latest_rows_loop, compiled
from tocsin.criteria import load_scale
from tocsin.vocabulary import Vocabulary

PID = "patient_id"
HOURS_PER_DAY = 24.0
#: Findings an ``alternative_cause`` row can name for ICANS (``consciousness:sedation``...).
NEURO_FINDINGS = ("ice", "capd", "consciousness", "seizure", "motor_weakness", "cerebral_edema", "icp_sign")


@dataclass(frozen=True)
class Text:
    """A text column kept as row numbers into ``source`` (-1 = null) until the frame is built: the graders
    decide on codes, and the text is gathered once."""

    source: pl.Series
    index: np.ndarray

    def labelled(self, *values: str) -> np.ndarray:
        """Whether each row's text is one of ``values`` (for a table of labels: it is read whole, and tested in
        Python: ``np.isin`` of a few texts cost ~10 µs)."""
        wanted = np.array([text in values for text in self.source.to_list()], dtype=np.bool_)
        return np.where(self.index >= 0, wanted[np.maximum(self.index, 0)], False) if wanted.size else (
            np.zeros(self.index.shape, np.bool_)
        )


@cache
def _label_table(names: tuple[str | None, ...]) -> pl.Series:
    return pl.Series(list(names), dtype=pl.Utf8)


def labels(names: Sequence[str | None], codes: np.ndarray) -> Text:
    """Text from a table of labels by code (-1 = null)."""
    return Text(_label_table(tuple(names)), codes)


def position_in(text: pl.Expr, names: Sequence[str], other: int) -> pl.Expr:
    """The position of each text among ``names`` (``other`` for another text or null): a cast to an Enum of
    the names, a tenth of the cost of ``replace_strict``."""
    return text.cast(pl.Enum(list(names)), strict=False).to_physical().cast(pl.Int64).fill_null(other)


@cache
def _enum_of(names: tuple[str, ...]) -> pl.Enum:
    return pl.Enum(list(names))


def text_positions(texts: pl.Series, names: Sequence[str], other: int) -> np.ndarray:
    """:func:`position_in` of a Series, without a query: a cast to the Enum and the Enum's codes (~15 µs where a
    select of the expression took ~0.3 ms)."""
    codes = texts.cast(_enum_of(tuple(names)), strict=False)
    found = enum_codes(codes)
    if not codes.null_count():
        return found.astype(np.int64)
    return np.where(np.isnan(found), other, found).astype(np.int64)


def null_texts(texts: pl.Series) -> np.ndarray:
    """Whether each text is null (no query when none is)."""
    return texts.is_null().to_numpy() if texts.null_count() else np.zeros(texts.len(), dtype=np.bool_)


@dataclass(frozen=True)
class NullableInt:
    """An integer column with -1 for null (grades, counts)."""

    values: np.ndarray
    dtype: type[pl.DataType] = pl.Int8


Column = np.ndarray | Text | NullableInt


#: The NumPy type of each dtype a nullable integer column (a boolean among them: 0/1) or a text's row numbers can have.
_NUMPY_INTEGERS: dict[type[pl.DataType], type[np.generic]] = {
    pl.Int8: np.int8, pl.Int16: np.int16, pl.Int32: np.int32, pl.Int64: np.int64, pl.UInt32: np.uint32,
    pl.Boolean: np.bool_,
}


def _nullable_integers(values: np.ndarray, dtype: type[pl.DataType]) -> pl.Series:
    """A Series of ``dtype`` with -1 (any negative value) as null: the array, converted, or a masked Arrow array
    from its buffers when a value is null (where floats with NaN for null and a cast took ~20 µs)."""
    missing = values < 0
    converted = values.astype(_NUMPY_INTEGERS[dtype], copy=False)
    if not missing.any():
        return numeric_series(converted)
    return masked_series(converted, ~missing)


#: Above this height, :func:`frame_of` makes each column its own Series: for a batch's columns the copy into one
#: array (and, with fresh pages slow to fault in on this VM, its memory) cost more than the constructors it saves
#: (a 400-patient chunk's CRS timeline frame: ~15 ms of its ~25 ms in ``np.concatenate``).
_JOINED_HEIGHT = 4096


def frame_of(columns: Mapping[str, Column]) -> pl.DataFrame:
    """A frame of these columns (NaN as null; -1 as null for the text's row numbers and nullable integers).

    A Series costs ~1 µs to build from an array and a slice of one ~0.5 µs (through Polars' own handles,
    :mod:`tocsin.core.polars_handles`), whatever their length: so the arrays of one type become one Series, cut
    into the columns. The texts' row numbers are one Series too, ordered by source, so that the texts of one
    source (the events' ``cat``, say) are one gather, cut into the columns: a null row number gives a null.
    """
    if not columns:
        return pl.DataFrame()
    height = _height(next(iter(columns.values())))
    # (A frame of one course's summary has some 60 columns, and ten such frames are built per course: the loops
    # here run per column, so they test the exact type and append to lists, a tenth of the time of the generic
    # forms.)
    groups: dict[object, tuple[list[str], list[np.ndarray]]] = {}  # by dtype: the names and their arrays
    texts: dict[int, list[str]] = {}  # by the identity of the source
    for name, value in columns.items():
        kind = type(value)
        if kind is Text:
            named = texts.get(id(value.source))  # type: ignore[union-attr]
            if named is None:
                texts[id(value.source)] = [name]  # type: ignore[union-attr]
            else:
                named.append(name)
            continue
        key, array = (value.dtype, value.values) if kind is NullableInt else (value.dtype, value)  # type: ignore
        group = groups.get(key)
        if group is None:
            groups[key] = ([name], [array])
        else:
            group[0].append(name)
            group[1].append(array)
    handles: dict[str, PySeries] = {}
    joined = height <= _JOINED_HEIGHT  # else a batch's columns: each its own Series (joining would copy them all)
    for kind, (names, arrays) in groups.items():
        parts = [(names, np.concatenate(arrays) if len(arrays) > 1 else arrays[0])] if joined else [
            ([name], array) for name, array in zip(names, arrays, strict=True)
        ]
        for part_names, part in parts:
            if isinstance(kind, np.dtype):  # plain arrays: NaN is null
                whole = numeric_series(part, nan_to_null=True)
            else:
                whole = _nullable_integers(part, kind)  # type: ignore[arg-type]
            handles.update(cut_columns(whole, part_names, 0, height))
    # The texts whose row numbers are one Series, as their names by source (each column its own, unjoined).
    gathers = [list(texts.values())] if joined else [[[name]] for names in texts.values() for name in names]
    for gathered_names in gathers if texts else []:
        indices = [columns[name].index for names in gathered_names for name in names]  # type: ignore[union-attr]
        rows = _nullable_integers(np.concatenate(indices) if len(indices) > 1 else indices[0], pl.UInt32)
        offset = 0
        for names in gathered_names:
            source = columns[names[0]].source  # type: ignore[union-attr]
            gathered = gather_series(source, sliced(rows, offset, len(names) * height, ""))
            handles.update(cut_columns(gathered, names, 0, height))
            offset += len(names) * height
    return frame_from([handles[name] for name in columns])


def _height(column: Column) -> int:
    return int((column.index if isinstance(column, Text) else column.values if isinstance(column, NullableInt)
                else column).shape[0])


@dataclass
class Assessments:
    """One toxicity's assessment rows (one per patient and time) as arrays: NaN is a null number, ``Text``
    and ``NullableInt`` hold their nulls as -1. ``first`` marks each patient's first assessment, ``patient``
    its position in the patient table."""

    patient_ids: Text
    patient: np.ndarray
    first: np.ndarray
    t: np.ndarray
    columns: dict[str, Column] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        value = self.columns[name]
        assert not isinstance(value, Text), name
        return value.values if isinstance(value, NullableInt) else value

    def text(self, name: str) -> Text:
        value = self.columns[name]
        assert isinstance(value, Text), name
        return value

    def add(self, **columns: Column) -> None:
        self.columns.update(columns)

    def frame(self, names: Collection[str]) -> pl.DataFrame:
        """The timeline frame of these columns (see :func:`frame_of`)."""
        return frame_of(
            {name: self.patient_ids if name == PID else self.t if name == "t" else self.columns[name] for name in names}
        )


@dataclass(frozen=True)
class ToxicityRows:
    """The event rows of one toxicity's items (in event order: by patient, then time) as arrays."""

    events: pl.DataFrame
    rows: np.ndarray  # row numbers in ``events``
    patient: np.ndarray  # position in the patient table
    start: np.ndarray  # (in this subset) the row number of the patient's first row
    t: np.ndarray
    num: np.ndarray
    item: np.ndarray  # codes of the ``item`` Enum
    categories: list[str]
    code: Mapping[str, int]  # the code of each category (a search of the hundred categories cost more)

    @property
    def height(self) -> int:
        return int(self.rows.shape[0])

    def is_item(self, *items: str) -> np.ndarray:
        wanted = np.zeros(len(self.categories), dtype=np.bool_)
        wanted[[self.code[i] for i in items]] = True
        return wanted[self.item]

    def last_of_time(self) -> np.ndarray:
        """Rows that are the last of their (patient, time): after them the state at that time is complete."""
        last = np.ones(self.height, dtype=np.bool_)
        last[:-1] = (self.t[1:] != self.t[:-1]) | (self.start[1:] != self.start[:-1])
        return last


def toxicity_rows(
    events: pl.DataFrame, patients: pl.DataFrame, items: Collection[str], cause: str, read: EventCodes | None = None
) -> ToxicityRows:
    """The rows of ``items`` (among them ``death``), a death only when due to ``cause``: a death from another
    cause is neither a finding nor an assessment (as one, it would carry an unresolved episode on to a death
    months later). The cause is read on the death rows alone (text over every event is a full pass).

    ``read``: the :func:`tocsin.core.arrays.codes_of` the events and patients, when the caller read them for
    several graders. The columns without nulls are read whole as arrays (no copy), then indexed: a Polars gather
    of each column cost more."""
    read = read or codes_of(events, patients)
    categories, code, item = read.categories, read.code, read.item
    wanted = np.zeros(len(categories) + 1, dtype=np.bool_)  # the last: a null item
    wanted[[code[i] for i in items]] = True
    selected = wanted[item]
    deaths = np.flatnonzero(item == code["death"])
    if deaths.size:
        due = text_positions(gather_rows(events.get_column("cat"), deaths), [cause], -1) == 0
        selected[deaths[~due]] = False
    rows = np.flatnonzero(selected)

    patient_code = read.patient[rows]
    first = np.ones(rows.shape[0], dtype=np.bool_)
    first[1:] = patient_code[1:] != patient_code[:-1]
    heads = np.flatnonzero(first)
    table = read.table if read.table is not None else patient_codes(patients.get_column(PID))
    head_position = positions_in(patient_code[heads], table)
    run = np.cumsum(first) - 1
    return ToxicityRows(
        events,
        rows,
        head_position[run] if rows.size else rows,
        heads[run] if rows.size else rows,
        events.get_column("t").to_numpy()[rows].astype(np.float64),
        # Gathered first: a whole column with nulls is copied to be read (7 ms a chunk), only these rows here.
        gather_rows(events.get_column("num"), rows).cast(pl.Float64).to_numpy(),  # a null number reads as NaN
        item[rows],
        categories,
        code,
    )


def read_texts(rows: ToxicityRows, subset: np.ndarray, columns: Callable[[], tuple[pl.Expr, ...]]) -> pl.DataFrame:
    """The ``columns()`` (expressions of ``pl.col("cat")``) of the text of these rows (of the subset): a text
    column of a million events is read only where a state needs it (and not at all where no row needs it: most
    courses have no attribution, and even an empty selection costs 0.2 ms)."""
    if not subset.size:
        return _empty_read(columns)
    return gather_rows(rows.events.get_column("cat"), rows.rows[subset]).to_frame().select(columns())


@cache
def _empty_read(columns: Callable[[], tuple[pl.Expr, ...]]) -> pl.DataFrame:
    return pl.DataFrame(schema={"cat": pl.Utf8}).select(columns())


def latest_signal_rows(
    rows: ToxicityRows, signals: Mapping[str, Collection[str] | np.ndarray], keep: np.ndarray
) -> dict[str, np.ndarray]:
    """At every row where ``keep`` holds: for each signal, the row (of the subset) of its latest row at or
    before it within the patient (-1 if none). A signal is the items whose rows it is, or a boolean per row."""
    names = list(signals)
    flagged = [k for k, s in enumerate(signals.values()) if isinstance(s, np.ndarray)]
    # The signals of each item code: (code, signal) pairs sorted by code (stable: each code's in signal order),
    # and where each code's run starts.
    pairs = [
        (rows.code[item], k) for k, s in enumerate(signals.values()) if not isinstance(s, np.ndarray) for item in s
    ]
    codes = np.array([code for code, _ in pairs], dtype=np.int64)
    by_code = np.argsort(codes, kind="stable")
    code_start = np.zeros(len(rows.categories) + 1, dtype=np.int64)
    code_start[1:] = np.cumsum(np.bincount(codes, minlength=len(rows.categories)))
    found = compiled(latest_rows_loop)(
        rows.item,
        code_start,
        np.array([k for _, k in pairs], dtype=np.int64)[by_code],
        np.stack([signals[names[k]] for k in flagged]) if flagged else np.zeros((1, rows.height), np.bool_),
        np.array(flagged, dtype=np.int64),
        rows.start,
        keep,
        len(names),
    )
    return {name: found[k] for k, name in enumerate(names)}


def _at_loop(values: np.ndarray, index: np.ndarray, missing: Any, out: np.ndarray) -> np.ndarray:
    for i in range(index.shape[0]):
        out[i] = values[index[i]] if index[i] >= 0 else missing
    return out


def at(values: np.ndarray, index: np.ndarray, missing: float | bool = np.nan) -> np.ndarray:
    """``values`` at ``index`` (``missing`` where the index is -1), of the type of ``values``.

    Compiled: a state gathers some forty columns per toxicity, and NumPy's gather-then-mask read each twice."""
    out = np.empty(index.shape, dtype=values.dtype)
    return compiled(_at_loop)(values, index, values.dtype.type(missing), out)


def numbers_at(numbers: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Integers (row numbers, codes) at ``index``, -1 where it is -1, as int64: not copied again when they are
    (a chunk's states gathered some forty of them)."""
    return at(numbers, index, -1).astype(np.int64, copy=False)


def latest_valid(valid: Mapping[str, np.ndarray], first: np.ndarray) -> dict[str, np.ndarray]:
    """For every row and each named condition, the latest row at or before it, within its patient (``first``
    marks each patient's first row), where the condition holds; -1 if none: forward fills as row numbers, all
    in one compiled pass."""
    names = list(valid)
    index = np.arange(first.shape[0])
    start = np.maximum.accumulate(np.where(first, index, 0)) if first.size else index
    found = compiled(latest_rows_loop)(
        np.zeros(first.shape[0], dtype=np.int64),  # no item signals: every signal is a condition
        np.zeros(2, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        np.stack([valid[n] for n in names]) if names else np.zeros((1, first.shape[0]), np.bool_),
        np.arange(len(names), dtype=np.int64),
        start,
        np.ones(first.shape[0], dtype=np.bool_),
        len(names),
    )
    return {name: found[k].astype(np.int64) for k, name in enumerate(names)}


def hours_since(now: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Hours from ``then`` to ``now`` (days since infusion; NaN where ``then`` is unknown)."""
    return (now - then) * HOURS_PER_DAY


@cache
def _attribution_columns(findings: tuple[str, ...]) -> tuple[pl.Expr, ...]:
    """What the state reads of an ``alternative_cause`` row (``finding:cause``, both stripped): the finding it
    names (its position in ``findings``, -1 for another), the cause, and whether it attributes the finding (a
    cause, not ``none``)."""
    parts = pl.col("cat").str.split_exact(":", 1)
    cause = parts.struct.field("field_1").str.strip_chars()
    finding = parts.struct.field("field_0").str.strip_chars().str.to_lowercase()
    return (
        position_in(finding, findings, -1).alias("finding"),
        cause.alias("cause"),
        (cause.is_not_null() & (cause.str.to_lowercase() != "none")).alias("attributes"),
    )


@dataclass(frozen=True)
class Attributions:
    """The ``alternative_cause`` rows of a toxicity: the finding each names and its cause."""

    position: np.ndarray  # per row of the subset: its row in ``cause`` and ``attributes``, -1 for other rows
    finding: np.ndarray  # per row of the subset: the position of its finding in the list read, else -1
    cause: pl.Series
    attributes: np.ndarray  # per row of ``cause``: it attributes its finding (a cause, not ``none``)

    def names(self, finding: int) -> np.ndarray:
        """Per row of the subset: an attribution row naming the ``finding``-th finding."""
        return self.finding == finding

    def cause_at(self, row: np.ndarray) -> Text:
        return Text(self.cause, numbers_at(self.position, row))

    def attributed_at(self, row: np.ndarray) -> np.ndarray:
        return at(self.attributes, numbers_at(self.position, row), False).astype(np.bool_)


def _attributions(rows: ToxicityRows, alt: np.ndarray, read: pl.DataFrame, read_row: np.ndarray) -> Attributions:
    """The attributions of the rows ``alt`` of the subset, whose :func:`_attribution_columns` are the rows
    ``read_row`` of ``read``."""
    position = np.full(rows.height, -1, dtype=np.int64)
    position[alt] = read_row
    finding = np.full(rows.height, -1, dtype=np.int64)
    finding[alt] = read.get_column("finding").to_numpy()[read_row]
    return Attributions(position, finding, read.get_column("cause"), read.get_column("attributes").to_numpy())


def _patient_values(patients: pl.DataFrame, column: str, position: np.ndarray) -> np.ndarray:
    values = patients.get_column(column).to_numpy().astype(np.float64)  # a null number reads as NaN
    return np.where(position >= 0, values[position], np.nan) if values.size else np.full(position.shape, np.nan)


def _assessments(rows: ToxicityRows, assessment: np.ndarray) -> Assessments:
    first = np.ones(assessment.shape[0], dtype=np.bool_)
    first[1:] = rows.start[assessment][1:] != rows.start[assessment][:-1]
    return Assessments(
        Text(rows.events.get_column(PID), rows.rows[assessment]), rows.patient[assessment], first, rows.t[assessment]
    )


#: Codes of the oxygen devices the CRS scales name (``DEVICE_UNKNOWN``: another text; ``DEVICE_NONE``: no device).
DEVICES = tuple(load_scale("crs_astct2019").table("oxygen_device_grade"))
DEVICE_UNKNOWN, DEVICE_NONE = len(DEVICES), len(DEVICES) + 1


def device_codes(names: Collection[str]) -> np.ndarray:
    """The codes of these devices, for ``np.isin`` on ``o2_device_code``."""
    return np.array([DEVICES.index(n) for n in names], dtype=np.int64)


#: The drug classes of a vocabulary, by its identity (a vocabulary is loaded once; reading the classes from its
#: hundred items took 0.5 ms of a 2 ms course).
_DRUG_CLASSES: dict[int, tuple[Vocabulary, tuple[list[str], list[str], list[str]]]] = {}


def _drug_classes(vocabulary: Vocabulary) -> tuple[list[str], list[str], list[str]]:
    """The vasopressors, anti-cytokine and antipyretic drugs of the vocabulary."""
    known = _DRUG_CLASSES.get(id(vocabulary))
    if known is None or known[0] is not vocabulary:
        flags = ("vasopressor", "anti_cytokine", "antipyretic")
        classes = tuple(vocabulary.names_where(**{flag: True}) for flag in flags)
        if len(_DRUG_CLASSES) > 16:  # vocabularies are few; the entries hold them alive, so never grow unbounded
            _DRUG_CLASSES.clear()
        known = _DRUG_CLASSES[id(vocabulary)] = (vocabulary, classes)  # type: ignore[assignment]
    return known[1]


@cache
def _crs_attribution_columns() -> tuple[pl.Expr, ...]:
    """Of an attribution, its finding and cause."""
    return _attribution_columns(("fever", "hypotension", "hypoxia"))


def crs_state(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    vocabulary: Vocabulary,
    config: GradingConfig,
    read: EventCodes | None = None,
) -> Assessments:
    """State relevant to CRS at every CRS assessment time, for every patient in ``events`` (``read``: see
    :func:`toxicity_rows`)."""
    c = config.crs
    pressors, anticytokine, antipyretic = _drug_classes(vocabulary)
    waiver_items = anticytokine + (antipyretic if c.waiver_drugs == "anticytokine_or_antipyretic" else [])
    items = [
        "temperature",
        "sbp",
        "map",
        "oxygen",
        "oxygen_flow",
        "fio2",
        "fluid_bolus",
        "alternative_cause",
        "death",
        "il6",
        "crp",
        *pressors,
        *anticytokine,
        *antipyretic,
    ]
    rows = toxicity_rows(events, patients, items, "crs", read)
    t, num = rows.t, rows.num
    findings = ("fever", "hypotension", "hypoxia")
    # The text read: the attributions' finding and cause (string operations, only if there is one), and the
    # oxygen rows' device (a code of DEVICES; casts).
    alt, oxygen = np.flatnonzero(rows.is_item("alternative_cause")), np.flatnonzero(rows.is_item("oxygen"))
    attribution = _attributions(rows, alt, read_texts(rows, alt, _crs_attribution_columns), np.arange(alt.size))
    device_of_row = np.full(rows.height, DEVICE_NONE, dtype=np.int64)
    devices = gather_rows(events.get_column("cat"), rows.rows[oxygen])
    device_of_row[oxygen] = np.where(null_texts(devices), DEVICE_NONE, text_positions(devices, DEVICES, DEVICE_UNKNOWN))
    named = {f: attribution.names(k) for k, f in enumerate(findings)}
    # A temperature is a (CRS) fever unless a fever attribution is in force at that row.
    in_force = latest_valid({"fever": named["fever"]}, rows.start == np.arange(rows.height))["fever"]
    fever_attributed_here = attribution.attributed_at(in_force)
    fever_row = rows.is_item("temperature") & (num >= c.fever_celsius) & ~fever_attributed_here

    age = _patient_values(patients, "age_years", rows.patient)
    pediatric = ~np.isnan(age) & (age <= c.pediatric_max_age_years)
    sbp_threshold = np.where(
        pediatric, c.pediatric_sbp_base_mm_hg + c.pediatric_sbp_per_year_mm_hg * np.floor(age), c.hypotension_sbp_mm_hg
    )
    low_sbp = num < sbp_threshold
    low_map = num < c.hypotension_map_mm_hg if c.hypotension_map_mm_hg else np.zeros(rows.height, np.bool_)

    signals: dict[str, Collection[str] | np.ndarray] = {
        "fever": fever_row,
        **{f"alt_{f}": named[f] for f in findings},
        "temp": ["temperature"],
        "sbp": ["sbp"],
        "map": ["map"],
        "o2": ["oxygen"],
        "flow": ["oxygen_flow"],
        "fio2": ["fio2"],
        **{p: [p] for p in pressors},
        "waiver": waiver_items,
        "antipyretic": antipyretic,
        "death": ["death"],
        "alt": ["alternative_cause"],
        "il6": ["il6"],
        "crp": ["crp"],
    }
    assessment_rows = rows.last_of_time()
    latest = latest_signal_rows(rows, signals, assessment_rows)
    state = _assessments(rows, np.flatnonzero(assessment_rows))

    def t_of(signal: str) -> np.ndarray:
        return at(t, latest[signal])

    def num_of(signal: str) -> np.ndarray:
        return at(num, latest[signal])

    # Each column read once: the frame gathers the texts of one Series object together.
    event_texts = {name: events.get_column(name) for name in ("cat", "item")}

    def text_of(column: str, signal: str) -> Text:
        return Text(event_texts[column], numbers_at(rows.rows, latest[signal]))

    state.add(
        fever_t=t_of("fever"),
        fever_value=num_of("fever"),
        temp_t=t_of("temp"),
        temp_value=num_of("temp"),
        temp_is_fever=(latest["temp"] == latest["fever"]) & (latest["temp"] >= 0),
        sbp_t=t_of("sbp"),
        sbp_value=num_of("sbp"),
        sbp_low=at(low_sbp, latest["sbp"], False).astype(np.bool_),
        map_t=t_of("map"),
        map_value=num_of("map"),
        map_low=at(low_map, latest["map"], False).astype(np.bool_),
        o2_device=text_of("cat", "o2"),
        o2_device_code=at(device_of_row, latest["o2"], DEVICE_NONE).astype(np.int64),
        o2_device_t=t_of("o2"),
        o2_flow=num_of("flow"),
        o2_flow_t=t_of("flow"),
        fio2=num_of("fio2"),
        fio2_t=t_of("fio2"),
        **dict(zip([f"rate_{p}" for p in pressors], _rates(pressors, num_of))),
        **{f"rate_{p}_t": t_of(p) for p in pressors},
        waiver_drug_t=t_of("waiver"),
        waiver_drug=text_of("item", "waiver"),
        antipyretic_t=t_of("antipyretic"),
        death_cause=text_of("cat", "death"),
        # Deaths from another cause are not among the rows: a death seen is a death due to CRS.
        death_due=latest["death"] >= 0,
        death_t=t_of("death"),
        alt_t=t_of("alt"),
        **{f"{lab}_falling": at(_falling(rows, lab), latest[lab], -1).astype(np.int8) for lab in ("il6", "crp")},
        **{f"alt_{f}": attribution.cause_at(latest[f"alt_{f}"]) for f in findings},
        **{f"{f}_attributed": attribution.attributed_at(latest[f"alt_{f}"]) for f in findings},
    )
    _latest_blood_pressure(state)
    _derive_support(state, pressors, config)
    return state


def _rates(pressors: list[str], num_of: Callable[[str], np.ndarray]) -> list[np.ndarray]:
    """Each vasopressor's latest rate, 0 where none is known: one ``nan_to_num`` of them all (~5 µs a call)."""
    if not pressors:
        return []
    return list(np.nan_to_num(np.stack([num_of(p) for p in pressors]), nan=0.0))


def _falling(rows: ToxicityRows, lab: str) -> np.ndarray:
    """On each ``lab`` row, whether its value is below the patient's previous ``lab`` value (1/0; -1 = unknown:
    the first value, or either value missing)."""
    lab_rows = np.flatnonzero(rows.is_item(lab))
    falling = np.full(rows.height, -1, dtype=np.int8)
    if lab_rows.size > 1:
        value, start = rows.num[lab_rows], rows.start[lab_rows]
        known = (start[1:] == start[:-1]) & ~np.isnan(value[1:]) & ~np.isnan(value[:-1])
        falling[lab_rows[1:][known]] = value[1:][known] < value[:-1][known]
    return falling


def _latest_blood_pressure(state: Assessments) -> None:
    """The latest blood-pressure measurement (SBP and/or MAP taken at the same time): low if either is
    below its threshold; the low one (else SBP) is the one shown as evidence."""
    bp_t = np.fmax(state["sbp_t"], state["map_t"])
    sbp_now, map_now = state["sbp_t"] == bp_t, state["map_t"] == bp_t
    sbp_low, map_low = sbp_now & state["sbp_low"], map_now & state["map_low"]
    show_sbp = sbp_now & (sbp_low | ~map_low)
    state.add(
        bp_t=bp_t,
        bp_low=sbp_low | map_low,
        bp_item=labels(["sbp", "map"], np.where(show_sbp, 0, np.where(map_now, 1, -1))),
        bp_value=np.where(show_sbp, state["sbp_value"], np.where(map_now, state["map_value"], np.nan)),
    )


def _derive_support(state: Assessments, pressors: list[str], config: GradingConfig) -> None:
    c = config.crs
    scale = load_scale("crs_astct2019")
    device_grade = scale.table("oxygen_device_grade")
    excluded = set(scale.table("not_counted_for_multiple_vasopressors"))
    device = state["o2_device_code"]
    # A flow belongs to the current device only if it was recorded with it or later.
    device_t = state["o2_device_t"]
    flow = np.where(np.isnan(device_t) | (state["o2_flow_t"] >= device_t), state["o2_flow"], np.nan)
    on_oxygen = np.where(device != DEVICE_NONE, device != DEVICES.index("room_air"), np.nan_to_num(flow, nan=0.0) > 0)
    tiers = np.array([device_grade[d] for d in DEVICES] + [-1, -1], dtype=np.int8)  # unknown or no device: null
    running = {p: state[f"rate_{p}"] > 0 for p in pressors}
    t = state.t
    counted = [running[p].astype(np.int8) for p in pressors if p not in excluded]
    state.add(
        o2_flow_current=flow,
        on_oxygen=on_oxygen,
        o2_device_tier=tiers[device],
        n_vasopressors=np.sum(counted, axis=0, dtype=np.int8) if counted else np.zeros(t.shape, np.int8),
        any_vasopressor=np.logical_or.reduce([running[p] for p in pressors]) if pressors else np.zeros(t.shape, bool),
        febrile=hours_since(t, state["fever_t"]) <= c.fever_window_hours,
        temp_known=hours_since(t, state["temp_t"]) <= c.fever_window_hours,
        bp_known=hours_since(t, state["bp_t"]) <= c.bp_validity_hours,
    )


@cache
def _neuro_attribution_columns() -> tuple[pl.Expr, ...]:
    """Of an attribution, whether it names a neurological finding (only then does it count, and make an
    assessment), and its finding and cause."""
    named = pl.col("cat").str.to_lowercase().str.extract(r"^([a-z_]+):", 1)
    neuro = position_in(named, NEURO_FINDINGS, -1) >= 0
    return neuro.alias("neuro"), *_attribution_columns(NEURO_FINDINGS)


#: The values the ICANS scale grades, per domain recorded as a value: a state carries each value's position
#: here (``<domain>_code``, -1 for another value or none), so that grading is a table lookup on integers.
NEURO_VALUES: dict[str, tuple[str, ...]] = {
    domain: tuple(load_scale("icans_astct2019").table(f"{domain}_grade"))
    for domain in ("consciousness", "seizure", "motor_weakness", "cerebral_edema", "icp_sign")
}
NEURO_VALUE_UNION = tuple(dict.fromkeys(v for values in NEURO_VALUES.values() for v in values))
#: Per domain: the position of each value of the union among the domain's own values (-1: not one of them), and
#: a last -1 for a row without a value of the union.
_OWN_POSITIONS: dict[str, np.ndarray] = {
    domain: np.array([values.index(v) if v in values else -1 for v in NEURO_VALUE_UNION] + [-1], dtype=np.int64)
    for domain, values in NEURO_VALUES.items()
}


def _at_time_loop(latest: np.ndarray, t: np.ndarray, assessment_t: np.ndarray) -> np.ndarray:
    """The rows of ``latest`` (signal x assessment) recorded at the assessment's own time, else -1."""
    here = np.full(latest.shape, -1, dtype=np.int64)
    for signal in range(latest.shape[0]):
        for k in range(latest.shape[1]):
            row = latest[signal, k]
            if row >= 0 and t[row] == assessment_t[k]:
                here[signal, k] = row
    return here


def icans_state(
    events: pl.DataFrame, patients: pl.DataFrame, config: GradingConfig, read: EventCodes | None = None
) -> Assessments:
    """State relevant to ICANS at every neurological assessment time (``read``: see :func:`toxicity_rows`)."""
    scale = load_scale("icans_astct2019")
    ice_items: list[str] = scale.table("ice_items")
    capd_items: list[str] = scale.table("capd_items")
    domains = ["consciousness", "global_aphasia", "seizure", "motor_weakness", "cerebral_edema", "icp_sign"]
    items = ["ice_score", "capd_score", *ice_items, *capd_items, *domains, "alternative_cause", "death"]
    selected = toxicity_rows(events, patients, items, "icans", read)
    # The text read: of the attributions (their finding decides whether they count), and of the domain rows.
    alt, domain_rows = np.flatnonzero(selected.is_item("alternative_cause")), np.flatnonzero(selected.is_item(*domains))
    attribution_text = read_texts(selected, alt, _neuro_attribution_columns)
    keep = np.ones(selected.height, dtype=np.bool_)
    keep[alt] = attribution_text.get_column("neuro").to_numpy()
    rows = _subset(selected, np.flatnonzero(keep))
    attribution = _attributions(rows, np.flatnonzero(rows.is_item("alternative_cause")), attribution_text,
                                np.flatnonzero(keep[alt]))
    # Of a domain row, whether a value is given, and its position among every value the scale grades (one
    # table for all domains; -1 for another).
    cat = events.get_column("cat")  # read once: the frame gathers the texts of one Series object together
    value_text = gather_rows(cat, selected.rows[domain_rows])
    value_given = np.ones(selected.height, dtype=np.bool_)
    value_given[domain_rows] = ~null_texts(value_text)
    value_given = value_given[keep]
    union_code = np.full(selected.height, -1, dtype=np.int64)
    union_code[domain_rows] = text_positions(value_text, NEURO_VALUE_UNION, -1)
    union_code = union_code[keep]

    # The value of each item recorded at each assessment time (the last one, if repeated): the latest row of
    # the item, if it is at this time.
    numeric = ("ice_score", "capd_score", *ice_items, *capd_items)
    signals: dict[str, Collection[str] | np.ndarray] = {
        **{name: [name] for name in (*numeric, *domains)},
        "death": ["death"],
        **{f"alt_{f}": attribution.names(k) for k, f in enumerate(NEURO_FINDINGS)},
    }
    assessment_rows = rows.last_of_time()
    latest = latest_signal_rows(rows, signals, assessment_rows)
    state = _assessments(rows, np.flatnonzero(assessment_rows))
    found = compiled(_at_time_loop)(np.stack(list(latest.values())), rows.t, state.t)
    here = dict(zip(latest, found, strict=True))
    value = {name: at(rows.num, here[name]) for name in numeric}

    stamps: dict[str, np.ndarray] = {}  # per stamped signal: whether it was observed at this assessment
    tools = {"ice": ice_items, "capd": capd_items}
    incomplete: dict[str, np.ndarray] = {}
    tool_here: dict[str, np.ndarray] = {}
    for tool, tool_items in tools.items():
        present = np.stack([~np.isnan(value[i]) for i in tool_items])
        absent_mask = ((~present).astype(np.int64) << np.arange(len(tool_items))[:, None]).sum(axis=0)
        total = value[tool_items[0]]
        for item in tool_items[1:]:
            total = total + value[item]
        score = value[f"{tool}_score"]
        tool_here[tool] = np.where(np.isnan(score), np.where(present.all(axis=0), total, np.nan), score)
        stamps[tool] = ~np.isnan(tool_here[tool])
        # Items given, but not all of them, and no total: the assessment is incomplete (mask of the absent).
        incomplete[tool] = np.where(np.isnan(score) & present.any(axis=0) & (absent_mask != 0), absent_mask, -1)
        stamps[f"{tool}_incomplete"] = incomplete[tool] >= 0
    for name in (*domains, "death"):
        stamps[name] = (here[name] >= 0) & at(value_given, here[name], False).astype(np.bool_)
    for f in NEURO_FINDINGS:
        stamps[f"alt_{f}"] = here[f"alt_{f}"] >= 0
    stamped = latest_valid(stamps, state.first)

    for tool in tools:
        row = stamped[tool]
        state.add(**{f"{tool}_value": at(tool_here[tool], row), f"{tool}_t": at(state.t, row)})
        state.add(**{f"{tool}_incomplete_last": at(incomplete[tool], stamped[f"{tool}_incomplete"], -1)})
    for name in (*domains, "death"):
        source_row = numbers_at(here[name], stamped[name])
        event_row = numbers_at(rows.rows, source_row)
        text = Text(cat, event_row)
        state.add(**{"death_cause" if name == "death" else f"{name}_value": text, f"{name}_t": at(state.t,
                                                                                                  stamped[name])})
        if name in NEURO_VALUES:
            # The value's position among this domain's graded values (-1: another value, or none).
            state.add(**{f"{name}_code": _OWN_POSITIONS[name][numbers_at(union_code, source_row)]})
    for f in NEURO_FINDINGS:
        source_row = numbers_at(here[f"alt_{f}"], stamped[f"alt_{f}"])
        state.add(**{f"alt_{f}": attribution.cause_at(source_row), f"{f}_attributed": attribution.attributed_at(
            source_row)})
    i = config.icans
    t = state.t
    state.add(
        **{
            f"{name}_fresh": hours_since(t, state[f"{name}_t"]) <= i.neuro_validity_hours
            for name in ("ice", "capd", "consciousness", "global_aphasia")
        },
        seizure_fresh=hours_since(t, state["seizure_t"]) <= i.seizure_validity_hours,
        # Deaths from another cause are not among the rows: a death seen is a death due to ICANS.
        death_due=~np.isnan(state["death_t"]),
        age_years=_patient_values(patients, "age_years", state.patient),
    )
    return state


def _subset(rows: ToxicityRows, kept: np.ndarray) -> ToxicityRows:
    """Some of the rows (ascending row numbers of the subset)."""
    first = np.ones(kept.shape[0], dtype=np.bool_)
    first[1:] = rows.start[kept][1:] != rows.start[kept][:-1]
    heads = np.flatnonzero(first)
    start = heads[np.cumsum(first) - 1] if kept.size else kept
    return ToxicityRows(rows.events, rows.rows[kept], rows.patient[kept], start, rows.t[kept], rows.num[kept],
                        rows.item[kept], rows.categories, rows.code)
