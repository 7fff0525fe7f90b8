"""Event validation and normalisation: raw long-format rows -> canonical, unit-safe events.

Input is a Polars frame with the columns of the event format (``patient_id``, ``time`` and/or ``day``,
``item``, ``value``, ``unit``, optional ``source``, ``note``) plus ``file`` and ``line`` added by the
reader so that every error can name where it came from. Each problem becomes a row of the error table
(file, line, patient, field, value, message, fix); strict callers refuse the input if there is any, lenient
callers grade the rest.

The raw columns are typed once (one Polars select); then every check is a NumPy mask over the rows and every
lookup (item attributes, unit conversions, the patient's infusion and weight) a gather by code from a small
table built per distinct item, unit, (item, unit) or patient. A clean file thus costs a handful of Polars
operations whatever its size (an eager operation costs 20-500 us even on a few rows: a bedside course paid
about 90 of them); only a check that some row fails builds Polars frames, of its rows, to format their errors.
Rows of a Series are taken by indexing with NumPy row numbers (``series[rows]``, ~13 us), not ``gather``, which
runs a query (~30 us).

The original value and unit are kept beside the canonical ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime

import numpy as np
import polars as pl

from tocsin.core.arrays import enum_codes, gather_rows, patient_codes_of
from tocsin.core.kernels_ingest import (
    NOT_WHOLE,
    OUTSIDE_RANGE,
    TextTable,
    converted,
    days_since_infusion,
    decimals,
    grouped_in_order,
    marked,
    ranked,
    rounded,
    short_text_codes,
    text_codes,
    text_table,
    value_failures,
)
from tocsin.core.polars_handles import (
    categorical_series,
    empty_or_null,
    frame_from,
    numeric_series,
    string_chunks,
)
from tocsin.units import UnitError, conversion_for
from tocsin.vocabulary import ItemDefinition, Vocabulary

#: Columns of the canonical event frame the rest of the core works on.
CANONICAL_COLUMNS = [
    "patient_id",
    "t",
    "item",
    "num",
    "cat",
    "lln",
    "uln",
    "lloq",
    "blq",
    "route",
    "orig_value",
    "orig_unit",
    "source",
    "file",
    "line",
]
#: Routes of administration accepted in the optional ``route`` column (drugs and blood support only).
ROUTES = ("iv", "po", "sc", "im", "intrathecal", "topical", "inhaled", "other")
_ROUTE_ALIASES = {"intravenous": "iv", "oral": "po", "subcutaneous": "sc", "intramuscular": "im", "it": "intrathecal"}
#: Optional per-row limits (reference range, quantification limit), given in the row's own unit.
LIMIT_COLUMNS = ("lln", "uln", "lloq")
# Ways of writing "below the limit of quantification" without a number (the limit is in `lloq`).
_BLQ_WORDS = ("blq", "<lloq", "bql", "nd", "not detected", "undetectable", "below lloq")
#: Items that describe the patient rather than the course; their time is not checked.
PATIENT_ITEMS = ("age", "birth_date", "weight", "sex", "disease")
ERROR_SCHEMA = {
    "file": pl.Utf8,
    "line": pl.Int64,
    "patient_id": pl.Utf8,
    "field": pl.Utf8,
    "value": pl.Utf8,
    "message": pl.Utf8,
    "fix": pl.Utf8,
    "severity": pl.Utf8,
}
_NO_ERRORS = pl.DataFrame(schema=ERROR_SCHEMA)
_TRUE = ("true", "yes", "y", "1", "present")
_FALSE = ("false", "no", "n", "0", "absent")


@dataclass(frozen=True)
class IngestLimits:
    """Time limits for rows. Rows outside are rejected as implausible.

    ``not_after`` is the caller's "now" (the core has no clock): rows with a clock time later than it
    are in the future.
    """

    earliest_day: float = -30.0
    not_after: datetime | None = None


@dataclass
class NormalisedEvents:
    """Canonical events, the error table, and one row per patient (infusion time and product)."""

    events: pl.DataFrame
    errors: pl.DataFrame
    patients: pl.DataFrame

    @property
    def problems(self) -> pl.DataFrame:
        """Rows that were refused (severity 'error'); warnings are kept rows with a caveat."""
        return self.errors.filter(pl.col("severity") == "error")

    @property
    def ok(self) -> bool:
        return self.problems.height == 0


def _error_frame(
    df: pl.DataFrame,
    field_name: str,
    message: pl.Expr,
    fix: pl.Expr,
    value: pl.Expr | None = None,
    severity: str = "error",
) -> pl.DataFrame:
    if df.height == 0:  # the usual case for a subset's check: nothing to format
        return pl.DataFrame(schema=ERROR_SCHEMA)
    df = df.rechunk()  # Polars 2.1 pl.format can panic on multi-chunk text columns (few rows here)
    return df.select(
        pl.col("file"),
        pl.col("line"),
        pl.col("patient_id"),
        pl.lit(field_name).alias("field"),
        (value if value is not None else pl.col("value")).cast(pl.Utf8).alias("value"),
        message.alias("message"),
        fix.alias("fix"),
        pl.lit(severity).alias("severity"),
    )


def _read_numbers(text: pl.Series) -> np.ndarray:
    """``text`` read as numbers (NaN where it does not read). Values that do not parse at first (blanks around
    them, a decimal comma) are cleaned and read again; only those rows pay for the cleaning (string work over
    millions of rows cost more than the parse itself)."""
    return _reread_numbers(text, text.cast(pl.Float64, strict=False).to_numpy())


def _reread_numbers(text: pl.Series, first_read: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`_read_numbers` given the plain parse of ``text`` (nulls and NaN read as NaN): the ``rows`` given
    (ascending; by default every row that read as NaN) are read again, written into ``first_read`` itself when it
    is writable (NumPy's reading of a Series with nulls is a copy of its own; a view of one without nulls is
    read-only, and copied here only if some row is read again). The caller must not need the first reading
    afterwards."""
    if rows is None:
        rows = np.flatnonzero(np.isnan(first_read))
    if rows.size == 0:
        return first_read
    cleaned = text[rows].str.strip_chars().str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    numbers = first_read if first_read.flags.writeable else np.array(first_read, dtype=np.float64)
    numbers[rows] = cleaned.to_numpy()  # (a null text reads as NaN again)
    return numbers


def _nulls(column: pl.Series) -> np.ndarray:
    """Where ``column`` is null, without a pass over it when it has no nulls or only nulls."""
    nulls = column.null_count()
    if nulls in (0, column.len()):
        return np.full(column.len(), nulls > 0, dtype=np.bool_)
    return column.is_null().to_numpy()


# Polars' strip_chars and the \s of its regexes mean Unicode White_Space; Python's str.strip() and re's \s also
# take \x1c-\x1f, so the set is spelled out: texts read in Python read exactly as Polars reads them.
_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_SEPARATOR_RUNS = re.compile(f"[{re.escape(_WHITE_SPACE)}\\-/]+")


def _stripped(text: str | None) -> str | None:
    return None if text is None else text.strip(_WHITE_SPACE)


def _keys(texts: list[str | None], separators: bool = False) -> list[str | None]:
    """``str.strip_chars().str.to_lowercase()`` (and runs of blanks, '-' and '/' as '_' with ``separators``), in
    Python for the few texts of a subset; texts beyond ASCII are lower-cased by Polars itself (the Unicode case
    rules of Python and Rust may differ in detail)."""
    keys = [_stripped(t) for t in texts]
    wide = [i for i, key in enumerate(keys) if key is not None and not key.isascii()]
    lowered = pl.Series([keys[i] for i in wide], dtype=pl.Utf8).str.to_lowercase().to_list() if wide else []
    keys = [None if key is None else key.lower() for key in keys]
    for i, key in zip(wide, lowered, strict=True):
        keys[i] = key
    return [None if key is None else _SEPARATOR_RUNS.sub("_", key) for key in keys] if separators else keys


_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")


def parse_iso_times(text: pl.Expr) -> pl.Expr:
    """ISO 8601 date-times, each row on its own (a file may mix 'Z', offsets and local times), as naive UTC.

    A time without a zone designator is read as UTC. Polars infers one format per column, so the zone is
    first made explicit on every row, then each accepted layout is tried.
    """
    zoned = (
        pl.when(text.str.ends_with("Z"))
        .then(text.str.slice(0, text.str.len_chars() - 1) + "+00:00")
        .when(text.str.contains(r"[+-]\d\d:?\d\d$"))
        .then(text)
        .otherwise(text + "+00:00")
    )
    attempts = [zoned.str.to_datetime(format=f, strict=False, time_unit="us", time_zone="UTC") for f in _ISO_FORMATS]
    return pl.coalesce(attempts).dt.replace_time_zone(None)


_VALUE_TYPE_NAMES = ["number", "category", "boolean", "text", "date"]
VALUE_TYPES = pl.Enum(_VALUE_TYPE_NAMES)


def item_enum(vocabulary: Vocabulary) -> pl.Enum:
    """The vocabulary's item names as a Polars Enum (the dtype of ``item`` in canonical events)."""
    return pl.Enum(list(vocabulary.items))


