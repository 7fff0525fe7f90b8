"""Event validation and normalisation: raw long-format rows -> canonical, unit-safe events.

Input is a Polars frame with the columns of the event format (``patient_id``, ``time`` and/or ``day``,
``item``, ``value``, ``unit``, optional ``source``, ``note``) plus ``file`` and ``line`` added by the
reader so that every error can name where it came from. Everything happens column-wise: item aliases,
value parsing, unit conversion (one join against a small table of conversions), plausibility ranges
and time checks. Each problem becomes a row of the error table (file, line, patient, field, value,
message, fix); strict callers refuse the input if there is any, lenient callers grade the rest.

The original value and unit are kept beside the canonical ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from tocsin.core.lookup import per_patient
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
_TRUE = ("true", "yes", "y", "1", "present")
_FALSE = ("false", "no", "n", "0", "absent")
# Canonical values are rounded so that a threshold stated in one unit is met exactly by its
# equivalent in another (100.4 °F is 38.0 °C, not 37.99999999).
_DECIMALS = 6


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


def _strip_labels(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Strip surrounding blanks from Categorical columns, only if one of their few distinct values has them."""
    padded = [c for c in columns if df.select(pl.col(c).unique().cast(pl.Utf8).str.contains(r"^\s|\s$").any()).item()]
    return df.with_columns(pl.col(c).cast(pl.Utf8).str.strip_chars().cast(pl.Categorical) for c in padded)


def parse_numbers(df: pl.DataFrame, text: str, out: str, only: pl.Expr | None = None) -> pl.DataFrame:
    """``out`` = ``text`` read as a number (on the rows where ``only`` holds). Values that do not parse at
    first (blanks around them, a decimal comma) are cleaned and read again; only those rows pay for the
    cleaning (string work over millions of rows cost more than the parse itself)."""
    # Parsed, then NaN ('nan' parses) made null, in two steps: in one expression the parse ran once per use.
    df = df.with_columns(pl.col(text).cast(pl.Float64, strict=False).alias(out))
    df = df.with_columns(pl.col(out).fill_nan(None))
    retry = pl.col(out).is_null() & pl.col(text).is_not_null() & (only if only is not None else pl.lit(True))
    rows = df.select(retry.arg_true()).to_series()
    if rows.len():
        cleaned = (
            df.get_column(text)
            .gather(rows)
            .str.strip_chars()
            .str.replace(",", ".", literal=True)
            .cast(pl.Float64, strict=False)
            .fill_nan(None)
        )
        df = df.with_columns(df.get_column(out).clone().scatter(rows, cleaned))
    return df


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


def _prepare(raw: pl.DataFrame) -> pl.DataFrame:
    """Uniform column types. Patient and unit become Categorical: rows are matched on them by code
    (infusion, unit conversion), and a change of patient is a code comparison.
    ``item`` needs no cleaning here (each distinct spelling is resolved once), nor does ``value`` (each
    value type cleans what it reads)."""
    cols = raw.columns
    schema = raw.schema
    exprs = [
        pl.col("patient_id").cast(pl.Utf8).cast(pl.Categorical),
        pl.col("item").cast(pl.Utf8),
        pl.col("value").cast(pl.Utf8),
        (pl.col("unit").cast(pl.Utf8).fill_null("") if "unit" in cols else pl.lit(""))
        .cast(pl.Categorical)
        .alias("unit"),
        (pl.col("source").cast(pl.Utf8) if "source" in cols else pl.lit(None, pl.Utf8)).alias("source"),
        pl.col("file").cast(pl.Categorical),
        pl.col("line").cast(pl.Int64),
        *((pl.col(c).cast(pl.Utf8) if c in cols else pl.lit(None, pl.Utf8)).alias(f"{c}_raw") for c in LIMIT_COLUMNS),
        (pl.col("route").cast(pl.Utf8) if "route" in cols else pl.lit(None, pl.Utf8)).alias("route_raw"),
    ]
    if "day" in cols and schema["day"].is_numeric():
        exprs += [
            pl.col("day").is_not_null().alias("has_day"),
            pl.lit(None, pl.Utf8).alias("day_raw"),
            pl.col("day").cast(pl.Float64).fill_nan(None).alias("day_num"),
        ]
    elif "day" in cols:  # read from the prepared text below
        exprs += [pl.lit(None, pl.Boolean).alias("has_day"), pl.col("day").cast(pl.Utf8).alias("day_raw")]
    else:
        exprs += [
            pl.lit(False).alias("has_day"),
            pl.lit(None, pl.Utf8).alias("day_raw"),
            pl.lit(None, pl.Float64).alias("day_num"),
        ]
    if "time" in cols and schema["time"] == pl.Datetime:
        time = pl.col("time")
        time = time.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if schema["time"].time_zone else time
        exprs += [
            pl.col("time").is_not_null().alias("has_time"),
            pl.lit(None, pl.Utf8).alias("time_raw"),
            time.cast(pl.Datetime("us")).alias("time_dt"),
        ]
    elif "time" in cols:  # read from the prepared text below, once
        exprs += [
            pl.lit(None, pl.Boolean).alias("has_time"),
            pl.col("time").cast(pl.Utf8).str.strip_chars().alias("time_raw"),
            pl.lit(None, pl.Datetime("us")).alias("time_dt"),
        ]
    else:
        exprs += [
            pl.lit(False).alias("has_time"),
            pl.lit(None, pl.Utf8).alias("time_raw"),
            pl.lit(None, pl.Datetime("us")).alias("time_dt"),
        ]
    # One chunk per column: the read columns come in chunks (file parts, row groups) and the added ones in
    # one, and Polars realigns every column of a frame whose chunks differ on every operation on it.
    df = _strip_labels(raw.select(exprs).rechunk(), ["patient_id", "unit"]).with_row_index("_row")
    if "day" in cols and not schema["day"].is_numeric():
        df = _parse_days(df)
    if "time" in cols and schema["time"] != pl.Datetime:
        df = _parse_times(df)
    return df


