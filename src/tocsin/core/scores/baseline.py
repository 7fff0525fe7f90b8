"""What every score shares: the baseline of a lab, the worst value in a window, threshold ladders, ranges.

**Baseline.** The baseline value of a lab is its last value at or before the *anchor*: the first
``lymphodepletion`` row of the patient, or, when none is recorded, the infusion (day 0) — each row says
which anchor it used. Values older than ``lookback_days`` before the anchor do not count. A lab drawn at
the anchor time counts (with day-resolution data, the lymphodepletion day's labs are the pre-treatment draw).

**Arrays.** A score reads the columns it needs once (:func:`lab_rows`), picks, scores and ranges on NumPy
arrays, and builds its output frame at the end: an eager Polars operation costs 20–500 µs however small its
frame, and the scores of one course took about 100 of them.

**Windows.** A score at a time ``at`` takes, per lab, one value from the window of ``period`` days that
ends at ``at``: the last one, or the worst one (highest or lowest). All windows of a batch are resolved at
once, by one compiled scan of each window's patient rows (:mod:`tocsin.core.kernels_scores`), and the winning
rows are gathered. The cost grows with the rows of each patient times its windows (one or a few per score).

**Ladders and ranges.** Point tables are threshold ladders read from ``tocsin/data/criteria``: the first
step whose comparison holds gives the points. Thresholds are stated in the table's unit and converted once
to the item's canonical unit, by the same conversion ingest applies to values (and rounded alike), so a
value exactly at a cut-off scores the same in any input unit. A score whose inputs are incomplete is never
given as a number; it gets the range it can still take (``score_at_least`` / ``score_at_most``), and a
category only when the whole range falls in one category.

Example
-------
>>> import numpy as np
>>> from tocsin.core.scores.baseline import Step, ladders, points_of
>>> platelets = ladders([[Step("<", 75.0, 2), Step("<=", 175.0, 1)]], [0])
>>> points, least, most = points_of(np.array([[75.0, 200.0, np.nan]]), platelets)
>>> points.tolist(), least.tolist(), most.tolist()
([[1.0, 0.0, nan]], [1.0, 0.0, 0.0], [1.0, 0.0, 2.0])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import accumulate, repeat
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from tocsin.core.arrays import EventCodes, event_codes, float_rows, gather_rows, patient_codes
from tocsin.core.polars_handles import (
    PySeries,
    arrow_series,
    cut_columns,
    frame_of_handles,
    numeric_series,
)
from tocsin.core.kernels_gather import rows_of_items
from tocsin.core.kernels_scores import (
    COMPARISON,
    DIRECTION,
    ascending_in_runs,
    best_rows_in_windows,
    first_times,
    ladder_points,
    patient_runs,
    picked_fields,
)
from tocsin.units import conversion_for
from tocsin.vocabulary import load_vocabulary

Pick = Literal["last", "max", "min"]
Closed = Literal["left", "right", "both", "none"]
Op = Literal["<", "<=", ">", ">="]
Anchor = Literal["lymphodepletion", "infusion"]

_US_PER_DAY = 86_400_000_000
# As ingest rounds canonical values (tocsin.core.events), so that a converted cut-off equals a converted value.
_DECIMALS = 6
#: Label of the anchor a baseline was taken before.
ANCHOR_LYMPHODEPLETION = "lymphodepletion"
ANCHOR_INFUSION = "infusion"
#: Caveat of a baseline taken before the infusion because no lymphodepletion is recorded.
INFUSION_ANCHOR_CAVEAT = (
    "No lymphodepletion recorded: baseline taken at or before the infusion (day 0), possibly after "
    "lymphodepleting chemotherapy, which lowers counts and may change the score."
)


@dataclass(frozen=True)
class Step:
    """One rung of a threshold ladder: ``value op threshold`` gives ``points`` (threshold in canonical units)."""

    op: Op
    threshold: float
    points: int


@dataclass(frozen=True)
class Input:
    """A lab a score reads: its name in the output, the vocabulary item, the unit of the published table."""

    name: str
    item: str
    unit: str

    @property
    def canonical_unit(self) -> str:
        return _item_unit(self.item)

    def to_canonical(self, value: float) -> float:
        """A value in the table's unit in the item's canonical unit, rounded as ingest rounds."""
        return round(_conversion(self.unit, self.item).apply(value), _DECIMALS)


def round_to(values: np.ndarray, decimals: int) -> np.ndarray:
    """``np.round(values, decimals)``, by its own steps (scale, round half to even, unscale: the same bits), without
    its ~7 µs of overhead per call, which the dozens of small columns of a course paid."""
    scale = 10.0**decimals
    return np.rint(values * scale) / scale


@cache
def _item_unit(item: str) -> str:
    unit = load_vocabulary().items[item].unit
    if unit is None:
        raise ValueError(f"item {item!r} has no canonical unit: it cannot be a score input")
    return unit


def _conversion(unit: str, item: str) -> Any:
    return conversion_for(unit, _item_unit(item), molar_mass=load_vocabulary().items[item].molar_mass)


def ladder(spec: Sequence[Mapping[str, Any]], source: Input) -> list[Step]:
    """Ladder steps from criteria data (``[{op, value, points}]`` in the table's unit)."""
    return [Step(s["op"], source.to_canonical(float(s["value"])), int(s["points"])) for s in spec]


@dataclass(frozen=True)
class Ladders:
    """The point ladders of several inputs, as the arrays of their steps the compiled pass reads (built once per
    score and rule: :func:`ladders`)."""

    step_first: np.ndarray  # input i's steps are step_first[i]:step_first[i + 1]
    op: np.ndarray  # COMPARISON code
    threshold: np.ndarray
    points: np.ndarray
    otherwise: np.ndarray  # per input: the points when no step holds


def ladders(steps: Sequence[Sequence[Step]], otherwise: Sequence[int]) -> Ladders:
    """The :class:`Ladders` of inputs with these ladders, and these points when no step holds."""
    flat = [step for rungs in steps for step in rungs]
    unknown = [step.op for step in flat if step.op not in COMPARISON]
    if unknown:
        raise ValueError(f"unknown comparison {unknown[0]!r}")
    return Ladders(
        np.cumsum([0, *(len(rungs) for rungs in steps)], dtype=np.int64),
        np.array([COMPARISON[step.op] for step in flat], dtype=np.int64),
        np.array([step.threshold for step in flat], dtype=np.float64),
        np.array([step.points for step in flat], dtype=np.float64),
        np.array(otherwise, dtype=np.float64),
    )


def points_of(values: np.ndarray, scale: Ladders) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per input (a row of ``values``) the points of the first step that holds, its ``otherwise`` when none does,
    NaN where the value is NaN (missing); and per column the least and most total (a missing input counts the
    lowest, or highest, points its ladder gives). All inputs in one compiled pass."""
    return ladder_points(values, scale.step_first, scale.op, scale.threshold, scale.points, scale.otherwise)


class Bands(NamedTuple):
    """Bands of a total (``{min, max}`` inclusive; the first that holds) as arrays (:func:`bands`)."""

    low: np.ndarray  # bands x 1 x 1, against both ends of the ranges at once
    high: np.ndarray
    codes: list[np.ndarray]  # per field: a code per band (equal codes, equal values), then that of no band (None)


def bands(spec: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> Bands:
    """The :class:`Bands` of criteria data (``[{min, max, <field>...}]``) for the values of ``fields``."""
    codes = []
    for field in fields:
        code_of: dict[Any, int] = {}
        codes.append(np.array([code_of.setdefault(value, len(code_of)) for value in [*(b[field] for b in spec), None]]))
    low, high = (np.array([b[end] for b in spec]).reshape(len(spec), 1, 1) for end in ("min", "max"))
    return Bands(low, high, codes)


def settled_bands(least: np.ndarray, most: np.ndarray, scale: Bands) -> list[np.ndarray]:
    """Per field of the :class:`Bands`: the index of the band whose field's value both ends of a range fall in (the
    first band that holds each end), else -1."""
    ends = np.array((least, most))  # as np.stack, without its checks in Python (~3 µs)
    inside = (ends >= scale.low) & (ends <= scale.high)
    low, high = np.where(inside.any(axis=0), inside.argmax(axis=0), -1)
    return [np.where((codes[low] == codes[high]) & (low >= 0), low, -1) for codes in scale.codes]


class TableUnits(NamedTuple):
    """The conversions of some inputs' canonical values to their tables' units, a row per input."""

    offset: np.ndarray
    scale: np.ndarray


def table_units(sources: Sequence[Input]) -> TableUnits:
    """The :class:`TableUnits` of ``sources`` (converted once per score: the conversion is looked up by unit)."""
    conversions = [_conversion(source.unit, source.item) for source in sources]
    return TableUnits(np.array([[c.offset] for c in conversions]), np.array([[c.scale] for c in conversions]))


def in_table_units(units: TableUnits, values: np.ndarray) -> np.ndarray:
    """Canonical values (a row per input of ``units``, NaN where missing) in their tables' units (for display and
    formulas), rounded as ingest rounds: one conversion of every row."""
    return round_to((values - units.offset) / units.scale, _DECIMALS)


class _Included(NamedTuple):
    """Columns of another FrameColumns: all of them (``name`` None), or the one of that name."""

    table: FrameColumns
    name: str | None


#: Bit k of a label list's bits: ``names[k]`` holds.
_BITS = 1 << np.arange(63, dtype=np.int64)
#: The kinds of column built from a shared buffer.
_KINDS = ("numbers", "whole", "texts", "labels")
# The other entries of a table's order: a Series taken as it is, columns of another table.
_SERIES, _INCLUDED = "series", "included"


@dataclass(frozen=True)
class Layout:
    """Columns of fixed names and kinds, in order (the inputs' columns of a score), added at once
    (:meth:`FrameColumns.add_layout`): numbers and whole numbers from the rows of a matrix each, constant texts,
    and columns of another table by name. Built once per score (:func:`layout`)."""

    order: tuple[tuple[str, int], ...]  # (kind, position among the layout's columns of that kind)
    names: dict[str, tuple[str, ...]]  # per kind: numbers, whole, texts, included
    texts: tuple[tuple[list[str | None], None], ...]  # the text columns' parts (their one option)


def layout(columns: Sequence[tuple[str, str] | tuple[str, str, str]]) -> Layout:
    """The :class:`Layout` of ``columns``: ``(kind, name)`` for ``numbers`` and ``whole``, ``("texts", name,
    text)`` for a constant text, ``("included", name)`` for a column of another table."""
    names: dict[str, list[str]] = {kind: [] for kind in ("numbers", "whole", "texts", _INCLUDED)}
    order, texts = [], []
    for kind, name, *text in columns:
        order.append((kind, len(names[kind])))
        names[kind].append(name)
        if kind == "texts":
            texts.append(([text[0]], None))
    return Layout(tuple(order), {kind: tuple(own) for kind, own in names.items()}, tuple(texts))


def inputs_layout(inputs: Mapping[str, Input], points: bool = False) -> Layout:
    """The :class:`Layout` of a baseline score's inputs: per input its value (in the score's unit), unit, day (the
    baseline's column) and, with ``points``, its points."""
    return layout(
        [
            column
            for name, source in inputs.items()
            for column in (
                ("numbers", f"{name}_value"),
                ("texts", f"{name}_unit", source.unit),
                ("included", f"{name}_day"),
                *((("whole", f"{name}_points"),) if points else ()),
            )
        ]
    )


class FrameColumns:
    """The columns of an output frame, collected in order and built from a few shared buffers.

    Building a Series costs ~5 µs and indexing one with a NumPy array ~10 µs (an internal Polars evaluation),
    whatever its length, and the five score frames of a course hold some 220 columns. So the numbers of all
    columns go into one buffer, the whole numbers into another, texts and label lists are each one gather from
    their options (a frame of one row builds them directly), and each column is a slice of its buffer (~1 µs).
    :func:`frames` builds several frames from one set of buffers: four Series for all the scores of a batch.
    Columns also come several at once, as the rows of a matrix (:meth:`numbers_rows`) or a fixed :class:`Layout`
    of a score's columns (:meth:`add_layout`): a course adds some 200 columns, and a call per column costs about
    as much as the column's slice.
    """

    def __init__(self, height: int) -> None:
        self.height = height
        # Each column is (kind, position among the columns of its kind): cut from a buffer, or a Series or
        # included table of the lists below. A plain tuple: a course adds some 200 of them.
        self._order: list[tuple[str, int]] = []
        self._parts: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
        self._names: dict[str, list[str]] = {kind: [] for kind in _KINDS}
        self._series: list[pl.Series] = []
        self._includes: list[_Included] = []

    def _add(self, name: str, kind: str, part: Any) -> None:
        names = self._names[kind]
        self._order.append((kind, len(names)))
        names.append(name)
        self._parts[kind].append(part)

    def series(self, *columns: pl.Series) -> None:
        """Columns built elsewhere, taken as they are."""
        start = len(self._series)
        self._order.extend(zip(repeat(_SERIES), range(start, start + len(columns))))
        self._series.extend(columns)

    def include(self, other: FrameColumns, name: str | None = None) -> None:
        """The columns of ``other`` (of the same height), or only its column ``name``, here. They are built once,
        however many frames include them (with these in :func:`frames`, or each frame on its own)."""
        self._order.append((_INCLUDED, len(self._includes)))
        self._includes.append(_Included(other, name))

    def _column(self, values: np.ndarray | float) -> np.ndarray:
        # A column is mostly a float64 array of the frame's height already; a scalar fills the column.
        if isinstance(values, np.ndarray) and values.dtype == np.float64 and values.shape == (self.height,):
            return values
        return np.broadcast_to(np.asarray(values, dtype=np.float64), (self.height,))

    def numbers(self, name: str, values: np.ndarray | float) -> None:
        """Float64, null where NaN."""
        self._add(name, "numbers", self._column(values))

    def numbers_rows(self, names: Sequence[str], values: np.ndarray) -> None:
        """Float64 columns ``names``, the rows of ``values`` (names x height), null where NaN."""
        self._rows("numbers", names, values)

    def whole_rows(self, names: Sequence[str], values: np.ndarray) -> None:
        """Int32 columns ``names`` (:meth:`whole`), the rows of ``values`` (names x height), null where NaN."""
        self._rows("whole", names, values)

    def _rows(self, kind: str, names: Sequence[str], values: np.ndarray) -> None:
        start = len(self._names[kind])
        self._order.extend(zip(repeat(kind), range(start, start + len(names))))
        self._block(kind, names, values)

    def _block(self, kind: str, names: Sequence[str], values: Any) -> None:
        # The columns' names and values, one part of their buffer; their places in the order are the caller's.
        self._names[kind].extend(names)
        self._parts[kind].append(np.ascontiguousarray(values, dtype=np.float64).reshape(len(names) * self.height))

    def whole(self, name: str, values: np.ndarray | float) -> None:
        """Points and counts (whole numbers held as floats) as Int32, null where NaN."""
        self._add(name, "whole", self._column(values))

    def text(self, name: str, options: list[str | None], index: np.ndarray | None = None) -> None:
        """Utf8: ``options[index]`` per row (-1 the last option; without ``index`` the one option on every row)."""
        self._add(name, "texts", (options, index))

    def labels(self, name: str, conditions: Mapping[str, np.ndarray | bool]) -> None:
        """List(Utf8): per row, the names whose condition holds (missing inputs, caveats that apply), in order."""
        held = np.empty((len(conditions), self.height), dtype=np.int64)
        for k, condition in enumerate(conditions.values()):
            held[k] = condition
        self.labels_held(name, list(conditions), held)

    def labels_held(self, name: str, names: list[str], held: np.ndarray) -> None:
        """:meth:`labels` of conditions given as rows of ``held`` (names x height, integers 0 or 1)."""
        self.label_bits(name, names, _BITS[: len(names)] @ held)  # bit k where row k holds: one product

    def label_bits(self, name: str, names: list[str], bits: np.ndarray) -> None:
        """:meth:`labels` of conditions given as bits per row (int64: bit k set where ``names[k]`` holds)."""
        self._add(name, "labels", (names, bits))

    def constant_list(self, name: str, values: list[str]) -> None:
        """List(Utf8): the same list on every row."""
        self._add(name, "labels", (values, np.full(self.height, (1 << len(values)) - 1, dtype=np.int64)))

    def add_layout(
        self,
        columns: Layout,
        numbers: np.ndarray | None = None,
        whole: np.ndarray | None = None,
        source: FrameColumns | None = None,
    ) -> None:
        """The columns of a :class:`Layout`: its numbers the rows of ``numbers`` and its whole numbers the rows of
        ``whole`` (names x height, NaN for null; None when it has none), its included columns those of ``source``.
        One call where each column would cost about as much as its slice."""
        if columns.names[_INCLUDED] and source is None:
            raise ValueError("a layout with included columns needs the table they are taken from")
        start = {kind: len(self._names[kind]) for kind in ("numbers", "whole", "texts")}
        start[_INCLUDED] = len(self._includes)
        self._order.extend([(kind, start[kind] + k) for kind, k in columns.order])
        for kind, values in (("numbers", numbers), ("whole", whole)):
            if columns.names[kind] or values is not None:
                self._block(kind, columns.names[kind], values)
        self._names["texts"].extend(columns.names["texts"])
        self._parts["texts"].extend(columns.texts)
        self._includes.extend([_Included(source, name) for name in columns.names[_INCLUDED] if source is not None])

    def frame(self) -> pl.DataFrame:
        return frames(self)[0]


def frames(*tables: FrameColumns) -> list[pl.DataFrame]:
    """The frames of ``tables``, all their columns (and those they include) cut from one buffer per kind."""
    every = _with_included(tables)
    parts: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
    heights: dict[str, list[int]] = {"texts": [], "labels": []}  # of each column, in the order of their parts
    first: list[list[int]] = []  # per table, the buffer row of its first column of each kind
    rows = [0] * len(_KINDS)
    for table in every:
        first.append(list(rows))
        for k, kind in enumerate(_KINDS):
            rows[k] += len(table._names[kind]) * table.height
            parts[kind] += table._parts[kind]
        for kind, own in heights.items():
            own += [table.height] * len(table._names[kind])
    buffers = (
        _numbers_buffer(parts["numbers"]),
        _whole_buffer(parts["whole"]),
        _texts_buffer(list(zip(parts["texts"], heights["texts"]))),
        _labels_buffer(list(zip(parts["labels"], heights["labels"]))),
    )
    # Columns as Polars' own Series handles: a frame is made of them as Series.to_frame makes one, where hstack and
    # the DataFrame constructor check and unwrap each Series again (~0.5 µs a column, a course has some 200).
    built: dict[int, list[PySeries]] = {}
    named: dict[int, dict[str, PySeries]] = {}  # the columns by name of the tables some columns are taken from
    for table, start in zip(every, first):  # an included table comes before the tables including it
        height = table.height
        pool: dict[str, list[Any]] = {
            kind: [column for _, column in cut_columns(buffer, names, offset, height)]
            for kind, buffer, names, offset in zip(_KINDS, buffers, table._names.values(), start)
            if names
        }
        pool[_SERIES] = [column._s for column in table._series]
        columns: list[PySeries] = []
        for kind, position in table._order:
            if kind != _INCLUDED:
                columns.append(pool[kind][position])
                continue
            other, name = table._includes[position]
            included = built[id(other)]
            if name is None:
                columns += included
                continue
            if id(other) not in named:
                named[id(other)] = {column.name(): column for column in included}
            columns.append(named[id(other)][name])
        built[id(table)] = columns
    return [frame_of_handles(built[id(table)]) for table in tables]


def _with_included(tables: Sequence[FrameColumns]) -> list[FrameColumns]:
    """``tables`` and the tables they include, each once, every included table before the tables including it."""
    ordered: dict[int, FrameColumns] = {}
    for table in tables:
        _visit(table, ordered)
    return list(ordered.values())


def _visit(table: FrameColumns, ordered: dict[int, FrameColumns]) -> None:
    """Add ``table`` to ``ordered`` after the tables it includes. (Not a nested function: a recursive closure is a
    reference cycle, and it kept the tables' arrays until a full collection.)"""
    if id(table) in ordered:
        return
    for included in table._includes:
        _visit(included.table, ordered)
    ordered[id(table)] = table


def _numbers_buffer(parts: list[np.ndarray]) -> pl.Series | None:
    return numeric_series(np.concatenate(parts), nan_to_null=True) if parts else None


def _whole_buffer(parts: list[np.ndarray]) -> pl.Series | None:
    return numeric_series(np.concatenate(parts), nan_to_null=True).cast(pl.Int32) if parts else None


def _texts_buffer(parts: list[tuple[tuple[list[str | None], np.ndarray | None], int]]) -> pl.Series | None:
    if not parts:
        return None
    if all(height == 1 for _, height in parts):  # a course's rows: their values, without an index into the options
        return _texts([options[0 if index is None else int(index[0]) % len(options)] for (options, index), _ in parts])
    options: list[str | None] = []
    first = []
    for (column_options, _), _ in parts:
        first.append(len(options))
        options += column_options
    heights = np.array([height for _, height in parts], dtype=np.int64)
    index = np.repeat(np.array(first, dtype=np.int64), heights)
    for start, ((column_options, column_index), height) in zip((np.cumsum(heights) - heights).tolist(), parts):
        if column_index is not None:
            index[start : start + height] += column_index % len(column_options)
    return _by_index(options, index, _texts)


def _labels_buffer(parts: list[tuple[tuple[list[str], np.ndarray], int]]) -> pl.Series | None:
    # Rows share few distinct lists, so each distinct (column, names that hold) is built once and gathered:
    # a Python list per row costs milliseconds for a batch.
    if not parts:
        return None
    if all(height == 1 for _, height in parts):  # a course's rows: their lists, without looking for the distinct ones
        return _string_lists([_held(names, int(bits[0])) for (names, bits), _ in parts])
    width = max(len(names) for (names, _), _ in parts)
    keys = np.concatenate([(column << width) | bits for column, ((_, bits), _) in enumerate(parts)])
    distinct, inverse = np.unique(keys, return_inverse=True)
    options = []
    for key in distinct.tolist():
        options.append(_held(parts[key >> width][0][0], key & ((1 << width) - 1)))
    return _by_index(options, inverse.ravel(), _string_lists)


def _held(names: list[str], bits: int) -> list[str]:
    """The names whose bit is set, in order."""
    return [name for k, name in enumerate(names) if bits >> k & 1]


def _texts(values: list[str | None]) -> pl.Series:
    return pl.Series("", values, dtype=pl.Utf8)


def _string_lists(lists: list[list[str]]) -> pl.Series:
    """A List(Utf8) Series of ``lists``, from their strings and offsets through Arrow (~10 µs): the Series
    constructor converts list by list (~5 µs each, and a course's frames have some 20 lists). The Arrow arrays
    are made from their buffers: ``pa.array`` of Python objects imports pandas (0.45 s in every batch worker)."""
    # Offsets summed in Python: a list of a few dozen numbers converts to NumPy slower than it adds up.
    offsets = np.array([0, *accumulate(map(len, lists))], dtype=np.int64)
    encoded = [name.encode() for names in lists for name in names]
    characters = np.array([0, *accumulate(map(len, encoded))], dtype=np.int64)
    strings = pa.Array.from_buffers(
        pa.large_string(), len(encoded), [None, pa.py_buffer(characters), pa.py_buffer(b"".join(encoded))]
    )
    lists_type = pa.large_list(pa.large_string())
    lists_array = pa.Array.from_buffers(lists_type, len(lists), [None, pa.py_buffer(offsets)], children=[strings])
    return arrow_series(lists_array)


def _by_index(options: list[Any], index: np.ndarray, series_of: Callable[[list[Any]], pl.Series]) -> pl.Series:
    """``options[index]`` as a Series (``series_of`` builds one from values): built from the options and gathered
    (a direct gather, ~1 µs; indexed by a NumPy array, Polars runs a query, ~15 µs), whatever the number of
    values."""
    return gather_rows(series_of(options), index)


_IDENTITY = ("scale", "version", "citation", "doi")


def identity_columns(scale: Any, columns: FrameColumns) -> None:
    """Columns naming the criteria a row was computed under."""
    columns.add_layout(_identity_layout(tuple(getattr(scale, name) for name in _IDENTITY)))


@cache
def _identity_layout(values: tuple[str, ...]) -> Layout:
    return layout([("texts", name, value) for name, value in zip(_IDENTITY, values)])


# ------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class LabRows:
    """The rows of some items of a batch as arrays, each patient's rows one run (in their given order).

    Canonical events hold each patient's rows together already; other frames are regrouped stably, so that "the
    later row" keeps its meaning. Patients are matched by their category code, never by a join.
    """

    item: np.ndarray  # item code (int64, as the compiled passes read it: converted once, not at each pass)
    t: np.ndarray
    stamp: np.ndarray  # t in whole microseconds: window bounds compare exactly, as in a rolling window by time
    run_code: np.ndarray  # patient code of each run (int64, as the compiled passes read it), ascending
    run_first: np.ndarray
    run_end: np.ndarray
    in_time: bool  # each patient's stamps ascending (canonical events): a window's rows are found by a search
    categories: list[str]
    code: Mapping[str, int]  # the code of each item name
    events: pl.DataFrame  # the events read, and these rows' numbers in them (for the columns read at first use)
    event_rows: np.ndarray
    columns: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # num, lln, uln once read (:meth:`column`)

    def column(self, name: str) -> np.ndarray:
        """The events' column ``name`` (num, lln, uln) at these rows as float64, NaN where null; read at first use:
        a batch has a million rows, and most scores never read lln."""
        if name not in self.columns:
            self.columns[name] = float_rows(self.events.get_column(name), self.event_rows)
        return self.columns[name]

    def column_at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """:meth:`column` as read at ``rows`` only (any shape, -1: none): the column's values there, NaN at every
        other row. For a column read only where a pick was made (ULN: a batch's 200,000 rows read for 400
        picks)."""
        if name in self.columns:
            return self.columns[name]
        picked = np.unique(rows[rows >= 0])
        values = np.full(self.t.size, np.nan)
        values[picked] = float_rows(self.events.get_column(name), self.event_rows[picked])
        return values


def position_of(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Position of each code in ``table`` (distinct codes, any order), -1 for a code it does not hold."""
    if table.size == 0:
        return np.full(codes.size, -1, dtype=np.int64)
    order = np.argsort(table, kind="stable")
    found = order[np.searchsorted(table, codes, sorter=order).clip(max=table.size - 1)]
    return np.where(table[found] == codes, found, -1)


def lab_rows(events: pl.DataFrame, items: Collection[str] | None = None, read: EventCodes | None = None) -> LabRows:
    """The rows of ``items`` (all rows when None) of ``events`` as :class:`LabRows` (``read``: its
    :func:`event_codes`, when several reads share them)."""
    read = read or event_codes(events)
    categories, codes = read.categories, read.item
    if items is None:
        rows, item, patient = np.arange(codes.size), codes, read.patient
    else:
        wanted = np.zeros(len(categories) + 1, dtype=np.bool_)
        wanted[[read.code[i] for i in items]] = True
        rows, item, patient = rows_of_items(codes, read.patient, wanted)
    run_code, run_first, run_end, grouped = patient_runs(patient)
    if not grouped:  # a patient's rows apart: regrouped, each patient's rows in their given order
        order = np.argsort(patient, kind="stable")
        rows, item, patient = rows[order], item[order], patient[order]
        run_code, run_first, run_end, _ = patient_runs(patient)
    # Only the wanted rows are read (:func:`tocsin.core.arrays.float_rows`): a column with nulls is copied to NumPy,
    # and a batch has millions of rows.
    t = float_rows(events.get_column("t"), rows)
    stamp = _stamp(t)
    return LabRows(
        item=item.astype(np.int64, copy=False),
        t=t,
        stamp=stamp,
        run_code=run_code,
        run_first=run_first,
        run_end=run_end,
        in_time=ascending_in_runs(patient, stamp),
        categories=categories,
        code=read.code,
        events=events,
        event_rows=rows,
    )


def _stamp(days: np.ndarray) -> np.ndarray:
    """Times in days as whole microseconds (rounded half to even, as Polars rounds)."""
    return np.rint(np.asarray(days, dtype=np.float64) * _US_PER_DAY).astype(np.int64)


def picked_rows(
    labs: LabRows, codes: np.ndarray, at: np.ndarray, picks: Mapping[str, Pick], period_days: float, closed: Closed
) -> np.ndarray:
    """Per window (patient code, end ``at``) and item of ``picks`` (in order): the row of ``labs`` picked in the
    ``period_days`` up to ``at`` (``last``: the latest, ties the later row; ``max``/``min``: the worst, ties the
    latest), -1 when the window holds none. Below-quantification rows (no number) are not values."""
    return best_rows_in_windows(
        labs.item,
        labs.stamp,
        labs.column("num"),
        labs.t,
        labs.run_code,
        labs.run_first,
        labs.run_end,
        labs.in_time,
        np.array([labs.code[item] for item in picks], dtype=np.int64),
        len(labs.categories) + 1,  # a null item's code too
        _directions(tuple(picks.values())),
        codes,
        _stamp(at),
        max(1, round(period_days * _US_PER_DAY)),
        closed,
    )


@cache
def _directions(picks: tuple[Pick, ...]) -> np.ndarray:
    return np.array([DIRECTION[p] for p in picks], dtype=np.int64)


def gathered(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` (along the first axis), NaN where a row is -1 (nothing picked)."""
    if len(values) == 0:
        return np.full(rows.shape + values.shape[1:], np.nan)
    found = (rows >= 0).reshape(rows.shape + (1,) * (values.ndim - 1))
    return np.where(found, values[np.maximum(rows, 0)], np.nan)


#: The per-row values a pick can report, and the events' column of each (the day: the rows' times).
FIELDS = {"value": "num", "day": "t", "lln": "lln", "uln": "uln"}


def field_values(labs: LabRows, fields: Sequence[str] = tuple(FIELDS)) -> list[np.ndarray]:
    """The per-row values of ``fields`` (of :data:`FIELDS`), in order."""
    return [labs.t if field == "day" else labs.column(FIELDS[field]) for field in fields]


def picked_columns(
    labs: LabRows,
    rows: np.ndarray,
    inputs: Mapping[str, str],
    items: Sequence[str],
    fields: Sequence[str],
    columns: FrameColumns,
) -> dict[str, np.ndarray]:
    """``<input>_<field>`` (value, day, lln, uln) columns of the picked ``rows`` (windows x ``items``); returns them
    as arrays (NaN where nothing was picked)."""
    slots = rows[:, [list(items).index(item) for item in inputs.values()]]
    # Inputs x fields x windows: the columns in their order, one part of the numbers.
    picked = picked_fields(slots, *field_values(labs, fields)).reshape(-1, rows.shape[0])
    names = [f"{name}_{f}" for name in inputs for f in fields]
    columns.numbers_rows(names, picked)
    return dict(zip(names, picked))


def pick_values(
    events: pl.DataFrame,
    windows: pl.DataFrame,
    picks: Mapping[str, Pick],
    period_days: float,
    closed: Closed = "both",
) -> pl.DataFrame:
    """Per window (``patient_id``, ``at``) and item: the value picked in the ``period_days`` up to ``at``.

    ``last`` is the latest value (ties at one time: the later file line), ``max``/``min`` the worst one
    (the latest of equal worst values gives its day). Returns ``patient_id, at, item, value, day, lln,
    uln`` (canonical units) for every distinct window and item, window by window and in each window the
    items in the order of ``picks``; value null when nothing is in the window. Below-quantification rows
    (no number) are not values. The scores call :func:`picked_rows` on arrays; this is its long-table form.
    """
    items = list(picks)
    labs = lab_rows(events, items)
    ends = windows.select("patient_id", "at").unique(maintain_order=True)
    rows = picked_rows(
        labs, patient_codes(ends.get_column("patient_id")), ends.get_column("at").to_numpy(), picks, period_days, closed
    ).ravel()
    probes = ends[np.repeat(np.arange(ends.height), len(items))].with_columns(
        pl.Series("item", items * ends.height, dtype=events.schema["item"])
    )
    found = FrameColumns(rows.size)
    for name, values in zip(FIELDS, field_values(labs)):
        found.numbers(name, gathered(values, rows))
    return probes.hstack(found.frame().get_columns())


@dataclass(frozen=True)
class PatientTable:
    """The distinct patient ids of a patient table (Categorical), in order: the rows of a per-patient score; and
    their category codes, read once for the several scores of a batch."""

    ids: pl.Series
    codes: np.ndarray


def patient_rows(patients: pl.DataFrame) -> PatientTable:
    """The :class:`PatientTable` of a patient table."""
    ids = patients.get_column("patient_id").cast(pl.Categorical)
    return distinct_patients(ids, patient_codes(ids))


def distinct_patients(ids: pl.Series, codes: np.ndarray) -> PatientTable:
    """The :class:`PatientTable` of the patient ids of a table (Categorical) and their :func:`patient_codes`."""
    distinct, first = np.unique(codes, return_index=True)
    if distinct.size == codes.size:
        return PatientTable(ids, codes)
    first = np.sort(first)
    return PatientTable(ids[first], codes[first])


def patient_table(patients: pl.DataFrame) -> pl.Series:
    """The distinct patient ids of a patient table (Categorical), in order: the rows of a per-patient score."""
    return patient_rows(patients).ids


def first_lymphodepletion(labs: LabRows, codes: np.ndarray) -> np.ndarray:
    """Per patient code: the time of its first lymphodepletion row, NaN when none is recorded."""
    code = labs.code[ANCHOR_LYMPHODEPLETION]
    return first_times(labs.item, labs.t, labs.run_code, labs.run_first, labs.run_end, code, codes)


def baseline_rows(
    labs: LabRows, codes: np.ndarray, items: Sequence[str], lookback_days: float, anchor: Anchor
) -> tuple[np.ndarray, np.ndarray]:
    """Per patient code: the first lymphodepletion day (NaN when none is recorded or ``anchor`` is the infusion)
    and the rows (patients x ``items``) of the last value of each item in ``lookback_days`` up to the anchor."""
    if not math.isfinite(lookback_days) or lookback_days <= 0:
        raise ValueError(f"lookback_days must be a positive number of days, not {lookback_days!r}")
    ld = first_lymphodepletion(labs, codes) if anchor == ANCHOR_LYMPHODEPLETION else np.full(codes.size, np.nan)
    at = np.where(np.isnan(ld), 0.0, ld)
    return ld, picked_rows(labs, codes, at, dict.fromkeys(items, "last"), lookback_days, "both")


@dataclass(frozen=True)
class Baseline:
    """The baseline labs of a batch's patients (:func:`baseline_values`) for the scores that read them: arrays for
    their arithmetic, and the columns their frames show (built once for all the scores of a batch)."""

    columns: FrameColumns  # patient_id, anchor_day, anchor, <input>_<field> ...
    values: Mapping[str, np.ndarray]  # the Float64 columns by name, NaN where null
    infusion_anchored: np.ndarray  # per patient: the baseline was taken before the infusion (no lymphodepletion)


def baseline_of(
    labs: LabRows,
    patients: PatientTable,
    inputs: Mapping[str, str],
    lookback_days: float,
    fields: Sequence[str] = ("value", "day"),
    anchor: Anchor = ANCHOR_LYMPHODEPLETION,
) -> Baseline:
    """The :class:`Baseline` of :func:`baseline_values` from the rows of a batch (``labs`` holding the inputs' and
    lymphodepletion rows) for ``patients``."""
    items = list(dict.fromkeys(inputs.values()))
    ld, rows = baseline_rows(labs, patients.codes, items, lookback_days, anchor)
    columns = FrameColumns(patients.ids.len())
    columns.series(patients.ids)
    infusion_anchored = np.isnan(ld)
    anchor_day = np.where(infusion_anchored, 0.0, ld)
    columns.numbers("anchor_day", anchor_day)
    columns.text("anchor", [ANCHOR_LYMPHODEPLETION, ANCHOR_INFUSION], infusion_anchored.astype(np.int64))
    values = picked_columns(labs, rows, inputs, items, fields, columns)
    return Baseline(columns, {"anchor_day": anchor_day, **values}, infusion_anchored)


def baseline_of_frame(frame: pl.DataFrame) -> Baseline:
    """The :class:`Baseline` of a :func:`baseline_values` frame: its columns as they are."""
    columns = FrameColumns(frame.height)
    columns.series(*frame.get_columns())
    values = {name: frame.get_column(name).to_numpy() for name, dtype in frame.schema.items() if dtype == pl.Float64}
    return Baseline(columns, values, frame.get_column("anchor").to_numpy() == ANCHOR_INFUSION)


def read_baseline(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    inputs: Mapping[str, str],
    lookback_days: float,
    frame: pl.DataFrame | None = None,
) -> Baseline:
    """The :class:`Baseline` of a score: of ``frame``, a :func:`baseline_values` given by the caller (when several
    scores share one read), else read from ``events``."""
    if frame is not None:
        return baseline_of_frame(frame)
    labs = lab_rows(events, [*inputs.values(), ANCHOR_LYMPHODEPLETION])
    return baseline_of(labs, patient_rows(patients), inputs, lookback_days)


def baseline_frame(
    labs: LabRows,
    ids: pl.Series,
    inputs: Mapping[str, str],
    lookback_days: float,
    fields: Sequence[str] = ("value", "day"),
    anchor: Anchor = ANCHOR_LYMPHODEPLETION,
) -> pl.DataFrame:
    """:func:`baseline_values` from the rows of a batch (``labs`` holding the inputs' and lymphodepletion rows) for
    the patients ``ids`` (:func:`patient_table`)."""
    patients = PatientTable(ids, patient_codes(ids))
    return baseline_of(labs, patients, inputs, lookback_days, fields, anchor).columns.frame()


def baseline_values(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    inputs: Mapping[str, str],
    lookback_days: float,
    fields: Sequence[str] = ("value", "day"),
    anchor: Anchor = ANCHOR_LYMPHODEPLETION,
) -> pl.DataFrame:
    """One row per patient: ``anchor_day``, ``anchor`` and, per input (name -> item), the baseline
    ``<input>_value`` (canonical unit) and ``<input>_day``: the last value in ``lookback_days`` up to the anchor
    (the first lymphodepletion day, else 0.0: the infusion; with ``anchor`` "infusion" always day 0).
    """
    labs = lab_rows(events, [*inputs.values(), ANCHOR_LYMPHODEPLETION])
    return baseline_frame(labs, patient_table(patients), inputs, lookback_days, fields, anchor)


@dataclass(frozen=True)
class Windows:
    """Evaluation windows of a time-point score: one output row each, ending at ``at`` (closed as ``closed``)."""

    patient_id: pl.Series
    at: np.ndarray
    day: np.ndarray  # int32: the day an ``at`` falls in
    closed: Closed
    codes: np.ndarray  # category codes of the windows' patients (read once for the several scores of a batch)

    @cached_property
    def columns(self) -> tuple[pl.Series, pl.Series, pl.Series]:
        """``patient_id, at, day``: the first columns of every score at these windows, built once for all."""
        return self.patient_id, numeric_series(self.at, "at"), numeric_series(self.day, "day")


def windows_at(ids: pl.Series, times: np.ndarray, codes: np.ndarray | None = None) -> Windows:
    """Windows ending at ``times`` (included), one per patient of ``ids`` (Categorical; ``codes``: their
    :func:`patient_codes`, when already read)."""
    codes = patient_codes(ids) if codes is None else codes
    return Windows(ids, times, np.floor(times).astype(np.int32), "both", codes)


def evaluation_windows(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    at: float | pl.DataFrame | None,
    *,
    table: PatientTable | None = None,
) -> Windows:
    """Windows to evaluate a time-point score.

    ``at`` None: every day from 0 to the patient's last event; day d is the window ending where day d
    ends (``at`` = d + 1, excluded, so a day-resolution row of day d + 1 is not in day d). A number: that time
    for every patient. A frame of ``patient_id``, ``at``: those times. Explicit times include ``at`` itself.
    ``table``: the :func:`patient_rows` of ``patients``, when already read.
    """
    if isinstance(at, pl.DataFrame):
        ids = at.get_column("patient_id").cast(pl.Categorical)
        return windows_at(ids, at.get_column("at").cast(pl.Float64).to_numpy())
    table = table or patient_rows(patients)
    ids = table.ids
    if at is not None:
        return windows_at(ids, np.full(ids.len(), float(at)), table.codes)
    rows = lab_rows(events)
    latest = np.zeros(rows.run_first.size)
    if rows.t.size:
        order = np.argsort(rows.run_first)
        latest[order] = np.maximum.reduceat(rows.t, rows.run_first[order])
    run = position_of(rows.run_code, table.codes)
    last = np.append(latest, 0.0)[run]
    count = np.floor(np.clip(last, 0.0, None)).astype(np.int64) + 1
    owner = np.repeat(np.arange(ids.len()), count)
    day = (np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)).astype(np.int32)
    window_ids = gather_rows(ids, owner)  # a direct gather (indexed by an array, Polars runs a query)
    return Windows(window_ids, (day + 1).astype(np.float64), day, "left", table.codes[owner])