@dataclass(frozen=True)
class _Items:
    """The vocabulary's item attributes as arrays indexed by the item's Enum code, with one more slot (the last)
    for rows without a known item: an attribute of every row is one NumPy gather, not a column expression."""

    enum: pl.Enum
    names: tuple[str, ...]
    codes: Mapping[str, int]
    is_number: np.ndarray
    takes_limits: np.ndarray
    integer: np.ndarray
    fraction_to_percent: np.ndarray
    is_drug: np.ndarray
    takes_route: np.ndarray
    reads_text: np.ndarray  # a known item whose value is not a number (category, boolean, text, date)
    in_course: np.ndarray  # not a patient item: its time is checked
    describes_patient: np.ndarray  # a column of the patient table: the infusion or a patient item
    value_type: np.ndarray  # position in VALUE_TYPES (-1: no item)
    low: np.ndarray  # plausible range (NaN: none)
    high: np.ndarray
    differential_base: np.ndarray  # code of the count a % is of (-1: none)
    canonical_unit: tuple[str, ...]
    categories: Mapping[str, str]  # "item<US>value key" -> allowed value
    allowed: Mapping[str, str]  # category item -> its allowed values, listed
    # (item code, unit) -> its conversion, filled as pairs are met (see _conversion_of)
    conversions: dict[tuple[int, str], tuple[float, float, bool, bool, str | None]]

    @cached_property
    def text_table(self) -> TextTable:
        """The names laid out for the compiled pass of :func:`_item_codes` (built for the first large input)."""
        return text_table(self.names)

    @cached_property
    def enum_names(self) -> pl.Series:
        """Every name in the Enum, then a null (the code of no item): the item column is a gather of it by code."""
        return pl.Series("item", [*self.names, None], dtype=self.enum)

    @property
    def unknown(self) -> int:
        """The code of rows without a known item."""
        return len(self.names)

    def code(self, name: str) -> int:
        return self.codes[name]


_KEY_SEPARATOR = "\x1f"  # between item and value key: in neither an item name nor a vocabulary value
_ITEM_TABLES: dict[int, tuple[Vocabulary, _Items]] = {}


def _items(vocabulary: Vocabulary) -> _Items:
    """The item table of ``vocabulary``, built once per vocabulary (a bedside request would otherwise spend a
    tenth of its time walking the vocabulary)."""
    cached = _ITEM_TABLES.get(id(vocabulary))
    if cached is not None and cached[0] is vocabulary:
        return cached[1]
    names = tuple(vocabulary.items)
    defs = list(vocabulary.items.values())

    def flags(test: Callable[[ItemDefinition], bool]) -> np.ndarray:
        return np.array([test(d) for d in defs] + [False], dtype=np.bool_)

    def bound(side: int) -> np.ndarray:
        return np.array([d.range[side] if d.range else np.nan for d in defs] + [np.nan], dtype=np.float64)

    categories: dict[str, str] = {}
    for name, d in vocabulary.items.items():
        if d.value_type == "category":
            for key, value in [
                *((v.lower(), v) for v in d.values),
                *((a.lower(), v) for a, v in d.value_aliases.items()),
            ]:
                categories[f"{name}{_KEY_SEPARATOR}{key}"] = value
    value_types = _VALUE_TYPE_NAMES
    table = _Items(
        enum=pl.Enum(list(names)),
        names=names,
        codes={name: code for code, name in enumerate(names)},
        is_number=flags(lambda d: d.value_type == "number"),
        takes_limits=flags(lambda d: d.limits),
        integer=flags(lambda d: d.integer),
        fraction_to_percent=flags(lambda d: d.fraction_to_percent),
        is_drug=flags(lambda d: d.kind == "drug"),
        takes_route=flags(lambda d: d.kind in ("drug", "blood_support")),
        reads_text=flags(lambda d: d.value_type != "number"),
        in_course=flags(lambda d: d.item not in PATIENT_ITEMS),
        describes_patient=flags(lambda d: d.item in ("infusion", *PATIENT_ITEMS)),
        value_type=np.array([value_types.index(d.value_type) for d in defs] + [-1], dtype=np.int8),
        low=bound(0),
        high=bound(1),
        differential_base=np.array(
            [names.index(d.differential_of) if d.differential_of else -1 for d in defs] + [-1], dtype=np.int64
        ),
        canonical_unit=tuple(d.unit or "" for d in defs),
        categories=categories,
        allowed={name: ", ".join(d.values) for name, d in vocabulary.items.items() if d.value_type == "category"},
        conversions={},
    )
    if len(_ITEM_TABLES) > 16:  # vocabularies are few (the packaged one is cached); never grow without bound
        _ITEM_TABLES.clear()
    _ITEM_TABLES[id(vocabulary)] = (vocabulary, table)
    return table


def _ranks(
    first: np.ndarray, second: np.ndarray | None = None, width: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the distinct non-negative keys ``first * width + second`` of the rows, ascending; each row's position among
    them; each key's first row): counted in one compiled pass when the keys are not much larger than the rows, else
    by sorting."""
    span = (int(first.max()) + 1) * width if first.size else 0
    if span < 4 * first.size + 65_536:
        return ranked(first, first[:0] if second is None else second, width, span)
    keys = first.astype(np.int64) * width + (0 if second is None else second)
    distinct, first_rows, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return distinct, inverse.reshape(-1), first_rows


@dataclass(frozen=True)
class _Labels:
    """A Categorical column's distinct labels (null as the last) and each row's position among them."""

    column: pl.Series
    names: list[str | None]
    position: np.ndarray

    def position_of(self, label: str | None) -> int:
        return self.names.index(label) if label in self.names else -1


def _coded_labels(column: pl.Series, coded: _Coded) -> _Labels:
    """:func:`_labels` of a column :func:`_categorical` numbered: its rows placed by that numbering (the positions
    are of another order than :func:`_labels` gives, and nothing depends on their order)."""
    if any(text and (text[0] in _WHITE_SPACE or text[-1] in _WHITE_SPACE) for text in coded.texts):
        return _labels(column, column.to_physical().to_numpy())  # (which strips them)
    return _Labels(column, coded.texts, coded.codes.astype(np.int64))


def _labels(column: pl.Series, codes: np.ndarray) -> _Labels:
    """The labels of a Categorical column (``codes``: its physical codes as read, floats with NaN for null when it
    has a null), stripped of surrounding blanks when one of its few distinct values has them. Category codes are
    global to the process (a long-lived server's codes grow far beyond its frames), so rows are placed by their
    codes' ranks, not by the codes. Each label is read from one row that has it (one small gather: Polars'
    ``unique`` runs a query of ~70 us)."""
    if codes.dtype.kind == "f":  # nulls take a code after every label's
        codes = np.where(np.isnan(codes), np.nanmax(codes, initial=-1) + 1, codes).astype(np.int64)
    _, position, holder = _ranks(codes)
    names = gather_rows(column, holder).to_list()  # each label read from its first row
    if any(name and (name[0] in _WHITE_SPACE or name[-1] in _WHITE_SPACE) for name in names):
        column = column.cast(pl.Utf8).str.strip_chars().cast(pl.Categorical)
        return _labels(column, column.to_physical().to_numpy())
    return _Labels(column, names, position)


_PREPARED: dict[tuple[int, tuple[tuple[str, pl.DataType], ...], bool, bool], tuple[_Items, list[pl.Expr]]] = {}


@dataclass(frozen=True)
class _Coded:
    """A text column as :func:`_categorical`'s compiled pass numbered it: each row's code among its distinct texts
    (``uint32``, in order of first appearance) and those texts."""

    codes: np.ndarray
    texts: list[str]


@dataclass(frozen=True)
class _Prepared:
    """The typed columns (:func:`_prepare`), every value read as a number (NaN: not one), each row's item code
    (``items.unknown`` where the item is not spelled canonically), and the columns it numbered itself."""

    frame: pl.DataFrame
    raw_num: np.ndarray
    item_code: np.ndarray
    coded: dict[str, _Coded]


def _prepare(raw: pl.DataFrame, items: _Items) -> _Prepared:
    """Every column typed once, in one select. Patient, unit and file become Categorical (rows are matched on
    them by code), ``item`` the vocabulary's Enum where it is spelled canonically (other spellings are resolved
    later, once each), and ``value`` is read as a number on every row (most rows are numbers). The expressions
    depend only on the input's schema, whether it lacks some unit, and the item table: built once for each
    (building them took a tenth of a bedside request). From :data:`_CODED_HEIGHT` rows on, the item and the
    number are read by compiled passes over the texts' chunks (:func:`_item_codes`, :func:`_value_numbers`)."""
    unit_nulls = "unit" in raw.columns and raw.get_column("unit").null_count() > 0
    coded = raw.height >= _CODED_HEIGHT
    key = (id(items), tuple(raw.schema.items()), unit_nulls, coded)
    cached = _PREPARED.get(key)
    if cached is None or cached[0] is not items:
        if len(_PREPARED) > 64:  # input layouts are few; never grow without bound
            _PREPARED.clear()
        cached = _PREPARED[key] = (items, _typing_expressions(raw.schema, items, unit_nulls, coded))
    # (In sequence: a select of these casts goes through Polars' query engine and thread pool, ~0.45 ms for a course
    # where one after the other they take ~0.22, and a batch chunk's ~0.16 ms 0.05.)
    frame = raw.select_seq(cached[1])
    if coded:  # (the passes read the texts' chunks as they are: the columns they make are of one chunk)
        item_code = _item_codes(frame.get_column("item"), items)
        raw_num = _value_numbers(frame.get_column("value"))
        frame.replace_column(frame.get_column_index("item"), gather_rows(items.enum_names, item_code).alias("item"))
        numbered = {}
        for name in _CODED_COLUMNS:
            column, numbered[name] = _categorical(frame.get_column(name))
            frame.replace_column(frame.get_column_index(name), column)
    # One chunk per column: the read columns come in chunks (file parts, row groups) and the added ones in
    # one, and Polars realigns every column of a frame whose chunks differ on every operation on it.
    frame = frame.rechunk()
    if coded:
        return _Prepared(frame, raw_num, item_code, {name: c for name, c in numbered.items() if c is not None})
    item_code = enum_codes(frame.get_column("item"))  # NaN: not spelled canonically
    if item_code.dtype.kind == "f":
        item_code = np.nan_to_num(item_code, nan=items.unknown)
    # (64-bit: the code of no item is one past the Enum's codes, and NumPy converts other indices to 64 bits
    # on every gather by them)
    return _Prepared(frame, frame.get_column("raw_num").to_numpy(), item_code.astype(np.int64), {})