def _parse_days(df: pl.DataFrame) -> pl.DataFrame:
    """``day_num`` and ``has_day`` from the text ``day_raw``. A day that reads as a number is given; only the
    rows that do not read need their text looked at (string work over every row cost more than the parse)."""
    df = parse_numbers(df, "day_raw", "day_num")
    unread = df.select((pl.col("day_num").is_null() & pl.col("day_raw").is_not_null()).arg_true()).to_series()
    written = unread.filter(df.get_column("day_raw").gather(unread).str.strip_chars() != "")
    return df.with_columns((pl.col("day_num").is_not_null() | pl.col("_row").is_in(written.implode())).alias("has_day"))


def _parse_times(df: pl.DataFrame) -> pl.DataFrame:
    """``has_time`` and ``time_dt`` from the text ``time_raw``. Most files write one plain layout
    (2024-05-01T08:00:00), read for every row at once; only the rows it does not read try every accepted
    layout and zone (each try on every row cost ten times the plain read)."""
    text = pl.col("time_raw")
    plain = text.str.to_datetime(format="%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
    df = df.with_columns((text.is_not_null() & (text != "")).alias("has_time"), plain.alias("time_dt"))
    rows = df.select((pl.col("time_dt").is_null() & text.is_not_null()).arg_true()).to_series()
    if rows.len():
        others = df.select(text.gather(rows)).select(parse_iso_times(text)).to_series()
        df = df.with_columns(df.get_column("time_dt").clone().scatter(rows, others))
    return df


def _category_table(vocabulary: Vocabulary) -> pl.DataFrame:
    rows: dict[str, list[str]] = {"item_canonical": [], "value_key": [], "cat_value": []}
    for name, d in vocabulary.items.items():
        if d.value_type == "category":
            for v in d.values:
                rows["item_canonical"].append(name)
                rows["value_key"].append(v.lower())
                rows["cat_value"].append(v)
            for alias, v in d.value_aliases.items():
                rows["item_canonical"].append(name)
                rows["value_key"].append(alias.lower())
                rows["cat_value"].append(v)
    return pl.DataFrame(rows)


def _conversion_table(pairs: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    """One row per distinct (item, unit): scale, offset, per_kg, or the reason it cannot convert."""
    out: dict[str, list] = {
        "item_canonical": [],
        "unit": [],
        "scale": [],
        "offset": [],
        "per_kg": [],
        "differential": [],
        "unit_problem": [],
    }
    for item, unit in pairs.iter_rows():
        d = vocabulary.items[item]
        scale = offset = None
        per_kg = differential = False
        problem = None
        if d.fraction_to_percent and unit == "":
            scale, offset = 1.0, 0.0  # bare numbers: <= 1 read as a fraction below
        elif d.differential_of and unit.strip() == "%":
            differential = True  # % of another count: converted with that count at the same time
        else:
            try:
                conv = conversion_for(unit, d.unit or "", d.per_kg_unit, d.molar_mass)
                scale, offset, per_kg = conv.scale, conv.offset, conv.per_kg
            except UnitError as exc:
                problem = str(exc)
        out["item_canonical"].append(item)
        out["unit"].append(unit)
        out["scale"].append(scale)
        out["offset"].append(offset)
        out["per_kg"].append(per_kg)
        out["differential"].append(differential)
        out["unit_problem"].append(problem)
    return pl.DataFrame(
        out,
        schema={
            "item_canonical": pl.Utf8,
            "unit": pl.Utf8,
            "scale": pl.Float64,
            "offset": pl.Float64,
            "per_kg": pl.Boolean,
            "differential": pl.Boolean,
            "unit_problem": pl.Utf8,
        },
    )


VALUE_TYPES = pl.Enum(["number", "category", "boolean", "text", "date"])


def _item_attribute(
    vocabulary: Vocabulary, attribute: Callable[[ItemDefinition], object], dtype: pl.DataType
) -> pl.Expr:
    """An attribute of every row's item (value type, range bound), gathered by the item's Enum code where an
    expression reads it: a column per attribute for millions of rows cost more than its few reads."""
    values = [attribute(d) for d in vocabulary.items.values()]
    return pl.lit(pl.Series(values, dtype=dtype)).gather(pl.col("item").to_physical())


def _item_flag(vocabulary: Vocabulary, **flags: bool) -> pl.Expr:
    """Whether every row's item has the given flags (false for rows without a known item)."""
    return pl.col("item").is_in(vocabulary.names_where(**flags)).fill_null(False)


def item_enum(vocabulary: Vocabulary) -> pl.Enum:
    """The vocabulary's item names as a Polars Enum (the dtype of ``item`` in canonical events)."""
    return pl.Enum(list(vocabulary.items))


@dataclass(frozen=True)
class _Check:
    condition: pl.Expr
    field_name: str
    message: pl.Expr
    fix: pl.Expr
    value: pl.Expr | None
    severity: str


class _Screen:
    """Refuses rows by marking them, not by filtering: millions of rows are copied once, at the end.

    Checks are queued and evaluated together (one pass answers "does any row fail?" for all of them)
    the next time the frame is read; only a check that some row fails builds error rows and updates
    the mark, in the order the checks were made, each on the rows not yet refused.
    """

    def __init__(self, df: pl.DataFrame) -> None:
        self._df = df.with_columns(pl.lit(False).alias("_refused"))
        self._pending: list[_Check] = []
        self.errors: list[pl.DataFrame] = []

    @property
    def df(self) -> pl.DataFrame:
        self._flush()
        return self._df

    @df.setter
    def df(self, frame: pl.DataFrame) -> None:
        self._df = frame

    def check(
        self,
        condition: pl.Expr,
        field_name: str,
        message: pl.Expr,
        fix: pl.Expr,
        value: pl.Expr | None = None,
        severity: str = "error",
    ) -> None:
        self._pending.append(_Check(condition.fill_null(False), field_name, message, fix, value, severity))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        failing = self._df.select(
            (c.condition & ~pl.col("_refused")).any().alias(f"check_{i}") for i, c in enumerate(pending)
        ).row(0)
        for check, fails in zip(pending, failing, strict=True):
            if fails:
                self._apply(check)

    def _apply(self, check: _Check) -> None:
        condition = check.condition & ~pl.col("_refused")
        offending = self._df.filter(condition)
        if offending.height == 0:
            return
        self.errors.append(
            _error_frame(offending, check.field_name, check.message, check.fix, check.value, check.severity)
        )
        if check.severity == "error":
            self._df = self._df.with_columns((pl.col("_refused") | condition).alias("_refused"))

    def refuse_rows(self, errors: pl.DataFrame, rows: pl.Series) -> None:
        """Refuse rows found on a subset (by ``_row``), with their already built error rows."""
        if rows.len() == 0:
            return
        self.errors.append(errors)
        self.df = self.df.with_columns((pl.col("_refused") | pl.col("_row").is_in(rows.implode())).alias("_refused"))


def normalise_events(
    raw: pl.DataFrame, vocabulary: Vocabulary, limits: IngestLimits = IngestLimits()
) -> NormalisedEvents:
    """Validate and convert raw event rows. Never raises for bad rows: they go to ``errors``."""
    screen = _Screen(_prepare(raw))
    screen.check(
        pl.col("patient_id").is_null() | (pl.col("patient_id") == ""),
        "patient_id",
        pl.lit("patient_id is empty"),
        pl.lit("give every row the patient's identifier"),
        pl.col("patient_id"),
    )
    _resolve_items(screen, vocabulary)
    infusions = _resolve_times(screen, limits)
    screen.check(
        pl.col("value").is_null() | (pl.col("value") == ""),
        "value",
        pl.format("value is empty for '{}'", pl.col("item")),
        pl.lit("give the observed value or drop the row"),
    )
    _numbers(screen, vocabulary)
    _non_numbers(screen, vocabulary)
    _routes(screen, vocabulary)

    df = screen.df
    if df.select(pl.col("_refused").any()).item():
        df = df.filter(~pl.col("_refused"))
    originals = df.with_columns(pl.col("value").alias("orig_value"), pl.col("unit").alias("orig_unit"))
    events = _sorted(originals.select(CANONICAL_COLUMNS))
    errors = screen.errors or [pl.DataFrame(schema=ERROR_SCHEMA)]
    error_frame = pl.concat([e.cast(ERROR_SCHEMA) for e in errors], how="vertical").sort(
        ["file", "line", "field"], nulls_last=True
    )
    patients = _patient_table(events, infusions.select("patient_id", "infusion_time"))
    return NormalisedEvents(events=events, errors=error_frame, patients=patients)


def _resolve_items(screen: _Screen, vocabulary: Vocabulary) -> None:
    """Item names have few distinct spellings: each is resolved once, then every row is mapped."""
    spellings = screen.df.get_column("item").unique().drop_nulls().to_list()
    resolved = {raw_name: vocabulary.resolve_item(raw_name) for raw_name in spellings}
    unknown = [name for name, item in resolved.items() if item is None]
    # Files written with the canonical names (most) need only a cast, half the cost of a look-up per row.
    canonical = all(item == name for name, item in resolved.items())
    items = item_enum(vocabulary)
    screen.df = screen.df.with_columns(
        pl.col("item").alias("item_raw"),
        pl.col("item").cast(items)
        if canonical
        else pl.col("item").replace_strict(resolved, default=None, return_dtype=items),
    )
    fixes = {}
    for name in unknown:
        hint = vocabulary.nearest_item(name)
        fixes[name] = (f"did you mean '{hint}'? " if hint else "") + "valid items are listed in docs/vocabulary.md"
    screen.check(
        pl.col("item").is_null(),
        "item",
        pl.format("unknown item '{}'", pl.col("item_raw")),
        pl.col("item_raw").replace_strict(
            fixes, default="valid items are listed in docs/vocabulary.md", return_dtype=pl.Utf8
        ),
        pl.col("item_raw"),
    )
    number_items = vocabulary.names_where(value_type="number")
    screen.df = screen.df.with_columns(pl.col("item").is_in(number_items).fill_null(False).alias("_is_number"))


def _sorted(events: pl.DataFrame) -> pl.DataFrame:
    """Each patient's rows together, in time order, rows at the same time in file and line order —
    unless already so, as files usually are. (Patients need not be in any particular order; ties are
    broken by file and line, never by position, so row order never changes a result.)"""
    same_patient = pl.col("patient_id") == pl.col("patient_id").shift(1)
    t, t_before = pl.col("t"), pl.col("t").shift(1)
    same_file_later_line = (pl.col("file") == pl.col("file").shift(1)) & (pl.col("line") > pl.col("line").shift(1))
    in_order = ~same_patient | (t > t_before) | ((t == t_before) & same_file_later_line)
    check = events.select(
        in_order.slice(1).all().alias("ordered"),
        (~same_patient.fill_null(False)).sum().alias("runs"),
        pl.col("patient_id").n_unique().alias("patients"),
    ).row(0, named=True)
    if events.height < 2 or (check["ordered"] and check["runs"] == check["patients"]):
        return events
    return events.sort([pl.col("patient_id"), pl.col("t"), pl.col("file").cast(pl.Utf8), pl.col("line")])


def _resolve_times(screen: _Screen, limits: IngestLimits) -> pl.DataFrame:
    """Every row's day since infusion ``t``; returns each patient's first infusion row (time, day, row)."""
    screen.check(
        ~pl.col("has_day") & ~pl.col("has_time"),
        "time",
        pl.lit("row has neither time nor day"),
        pl.lit("give an ISO 8601 time (2024-05-01T08:00) or day since infusion (2.5)"),
        pl.lit(""),
    )
    day_text = pl.coalesce(pl.col("day_raw"), pl.lit("NaN"))
    screen.check(
        pl.col("has_day") & pl.col("day_num").is_null(),
        "day",
        pl.format("day '{}' is not a number", day_text),
        pl.lit("give days since infusion as a number, e.g. 2.5"),
        day_text,
    )
    screen.check(
        ~pl.col("has_day") & pl.col("has_time") & pl.col("time_dt").is_null(),
        "time",
        pl.format("time '{}' is not ISO 8601", pl.col("time_raw")),
        pl.lit("write times like 2024-05-01T08:00:00"),
        pl.col("time_raw"),
    )

    infusions = screen.df.filter((pl.col("item") == "infusion") & ~pl.col("_refused")).sort("line")
    first = infusions.group_by("patient_id", maintain_order=True).agg(
        pl.col("time_dt").first().alias("infusion_time"),
        pl.col("day_num").first().alias("infusion_day"),
        pl.col("_row").first().alias("infusion_row"),
        pl.col("line").first().alias("infusion_line"),
    )
    repeated = infusions.join(first, on="patient_id").filter(pl.col("_row") != pl.col("infusion_row"))
    screen.refuse_rows(
        _error_frame(
            repeated,
            "item",
            pl.format(
                "second infusion row for patient '{}' (the first is at line {})",
                pl.col("patient_id"),
                pl.col("infusion_line"),
            ),
            pl.lit("keep one infusion row per patient; a re-infusion is a new course"),
            pl.col("item"),
        ),
        repeated.get_column("_row"),
    )
    screen.df = screen.df.with_columns(
        per_patient(first, "infusion_time", "infusion_day", "infusion_row", rows=screen.df.height)
    )
    screen.check(
        pl.col("infusion_row").is_null(),
        "item",
        pl.format("patient '{}' has no infusion row, so day 0 is unknown", pl.col("patient_id")),
        pl.format("add a row: {},<time or day 0>,infusion,<product>", pl.col("patient_id")),
        pl.col("item"),
    )
    screen.check(
        pl.col("day_num").is_null() & pl.col("infusion_time").is_null(),
        "time",
        pl.lit("row has a clock time but the patient's infusion row has only a day"),
        pl.lit("give the infusion row a time, or give this row a day"),
        pl.coalesce(pl.col("time_raw"), pl.col("time_dt").cast(pl.Utf8)),
    )
    from_time = (pl.col("time_dt") - pl.col("infusion_time")).dt.total_microseconds() / 86_400e6
    screen.df = screen.df.with_columns(
        pl.when(pl.col("day_num").is_not_null())
        .then(pl.col("day_num") - pl.col("infusion_day").fill_null(0.0))
        .otherwise(from_time)
        .alias("t")
    )
    course = ~pl.col("item").is_in(PATIENT_ITEMS)
    screen.check(
        course & (pl.col("t") < limits.earliest_day),
        "time",
        pl.format(
            "day {} is before the earliest plausible day ({} days before infusion)",
            pl.col("t").round(2),
            pl.lit(-limits.earliest_day),
        ),
        pl.lit("check the date or the infusion date"),
        pl.col("t"),
    )
    if limits.not_after is not None:
        screen.check(
            course & (pl.col("time_dt") > limits.not_after),
            "time",
            pl.lit("time is in the future"),
            pl.lit("check the date"),
            pl.coalesce(pl.col("time_raw"), pl.col("time_dt").cast(pl.Utf8)),
        )
    return first


def _below_quantification(screen: _Screen, vocabulary: Vocabulary) -> None:
    """``blq``: the value is below the limit of quantification, written ``<5`` or ``BLQ`` (limit in ``lloq``).
    Only items with limits accept it; the number after ``<`` becomes the limit. Only the few rows that did
    not parse as numbers are looked at."""
    candidate = pl.col("_is_number") & _item_flag(vocabulary, limits=True) & pl.col("raw_num").is_null()
    rows = screen.df.select(candidate.fill_null(False).arg_true()).to_series()
    blq = pl.Series("blq", [False], pl.Boolean).new_from_index(0, screen.df.height)
    if rows.len() == 0:
        screen.df = screen.df.with_columns(blq)
        return
    text = screen.df.get_column("value").gather(rows).str.strip_chars().str.to_lowercase()
    below = text.str.extract(r"^<\s*([0-9.,]+)$", 1).str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    found = (below.is_not_null() | text.is_in(_BLQ_WORDS)).fill_null(False)
    lloq = screen.df.get_column("lloq_raw").gather(rows)
    lloq = pl.select(pl.when(below.is_not_null()).then(below.cast(pl.Utf8)).otherwise(lloq)).to_series()
    screen.df = screen.df.with_columns(
        blq.scatter(rows, found), screen.df.get_column("lloq_raw").clone().scatter(rows, lloq)
    )
    screen.check(
        pl.col("blq") & pl.col("lloq_raw").is_null(),
        "lloq",
        pl.format("'{}' for '{}' says below quantification but gives no limit", pl.col("value"), pl.col("item")),
        pl.lit("write the limit as '<LLOQ' (e.g. '<5') or fill the row's lloq column"),
    )


def _limits(screen: _Screen, vocabulary: Vocabulary, conversion: Callable[[pl.Expr], pl.Expr]) -> None:
    """Reference and quantification limits, read as numbers and converted like the row's value."""
    takes_limits = _item_flag(vocabulary, limits=True)
    present = screen.df.select(pl.col(f"{c}_raw").is_not_null().any().alias(c) for c in LIMIT_COLUMNS).row(0)
    given = [c for c, any_given in zip(LIMIT_COLUMNS, present, strict=True) if any_given]
    screen.df = screen.df.with_columns(pl.lit(None, pl.Float64).alias(c) for c in LIMIT_COLUMNS if c not in given)
    for column in given:
        raw = f"{column}_raw"
        # Read, checked and converted on the rows that give the limit: work over a column of nulls still costs
        # a pass over every row.
        rows = screen.df.select(pl.col(raw).is_not_null().arg_true()).to_series()
        read = parse_numbers(screen.df.select(pl.col(raw).gather(rows)), raw, "given").select(
            "given", ((pl.col(raw).str.strip_chars() != "") & pl.col("given").is_null()).alias("unreadable")
        )
        given = screen.df.select(pl.col("_row", "item", "scale", "offset").gather(rows)).with_columns(read)
        screen.check(
            pl.col("_row").is_in(given.filter("unreadable").get_column("_row").implode()),
            column,
            pl.format("{} '{}' is not a number", pl.lit(column), pl.col(raw)),
            pl.lit(f"give {column} as a plain number in the row's unit, or leave it empty"),
            pl.col(raw),
        )
        screen.check(
            pl.col("_row").is_in(given.filter(pl.col("given").is_not_null() & ~takes_limits)["_row"].implode()),
            column,
            pl.format("'{}' takes no {} (ignored)", pl.col("item"), pl.lit(column)),
            pl.lit(f"leave {column} empty for this item"),
            pl.col(raw),
            severity="warning",
        )
        limit = given.select(pl.when(takes_limits).then(conversion(pl.col("given")).round(_DECIMALS))).to_series()
        screen.df = screen.df.with_columns(
            pl.repeat(None, screen.df.height, dtype=pl.Float64, eager=True).scatter(rows, limit).alias(column)
        )


def _differentials(screen: _Screen, vocabulary: Vocabulary) -> None:
    """A count given as % of another (ANC as % of WBC) becomes absolute with that count at the same time."""
    is_differential = pl.col("differential").fill_null(False)
    screen.check(
        is_differential & ((pl.col("raw_num") < 0) | (pl.col("raw_num") > 100)),
        "value",
        pl.format("{} % is not a possible share for '{}'", pl.col("value"), pl.col("item")),
        pl.lit("give a percentage between 0 and 100, or the absolute count"),
    )
    rows = screen.df.filter(is_differential & ~pl.col("_refused"))
    if rows.height == 0:
        return
    bases = {name: d.differential_of for name, d in vocabulary.items.items() if d.differential_of}
    base_items = screen.df.filter(
        pl.col("item").is_in(list(set(bases.values()))) & ~pl.col("_refused") & pl.col("num").is_not_null()
    ).select("patient_id", "t", pl.col("item").cast(pl.Utf8).alias("base_item"), pl.col("num").alias("base_num"))
    base_items = base_items.unique(["patient_id", "t", "base_item"], keep="last")
    rows = rows.with_columns(
        pl.col("item").cast(pl.Utf8).replace_strict(bases, default=None, return_dtype=pl.Utf8).alias("base_item")
    ).join(base_items, on=["patient_id", "t", "base_item"], how="left")
    derived = rows.filter(pl.col("base_num").is_not_null())
    num = screen.df.get_column("num").clone()
    num.scatter(derived.get_column("_row"), (derived.get_column("raw_num") / 100 * derived.get_column("base_num")))
    screen.df = screen.df.with_columns(num.round(_DECIMALS))
    missing = rows.filter(pl.col("base_num").is_null())
    screen.refuse_rows(
        _error_frame(
            missing,
            "unit",
            pl.format("'{}' given in % needs the {} measured at the same time", pl.col("item"), pl.col("base_item")),
            pl.format("give the absolute count (10*9/L), or add the {} row at the same time", pl.col("base_item")),
            pl.col("unit"),
        ),
        missing.get_column("_row"),
    )


def _routes(screen: _Screen, vocabulary: Vocabulary) -> None:
    """The route of a drug or blood-support row (it decides, e.g., whether a steroid counts as systemic)."""
    if not screen.df.select(pl.col("route_raw").is_not_null().any()).item():
        screen.df = screen.df.with_columns(pl.lit(None, pl.Utf8).alias("route"))
        return
    # Read on the rows that give a route (mostly the few drug rows): string work costs a pass over every row,
    # null or not.
    rows = screen.df.select(pl.col("route_raw").is_not_null().arg_true()).to_series()
    key = pl.col("route_raw").str.strip_chars().str.to_lowercase()
    read = pl.when(key.is_in(ROUTES)).then(key).otherwise(key.replace_strict(_ROUTE_ALIASES, default=None))
    takes_route = pl.col("item").is_in(
        vocabulary.names_where(kind="drug") + vocabulary.names_where(kind="blood_support")
    )
    given = screen.df.select(pl.col("_row", "item", "route_raw").gather(rows)).with_columns(
        pl.when(key != "").then(read).alias("route"), (key != "").alias("given")
    )
    screen.check(
        pl.col("_row").is_in(given.filter(pl.col("given") & pl.col("route").is_null())["_row"].implode()),
        "route",
        pl.format("route '{}' is not known", pl.col("route_raw")),
        pl.lit(f"use one of: {', '.join(ROUTES)}"),
        pl.col("route_raw"),
    )
    screen.check(
        pl.col("_row").is_in(given.filter(pl.col("given") & ~takes_route)["_row"].implode()),
        "route",
        pl.format("'{}' takes no route (ignored)", pl.col("item")),
        pl.lit("give a route only for drugs and blood support"),
        pl.col("route_raw"),
        severity="warning",
    )
    route = given.select(pl.when(takes_route).then(pl.col("route"))).to_series()
    screen.df = screen.df.with_columns(
        pl.repeat(None, screen.df.height, dtype=pl.Utf8, eager=True).scatter(rows, route).alias("route")
    )


def _numbers(screen: _Screen, vocabulary: Vocabulary) -> None:
    is_number = pl.col("_is_number")
    screen.df = parse_numbers(screen.df, "value", "raw_num", only=is_number)
    _below_quantification(screen, vocabulary)
    screen.check(
        is_number & pl.col("raw_num").is_null() & ~pl.col("blq"),
        "value",
        pl.format("'{}' is not a number for '{}'", pl.col("value"), pl.col("item")),
        pl.lit("give a plain number"),
    )
    pairs = (
        screen.df.lazy()
        .filter(is_number & ~pl.col("_refused"))
        .select("item", "unit")
        .unique()
        .sort(["item", "unit"])
        .collect()
    )
    conversions = _conversion_table(pairs.with_columns(pl.col("item").cast(pl.Utf8)), vocabulary)
    screen.df = screen.df.with_columns(_pair_position(pairs, screen.df).alias("_conversion"))

    def looked_up(column: str) -> pl.Expr:
        return pl.lit(conversions.get_column(column)).gather(pl.col("_conversion"))

    def flagged(column: str) -> pl.Expr:
        """A rare flag as a membership test (cheaper than a gather), constant when no pair has it."""
        positions = conversions.select(pl.col(column).arg_true()).to_series()
        return pl.col("_conversion").is_in(positions.implode()) if positions.len() else pl.lit(False)

    screen.df = screen.df.with_columns(
        looked_up("scale").alias("scale"),
        looked_up("offset").alias("offset"),
        flagged("per_kg").alias("per_kg"),
        flagged("differential").alias("differential"),
    )
    # The problem text is looked up only for the failing rows (a text per row would be copied millions of times).
    problem = looked_up("unit_problem")
    screen.check(
        is_number & pl.col("scale").is_null() & ~pl.col("differential").fill_null(False),
        "unit",
        pl.format("{} (item '{}')", problem, pl.col("item")),
        pl.lit("use a UCUM unit listed for the item in docs/vocabulary.md"),
        pl.col("unit"),
    )

    weights = (
        screen.df.filter((pl.col("item") == "weight") & ~pl.col("_refused"))
        .sort("line")
        .group_by("patient_id", maintain_order=True)
        .agg((pl.col("raw_num") * pl.col("scale")).first().alias("weight_kg"))
    )
    screen.df = screen.df.with_columns(per_patient(weights, "weight_kg", rows=screen.df.height))
    # A per-kg drug dose without a weight is still a documented administration (it matters for the
    # fever waiver): keep it with an unknown mg dose and warn. A per-kg vasopressor rate without a
    # weight is refused: its rate is part of the grade.
    needs_weight = is_number & pl.col("per_kg") & pl.col("weight_kg").is_null()
    is_drug = pl.col("item").is_in(vocabulary.names_where(kind="drug"))
    screen.check(
        needs_weight & ~is_drug,
        "unit",
        pl.format("'{}' in {} needs the patient's weight", pl.col("item"), pl.col("unit")),
        pl.lit("add a 'weight' row (kg) for the patient, or give the absolute rate"),
        pl.col("unit"),
    )
    screen.check(
        needs_weight & is_drug,
        "unit",
        pl.format(
            "'{}' {} {} kept, but its mg dose is unknown without the patient's weight",
            pl.col("item"),
            pl.col("value"),
            pl.col("unit"),
        ),
        pl.lit("add a 'weight' row (kg) to compute the mg dose"),
        pl.col("unit"),
        severity="warning",
    )

    # Each term written once (the eager engine evaluates a repeated subexpression again); x * 1.0 is x.
    weight_factor = pl.when(pl.col("per_kg")).then(pl.col("weight_kg")).otherwise(1.0)  # null without weight
    num = (pl.col("raw_num") * pl.col("scale") + pl.col("offset")) * weight_factor
    fraction_items = vocabulary.names_where(fraction_to_percent=True)
    # A bare number (no unit) of an item such as FiO2 may be a fraction; only files with such rows pay the test.
    if conversions.select(pl.col("item_canonical").is_in(fraction_items) & (pl.col("unit") == "")).to_series().any():
        bare_fraction = (
            _item_flag(vocabulary, fraction_to_percent=True) & (pl.col("unit") == "") & (pl.col("raw_num") <= 1.0)
        )
        num = pl.when(bare_fraction).then(pl.col("raw_num") * 100).otherwise(num)
    screen.df = screen.df.with_columns(pl.when(is_number).then(num.round(_DECIMALS)).alias("num"))
    _limits(screen, vocabulary, lambda value: value * pl.col("scale") + pl.col("offset"))
    _differentials(screen, vocabulary)
    lo = _item_attribute(vocabulary, lambda d: d.range[0] if d.range else None, pl.Float64)
    hi = _item_attribute(vocabulary, lambda d: d.range[1] if d.range else None, pl.Float64)
    implausible = (pl.col("num") < lo) | (pl.col("num") > hi)
    units = {name: d.unit or "" for name, d in vocabulary.items.items()}
    canonical_unit = pl.col("item").cast(pl.Utf8).replace_strict(units, default="", return_dtype=pl.Utf8)
    screen.check(
        implausible,
        "value",
        pl.format(
            "{} {} is implausible for '{}' (= {} {}; accepted {}..{} {})",
            pl.col("value"),
            pl.col("unit"),
            pl.col("item"),
            pl.col("num"),
            canonical_unit,
            lo,
            hi,
            canonical_unit,
        ),
        pl.lit("check the value and its unit"),
    )
    screen.check(
        _item_flag(vocabulary, integer=True) & (pl.col("num") != pl.col("num").round(0)),
        "value",
        pl.format("'{}' must be a whole number for '{}'", pl.col("value"), pl.col("item")),
        pl.lit("give the score as an integer"),
    )


def _pair_position(pairs: pl.DataFrame, frame: pl.DataFrame) -> pl.Expr:
    """Every row's position in ``pairs`` (distinct (item, unit) rows), by item and unit code: a gather from a
    dense (item code, unit code) layout when it is not much larger than the frame, else a hash lookup of the
    combined code. (Unit codes are global category codes: a long-lived process has codes far larger than
    its frames.)"""
    items, units = pairs.get_column("item").to_physical(), pairs.get_column("unit").to_physical()
    position = pl.int_range(pairs.height, dtype=pl.Int32, eager=True)
    item_code, unit_code = pl.col("item").to_physical().cast(pl.UInt32), pl.col("unit").to_physical()
    # As wide as the frame's largest unit code, so that every row's code falls inside the layout.
    width = int(frame.select(unit_code.max()).item() or 0) + 1
    size = len(pairs.schema["item"].categories) * width
    if size <= 4 * frame.height + 65_536:
        at = items.cast(pl.UInt32) * width + units
        layout = pl.repeat(None, size, dtype=pl.Int32, eager=True).scatter(at, position)
        return pl.lit(layout).gather(item_code * width + unit_code)
    keys = (items.cast(pl.UInt64) * (1 << 32) + units.cast(pl.UInt64)).to_list()
    combined = item_code.cast(pl.UInt64) * (1 << 32) + unit_code.cast(pl.UInt64)
    positions = dict(zip(keys, position.to_list(), strict=True))
    return combined.replace_strict(positions, default=None, return_dtype=pl.Int32)


# What the value-type handlers read and their error rows name (a filter copies every column it carries).
_SUBSET_COLUMNS = ["_row", "_refused", "_is_number", "file", "line", "patient_id", "item", "value"]


def _non_numbers(screen: _Screen, vocabulary: Vocabulary) -> None:
    """Categories, booleans, texts and dates: a few rows, handled apart and written back by row number."""
    others = (
        screen.df.select(_SUBSET_COLUMNS)
        .filter(~pl.col("_is_number") & pl.col("item").is_not_null() & ~pl.col("_refused"))
        .with_columns(_item_attribute(vocabulary, lambda d: d.value_type, VALUE_TYPES).alias("value_type"))
    )
    handlers = (
        (["category"], lambda rows: _categories(rows, vocabulary)),
        (["boolean"], _booleans),
        (["text", "date"], _texts),
    )
    parts = []
    for value_types, handler in handlers:
        rows = others.filter(pl.col("value_type").is_in(value_types))
        if rows.height:
            parts.append(handler(rows))
    cat = pl.repeat(None, screen.df.height, dtype=pl.Utf8, eager=True).alias("cat")
    for values, errors, refused in parts:
        cat.scatter(values.get_column("_row"), values.get_column("cat"))
        screen.refuse_rows(errors, refused)
    screen.df = screen.df.with_columns(cat)


_SubsetResult = tuple[pl.DataFrame, pl.DataFrame, pl.Series]


def _subset_result(
    df: pl.DataFrame, value: pl.Expr, bad: pl.Expr, field_name: str, message: pl.Expr, fix: pl.Expr
) -> _SubsetResult:
    """(row numbers with their canonical text, error rows, refused row numbers) for one value type."""
    df = df.with_columns(value.alias("cat"), bad.fill_null(False).alias("_bad"))
    offending = df.filter(pl.col("_bad"))
    return (
        df.filter(~pl.col("_bad")).select("_row", "cat"),
        _error_frame(offending, field_name, message, fix),
        offending.get_column("_row"),
    )


def _categories(df: pl.DataFrame, vocabulary: Vocabulary) -> _SubsetResult:
    key = pl.col("value").str.strip_chars().str.to_lowercase().str.replace_all(r"[\s\-/]+", "_")
    table = _category_table(vocabulary).rename({"item_canonical": "item"}).cast({"item": item_enum(vocabulary)})
    allowed = {name: ", ".join(d.values) for name, d in vocabulary.items.items() if d.value_type == "category"}
    df = df.with_columns(key.alias("value_key")).join(table, on=["item", "value_key"], how="left")
    return _subset_result(
        df,
        pl.col("cat_value"),
        pl.col("cat_value").is_null(),
        "value",
        pl.format("'{}' is not an allowed value of '{}'", pl.col("value"), pl.col("item")),
        pl.format(
            "use one of: {}", pl.col("item").cast(pl.Utf8).replace_strict(allowed, default="", return_dtype=pl.Utf8)
        ),
    )


def _booleans(df: pl.DataFrame) -> _SubsetResult:
    key = pl.col("value").str.strip_chars().str.to_lowercase()
    value = pl.when(key.is_in(_TRUE)).then(pl.lit("true")).when(key.is_in(_FALSE)).then(pl.lit("false"))
    return _subset_result(
        df,
        value,
        value.is_null(),
        "value",
        pl.format("'{}' is not true/false for '{}'", pl.col("value"), pl.col("item")),
        pl.lit("use true or false"),
    )


def _texts(df: pl.DataFrame) -> _SubsetResult:
    text = pl.col("value").str.strip_chars()
    blank = text == ""
    bad_date = (pl.col("value_type") == "date") & text.str.to_date(strict=False).is_null()
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
    return _subset_result(df, text, blank | bad_date, "value", message, fix)


def _patient_table(events: pl.DataFrame, infusion_times: pl.DataFrame) -> pl.DataFrame:
    """Per patient: infusion time (if the file has clock times), product, age, weight, sex, disease.

    Age comes from an ``age`` row, else from ``birth_date`` and the infusion date.
    """

    def first(item: str, column: str) -> pl.Expr:
        return pl.col(column).filter(pl.col("item") == item).first().alias(item)

    # Only the few patient rows are grouped, and only the columns read (a filter copies every column it
    # carries); every patient of the batch gets a row.
    described = (
        events.select("patient_id", "item", "num", "cat")
        .filter(pl.col("item").is_in(["infusion", *PATIENT_ITEMS]))
        .group_by("patient_id", maintain_order=True)
        .agg(
            first("infusion", "cat").alias("product"),
            first("age", "num"),
            first("birth_date", "cat"),
            first("weight", "num"),
            first("sex", "cat"),
            first("disease", "cat"),
        )
    )
    table = (
        events.select(pl.col("patient_id").unique(maintain_order=True))
        .join(described, on="patient_id", how="left", maintain_order="left")
        .join(infusion_times, on="patient_id", how="left", maintain_order="left")
    )
    age_from_birth = (
        pl.col("infusion_time").dt.date() - pl.col("birth_date").str.to_date(strict=False)
    ).dt.total_days() / 365.2425
    return table.with_columns(pl.coalesce(pl.col("age"), age_from_birth).alias("age_years")).select(
        "patient_id", "infusion_time", "product", "age_years", "weight", "sex", "disease"
    )
