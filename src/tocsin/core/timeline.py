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
toxicity; so the state is NumPy arrays over the toxicity's rows (:class:`ToxicityRows`), every state column at
every assessment comes from one compiled pass per toxicity (:mod:`tocsin.core.kernels_toxicity`: the latest row of
each signal, its validity, the derived columns), and the text columns are gathered once when the timeline frame is
built (:class:`Assessments`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.arrays import (
    EventCodes, codes_of, enum_codes, float_buffers, gather_rows, patient_codes, positions_in,
)
from tocsin.core.polars_handles import (
    PySeries, cut_columns, frame_of_handles, gather_series, masked_series, numeric_series, sliced,
)
from tocsin.core.kernels_toxicity import (
    CRS_ALTERNATIVE, CRS_ANTIPYRETIC, CRS_CRP, CRS_DEATH, CRS_FIO2, CRS_FLAGS, CRS_FLOATS, CRS_FLOW, CRS_IL6, CRS_MAP,
    CRS_NUMBERS, CRS_OXYGEN, CRS_SBP, CRS_SMALL, CRS_TEMPERATURE, CRS_WAIVER, ICANS_ATTRIBUTION, ICANS_DOMAINS,
    ICANS_FINDINGS, ICANS_FLAGS, ICANS_FLOATS, ICANS_NO_VALUE, ICANS_NUMBERS, crs_state_pass, icans_state_pass,
    counted_rows, taken, toxicity_rows_pass,
)
from tocsin.core.kernels_gather import rows_of_items
from tocsin.core.segments import compiled, latest_rows_loop
from tocsin.criteria import load_scale
from tocsin.vocabulary import Vocabulary

PID = "patient_id"
HOURS_PER_DAY = 24.0
#: Findings an ``alternative_cause`` row can name for ICANS (``consciousness:sedation``...).
NEURO_FINDINGS = ICANS_FINDINGS


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


#: Up to this many texts :func:`text_codes` looks them up in Python (a course's few: ~0.1 µs each); above, a cast
#: to an Enum of the names (~20 µs whatever the rows).
_TEXTS_IN_PYTHON = 256


@cache
def _positions(names: tuple[str, ...]) -> dict[str, int]:
    return {name: k for k, name in enumerate(names)}


def text_codes(texts: pl.Series, names: Sequence[str], other: int, null: int) -> np.ndarray:
    """The position of each text among ``names`` (int64; ``other`` for another text, ``null`` for a null)."""
    if texts.len() <= _TEXTS_IN_PYTHON:
        position = _positions(tuple(names))
        return np.array([null if x is None else position.get(x, other) for x in texts.to_list()], dtype=np.int64)
    codes = text_positions(texts, names, other)
    return np.where(null_texts(texts), null, codes) if texts.null_count() else codes


def null_texts(texts: pl.Series) -> np.ndarray:
    """Whether each text is null (no query when none is)."""
    return texts.is_null().to_numpy() if texts.null_count() else np.zeros(texts.len(), dtype=np.bool_)


@dataclass(frozen=True)
class NullableInt:
    """An integer column with -1 for null (grades, counts)."""

    values: np.ndarray
    dtype: type[pl.DataType] = pl.Int8


@dataclass(frozen=True)
class Taken:
    """A number column kept as row numbers into ``source`` (-1: NaN, a null) until read: a state pass gives the
    latest row of a signal where it gave that row's value and time (a batch reads most such columns never).
    ``finite``: ``np.nan_to_num`` of the values (a vasopressor's rate: 0 where none is known)."""

    source: np.ndarray
    index: np.ndarray
    finite: bool = False

    def values(self) -> np.ndarray:
        return taken(self.source, self.index, self.finite)


Column = np.ndarray | Text | NullableInt | Taken


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
        if kind is Taken:
            value, kind = value.values(), np.ndarray  # type: ignore[union-attr]
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
    return frame_of_handles([handles[name] for name in columns])


def _height(column: Column) -> int:
    return int((column.index if isinstance(column, Text | Taken) else column.values if isinstance(column, NullableInt)
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
        if isinstance(value, Taken):  # read now, and kept: a grader reads a column again, and so does the frame
            value = self.columns[name] = value.values()
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

    def rows_of(self, *items: str) -> np.ndarray:
        """The rows (of these) of these items, ascending: one compiled pass over the item codes."""
        wanted = np.zeros(len(self.categories) + 1, dtype=np.bool_)
        wanted[[self.code[i] for i in items]] = True
        return rows_of_items(self.item, self.item, wanted)[0]

    @property
    def pass_columns(self) -> tuple[np.ndarray, ...]:
        """What every state pass reads first, in its order: item, time, number, patient's first row, patient and
        event row of each row."""
        return self.item, self.t, self.num, self.start, self.patient, self.rows


def toxicity_rows(
    events: pl.DataFrame, patients: pl.DataFrame, items: Collection[str], cause: str, read: EventCodes | None = None
) -> ToxicityRows:
    """The rows of ``items`` (among them ``death``), a death only when due to ``cause``: a death from another
    cause is neither a finding nor an assessment (as one, it would carry an unresolved episode on to a death
    months later). The cause is read on the death rows alone (text over every event is a full pass).

    ``read``: the :func:`tocsin.core.arrays.codes_of` the events and patients, when the caller read them for
    several graders. The rows and their columns come from one compiled pass over the item codes
    (:func:`tocsin.core.kernels_toxicity.toxicity_rows_pass`), the columns read whole as arrays without a copy
    (the numbers' nulls off their Arrow bitmap): Polars gathers of each cost more."""
    read = read or codes_of(events, patients)
    categories, code = read.categories, read.code
    wanted = np.zeros(len(categories) + 1, dtype=np.bool_)  # the last: a null item
    wanted[[code[i] for i in items]] = True
    n, deaths = counted_rows(read.item, wanted, code["death"])
    dropped = deaths[:0]
    if deaths.size:
        dropped = deaths[text_positions(gather_rows(events.get_column("cat"), deaths), [cause], -1) != 0]
    rows, item, t, num, start, run, heads = toxicity_rows_pass(
        read.item,
        wanted,
        n - dropped.size,
        dropped,
        read.patient,
        events.get_column("t").to_numpy(),
        *float_buffers(events.get_column("num")),  # a null number reads as NaN
    )
    table = read.table if read.table is not None else patient_codes(patients.get_column(PID))
    return ToxicityRows(
        events,
        rows,
        positions_in(heads, table)[run] if rows.size else rows,
        start,
        t,
        num,
        item,
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


def latest_valid(valid: Mapping[str, np.ndarray], first: np.ndarray) -> dict[str, np.ndarray]:
    """For every row and each named condition, the latest row at or before it, within its patient (``first``
    marks each patient's first row), where the condition holds; -1 if none: forward fills as row numbers, all
    in one compiled pass."""
    names = list(valid)
    if not names:
        return {}
    found = compiled(latest_rows_loop)(np.stack([valid[n] for n in names]), first)
    return dict(zip(names, found, strict=True))


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

    position: np.ndarray  # per row: its row in ``cause`` and ``attributes``, -1 for other rows
    finding: np.ndarray  # per row: the position of its finding in the list read, else -1
    cause: pl.Series
    attributes: np.ndarray  # per row of ``cause``: it attributes its finding (a cause, not ``none``)

def _attributions(rows: ToxicityRows, alt: np.ndarray, read: pl.DataFrame) -> Attributions:
    """The attributions of the rows ``alt``, whose :func:`_attribution_columns` are the rows of ``read``."""
    position = np.full(rows.height, -1, dtype=np.int64)
    position[alt] = np.arange(alt.size)
    finding = np.full(rows.height, -1, dtype=np.int64)
    finding[alt] = read.get_column("finding").to_numpy()
    return Attributions(position, finding, read.get_column("cause"), read.get_column("attributes").to_numpy())


#: Codes of the oxygen devices the CRS scales name (``DEVICE_UNKNOWN``: another text; ``DEVICE_NONE``: no device).
DEVICES = tuple(load_scale("crs_astct2019").table("oxygen_device_grade"))
DEVICE_UNKNOWN, DEVICE_NONE = len(DEVICES), len(DEVICES) + 1


#: The hypoxia tier of each device code (unknown or no device: null).
_DEVICE_TIERS = np.array(
    [load_scale("crs_astct2019").table("oxygen_device_grade")[d] for d in DEVICES] + [-1, -1], dtype=np.int8
)


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


#: The CRS signals of the items that are not drugs (bits of the pass's ``role``).
_CRS_SIGNALS = {
    "temperature": CRS_TEMPERATURE,
    "sbp": CRS_SBP,
    "map": CRS_MAP,
    "oxygen": CRS_OXYGEN,
    "oxygen_flow": CRS_FLOW,
    "fio2": CRS_FIO2,
    "fluid_bolus": 0,  # an assessment, no signal
    "alternative_cause": CRS_ALTERNATIVE,
    "death": CRS_DEATH,
    "il6": CRS_IL6,
    "crp": CRS_CRP,
}


def _crs_items(vocabulary: Vocabulary) -> list[str]:
    """The items of the CRS rows: the signals', and the vocabulary's vasopressors, anti-cytokine and antipyretic
    drugs."""
    pressors, anticytokine, antipyretic = _drug_classes(vocabulary)
    return [*_CRS_SIGNALS, *pressors, *anticytokine, *antipyretic]


@dataclass(frozen=True)
class _CrsTables:
    """What the CRS pass reads of the items, by item code: each code's signals, its vasopressor (-1: none), and
    whether each vasopressor counts towards "multiple vasopressors"."""

    pressors: list[str]
    role: np.ndarray
    pressor_of: np.ndarray
    counted: np.ndarray


#: The tables by vocabulary (identity), waiver drugs and item categories: a course's state built them in some
#: thirty NumPy steps, the same every time.
_CRS_TABLES: dict[tuple[int, str, tuple[str, ...]], tuple[Vocabulary, _CrsTables]] = {}


def _crs_tables(vocabulary: Vocabulary, waiver_drugs: str, categories: list[str]) -> _CrsTables:
    key = (id(vocabulary), waiver_drugs, tuple(categories))
    known = _CRS_TABLES.get(key)
    if known is not None and known[0] is vocabulary:
        return known[1]
    pressors, anticytokine, antipyretic = _drug_classes(vocabulary)
    waiver_items = anticytokine + (antipyretic if waiver_drugs == "anticytokine_or_antipyretic" else [])
    code = {name: k for k, name in enumerate(categories)}
    role = np.zeros(len(categories) + 1, dtype=np.int64)  # the last: a null item
    for name, bit in _CRS_SIGNALS.items():
        role[code[name]] |= bit
    for names, bit in ((waiver_items, CRS_WAIVER), (antipyretic, CRS_ANTIPYRETIC)):
        for name in names:
            role[code[name]] |= bit
    pressor_of = np.full(role.shape, -1, dtype=np.int64)
    pressor_of[[code[p] for p in pressors]] = np.arange(len(pressors))
    excluded = set(load_scale("crs_astct2019").table("not_counted_for_multiple_vasopressors"))
    tables = _CrsTables(pressors, role, pressor_of, np.array([p not in excluded for p in pressors], dtype=np.bool_))
    if len(_CRS_TABLES) > 16:  # vocabularies are few; the entries hold them alive, so never grow unbounded
        _CRS_TABLES.clear()
    _CRS_TABLES[key] = (vocabulary, tables)
    return tables


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
    :func:`toxicity_rows`).

    Every column comes from one compiled pass over the rows (:func:`tocsin.core.kernels_toxicity.crs_state_pass`);
    only the texts (the attributions', the oxygen devices') are read here, with Polars, on their own rows."""
    c = config.crs
    rows = toxicity_rows(events, patients, _crs_items(vocabulary), "crs", read)
    tables = _crs_tables(vocabulary, c.waiver_drugs, rows.categories)
    # The text read: the attributions' finding and cause (string operations, only if there is one), and the
    # oxygen rows' device (a code of DEVICES).
    alt, oxygen = rows.rows_of("alternative_cause"), rows.rows_of("oxygen")
    attribution = _attributions(rows, alt, read_texts(rows, alt, _crs_attribution_columns))
    device_of_row = np.full(rows.height, DEVICE_NONE, dtype=np.int64)
    cat = events.get_column("cat")  # read once: the frame gathers the texts of one Series object together
    device_of_row[oxygen] = text_codes(gather_rows(cat, rows.rows[oxygen]), DEVICES, DEVICE_UNKNOWN, DEVICE_NONE)
    floats, flags, small, numbers = crs_state_pass(
        *rows.pass_columns,
        tables.role,
        tables.pressor_of,
        tables.counted,
        patients.get_column("age_years").to_numpy().astype(np.float64),  # a null number reads as NaN
        device_of_row,
        attribution.position,
        attribution.finding,
        attribution.attributes,
        _DEVICE_TIERS,
        np.array(
            [
                c.fever_celsius,
                c.pediatric_max_age_years,
                c.pediatric_sbp_base_mm_hg,
                c.pediatric_sbp_per_year_mm_hg,
                c.hypotension_sbp_mm_hg,
                c.hypotension_map_mm_hg or np.nan,  # 0 or none: no MAP rule
                c.fever_window_hours,
                c.bp_validity_hours,
            ]
        ),
        DEVICES.index("room_air"),
        DEVICE_NONE,
        config.episodes.crs_resolution == "fever_gone_cytokines_falling",
    )
    number = dict(zip(CRS_NUMBERS, numbers, strict=False))
    state = Assessments(Text(events.get_column(PID), number["row"]), number["patient"], flags[0], floats[0])
    pressors = tables.pressors
    event_t = events.get_column("t").to_numpy()  # a canonical time is never null: no copy
    latest = {name: number[f"{name}_at"] for name in ("fever", "temp", "o2_flow", "fio2", "antipyretic", "alt")}
    state.add(
        **dict(zip(CRS_FLOATS[1:], floats[1:], strict=True)),
        **{f"{name}_t": Taken(rows.t, at) for name, at in latest.items()},
        fever_value=Taken(rows.num, latest["fever"]),
        temp_value=Taken(rows.num, latest["temp"]),
        fio2=Taken(rows.num, latest["fio2"]),
        # The times of the rows whose text is shown, from their event rows.
        **{f"{name}_t": Taken(event_t, number[f"{name}_row"]) for name in ("o2_device", "waiver_drug", "death")},
        **{f"rate_{p}": Taken(rows.num, numbers[len(CRS_NUMBERS) + k], True) for k, p in enumerate(pressors)},
        **{f"rate_{p}_t": Taken(rows.t, numbers[len(CRS_NUMBERS) + k]) for k, p in enumerate(pressors)},
        **dict(zip(CRS_FLAGS[1:], flags[1:], strict=True)),
        **dict(zip(CRS_SMALL, small, strict=True)),
        o2_device=Text(cat, number["o2_device_row"]),
        o2_device_code=number["o2_device_code"],
        waiver_drug=Text(events.get_column("item"), number["waiver_drug_row"]),
        death_cause=Text(cat, number["death_row"]),
        bp_item=labels(["sbp", "map"], number["bp_item"]),
        **{f"alt_{f}": Text(attribution.cause, number[f"alt_{f}"]) for f in ("fever", "hypotension", "hypoxia")},
    )
    return state


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
#: Per domain of :data:`tocsin.core.kernels_toxicity.ICANS_DOMAINS`: the position of each value of the union among
#: the domain's own values (-1: not one of them; every value for a domain the scale grades by no value), and a last
#: -1 for a row without a value of the union.
_OWN_POSITIONS = np.array(
    [
        [NEURO_VALUES[d].index(v) if v in NEURO_VALUES.get(d, ()) else -1 for v in NEURO_VALUE_UNION] + [-1]
        for d in ICANS_DOMAINS
    ],
    dtype=np.int64,
)


@lru_cache(maxsize=16)
def _icans_signals(categories: tuple[str, ...], items: tuple[str, ...]) -> np.ndarray:
    """The ICANS pass's signal of each item code: its position among ``items`` (the last, the attributions:
    ICANS_ATTRIBUTION), -1 for another item or a null one (the code past the categories)."""
    code = {name: k for k, name in enumerate(categories)}
    signal_of = np.full(len(categories) + 1, -1, dtype=np.int64)
    signal_of[[code[name] for name in items[:-1]]] = np.arange(len(items) - 1)
    signal_of[code[items[-1]]] = ICANS_ATTRIBUTION
    return signal_of


def icans_state(
    events: pl.DataFrame, patients: pl.DataFrame, config: GradingConfig, read: EventCodes | None = None
) -> Assessments:
    """State relevant to ICANS at every neurological assessment time (``read``: see :func:`toxicity_rows`).

    Every column comes from one compiled pass over the rows (:func:`tocsin.core.kernels_toxicity.icans_state_pass`);
    only the texts (the attributions', the domains' values) are read here, with Polars, on their own rows."""
    scale = load_scale("icans_astct2019")
    ice_items: list[str] = scale.table("ice_items")
    capd_items: list[str] = scale.table("capd_items")
    numeric = ["ice_score", "capd_score", *ice_items, *capd_items]
    items = [*numeric, *ICANS_DOMAINS, "death", "alternative_cause"]
    rows = toxicity_rows(events, patients, items, "icans", read)
    # The text read: of the attributions (their finding decides whether they count, and make an assessment), and
    # of the domain rows (its value's position among every value the scale grades; -1 another, ICANS_NO_VALUE none).
    alt, domain_rows = rows.rows_of("alternative_cause"), rows.rows_of(*ICANS_DOMAINS)
    attribution_text = read_texts(rows, alt, _neuro_attribution_columns)
    keep = np.ones(rows.height, dtype=np.bool_)
    keep[alt] = attribution_text.get_column("neuro").to_numpy()
    attribution = _attributions(rows, alt, attribution_text)
    cat = events.get_column("cat")  # read once: the frame gathers the texts of one Series object together
    value_code = np.full(rows.height, -1, dtype=np.int64)
    values = gather_rows(cat, rows.rows[domain_rows])
    value_code[domain_rows] = text_codes(values, NEURO_VALUE_UNION, -1, ICANS_NO_VALUE)
    signal_of = _icans_signals(tuple(rows.categories), tuple(items))
    floats, flags, numbers = icans_state_pass(
        *rows.pass_columns,
        keep,
        signal_of,
        len(ice_items),
        len(capd_items),
        attribution.finding,
        value_code,
        _OWN_POSITIONS,
        attribution.position,
        attribution.attributes,
        patients.get_column("age_years").to_numpy().astype(np.float64),  # a null number reads as NaN
        config.icans.neuro_validity_hours,
        config.icans.seizure_validity_hours,
    )
    number = dict(zip(ICANS_NUMBERS, numbers, strict=True))
    state = Assessments(Text(events.get_column(PID), number["row"]), number["patient"], flags[0], floats[0])
    state.add(
        **dict(zip(ICANS_FLOATS[1:], floats[1:], strict=True)),
        **dict(zip(ICANS_FLAGS[1:], flags[1:], strict=True)),
        ice_incomplete_last=number["ice_incomplete_last"],
        capd_incomplete_last=number["capd_incomplete_last"],
        **{"death_cause" if d == "death" else f"{d}_value": Text(cat, number[f"{d}_row"])
           for d in (*ICANS_DOMAINS, "death")},
        **{f"{d}_code": number[f"{d}_code"] for d in NEURO_VALUES},
        **{f"alt_{f}": Text(attribution.cause, number[f"alt_{f}"]) for f in NEURO_FINDINGS},
    )
    return state