def _item_codes(texts: pl.Series, items: _Items) -> np.ndarray:
    """Each row's item code (:attr:`_Items.unknown` where not spelled canonically, or null), as the cast of the
    texts to the items' Enum gives it: by a compiled pass over each chunk's texts (:func:`text_codes`), ~4 ns a row
    where the cast looks each row's text up at ~20 ns."""
    codes = np.empty(texts.len(), dtype=np.int64)
    start = 0
    for chunk in string_chunks(texts):
        end = start + chunk.views.shape[0] // 2
        text_codes(chunk.views, chunk.valid, chunk.bit, chunk.buffers, chunk.buffer_start, items.text_table,
                   codes[start:end])
        start = end
    return codes


def _value_numbers(texts: pl.Series) -> np.ndarray:
    """Every text read as a number (NaN: null or not a number), as ``cast(pl.Float64, strict=False)`` reads it:
    plain decimals by a compiled pass over each chunk's texts (:func:`decimals`), the few others by the cast."""
    numbers = np.empty(texts.len(), dtype=np.float64)
    others, start = [], 0
    for chunk in string_chunks(texts):
        end = start + chunk.views.shape[0] // 2
        others.append(decimals(chunk.views, chunk.valid, chunk.bit, numbers[start:end]) + start)
        start = end
    rows = np.concatenate(others) if others else np.zeros(0, dtype=np.int64)
    if rows.size:
        numbers[rows] = gather_rows(texts, rows).cast(pl.Float64, strict=False).to_numpy()  # (null: NaN)
    return numbers


#: The texts :func:`_prepare` makes Categorical, and the height from which it codes them itself (:func:`_categorical`)
#: rather than in its select: Polars' cast looks every row's text up in its global categories (~25 ns a row, a
#: tenth of a batch chunk's ingest for these two columns); below it, the cast inside the select costs less than
#: the pass's fixed costs.
_CODED_COLUMNS = ("patient_id", "unit")
_CODED_HEIGHT = 65_536


def _categorical(texts: pl.Series) -> tuple[pl.Series, _Coded | None]:
    """A String column as Categorical. Short texts (at most 12 bytes: patient ids, units) are coded by one compiled
    pass over their Arrow views (runs of one text, such as a patient's rows, never reach its hash table), and only
    their distinct values go through the categories; other columns, and columns with nulls, through Polars' cast.
    With the column, the pass's numbering (None: the cast's), which places the rows without reading the
    categories' codes back (:func:`_coded_labels`)."""
    if texts.null_count() == 0:
        coded = short_text_codes([chunk.views for chunk in string_chunks(texts)])
        if coded is not None:
            codes, first = coded
            distinct = texts.gather(first)
            return categorical_series(codes, distinct, texts.name), _Coded(codes, distinct.to_list())
    return texts.cast(pl.Categorical), None


