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

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from tocsin.units import UnitError, conversion_for
from tocsin.vocabulary import Vocabulary

#: Columns of the canonical event frame the rest of the core works on.
CANONICAL_COLUMNS = ["patient_id", "t", "item", "num", "cat", "orig_value", "orig_unit", "source", "file", "line"]
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


def parse_numbers(df: pl.DataFrame, text: str, out: str) -> pl.DataFrame:
    """``out`` = ``text`` read as a number. Values that do not parse at first (blanks around them, a
    decimal comma) are cleaned and read again; clean input never pays for the cleaning."""
    df = df.with_columns(pl.col(text).cast(pl.Float64, strict=False).fill_nan(None).alias(out))
    retry = pl.col(out).is_null() & pl.col(text).is_not_null()
    if df.select(retry.any()).item():
        cleaned = pl.col(text).str.strip_chars().str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
        df = df.with_columns(pl.when(retry).then(cleaned.fill_nan(None)).otherwise(pl.col(out)).alias(out))
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
    """Uniform column types. Repetitive text (patient, unit, source, file) becomes Categorical: the frame is
    filtered and joined several times, and copying category codes costs far less than copying strings.
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
        (pl.col("source").cast(pl.Utf8) if "source" in cols else pl.lit(None, pl.Utf8))
        .cast(pl.Categorical)
        .alias("source"),
        pl.col("file").cast(pl.Categorical),
        pl.col("line").cast(pl.Int64),
    ]
    if "day" in cols and schema["day"].is_numeric():
        exprs += [
            pl.col("day").is_not_null().alias("has_day"),
            pl.lit(None, pl.Utf8).alias("day_raw"),
            pl.col("day").cast(pl.Float64).fill_nan(None).alias("day_num"),
        ]
    elif "day" in cols:
        day = pl.col("day").cast(pl.Utf8)
        exprs += [(day.is_not_null() & (day.str.strip_chars() != "")).alias("has_day"), day.alias("day_raw")]
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
    elif "time" in cols:
        text = pl.col("time").cast(pl.Utf8).str.strip_chars()
        exprs += [
            (text.is_not_null() & (text != "")).alias("has_time"),
            text.alias("time_raw"),
            parse_iso_times(text).alias("time_dt"),
        ]
    else:
        exprs += [
            pl.lit(False).alias("has_time"),
            pl.lit(None, pl.Utf8).alias("time_raw"),
            pl.lit(None, pl.Datetime("us")).alias("time_dt"),
        ]
    df = _strip_labels(raw.select(exprs), ["patient_id", "unit", "source"]).with_row_index("_row")
    if "day" in cols and not schema["day"].is_numeric():
        df = parse_numbers(df, "day_raw", "day_num")
    return df


def _category_table(vocabulary: Vocabulary) -> pl.DataFrame:
    rows: dict[str, list[str]] = {"item_canonical": [], "value_key": [], "cat_value": []}
    for name, d in vocabulary.items.items():
        if d.value_type == "category":
            for v in d.values:
                rows["item_canonical"].append(name)
                rows["value_key"].append(v)
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
        "unit_problem": [],
    }
    for item, unit in pairs.iter_rows():
        d = vocabulary.items[item]
        scale = offset = None
        per_kg = False
        problem = None
        if d.fraction_to_percent and unit == "":
            scale, offset = 1.0, 0.0  # bare numbers: <= 1 read as a fraction below
        else:
            try:
                conv = conversion_for(unit, d.unit or "", d.per_kg_unit)
                scale, offset, per_kg = conv.scale, conv.offset, conv.per_kg
            except UnitError as exc:
                problem = str(exc)
        out["item_canonical"].append(item)
        out["unit"].append(unit)
        out["scale"].append(scale)
        out["offset"].append(offset)
        out["per_kg"].append(per_kg)
        out["unit_problem"].append(problem)
    return pl.DataFrame(
        out,
        schema={
            "item_canonical": pl.Utf8,
            "unit": pl.Utf8,
            "scale": pl.Float64,
            "offset": pl.Float64,
            "per_kg": pl.Boolean,
            "unit_problem": pl.Utf8,
        },
    )


def _numeric_table(vocabulary: Vocabulary) -> pl.DataFrame:
    rows = [
        (n, d.range[0], d.range[1], d.unit, d.integer, d.fraction_to_percent)
        for n, d in vocabulary.items.items()
        if d.value_type == "number" and d.range
    ]
    return pl.DataFrame(
        rows,
        orient="row",
        schema={
            "item_canonical": pl.Utf8,
            "lo": pl.Float64,
            "hi": pl.Float64,
            "canonical_unit": pl.Utf8,
            "integer": pl.Boolean,
            "fraction": pl.Boolean,
        },
    )


def normalise_events(
    raw: pl.DataFrame, vocabulary: Vocabulary, limits: IngestLimits = IngestLimits()
) -> NormalisedEvents:
    """Validate and convert raw event rows. Never raises for bad rows: they go to ``errors``."""
    df = _prepare(raw)
    errors: list[pl.DataFrame] = []

    missing_pid = pl.col("patient_id").is_null() | (pl.col("patient_id") == "")
    errors.append(
        _error_frame(
            df.filter(missing_pid),
            "patient_id",
            pl.lit("patient_id is empty"),
            pl.lit("give every row the patient's identifier"),
            pl.col("patient_id"),
        )
    )
    df = df.filter(~missing_pid)

    # --- item names -------------------------------------------------------------------------
    # Item names have few distinct spellings: resolve each once, then map every row.
    spellings = df.get_column("item").unique().drop_nulls().to_list()
    resolved = {raw_name: vocabulary.resolve_item(raw_name) for raw_name in spellings}
    df = df.with_columns(
        pl.col("item").replace_strict(resolved, default=None, return_dtype=pl.Utf8).alias("item_canonical")
    )
    unknown = df.filter(pl.col("item_canonical").is_null())
    if unknown.height:
        names = unknown.get_column("item").unique().to_list()
        hint = {n: vocabulary.nearest_item(n or "") for n in names}
        fixes = pl.DataFrame(
            {
                "item": names,
                "fix": [
                    (f"did you mean '{hint[n]}'? " if hint[n] else "") + "valid items are listed in docs/vocabulary.md"
                    for n in names
                ],
            },
            schema={"item": pl.Utf8, "fix": pl.Utf8},
        )
        unknown = unknown.join(fixes, on="item", how="left", nulls_equal=True)
        errors.append(
            _error_frame(unknown, "item", pl.format("unknown item '{}'", pl.col("item")), pl.col("fix"), pl.col("item"))
        )
    df = df.filter(pl.col("item_canonical").is_not_null()).drop("item").rename({"item_canonical": "item"})
    value_types = pl.DataFrame(
        {"item": list(vocabulary.items), "value_type": [d.value_type for d in vocabulary.items.values()]}
    )
    df = df.join(value_types, on="item", how="left")

    # --- time -------------------------------------------------------------------------------
    df, time_errors = _resolve_times(df, limits)
    errors.extend(time_errors)
    df_times = df.select("patient_id", "infusion_time").unique("patient_id")

    # --- values -----------------------------------------------------------------------------
    missing_value = pl.col("value").is_null() | (pl.col("value") == "")
    errors.append(
        _error_frame(
            df.filter(missing_value),
            "value",
            pl.format("value is empty for '{}'", pl.col("item")),
            pl.lit("give the observed value or drop the row"),
        )
    )
    df = df.filter(~missing_value)

    is_number = pl.col("value_type") == "number"
    numbers, number_errors = _numbers(df.filter(is_number), vocabulary)
    errors.extend(number_errors)
    others = df.filter(~is_number)
    categories, category_errors = _categories(others.filter(pl.col("value_type") == "category"), vocabulary)
    errors.extend(category_errors)
    booleans, boolean_errors = _booleans(others.filter(pl.col("value_type") == "boolean"))
    errors.extend(boolean_errors)
    texts, text_errors = _texts(others.filter(pl.col("value_type").is_in(["text", "date"])))
    errors.extend(text_errors)

    # Back to input order (an integer sort), which is usually already patient/time order.
    events = _sorted(
        pl.concat([numbers, categories, booleans, texts], how="vertical").sort("_row").select(CANONICAL_COLUMNS)
    )
    # Items as an Enum of the vocabulary: the core compares items millions of times.
    events = events.with_columns(pl.col("item").cast(item_enum(vocabulary)))
    error_frame = pl.concat([e.cast(ERROR_SCHEMA) for e in errors], how="vertical").sort(
        ["file", "line", "field"], nulls_last=True
    )
    return NormalisedEvents(events=events, errors=error_frame, patients=_patient_table(events, df_times))


def item_enum(vocabulary: Vocabulary) -> pl.Enum:
    """The vocabulary's item names as a Polars Enum (the dtype of ``item`` in canonical events)."""
    return pl.Enum(list(vocabulary.items))


def _sorted(events: pl.DataFrame) -> pl.DataFrame:
    """Sort by patient, time, then file position — unless already so (files usually are)."""
    keys = ["patient_id", "t", "file", "line"]
    order = pl.lit(False)
    for i in range(len(keys) - 1, -1, -1):
        k = pl.col(keys[i])
        order = (k > k.shift(1)) | ((k == k.shift(1)) & order) if i < len(keys) - 1 else k >= k.shift(1)
    if events.height < 2 or events.select(order.slice(1).all()).item():
        return events
    return events.sort(keys)


def _resolve_times(df: pl.DataFrame, limits: IngestLimits) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    errors: list[pl.DataFrame] = []
    no_time = ~pl.col("has_day") & ~pl.col("has_time")
    bad_day = pl.col("has_day") & pl.col("day_num").is_null()
    bad_time = ~pl.col("has_day") & pl.col("has_time") & pl.col("time_dt").is_null()
    errors.append(
        _error_frame(
            df.filter(no_time),
            "time",
            pl.lit("row has neither time nor day"),
            pl.lit("give an ISO 8601 time (2024-05-01T08:00) or day since infusion (2.5)"),
            pl.lit(""),
        )
    )
    day_text = pl.coalesce(pl.col("day_raw"), pl.lit("NaN"))
    errors.append(
        _error_frame(
            df.filter(bad_day),
            "day",
            pl.format("day '{}' is not a number", day_text),
            pl.lit("give days since infusion as a number, e.g. 2.5"),
            day_text,
        )
    )
    errors.append(
        _error_frame(
            df.filter(bad_time),
            "time",
            pl.format("time '{}' is not ISO 8601", pl.col("time_raw")),
            pl.lit("write times like 2024-05-01T08:00:00"),
            pl.col("time_raw"),
        )
    )
    df = df.filter(~(no_time | bad_day | bad_time))

    infusions = df.filter(pl.col("item") == "infusion").sort("line")
    first = infusions.group_by("patient_id", maintain_order=True).agg(
        pl.col("time_dt").first().alias("infusion_time"),
        pl.col("day_num").first().alias("infusion_day"),
        pl.col("line").first().alias("infusion_line"),
        pl.col("file").first().alias("infusion_file"),
    )
    repeated = infusions.join(first, on="patient_id").filter(
        (pl.col("line") != pl.col("infusion_line")) | (pl.col("file") != pl.col("infusion_file"))
    )
    errors.append(
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
        )
    )
    df = df.join(
        first.select("patient_id", "infusion_time", "infusion_day", "infusion_line", "infusion_file"),
        on="patient_id",
        how="left",
    )
    df = df.filter(
        ~(
            (pl.col("item") == "infusion")
            & ((pl.col("line") != pl.col("infusion_line")) | (pl.col("file") != pl.col("infusion_file")))
        )
    )
    no_infusion = pl.col("infusion_line").is_null()
    errors.append(
        _error_frame(
            df.filter(no_infusion),
            "item",
            pl.format("patient '{}' has no infusion row, so day 0 is unknown", pl.col("patient_id")),
            pl.format("add a row: {},<time or day 0>,infusion,<product>", pl.col("patient_id")),
            pl.col("item"),
        )
    )
    df = df.filter(~no_infusion)

    needs_anchor = pl.col("day_num").is_null() & pl.col("infusion_time").is_null()
    errors.append(
        _error_frame(
            df.filter(needs_anchor),
            "time",
            pl.lit("row has a clock time but the patient's infusion row has only a day"),
            pl.lit("give the infusion row a time, or give this row a day"),
            pl.coalesce(pl.col("time_raw"), pl.col("time_dt").cast(pl.Utf8)),
        )
    )
    df = df.filter(~needs_anchor)
    from_time = (pl.col("time_dt") - pl.col("infusion_time")).dt.total_microseconds() / 86_400e6
    df = df.with_columns(
        pl.when(pl.col("day_num").is_not_null())
        .then(pl.col("day_num") - pl.col("infusion_day").fill_null(0.0))
        .otherwise(from_time)
        .alias("t")
    )

    course = ~pl.col("item").is_in(PATIENT_ITEMS)
    too_early = course & (pl.col("t") < limits.earliest_day)
    errors.append(
        _error_frame(
            df.filter(too_early),
            "time",
            pl.format(
                "day {} is before the earliest plausible day ({} days before infusion)",
                pl.col("t").round(2),
                pl.lit(-limits.earliest_day),
            ),
            pl.lit("check the date or the infusion date"),
            pl.col("t"),
        )
    )
    bad = too_early
    if limits.not_after is not None:
        too_late = course & (pl.col("time_dt") > limits.not_after).fill_null(False)
        errors.append(
            _error_frame(
                df.filter(too_late),
                "time",
                pl.lit("time is in the future"),
                pl.lit("check the date"),
                pl.coalesce(pl.col("time_raw"), pl.col("time_dt").cast(pl.Utf8)),
            )
        )
        bad = bad | too_late
    df = df.filter(~bad)
    return df, errors