def _typing_expressions(schema: pl.Schema, items: _Items, unit_nulls: bool, coded: bool) -> list[pl.Expr]:
    """The expressions of :func:`_prepare` for an input of this schema (``unit_nulls``: its unit column has
    nulls, read as no unit; a ``fill_null`` of a column without them still costs a pass over its texts; ``coded``:
    patient, unit and item are left as texts, for :func:`_categorical` and :func:`_item_codes`, and the value is
    not read as a number, for :func:`_value_numbers`)."""
    cols = schema.names()
    unit = pl.col("unit").cast(pl.Utf8)
    item, value = pl.col("item").cast(pl.Utf8), pl.col("value").cast(pl.Utf8)
    text_type = pl.Utf8 if coded else pl.Categorical
    exprs = [
        pl.col("patient_id").cast(pl.Utf8).cast(text_type),
        (item if coded else item.cast(items.enum, strict=False)).alias("item"),
        value,
        # NaN where not a number, as the NumPy read of a null gives: then that read is the column itself, not a copy
        # that fills each null (~10 ms for a batch chunk in fresh pages).
        *(() if coded else (value.cast(pl.Float64, strict=False).fill_null(float("nan")).alias("raw_num"),)),
        ((unit.fill_null("") if unit_nulls else unit) if "unit" in cols else pl.lit("")).cast(text_type).alias("unit"),
        (pl.col("source").cast(pl.Utf8) if "source" in cols else pl.lit(None, pl.Utf8)).alias("source"),
        pl.col("file").cast(pl.Categorical),
        pl.col("line").cast(pl.Int64),
        *((pl.col(c).cast(pl.Utf8) if c in cols else pl.lit(None, pl.Utf8)).alias(f"{c}_raw") for c in LIMIT_COLUMNS),
        (pl.col("route").cast(pl.Utf8) if "route" in cols else pl.lit(None, pl.Utf8)).alias("route_raw"),
    ]
    if "day" in cols and schema["day"].is_numeric():
        exprs += [pl.lit(None, pl.Utf8).alias("day_raw"), pl.col("day").cast(pl.Float64).alias("day_num")]
    elif "day" in cols:
        day = pl.col("day").cast(pl.Utf8)
        exprs += [day.alias("day_raw"), day.cast(pl.Float64, strict=False).alias("day_num")]
    else:
        exprs += [pl.lit(None, pl.Utf8).alias("day_raw"), pl.lit(None, pl.Float64).alias("day_num")]
    if "time" in cols and schema["time"] == pl.Datetime:
        time = pl.col("time")
        time = time.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if schema["time"].time_zone else time
        exprs += [pl.lit(None, pl.Utf8).alias("time_raw"), time.cast(pl.Datetime("us")).alias("time_dt")]
    elif "time" in cols:  # most files write one plain layout, read here for every row; the others later
        text = pl.col("time").cast(pl.Utf8).str.strip_chars()
        plain = text.str.to_datetime(format="%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
        exprs += [text.alias("time_raw"), plain.alias("time_dt")]
    else:
        exprs += [pl.lit(None, pl.Utf8).alias("time_raw"), pl.lit(None, pl.Datetime("us")).alias("time_dt")]
    return exprs


_Column = pl.Series | np.ndarray | Callable[[np.ndarray], pl.Series]


def _gathered(name: str, column: _Column, rows: np.ndarray) -> pl.Series:
    if isinstance(column, pl.Series):
        return column[rows].alias(name)
    if isinstance(column, np.ndarray):
        return pl.Series(name, column[rows], nan_to_null=column.dtype.kind == "f")
    return column(rows).alias(name)


# A check's message, fix and shown value (None: the row's value), built only when some row fails the check: the
# expressions of every check of a clean file cost a tenth of a bedside request's ingest.
_Describe = Callable[[], tuple[pl.Expr, pl.Expr, pl.Expr | None]]


class _Screen:
    """Refuses rows by marking them in a NumPy mask, not by filtering: millions of rows are copied once, at the end.

    Every check is a mask over all rows, applied in the order the checks are made, each to the rows not yet
    refused; only a check that some row fails builds a Polars frame (of its few rows) to format their error rows.
    ``columns`` holds what the checks computed (times, converted values...), for the output and the messages.
    """

    def __init__(self, prepared: _Prepared, items: _Items) -> None:
        self.frame = frame = prepared.frame
        self.height = frame.height
        # (The codes of the three by one query: each ``to_physical`` is one, ~20-50 µs whatever the rows; a select of
        # several runs them on the thread pool, at several times the cost.)
        # (The patients and units :func:`_prepare` numbered itself are placed by its numbering: their codes read
        # back and ranked were two more passes.)
        uncoded = [name for name in ("patient_id", "unit") if name not in prepared.coded]
        *codes, self.file_code = patient_codes_of(*(frame.get_column(name) for name in [*uncoded, "file"]))
        read = dict(zip(uncoded, codes, strict=True))
        self.patients, self.units = (
            _coded_labels(frame.get_column(name), prepared.coded[name])
            if name in prepared.coded
            else _labels(frame.get_column(name), read[name])
            for name in ("patient_id", "unit")
        )
        self.item_code = prepared.item_code
        # Every value read as a number, once; :func:`_numbers` reads some rows again into it.
        self.raw_num = prepared.raw_num
        patients, units = self.patients, self.units
        self.refused = np.zeros(self.height, dtype=np.bool_)
        self.errors: list[pl.DataFrame] = []
        self.columns: dict[str, _Column] = {"patient_id": patients.column, "unit": units.column}
        self.stated_lloq: tuple[np.ndarray, pl.Series] | None = None  # limits written as '<5' (rows, texts)
        self.limits: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # converted limits: (rows, values)
        # (rows, their value)
        self.value_texts: tuple[np.ndarray, pl.Series] = (np.zeros(0, np.int64), pl.Series([], dtype=pl.Utf8))
        self.unread_rows = np.zeros(0, np.int64)  # the rows whose value did not read as a number (ascending)
        # ``cat``: (rows, each row's pair of item and value, each pair's canonical text)
        self.canonical_texts: tuple[np.ndarray, np.ndarray, list[str | None]] = (
            np.zeros(0, np.int64), np.zeros(0, np.int64), []
        )

    def array(self, column: str) -> np.ndarray:
        """A prepared column as NumPy (numbers: NaN where null)."""
        return self.frame.get_column(column).to_numpy()

    def rows(self, rows: np.ndarray) -> pl.DataFrame:
        """These rows, with every prepared and computed column (for error messages)."""
        return self.frame[rows].with_columns(_gathered(n, c, rows) for n, c in self.columns.items())

    def check(
        self,
        failing: np.ndarray,
        field_name: str,
        describe: _Describe,
        severity: str = "error",
    ) -> None:
        """Refuse (or, with severity "warning", only report) the rows not yet refused where ``failing`` holds."""
        if not failing.any():
            return
        rows = np.flatnonzero(failing & ~self.refused)
        if rows.size == 0:
            return
        self.errors.append(_error_frame(self.rows(rows), field_name, *describe(), severity))
        if severity == "error":
            self.refused[rows] = True

    def refuse_rows(self, errors: pl.DataFrame, rows: np.ndarray) -> None:
        """Refuse rows found on a subset, with their already built error rows."""
        if len(rows):
            self.errors.append(errors)
            self.refused[rows] = True


def normalise_events(
    raw: pl.DataFrame, vocabulary: Vocabulary, limits: IngestLimits = IngestLimits()
) -> NormalisedEvents:
    """Validate and convert raw event rows. Never raises for bad rows: they go to ``errors``."""
    items = _items(vocabulary)
    screen = _Screen(_prepare(raw, items), items)
    patients = screen.patients
    no_patient = [patients.position_of(label) for label in (None, "")]
    if max(no_patient) >= 0:
        screen.check(
            np.isin(patients.position, no_patient),
            "patient_id",
            lambda: (
                pl.lit("patient_id is empty"),
                pl.lit("give every row the patient's identifier"),
                pl.col("patient_id"),
            ),
        )
    item = _resolve_items(screen, raw.get_column("item"), vocabulary, items)
    infusions = _resolve_times(screen, item, items, limits)
    reads_text = items.reads_text[item]
    _check_values_given(screen, reads_text)
    _numbers(screen, item, items, vocabulary)
    _non_numbers(screen, item, reads_text, items)
    _routes(screen, item, items)
    events, event_rows = _kept_events(screen)
    errors = screen.errors
    error_frame = (
        pl.concat([e.cast(ERROR_SCHEMA) for e in errors], how="vertical").sort(
            ["file", "line", "field"], nulls_last=True
        )
        if errors
        else _NO_ERRORS.clear()  # (a new empty frame in ~1 us; building one from the schema costs ~60 us)
    )
    patient_table = _patient_table(events, event_rows, screen, item, infusions, items)
    return NormalisedEvents(events=events, errors=error_frame, patients=patient_table)


def _resolve_items(screen: _Screen, raw_item: pl.Series, vocabulary: Vocabulary, items: _Items) -> np.ndarray:
    """Item names have few distinct spellings: rows not spelled canonically (most files have none) are resolved
    once per spelling. Returns every row's item code (``items.unknown`` where there is none). The item as written
    (``raw_item``, the input's column) is read only if some row is not spelled canonically: as a column of the
    prepared frame, it was copied with it (a batch chunk's item names, some 20 MB of fresh pages)."""
    item, code = screen.frame.get_column("item"), screen.item_code
    if not item.null_count():
        screen.columns["item"] = item
        return code
    item_raw = raw_item.cast(pl.Utf8).alias("item_raw")
    screen.columns["item_raw"] = item_raw  # (for the error rows' messages)
    unknown: list[str] = []
    if item.null_count() > item_raw.null_count():
        rows = np.flatnonzero((code == items.unknown) & ~_nulls(item_raw))
        spellings = item_raw[rows].to_list()
        resolved = {name: vocabulary.resolve_item(name) for name in dict.fromkeys(spellings)}
        names = [resolved[name] for name in spellings]
        item = item.clone().scatter(rows, pl.Series(names, dtype=items.enum))
        code = code.copy()
        code[rows] = [items.unknown if name is None else items.code(name) for name in names]
        unknown = [name for name, canonical in resolved.items() if canonical is None]
    screen.columns["item"] = item
    if item.null_count():
        fixes = {}
        for name in unknown:
            hint = vocabulary.nearest_item(name)
            fixes[name] = (f"did you mean '{hint}'? " if hint else "") + "valid items are listed in docs/vocabulary.md"
        screen.check(
            code == items.unknown,
            "item",
            lambda: (
                pl.format("unknown item '{}'", pl.col("item_raw")),
                pl.col("item_raw").replace_strict(
                    fixes, default="valid items are listed in docs/vocabulary.md", return_dtype=pl.Utf8
                ),
                pl.col("item_raw"),
            ),
        )
    return code


def _first_per_patient(screen: _Screen, rows: np.ndarray) -> np.ndarray:
    """Per patient (position), the first of ``rows`` in line order (-1: none). Ties keep the row order."""
    first = np.full(len(screen.patients.names), -1, dtype=np.int64)
    if rows.size:
        in_order = rows[np.argsort(screen.array("line")[rows], kind="stable")]
        patients, at = np.unique(screen.patients.position[in_order], return_index=True)
        first[patients] = in_order[at]
    return first


@dataclass(frozen=True)
class _Infusions:
    """Each patient's (position's) first infusion row: row (-1: none), day (NaN) and time."""

    row: np.ndarray
    day: np.ndarray
    infusion_time: pl.Series


def _resolve_times(screen: _Screen, item: np.ndarray, items: _Items, limits: IngestLimits) -> _Infusions:
    """Every row's day since infusion ``t`` (a column of the screen); returns each patient's first infusion."""
    frame = screen.frame
    day_raw, day_num = frame.get_column("day_raw"), frame.get_column("day_num")
    if day_raw.null_count() < screen.height:  # days written as text: a blank one is no day
        day = _reread_numbers(day_raw, day_num.to_numpy())
        has_day = ~np.isnan(day)
        unread = np.flatnonzero(~has_day)
        has_day[unread] = [_stripped(text) not in (None, "") for text in day_raw[unread].to_list()]
    else:
        day, has_day = day_num.to_numpy(), ~_nulls(day_num)
    time_raw, time_dt = frame.get_column("time_raw"), frame.get_column("time_dt")
    if time_raw.null_count() < screen.height:  # times written as text; the plain layout is read already
        has_time = (time_raw.is_not_null() & (time_raw != "")).to_numpy()
        rows = np.flatnonzero(_nulls(time_dt) & ~_nulls(time_raw))
        if rows.size:
            others = pl.select(parse_iso_times(pl.lit(time_raw[rows]))).to_series()
            time_dt = time_dt.clone().scatter(rows, others)
            screen.columns["time_dt"] = time_dt
    else:
        has_time = ~_nulls(time_dt)
    screen.check(
        ~has_day & ~has_time,
        "time",
        lambda: (
            pl.lit("row has neither time nor day"),
            pl.lit("give an ISO 8601 time (2024-05-01T08:00) or day since infusion (2.5)"),
            pl.lit(""),
        ),
    )
    def day_not_a_number() -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        day_text = pl.coalesce(pl.col("day_raw"), pl.lit("NaN"))
        fix = pl.lit("give days since infusion as a number, e.g. 2.5")
        return pl.format("day '{}' is not a number", day_text), fix, day_text

    day_missing = np.isnan(day)
    screen.check(has_day & day_missing, "day", day_not_a_number)
    time_missing = _nulls(time_dt)
    screen.check(
        ~has_day & has_time & time_missing,
        "time",
        lambda: (
            pl.format("time '{}' is not ISO 8601", pl.col("time_raw")),
            pl.lit("write times like 2024-05-01T08:00:00"),
            pl.col("time_raw"),
        ),
    )

    patient = screen.patients.position
    infusion_rows = np.flatnonzero((item == items.code("infusion")) & ~screen.refused)
    first = _first_per_patient(screen, infusion_rows)
    repeated = infusion_rows[first[patient[infusion_rows]] != infusion_rows]
    if repeated.size:
        lines = screen.array("line")
        screen.refuse_rows(
            _error_frame(
                screen.rows(repeated).with_columns(pl.Series("infusion_line", lines[first[patient[repeated]]])),
                "item",
                pl.format(
                    "second infusion row for patient '{}' (the first is at line {})",
                    pl.col("patient_id"),
                    pl.col("infusion_line"),
                ),
                pl.lit("keep one infusion row per patient; a re-infusion is a new course"),
                pl.col("item"),
            ),
            repeated,
        )
    has_infusion = first >= 0
    at_infusion = np.maximum(first, 0)
    infusion_day = np.where(has_infusion, day[at_infusion], np.nan)
    clocked = time_dt.null_count() < screen.height
    if clocked:
        infusion_time = time_dt[at_infusion].alias("infusion_time").scatter(np.flatnonzero(~has_infusion), None)
    else:  # a file of days (the usual case): no clock time anywhere
        infusion_time = pl.Series("infusion_time", [None] * first.size, dtype=pl.Datetime("us"))
    timed = ~_nulls(infusion_time)
    # A patient's fact is spread to its rows (a gather of every row, ~1 ms for a batch chunk) only where some
    # patient lacks it: when every patient has an infusion, or none has one with a clock time, the row checks on
    # them read no per-patient array.
    if not has_infusion.all():
        screen.check(
            ~has_infusion[patient],
            "item",
            lambda: (
                pl.format("patient '{}' has no infusion row, so day 0 is unknown", pl.col("patient_id")),
                pl.format("add a row: {},<time or day 0>,infusion,<product>", pl.col("patient_id")),
                pl.col("item"),
            ),
        )
    timed_row = timed[patient] if timed.any() else None
    screen.check(
        day_missing & ~timed_row if timed_row is not None else day_missing,
        "time",
        lambda: (
            pl.lit("row has a clock time but the patient's infusion row has only a day"),
            pl.lit("give the infusion row a time, or give this row a day"),
            pl.coalesce(pl.col("time_raw"), pl.col("time_dt").cast(pl.Utf8)),
        ),
    )
    from_time = np.zeros(0)  # (no clock time anywhere, or no infusion with one: NaN)
    if clocked and timed_row is not None:
        micros, patient_micros = (times.to_physical().fill_null(0).to_numpy() for times in (time_dt, infusion_time))
        # Divided by Polars (which multiplies by the reciprocal): the same days to the last bit as before.
        elapsed = pl.Series(micros - patient_micros[patient]) / 86_400e6
        from_time = np.where(timed_row & ~time_missing, elapsed.to_numpy(), np.nan)
    t = days_since_infusion(day, patient, np.nan_to_num(infusion_day, nan=0.0), from_time)
    screen.columns["t"] = t
    early = t < limits.earliest_day
    if early.any():  # (then only: the item's course flag is a gather of every row)
        screen.check(
            items.in_course[item] & early,
            "time",
            lambda: (
                pl.format(
                    "day {} is before the earliest plausible day ({} days before infusion)",
                    pl.col("t").round(2),
                    pl.lit(-limits.earliest_day),
                ),
                pl.lit("check the date or the infusion date"),
                pl.col("t"),
            ),
        )
    if limits.not_after is not None and clocked:
        screen.check(
            items.in_course[item] & (time_dt > limits.not_after).fill_null(False).to_numpy(),
            "time",
            lambda: (
                pl.lit("time is in the future"),
                pl.lit("check the date"),
                pl.coalesce(pl.col("time_raw"), pl.col("time_dt").cast(pl.Utf8)),
            ),
        )
    return _Infusions(first, infusion_day, infusion_time)


def _check_values_given(screen: _Screen, reads_text: np.ndarray) -> None:
    """A row needs a value; only the rows that do not read as numbers can be empty. The texts of those rows and of
    the rows of items that are not numbers (``reads_text``, read later) are gathered here once
    (``screen.value_texts``), and the rows that do not read as numbers kept (``screen.unread_rows``: the few that
    :func:`_numbers` looks at again, where a mask of every row was a pass for each of its checks)."""
    value = screen.frame.get_column("value")
    unread = np.isnan(screen.raw_num)
    rows = np.flatnonzero(unread | reads_text)
    texts = gather_rows(value, rows)
    screen.value_texts = (rows, texts)
    screen.unread_rows = rows[unread[rows]]
    empty = np.zeros(screen.height, dtype=np.bool_)
    empty[rows] = empty_or_null(texts)  # (a text that reads as a number is not empty)
    screen.check(
        empty,
        "value",
        lambda: (
            pl.format("value is empty for '{}'", pl.col("item")),
            pl.lit("give the observed value or drop the row"),
            None,
        ),
    )


def _merged(column: pl.Series, rows: np.ndarray, stated_rows: np.ndarray, stated: pl.Series) -> pl.Series:
    """``column`` at ``rows`` (ascending), with the values ``stated`` at ``stated_rows`` (ascending) instead."""
    values = column[rows].to_list()
    at = np.searchsorted(stated_rows, rows)
    found = at < stated_rows.size
    found[found] = stated_rows[at[found]] == rows[found]
    texts = stated.to_list()
    for i, j in zip(np.flatnonzero(found).tolist(), at[found].tolist(), strict=True):
        values[i] = texts[j]
    return pl.Series(column.name, values, dtype=column.dtype)


def _below_quantification(screen: _Screen, item: np.ndarray, items: _Items, unread: np.ndarray) -> np.ndarray:
    """``blq``: the value is below the limit of quantification, written ``<5`` or ``BLQ`` (limit in ``lloq``).
    Only items with limits accept it; the number after ``<`` becomes the limit. Only the few rows of number
    items that did not read as numbers (``unread``) are looked at."""
    blq = np.zeros(screen.height, dtype=np.bool_)
    rows = unread[items.takes_limits[item[unread]]]
    if rows.size == 0:
        return blq
    text = screen.frame.get_column("value")[rows].str.strip_chars().str.to_lowercase()
    below = text.str.extract(r"^<\s*([0-9.,]+)$", 1).str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    blq[rows] = (below.is_not_null() | text.is_in(_BLQ_WORDS)).fill_null(False).to_numpy()
    stated = np.flatnonzero(below.is_not_null().to_numpy())
    if stated.size:  # the limit written after '<' replaces the row's lloq (a few rows: kept apart)
        screen.stated_lloq = stated_lloq = (rows[stated], below[stated].cast(pl.Utf8))
        # (Not a closure over ``screen``: held in its own columns, that cycle kept every chunk's screen, hundreds
        # of MB in a batch worker, until a full collection.)
        lloq_raw = screen.frame.get_column("lloq_raw")
        screen.columns["lloq_raw"] = lambda at: _merged(lloq_raw, at, *stated_lloq)
    no_limit = np.zeros(screen.height, dtype=np.bool_)
    no_limit[rows] = below.is_null().to_numpy() & screen.frame.get_column("lloq_raw")[rows].is_null().to_numpy()
    screen.check(
        blq & no_limit,
        "lloq",
        lambda: (
            pl.format("'{}' for '{}' says below quantification but gives no limit", pl.col("value"), pl.col("item")),
            pl.lit("write the limit as '<LLOQ' (e.g. '<5') or fill the row's lloq column"),
            None,
        ),
    )
    return blq


@dataclass(frozen=True)
class _Conversions:
    """The conversion to its item's canonical unit of every distinct (item, unit) pair, and each row's pair.

    The tables are per pair and read through ``pair``: a float column per table over every row cost a tenth of
    ingest (see :mod:`tocsin.core.kernels_ingest`)."""

    pair: np.ndarray  # each row's pair
    scale: np.ndarray  # per pair; NaN: none (not a number row, or the unit does not convert)
    offset: np.ndarray
    per_kg: np.ndarray
    fraction: np.ndarray  # a bare number of an item such as FiO2: up to 1, a fraction (times 100)
    differential: np.ndarray
    unconverted: np.ndarray  # per pair: of a number item, with rows not refused, in a unit that does not convert
    problem: Callable[[np.ndarray], pl.Series]  # the reason, for the given rows

    def scale_of(self, rows: np.ndarray) -> np.ndarray:
        return self.scale[self.pair[rows]]

    def offset_of(self, rows: np.ndarray) -> np.ndarray:
        return self.offset[self.pair[rows]]


# One (item, unit) pair's conversion: scale, offset (NaN: none), per kg, % of another count, the problem if any.
_Conversion = tuple[float, float, bool, bool, str | None]


def _conversion_of(items: _Items, vocabulary: Vocabulary, code: int, unit_name: str) -> _Conversion:
    """The conversion of the item ``code`` in ``unit_name``, read once per item table (a bedside request has some
    sixty pairs: looked up on every request they were a twentieth of its ingest)."""
    known = items.conversions.get((code, unit_name))
    if known is not None:
        return known
    d = vocabulary.items[items.names[code]]
    read: _Conversion
    if d.fraction_to_percent and unit_name == "":
        read = (1.0, 0.0, False, False, None)  # bare numbers: <= 1 read as a fraction (in the conversion pass)
    elif d.differential_of and unit_name.strip() == "%":
        read = (np.nan, np.nan, False, True, None)  # % of another count: converted with that count at the same time
    else:
        try:
            conversion = conversion_for(unit_name, d.unit or "", d.per_kg_unit, d.molar_mass)
            read = (conversion.scale, conversion.offset, conversion.per_kg, False, None)
        except UnitError as exc:
            read = (np.nan, np.nan, False, False, str(exc))
    if len(items.conversions) > 4_096:  # a server's inputs may spell units in many ways: never grow without bound
        items.conversions.clear()
    items.conversions[(code, unit_name)] = read
    return read


def _conversions(screen: _Screen, item: np.ndarray, items: _Items, vocabulary: Vocabulary) -> _Conversions:
    """Conversions looked up per distinct (item, unit) of the number rows not refused (`conversion_for` is
    cached; an unusual unit may build the ucumvert registry, so refused rows' units are not looked at)."""
    units = screen.units
    width = len(units.names)
    pairs, pair, _ = _ranks(item, units.position, width)
    of_item = pairs // width
    wanted = marked(pair, ~screen.refused, pairs.size) & items.is_number[of_item]  # (the item's flag per pair)
    scale, offset = np.full(pairs.size, np.nan), np.full(pairs.size, np.nan)
    per_kg, differential = np.zeros(pairs.size, dtype=np.bool_), np.zeros(pairs.size, dtype=np.bool_)
    problems: list[str | None] = [None] * pairs.size
    at = np.flatnonzero(wanted)
    if at.size:
        code, unit = np.divmod(pairs[at], width)
        read = [
            _conversion_of(items, vocabulary, c, units.names[u] or "")
            for c, u in zip(code.tolist(), unit.tolist(), strict=True)
        ]
        scale[at], offset[at], per_kg[at], differential[at] = np.array([r[:4] for r in read], dtype=np.float64).T
        for i, r in zip(at.tolist(), read, strict=True):
            problems[i] = r[4]

    def problem(rows: np.ndarray) -> pl.Series:
        return pl.Series([problems[p] for p in pair[rows]], dtype=pl.Utf8)

    fraction = items.is_number[of_item] & items.fraction_to_percent[of_item] & (pairs % width == units.position_of(""))
    unconverted = wanted & np.isnan(scale) & ~differential
    return _Conversions(pair, scale, offset, per_kg, fraction, differential, unconverted, problem)


def _numbers(screen: _Screen, item: np.ndarray, items: _Items, vocabulary: Vocabulary) -> None:
    """Number rows: read, converted to the item's canonical unit (per kg with the patient's first weight),
    with their limits, then checked against the item's plausible range."""
    # The rows of number items that did not read as numbers, read again (blanks, a decimal comma): few, where the
    # items' flags of every row were a pass of their own.
    retried = screen.unread_rows[items.is_number[item[screen.unread_rows]]]
    raw_num = _reread_numbers(screen.frame.get_column("value"), screen.raw_num, retried)
    unread = retried[np.isnan(raw_num[retried])]
    blq = _below_quantification(screen, item, items, unread)
    screen.columns["blq"] = blq
    if unread.size:
        not_a_number = np.zeros(screen.height, dtype=np.bool_)
        not_a_number[unread] = ~blq[unread]
        screen.check(
            not_a_number,
            "value",
            lambda: (
                pl.format("'{}' is not a number for '{}'", pl.col("value"), pl.col("item")),
                pl.lit("give a plain number"),
                None,
            ),
        )
    conversions = _conversions(screen, item, items, vocabulary)
    # The problem text is made only for the failing rows (a text per row would be copied millions of times).
    screen.columns["unit_problem"] = conversions.problem
    if conversions.unconverted.any():  # (then only: spread to the rows, a gather of every row)
        screen.check(
            conversions.unconverted[conversions.pair],
            "unit",
            lambda: (
                pl.format("{} (item '{}')", pl.col("unit_problem"), pl.col("item")),
                pl.lit("use a UCUM unit listed for the item in docs/vocabulary.md"),
                pl.col("unit"),
            ),
        )

    patient = screen.patients.position
    weighed = _first_per_patient(screen, np.flatnonzero((item == items.code("weight")) & ~screen.refused))
    at = np.maximum(weighed, 0)
    patient_weight_kg = np.where(weighed >= 0, raw_num[at] * conversions.scale_of(at), np.nan)
    # (Looked at on the rows of per-kg pairs only: few, where gathers over every row cost a chunk some 5 ms; and
    # only when some pair is per kg: the pair of every row is a pass of its own.)
    if conversions.per_kg.any():
        per_kg_rows = np.flatnonzero(conversions.per_kg[conversions.pair])
        is_number = items.is_number[item[per_kg_rows]]
        unweighed = per_kg_rows[is_number & np.isnan(patient_weight_kg)[patient[per_kg_rows]]]
        if unweighed.size:
            _check_weights(screen, unweighed, item, items)

    # Per kg: times the weight (NaN without one). A bare number (no unit) of an item such as FiO2 may be a fraction.
    # Rows that are not numbers read as NaN: their pairs have no conversion (NaN), whatever their text read as.
    # The same pass gives each value's failure of the range and whole-number checks (below).
    c = conversions
    bounds = (item, items.low, items.high, items.integer)
    num, failure = converted(raw_num, c.pair, c.scale, c.offset, c.per_kg, c.fraction, patient, patient_weight_kg,
                             *bounds)  # rounded
    _limits(screen, item, items, conversions)
    derived = _differentials(screen, item, items, raw_num, conversions, num)
    if derived is not num:  # (a count given as % of another: its value, and so its checks, are new)
        num, failure = derived, value_failures(derived, *bounds)
    screen.columns["num"] = num
    screen.columns |= {  # the bounds of the item, read for the failing rows only
        "_low": lambda rows: pl.Series(items.low[item[rows]], nan_to_null=True),
        "_high": lambda rows: pl.Series(items.high[item[rows]], nan_to_null=True),
        "_canonical_unit": lambda rows: pl.Series([items.canonical_unit[c] for c in item[rows]], dtype=pl.Utf8),
    }
    if not failure.any():  # (the usual case: the two checks' masks are of every row)
        return
    screen.check(
        failure == OUTSIDE_RANGE,
        "value",
        lambda: (
            pl.format(
                "{} {} is implausible for '{}' (= {} {}; accepted {}..{} {})",
                pl.col("value"),
                pl.col("unit"),
                pl.col("item"),
                pl.col("num"),
                pl.col("_canonical_unit"),
                pl.col("_low"),
                pl.col("_high"),
                pl.col("_canonical_unit"),
            ),
            pl.lit("check the value and its unit"),
            None,
        ),
    )
    screen.check(
        failure == NOT_WHOLE,
        "value",
        lambda: (
            pl.format("'{}' must be a whole number for '{}'", pl.col("value"), pl.col("item")),
            pl.lit("give the score as an integer"),
            None,
        ),
    )


def _check_weights(screen: _Screen, rows: np.ndarray, item: np.ndarray, items: _Items) -> None:
    """The number rows in a per-kg unit of a patient without a weight (``rows``): a vasopressor rate is refused (its
    rate is part of the grade), a drug dose kept with a warning (an administration without its mg dose still
    matters for the fever waiver). Made only when there are such rows: the checks' masks are of every row."""
    needs_weight, is_drug = np.zeros(screen.height, dtype=np.bool_), np.zeros(screen.height, dtype=np.bool_)
    needs_weight[rows] = True
    is_drug[rows] = items.is_drug[item[rows]]
    screen.check(
        needs_weight & ~is_drug,
        "unit",
        lambda: (
            pl.format("'{}' in {} needs the patient's weight", pl.col("item"), pl.col("unit")),
            pl.lit("add a 'weight' row (kg) for the patient, or give the absolute rate"),
            pl.col("unit"),
        ),
    )
    screen.check(
        needs_weight & is_drug,
        "unit",
        lambda: (
            pl.format(
                "'{}' {} {} kept, but its mg dose is unknown without the patient's weight",
                pl.col("item"),
                pl.col("value"),
                pl.col("unit"),
            ),
            pl.lit("add a 'weight' row (kg) to compute the mg dose"),
            pl.col("unit"),
        ),
        severity="warning",
    )


def _limits(screen: _Screen, item: np.ndarray, items: _Items, conversions: _Conversions) -> None:
    """Reference and quantification limits, read as numbers and converted like the row's value (read, checked
    and converted on the rows that give them: work over a column of nulls still costs a pass over every row)."""
    for column in LIMIT_COLUMNS:
        raw = f"{column}_raw"
        texts = screen.frame.get_column(raw)
        rows = np.flatnonzero(~_nulls(texts))
        if column == "lloq" and screen.stated_lloq is not None:
            rows = np.union1d(rows, screen.stated_lloq[0])
            written = _merged(texts, rows, *screen.stated_lloq)
        else:
            written = None
        screen.limits[column] = (rows, np.zeros(0))
        if rows.size == 0:  # (the usual case: even an empty gather costs ~40 us)
            continue
        if written is None:
            written = texts[rows]
        given = _read_numbers(written)
        read = ~np.isnan(given)
        takes_limits = items.takes_limits[item[rows]]
        unreadable = np.zeros(screen.height, dtype=np.bool_)
        unreadable[rows] = [_stripped(text) != "" for text in written.to_list()] & ~read
        screen.check(
            unreadable,
            column,
            lambda: (
                pl.format("{} '{}' is not a number", pl.lit(column), pl.col(raw)),
                pl.lit(f"give {column} as a plain number in the row's unit, or leave it empty"),
                pl.col(raw),
            ),
        )
        ignored = np.zeros(screen.height, dtype=np.bool_)
        ignored[rows] = read & ~takes_limits
        screen.check(
            ignored,
            column,
            lambda: (
                pl.format("'{}' takes no {} (ignored)", pl.col("item"), pl.lit(column)),
                pl.lit(f"leave {column} empty for this item"),
                pl.col(raw),
            ),
            severity="warning",
        )
        in_unit = rounded(given * conversions.scale_of(rows) + conversions.offset_of(rows))
        screen.limits[column] = (rows, np.where(takes_limits, in_unit, np.nan))


def _differentials(
    screen: _Screen,
    item: np.ndarray,
    items: _Items,
    raw_num: np.ndarray,
    conversions: _Conversions,
    num: np.ndarray,
) -> np.ndarray:
    """A count given as % of another (ANC as % of WBC) becomes absolute with that count at the same time (the
    latest such row); returns the values with those counts (``num`` itself when there are none)."""
    if not conversions.differential.any():  # (per pair: spread to every row only when some pair is a differential)
        return num
    is_differential = conversions.differential[conversions.pair]
    if not is_differential.any():
        return num
    screen.check(
        is_differential & ((raw_num < 0) | (raw_num > 100)),
        "value",
        lambda: (
            pl.format("{} % is not a possible share for '{}'", pl.col("value"), pl.col("item")),
            pl.lit("give a percentage between 0 and 100, or the absolute count"),
            None,
        ),
    )
    rows = np.flatnonzero(is_differential & ~screen.refused)
    if rows.size == 0:
        return num
    patient, t, base = screen.patients.position, screen.columns["t"], items.differential_base
    bases = np.flatnonzero(np.isin(item, base[base >= 0]) & ~screen.refused & ~np.isnan(num))
    latest = {(patient[r], t[r], item[r]): r for r in bases.tolist()}
    found = np.array([latest.get((patient[r], t[r], base[item[r]]), -1) for r in rows.tolist()], dtype=np.int64)
    derived = found >= 0
    num = num.copy()
    num[rows[derived]] = raw_num[rows[derived]] / 100 * num[found[derived]]
    num = rounded(num)
    missing = rows[~derived]
    base_item = pl.Series("base_item", [items.names[base[c]] for c in item[missing]], dtype=pl.Utf8)
    screen.refuse_rows(
        _error_frame(
            screen.rows(missing).with_columns(base_item),
            "unit",
            pl.format("'{}' given in % needs the {} measured at the same time", pl.col("item"), pl.col("base_item")),
            pl.format("give the absolute count (10*9/L), or add the {} row at the same time", pl.col("base_item")),
            pl.col("unit"),
        ),
        missing,
    )
    return num


def _scattered(name: str, rows: np.ndarray, values: list[str | None], height: int) -> pl.Series:
    """A text column with ``values`` at ``rows`` and null elsewhere, in one gather."""
    at = np.full(height, len(values), dtype=np.uint32)
    at[rows] = np.arange(len(values))
    return gather_rows(pl.Series(name, [*values, None], dtype=pl.Utf8), at)


def _non_numbers(screen: _Screen, item: np.ndarray, reads_text: np.ndarray, items: _Items) -> None:
    """Categories, booleans, texts and dates (the rows where ``reads_text``): read in Python once per distinct
    (item, value) pair, in the order the pairs first appear, and written back by row number (``cat``). The pairs are
    found by their codes (a batch's tens of thousands of such rows have some dozens of pairs; read row by row in
    Python they were a sixth of ingest)."""
    others = np.flatnonzero(reads_text & ~screen.refused)
    gathered, texts = screen.value_texts
    at_text = np.searchsorted(gathered, others)
    pair_of_row, first_rows = _distinct_pairs(item[others], gather_rows(texts, at_text))
    codes = item[others[first_rows]]
    values = gather_rows(texts, at_text[first_rows]).to_list()
    types = items.value_type[codes]
    reader = _READER_OF_TYPE[types]
    canonical: list[str | None] = [None] * first_rows.size
    for number, read in enumerate((_category_values, _boolean_values, _texts)):
        at = np.flatnonzero(reader == number)
        if at.size == 0:
            continue
        read_values, refused, describe = read(codes[at].tolist(), [values[i] for i in at], types[at], items)
        for i, text, bad in zip(at.tolist(), read_values, refused, strict=True):
            canonical[i] = None if bad else text
        refused_pair = np.zeros(first_rows.size, dtype=np.bool_)
        refused_pair[at[np.array(refused, dtype=np.bool_)]] = True
        offending = others[refused_pair[pair_of_row]]
        if offending.size:
            screen.refuse_rows(_error_frame(screen.rows(offending), "value", *describe()), offending)
    at_pair = np.full(screen.height, len(canonical), dtype=np.uint32)  # a row of no pair reads as null
    at_pair[others] = pair_of_row
    screen.columns["cat"] = gather_rows(pl.Series("cat", [*canonical, None], dtype=pl.Utf8), at_pair)
    screen.canonical_texts = (others, pair_of_row, canonical)


#: Up to this many rows, the (item, value) pairs are numbered in Python (a bedside course has some hundreds).
_FEW_PAIRED_ROWS = 2_048


def _distinct_pairs(codes: np.ndarray, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's distinct (item code, value) pair, numbered in the order the pairs first appear, and each pair's
    first row. The values are told apart by their codes in an Enum of their distinct texts (null: a code of its
    own), not a Categorical: the process-wide category table would keep every free text of a server's requests."""
    if codes.size <= _FEW_PAIRED_ROWS:  # (the Polars calls below cost ~0.15 ms even for a few rows)
        number: dict[tuple[int, str | None], int] = {}
        pair_of_row, first_rows = np.empty(codes.size, dtype=np.int64), []
        for row, key in enumerate(zip(codes.tolist(), values.to_list(), strict=True)):
            pair_of_row[row] = pair = number.setdefault(key, len(number))
            if pair == len(first_rows):
                first_rows.append(row)
        return pair_of_row, np.array(first_rows, dtype=np.int64)
    distinct = values.drop_nulls().unique()
    value_code = enum_codes(values.cast(pl.Enum(distinct)))
    if value_code.dtype.kind == "f":  # a null value: after every text
        value_code = np.where(np.isnan(value_code), distinct.len(), value_code)
    keys = codes.astype(np.int64) << 32 | value_code.astype(np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # pairs numbered by first appearance
    number = np.empty(order.size, dtype=np.int64)
    number[order] = np.arange(order.size)
    return number[inverse.ravel()], first[order]


# Canonical text, refused, and the error's message and fix (expressions, built only when some row is refused: building
# one costs tens of microseconds, a sizeable part of a bedside request).
# Which reader of _non_numbers (category, boolean, text) reads each value type, by its position in VALUE_TYPES
# (-1: numbers, read apart).
_READER_OF_TYPE = np.array(
    [{"category": 0, "boolean": 1, "text": 2, "date": 2}.get(name, -1) for name in _VALUE_TYPE_NAMES], dtype=np.int8
)
_ValueRead = tuple[list[str | None], list[bool], Callable[[], tuple[pl.Expr, pl.Expr]]]


def _category_values(codes: list[int], values: list[str | None], value_type: np.ndarray, items: _Items) -> _ValueRead:
    pairs = list(dict.fromkeys(zip(codes, values, strict=True)))
    keys = _keys([value for _, value in pairs], separators=True)
    read = {
        pair: None if key is None else items.categories.get(f"{items.names[pair[0]]}{_KEY_SEPARATOR}{key}")
        for pair, key in zip(pairs, keys, strict=True)
    }
    canonical = [read[pair] for pair in zip(codes, values, strict=True)]

    def describe() -> tuple[pl.Expr, pl.Expr]:
        allowed = pl.col("item").cast(pl.Utf8).replace_strict(items.allowed, default="", return_dtype=pl.Utf8)
        return (
            pl.format("'{}' is not an allowed value of '{}'", pl.col("value"), pl.col("item")),
            pl.format("use one of: {}", allowed),
        )

    return canonical, [text is None for text in canonical], describe


_BOOLEANS = {**dict.fromkeys(_TRUE, "true"), **dict.fromkeys(_FALSE, "false")}


def _boolean_values(codes: list[int], values: list[str | None], value_type: np.ndarray, items: _Items) -> _ValueRead:
    distinct = list(dict.fromkeys(values))
    read = {value: _BOOLEANS.get(key) for value, key in zip(distinct, _keys(distinct), strict=True)}
    canonical = [read[value] for value in values]

    def describe() -> tuple[pl.Expr, pl.Expr]:
        return pl.format("'{}' is not true/false for '{}'", pl.col("value"), pl.col("item")), pl.lit(
            "use true or false"
        )

    return canonical, [text is None for text in canonical], describe


def _texts(codes: list[int], values: list[str | None], value_type: np.ndarray, items: _Items) -> _ValueRead:
    texts = [_stripped(value) for value in values]
    refused = [text == "" for text in texts]
    is_date = value_type == _VALUE_TYPE_NAMES.index("date")
    if is_date.any():  # read by Polars, on the same column as before (it infers the layout from the first date)
        unread = pl.Series(texts, dtype=pl.Utf8).str.to_date(strict=False).is_null().to_list()
        refused = [bad or (date and missing) for bad, date, missing in zip(refused, is_date, unread, strict=True)]

    def describe() -> tuple[pl.Expr, pl.Expr]:
        blank = pl.col("value").str.strip_chars() == ""
        message = (
            pl.when(blank)
            .then(pl.format("value is empty for '{}'", pl.col("item")))
            .otherwise(pl.format("'{}' is not an ISO date for '{}'", pl.col("value"), pl.col("item")))
        )
        fix = (
            pl.when(blank)
            .then(pl.lit("give the observed value or drop the row"))
            .otherwise(pl.lit("write dates like 1961-04-30"))
        )
        return message, fix

    return texts, refused, describe


_ROUTE_SPELLINGS = {**{route: route for route in ROUTES}, **_ROUTE_ALIASES}


def _routes(screen: _Screen, item: np.ndarray, items: _Items) -> None:
    """The route of a drug or blood-support row (it decides, e.g., whether a steroid counts as systemic). Read on
    the rows that give a route (mostly the few drug rows)."""
    route_raw = screen.frame.get_column("route_raw")
    if route_raw.null_count() == screen.height:
        screen.columns["route"] = route_raw.alias("route")
        return
    rows = np.flatnonzero(~_nulls(route_raw))
    keys = _keys(route_raw[rows].to_list())
    read = [_ROUTE_SPELLINGS.get(key) for key in keys]
    given = np.array([key != "" for key in keys], dtype=np.bool_)
    takes_route = items.takes_route[item[rows]]
    unknown, ignored = np.zeros(screen.height, dtype=np.bool_), np.zeros(screen.height, dtype=np.bool_)
    unknown[rows] = given & np.array([route is None for route in read], dtype=np.bool_)
    ignored[rows] = given & ~takes_route
    screen.check(
        unknown,
        "route",
        lambda: (
            pl.format("route '{}' is not known", pl.col("route_raw")),
            pl.lit(f"use one of: {', '.join(ROUTES)}"),
            pl.col("route_raw"),
        ),
    )
    screen.check(
        ignored,
        "route",
        lambda: (
            pl.format("'{}' takes no route (ignored)", pl.col("item")),
            pl.lit("give a route only for drugs and blood support"),
            pl.col("route_raw"),
        ),
        severity="warning",
    )
    routes = [route if kept else None for route, kept in zip(read, given & takes_route, strict=True)]
    screen.columns["route"] = _scattered("route", rows, routes, screen.height)


#: One null number, repeated into a column of no limits.
_NO_NUMBER = pl.Series([None], dtype=pl.Float64)


def _kept_events(screen: _Screen) -> tuple[pl.DataFrame, np.ndarray | slice]:
    """The canonical events (rows not refused) and the row each one comes from (``slice(None)``: every row, in
    place; its arrays are then read as they are, not gathered: a gather of a batch's height costs fresh pages).
    Each patient's rows together, in time order, rows at the same time in file and line order — unless already
    so, as files usually are. (Patients need not be in any particular order; ties are broken by file and line,
    never by position, so row order never changes a result.)"""
    columns, frame = screen.columns, screen.frame

    def numbers(name: str) -> pl.Series:
        return numeric_series(columns[name], name, nan_to_null=True)

    def limit(name: str) -> pl.Series:
        rows, values = screen.limits[name]
        if rows.size == 0:
            # (pl.repeat runs a query, ~500 us even for a few rows; this is a constant column in ~3 us)
            return _NO_NUMBER.new_from_index(0, screen.height).alias(name)
        full = np.full(screen.height, np.nan)
        full[rows] = values
        return numeric_series(full, name, nan_to_null=True)

    events = frame_from(
        [
            columns["patient_id"],
            numbers("t"),
            columns["item"],
            numbers("num"),
            columns["cat"],
            *(limit(c) for c in LIMIT_COLUMNS),
            numeric_series(columns["blq"], "blq"),
            columns["route"],
            frame.get_column("value").alias("orig_value"),
            columns["unit"].alias("orig_unit"),
            frame.get_column("source"),
            frame.get_column("file"),
            frame.get_column("line"),
        ]
    )
    kept: np.ndarray | slice = slice(None)  # every row (most files): the arrays as they are, not copies
    if screen.refused.any():
        kept = np.flatnonzero(~screen.refused)
        events = events[kept]
    if events.height < 2:
        return events, kept
    patient = screen.patients.position[kept]
    t, line, file = columns["t"][kept], screen.array("line")[kept], screen.file_code[kept]
    if grouped_in_order(patient, t, file, line, len(screen.patients.names)):
        return events, kept
    rows = np.arange(screen.height) if isinstance(kept, slice) else kept
    ordered = events.with_columns(pl.Series("_row", rows)).sort(
        [pl.col("patient_id"), pl.col("t"), pl.col("file").cast(pl.Utf8), pl.col("line")]
    )
    return ordered.drop("_row"), ordered.get_column("_row").to_numpy()


def _patient_table(
    events: pl.DataFrame,
    rows: np.ndarray | slice,
    screen: _Screen,
    item: np.ndarray,
    infusions: _Infusions,
    items: _Items,
) -> pl.DataFrame:
    """Per patient (in order of the events; ``rows``: where each event comes from): infusion time (if the file has
    clock times), product, age, weight, sex, disease, each from the patient's first row of that item. Age comes
    from an ``age`` row, else from ``birth_date`` and the infusion date."""
    patient, codes = screen.patients.position[rows], item[rows]
    starts = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]]) if events.height else np.zeros(0, np.int64)
    candidates = np.flatnonzero(items.describes_patient[codes])
    # (read from the texts, not the frame: a gather costs ~40 us)
    given, pair_of_row, canonical = screen.canonical_texts
    sources = candidates if isinstance(rows, slice) else rows[candidates]
    at = np.minimum(np.searchsorted(given, sources), max(given.size - 1, 0))
    found = (given[at] == sources).tolist() if given.size else [False] * sources.size
    pairs = pair_of_row[at].tolist() if given.size else [0] * sources.size
    texts = [canonical[pair] if hit else None for pair, hit in zip(pairs, found, strict=True)]
    runs = np.searchsorted(starts, candidates, side="right") - 1  # each candidate's patient (ascending)
    candidate_codes = codes[candidates]

    def picked(name: str) -> np.ndarray:
        """Per patient, the candidate of the item's first row (-1: none). (By arrays: a batch chunk has some 80,000
        candidates, which a loop in Python took ~1.7 ms to walk.)"""
        at = np.flatnonzero(candidate_codes == items.code(name))
        first = np.full(starts.size, -1, dtype=np.int64)
        if at.size:
            run = runs[at]
            leading = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])  # each patient's first of them
            first[run[leading]] = at[leading]
        return first

    # The texts are one Series (a Series of strings costs ~20 µs to build, however short), each column a gather of
    # it: a patient without the item gets the null after the texts.
    text_source = pl.Series([*texts, None], dtype=pl.Utf8)
    number_source = np.append(screen.columns["num"][sources], np.nan)

    def column(name: str, dtype: type[pl.DataType]) -> pl.Series:
        at = picked(name)
        if dtype is pl.Float64:  # NaN: no number
            return numeric_series(number_source[at], name, nan_to_null=True)
        return gather_rows(text_source, np.where(at < 0, len(texts), at)).alias(name)

    infusion_time = infusions.infusion_time
    table = frame_from(
        [
            gather_rows(events.get_column("patient_id"), starts),
            gather_rows(infusion_time, patient[starts])
            if infusion_time.null_count() < infusion_time.len()
            else pl.Series("infusion_time", [None], dtype=infusion_time.dtype).new_from_index(0, starts.size),
            column("infusion", pl.Utf8).alias("product"),
            column("age", pl.Float64).alias("age_years"),
            column("weight", pl.Float64),
            column("sex", pl.Utf8),
            column("disease", pl.Utf8),
        ]
    )
    birth_date = column("birth_date", pl.Utf8)
    if birth_date.null_count() == birth_date.len():
        return table
    age_from_birth = (
        pl.col("infusion_time").dt.date() - pl.lit(birth_date).str.to_date(strict=False)
    ).dt.total_days() / 365.2425
    return table.with_columns(pl.coalesce(pl.col("age_years"), age_from_birth).alias("age_years"))