def _numbers(df: pl.DataFrame, vocabulary: Vocabulary) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    errors: list[pl.DataFrame] = []
    df = parse_numbers(df, "value", "raw_num")
    not_number = pl.col("raw_num").is_null()
    errors.append(
        _error_frame(
            df.filter(not_number),
            "value",
            pl.format("'{}' is not a number for '{}'", pl.col("value"), pl.col("item")),
            pl.lit("give a plain number"),
        )
    )
    df = df.filter(~not_number)

    conversions = _conversion_table(df.select("item", "unit").unique().sort(["item", "unit"]), vocabulary)
    df = df.join(
        conversions.rename({"item_canonical": "item"}).cast({"unit": pl.Categorical}), on=["item", "unit"], how="left"
    )
    errors.append(
        _error_frame(
            df.filter(pl.col("unit_problem").is_not_null()),
            "unit",
            pl.format("{} (item '{}')", pl.col("unit_problem"), pl.col("item")),
            pl.lit("use a UCUM unit listed for the item in docs/vocabulary.md"),
            pl.col("unit"),
        )
    )
    df = df.filter(pl.col("unit_problem").is_null())

    weights = (
        df.filter(pl.col("item") == "weight")
        .sort("line")
        .group_by("patient_id")
        .agg((pl.col("raw_num") * pl.col("scale")).first().alias("weight_kg"))
    )
    df = df.join(weights, on="patient_id", how="left")
    # A per-kg drug dose without a weight is still a documented administration (it matters for the
    # fever waiver): keep it with an unknown mg dose and warn. A per-kg vasopressor rate without a
    # weight is refused: its rate is part of the grade.
    needs_weight = pl.col("per_kg") & pl.col("weight_kg").is_null()
    is_drug = pl.col("item").is_in(vocabulary.names_where(kind="drug"))
    errors.append(
        _error_frame(
            df.filter(needs_weight & ~is_drug),
            "unit",
            pl.format("'{}' in {} needs the patient's weight", pl.col("item"), pl.col("unit")),
            pl.lit("add a 'weight' row (kg) for the patient, or give the absolute rate"),
            pl.col("unit"),
        )
    )
    errors.append(
        _error_frame(
            df.filter(needs_weight & is_drug),
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
    )
    df = df.filter(~(needs_weight & ~is_drug))

    ranges = _numeric_table(vocabulary).rename({"item_canonical": "item"})
    df = df.join(ranges, on="item", how="left")
    num = pl.col("raw_num") * pl.col("scale") + pl.col("offset")
    num = pl.when(pl.col("per_kg")).then(num * pl.col("weight_kg")).otherwise(num)  # null without weight
    bare_fraction = pl.col("fraction") & (pl.col("unit") == "") & (pl.col("raw_num") <= 1.0)
    num = pl.when(bare_fraction).then(pl.col("raw_num") * 100).otherwise(num)
    df = df.with_columns(num.round(_DECIMALS).alias("num"))
    implausible = ((pl.col("num") < pl.col("lo")) | (pl.col("num") > pl.col("hi"))).fill_null(False)
    errors.append(
        _error_frame(
            df.filter(implausible),
            "value",
            pl.format(
                "{} {} is implausible for '{}' (= {} {}; accepted {}..{} {})",
                pl.col("value"),
                pl.col("unit"),
                pl.col("item"),
                pl.col("num"),
                pl.col("canonical_unit"),
                pl.col("lo"),
                pl.col("hi"),
                pl.col("canonical_unit"),
            ),
            pl.lit("check the value and its unit"),
        )
    )
    not_integer = (pl.col("integer") & (pl.col("num") != pl.col("num").round(0))).fill_null(False)
    errors.append(
        _error_frame(
            df.filter(not_integer & ~implausible),
            "value",
            pl.format("'{}' must be a whole number for '{}'", pl.col("value"), pl.col("item")),
            pl.lit("give the score as an integer"),
        )
    )
    df = df.filter(~implausible & ~not_integer)
    return df.select(_canonical(pl.col("num"), pl.lit(None, pl.Utf8))), errors


def _canonical(num: pl.Expr, cat: pl.Expr) -> list[pl.Expr]:
    return [
        pl.col("patient_id"),
        pl.col("t"),
        pl.col("item"),
        num.cast(pl.Float64).alias("num"),
        cat.cast(pl.Utf8).alias("cat"),
        pl.col("value").alias("orig_value"),
        pl.col("unit").alias("orig_unit"),
        pl.col("source"),
        pl.col("file"),
        pl.col("line"),
        pl.col("_row"),
    ]


def _categories(df: pl.DataFrame, vocabulary: Vocabulary) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    key = pl.col("value").str.strip_chars().str.to_lowercase().str.replace_all(r"[\s\-/]+", "_")
    df = df.with_columns(key.alias("value_key")).join(
        _category_table(vocabulary).rename({"item_canonical": "item"}), on=["item", "value_key"], how="left"
    )
    bad = df.filter(pl.col("cat_value").is_null())
    errors = []
    if bad.height:
        allowed = pl.DataFrame(
            {"item": list(vocabulary.items), "allowed": [", ".join(d.values) for d in vocabulary.items.values()]}
        )
        bad = bad.join(allowed, on="item", how="left")
        errors.append(
            _error_frame(
                bad,
                "value",
                pl.format("'{}' is not an allowed value of '{}'", pl.col("value"), pl.col("item")),
                pl.format("use one of: {}", pl.col("allowed")),
            )
        )
    df = df.filter(pl.col("cat_value").is_not_null())
    return df.select(_canonical(pl.lit(None, pl.Float64), pl.col("cat_value"))), errors


def _booleans(df: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    key = pl.col("value").str.strip_chars().str.to_lowercase()
    df = df.with_columns(
        pl.when(key.is_in(_TRUE)).then(pl.lit("true")).when(key.is_in(_FALSE)).then(pl.lit("false")).alias("bool_value")
    )
    errors = [
        _error_frame(
            df.filter(pl.col("bool_value").is_null()),
            "value",
            pl.format("'{}' is not true/false for '{}'", pl.col("value"), pl.col("item")),
            pl.lit("use true or false"),
        )
    ]
    df = df.filter(pl.col("bool_value").is_not_null())
    return df.select(_canonical(pl.lit(None, pl.Float64), pl.col("bool_value"))), errors


def _texts(df: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    text = pl.col("value").str.strip_chars()
    blank = text == ""
    bad_date = (pl.col("value_type") == "date") & text.str.to_date(strict=False).is_null() & ~blank
    errors = [
        _error_frame(
            df.filter(blank),
            "value",
            pl.format("value is empty for '{}'", pl.col("item")),
            pl.lit("give the observed value or drop the row"),
        ),
        _error_frame(
            df.filter(bad_date),
            "value",
            pl.format("'{}' is not an ISO date for '{}'", pl.col("value"), pl.col("item")),
            pl.lit("write dates like 1961-04-30"),
        ),
    ]
    df = df.filter(~blank & ~bad_date)
    return df.select(_canonical(pl.lit(None, pl.Float64), text)), errors


def _patient_table(events: pl.DataFrame, infusion_times: pl.DataFrame) -> pl.DataFrame:
    """Per patient: infusion time (if the file has clock times), product, age, weight, sex, disease.

    Age comes from an ``age`` row, else from ``birth_date`` and the infusion date.
    """

    def first(item: str, column: str) -> pl.Expr:
        return pl.col(column).filter(pl.col("item") == item).first().alias(item)

    per_patient = events.group_by("patient_id", maintain_order=True).agg(
        first("infusion", "cat").alias("product"),
        first("age", "num"),
        first("birth_date", "cat"),
        first("weight", "num"),
        first("sex", "cat"),
        first("disease", "cat"),
    )
    per_patient = per_patient.join(infusion_times, on="patient_id", how="left")
    age_from_birth = (
        pl.col("infusion_time").dt.date() - pl.col("birth_date").str.to_date(strict=False)
    ).dt.total_days() / 365.2425
    return per_patient.with_columns(pl.coalesce(pl.col("age"), age_from_birth).alias("age_years")).select(
        "patient_id", "infusion_time", "product", "age_years", "weight", "sex", "disease"
    )
