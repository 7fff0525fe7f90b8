"""Table 1: each variable summarised per group, with one test per variable (gtsummary's defaults, or chosen).

Defaults follow gtsummary ``add_p()`` (Sjoberg et al. 2021, doi:10.32614/RJ-2021-053):

* continuous variable, 2 groups → Wilcoxon rank-sum (R ``wilcox.test`` defaults); more → Kruskal–Wallis;
* categorical variable → Pearson χ² without continuity correction when every expected count is ≥ 5,
  otherwise Fisher's exact test (Fisher–Freeman–Halton for r×c, computed exactly).

Which default applied, and why, is stated per variable (``test_choice``). Rows with a missing group are
left out (as gtsummary), and counted. A variable is categorical when it is text or boolean, or numeric with
fewer than 10 distinct values (gtsummary's rule); ``kinds`` overrides that. Levels and groups are in sorted
order of their values. Empty levels and groups are dropped from a contingency table before testing.

Example:
    >>> import polars as pl
    >>> frame = pl.DataFrame({"arm": ["a"] * 6 + ["b"] * 6, "crs": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]})
    >>> table = table1(frame, "arm")
    >>> table.variables[0].result.name, round(table.variables[0].result.p, 4)
    ("Fisher's exact test", 0.5671)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
import polars as pl

from tocsin.stats.hypothesis_tests import (
    DEFAULT_EXACT_LIMIT,
    DEFAULT_RESAMPLES,
    ExactTestTooLarge,
    HypothesisTestResult,
    TestNotApplicable,
    WilcoxonTies,
    expected_counts,
    fisher_exact,
    fisher_monte_carlo,
    kruskal_wallis,
    pearson_chi_square,
    t_test,
    wilcoxon_rank_sum,
)
from tocsin.stats.input_checks import StatsInputError, require_columns
from tocsin.stats.multiplicity import Adjustment, adjust_p_values
from tocsin.stats.summaries import QuantileDefinition, categorical_summary, continuous_summary, missing_counts
from tocsin.stats.table1_vocabulary import (
    CATEGORICAL_TESTS,
    CONTINUOUS_STATISTICS,
    LOCATION_TESTS,
    TEST_ALIASES,
    TWO_GROUP_TESTS,
    VariableKind,
)

CATEGORICAL_DISTINCT_LIMIT = 10
"""Numeric columns with fewer distinct values than this are categorical by default (gtsummary's rule)."""
MAX_GROUPS = 20
NUMERIC_TEXT_SHARE = 0.1
"""A text column is taken for numbers with typos when most values are numbers and the others are at most 3
or this share."""
OVERALL = "Overall"
ID_COLUMN = "patient_id"
_GROUP_CODE = "__group_code"


class Table1Error(StatsInputError):
    """The request cannot be honoured as given; the message names the column or option and the fix."""


@dataclass(frozen=True)
class Table1Options:
    """Everything a Table 1 depends on besides the data (each default is gtsummary's or R's)."""

    tests: Mapping[str, str] = field(default_factory=dict)
    kinds: Mapping[str, VariableKind] = field(default_factory=dict)
    continuous_statistics: tuple[str, ...] = ("median-iqr",)
    quantiles: QuantileDefinition = "type2"
    adjust: Adjustment = "none"
    digits: int = 1
    p_digits: int = 3
    exact_limit: int = DEFAULT_EXACT_LIMIT
    seed: int = 1
    resamples: int = DEFAULT_RESAMPLES
    wilcoxon_ties: WilcoxonTies = "normal"
    overall: bool = True


@dataclass(frozen=True)
class GroupColumn:
    """One column of the table: the group's label and its number of patients."""

    label: str
    n: int


@dataclass(frozen=True)
class SummaryRow:
    """One displayed row of a variable: its label and the formatted cell per column label."""

    label: str
    cells: Mapping[str, str]


@dataclass(frozen=True)
class VariableComparison:
    """One variable: its summaries per group, the test chosen (and why), and the P values."""

    variable: str
    kind: VariableKind
    levels: tuple[str, ...]
    rows: tuple[SummaryRow, ...]
    missing: Mapping[str, int]
    statistics: pl.DataFrame
    test_choice: str
    result: HypothesisTestResult | None
    note: str | None
    p_adjusted: float | None = None


@dataclass(frozen=True)
class Table1Result:
    """The whole table; ``summary`` is the display frame (one row per displayed row, text cells)."""

    by: str
    groups: tuple[GroupColumn, ...]
    overall: GroupColumn | None
    excluded_missing_group: int
    variables: tuple[VariableComparison, ...]
    skipped: tuple[str, ...]
    options: Table1Options

    @property
    def warnings(self) -> tuple[str, ...]:
        """Variables whose default test could not be computed within the limits, with the fix."""
        return tuple(f"{v.variable}: {v.note}" for v in self.variables if v.note and v.note.startswith("no P:"))

    @property
    def column_labels(self) -> tuple[str, ...]:
        labels = tuple(g.label for g in self.groups)
        return (*labels, self.overall.label) if self.overall else labels

    @property
    def summary(self) -> pl.DataFrame:
        adjusted = self.options.adjust != "none"
        records = []
        for variable in self.variables:
            result = variable.result
            head = {"variable": variable.variable, "label": variable.variable}
            head |= {label: "" for label in self.column_labels}
            head |= {
                "test": result.name if result else ("not computed" if variable.note else ""),
                "statistic": format_statistic(result.statistic) if result else "",
                "df": format_df(result.df) if result else "",
                "p": format_p(result.p, self.options.p_digits) if result else "",
            }
            if adjusted:
                head["p_adjusted"] = format_p(variable.p_adjusted, self.options.p_digits)
            records.append(head)
            for row in variable.rows:
                line = {"variable": variable.variable, "label": row.label} | dict(row.cells)
                line |= {"test": "", "statistic": "", "df": "", "p": ""} | ({"p_adjusted": ""} if adjusted else {})
                records.append(line)
        columns = ["variable", "label", *self.column_labels, "test", "statistic", "df", "p"]
        columns += ["p_adjusted"] if adjusted else []
        return pl.DataFrame(records, schema={c: pl.String for c in columns})


def format_p(p: float | None, digits: int = 3) -> str:
    """P with ``digits`` decimals, never rounded into a different meaning.

    Below the display precision it reads ``<0.001``; just below 1 it reads ``>0.999`` (never ``1.000``
    unless P is exactly 1); and where rounding would carry P across 0.05, 0.01 or 0.001 (0.0496 → "0.05")
    more decimals are shown (``0.0496``).

    >>> format_p(0.0000123), format_p(0.9996), format_p(0.04962, 2), format_p(0.2544)
    ('<0.001', '>0.999', '0.0496', '0.254')
    """
    if p is None or math.isnan(p):
        return "—"
    floor = 10.0**-digits
    if p < floor:
        return f"<{floor:.{digits}f}"
    if p >= 1.0:
        return f"{1.0:.{digits}f}"
    if round(p, digits) >= 1.0:
        return f">{1.0 - floor:.{digits}f}"
    shown = digits
    while shown < digits + 6 and any((p < b) != (round(p, shown) < b) for b in (0.05, 0.01, 0.001)):
        shown += 1
    return f"{p:.{shown}f}"


def format_statistic(value: float | None) -> str:
    """Test statistic with 2 decimals (``—`` when the test has none, as Fisher's)."""
    return "—" if value is None else f"{value:.2f}"


def format_df(value: float | None) -> str:
    """Degrees of freedom: whole numbers as such, Welch's fractional df with 2 decimals."""
    if value is None:
        return "—"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def parse_assignments(texts: Sequence[str], allowed: Sequence[str], option: str) -> dict[str, str]:
    """``["age=t-welch", ...]`` → ``{"age": "t-welch"}``; the error names the bad item and the allowed values."""
    parsed: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip().lower()
        value = TEST_ALIASES.get(value, value)
        if not sep or not name or not value:
            raise Table1Error(f"{option} '{text}': write VARIABLE=VALUE, e.g. {option} age={allowed[0]}")
        if value not in allowed:
            raise Table1Error(f"{option} '{text}': unknown '{value}'; use one of {', '.join(allowed)}")
        if name in parsed and parsed[name] != value:
            raise Table1Error(f"{option} gives '{name}' twice ({parsed[name]}, {value}); keep one")
        parsed[name] = value
    return parsed


def _kind(series: pl.Series) -> VariableKind | None:
    dtype = series.dtype
    if dtype in (pl.Boolean, pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    if dtype.is_numeric():
        return "categorical" if series.drop_nulls().n_unique() < CATEGORICAL_DISTINCT_LIMIT else "continuous"
    return None


def _label(value: object) -> str:
    """How a group or level value is shown: booleans as true/false, everything else as str()."""
    return "true" if value is True else "false" if value is False else str(value)


def _percent(n: int, percent: float, digits: int) -> str:
    return f"{n} ({percent:.{digits}f}%)" if not math.isnan(percent) else f"{n}"


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _continuous_cell(stats_row: dict, statistic: str, digits: int) -> str:
    if not stats_row or stats_row["n"] == 0:
        return "—"
    values = {k: _number(stats_row[k], digits) for k in ("median", "q1", "q3", "min", "max", "mean", "sd")}
    return {
        "median-iqr": f"{values['median']} ({values['q1']}, {values['q3']})",
        "median-range": f"{values['median']} ({values['min']}–{values['max']})",
        "mean-sd": f"{values['mean']} ({values['sd']})",
    }[statistic]


def _select_variables(
    frame: pl.DataFrame, by: str, variables: Sequence[str] | None
) -> tuple[dict[str, VariableKind], list[str]]:
    """The variables with their inferred kind, and the columns left out for their type (default selection)."""
    if variables:
        require_columns(frame, variables, Table1Error)
        if by in variables:
            raise Table1Error(f"'{by}' is the group column (--by); it cannot also be a variable (--var)")
        candidates = list(dict.fromkeys(variables))
    else:
        candidates = [c for c in frame.columns if c not in (by, ID_COLUMN)]
    inferred = {c: _kind(frame.get_column(c)) for c in candidates}
    unusable = [c for c, kind in inferred.items() if kind is None]
    if variables and unusable:
        kinds = ", ".join(f"'{v}' ({frame.schema[v]})" for v in unusable)
        raise Table1Error(f"{kinds}: Table 1 summarises numbers, text and booleans; convert or leave it out")
    return {c: kind for c, kind in inferred.items() if kind is not None}, unusable


def _refuse_numbers_stored_as_text(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    """A text column whose values are nearly all numbers is a typo away from numeric: name the stray values.

    Summarised as categories it would give one row per distinct number; the fix is in the data (or
    ``--type VAR=categorical`` if the text is meant).
    """
    for column in columns:
        series = frame.get_column(column)
        if series.dtype != pl.String:
            continue
        present = series.drop_nulls()
        numbers = present.str.strip_chars().cast(pl.Float64, strict=False)
        stray = int(numbers.null_count())
        if stray == 0 or stray > max(3, NUMERIC_TEXT_SHARE * len(present)) or 2 * stray >= len(present):
            continue
        rows = frame.with_row_index("row", offset=1).filter(
            pl.col(column).is_not_null() & pl.col(column).str.strip_chars().cast(pl.Float64, strict=False).is_null()
        )
        shown = [
            f"'{r[column]}' (data row {r['row']}" + (f", patient {r[ID_COLUMN]})" if ID_COLUMN in r else ")")
            for r in rows.head(3).iter_rows(named=True)
        ]
        raise Table1Error(
            f"column '{column}' is numeric except {stray} value(s): {', '.join(shown)}; correct or blank them "
            f"(missing = empty or NA), or use --type {column}=categorical if the text is meant"
        )


def _grouped(frame: pl.DataFrame, by: str) -> tuple[pl.DataFrame, list[GroupColumn], int]:
    if by not in frame.columns:
        raise Table1Error(f"no group column '{by}' in the table; it has {', '.join(frame.columns)}")
    values = frame.get_column(by).drop_nulls().unique().sort()
    labels = [_label(v) for v in values.to_list()]
    if len(labels) < 2:
        shown = f"one value ('{labels[0]}')" if labels else "no values"
        raise Table1Error(
            f"group column '{by}' has {shown}; a comparison needs at least 2 groups (choose another --by)"
        )
    if len(labels) > MAX_GROUPS:
        raise Table1Error(
            f"group column '{by}' has {len(labels)} distinct values (at most {MAX_GROUPS}); "
            "is it continuous? Group it into categories first, or choose another --by"
        )
    excluded = frame.get_column(by).null_count()
    coded = frame.filter(pl.col(by).is_not_null()).with_columns(
        pl.col(by).rank("dense").cast(pl.Int64).sub(1).alias(_GROUP_CODE)
    )
    sizes = coded.group_by(_GROUP_CODE).len().sort(_GROUP_CODE).get_column("len").to_list()
    return coded, [GroupColumn(label, int(size)) for label, size in zip(labels, sizes, strict=True)], excluded


def _check_requested(variable: str, kind: VariableKind, test: str, numeric: bool, n_groups: int, by: str) -> None:
    if test in CATEGORICAL_TESTS and kind == "continuous":
        raise Table1Error(
            f"--test {variable}={test}: that test compares counts of categories and '{variable}' is continuous; "
            f"use {', '.join(LOCATION_TESTS)}, or declare it categorical with --type {variable}=categorical"
        )
    if test in LOCATION_TESTS and not numeric:
        raise Table1Error(
            f"--test {variable}={test}: that test compares numbers and '{variable}' is not numeric; "
            f"use {', '.join(CATEGORICAL_TESTS)}"
        )
    if test in TWO_GROUP_TESTS and n_groups != 2:
        raise Table1Error(
            f"--test {variable}={test}: that test compares 2 groups and '{by}' has {n_groups}; use kruskal"
        )


def _run_categorical_test(
    variable: str, table: np.ndarray, requested: str | None, options: Table1Options
) -> tuple[HypothesisTestResult | None, str, str | None]:
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        what = "one level" if table.shape[0] < 2 else "one group with values"
        return None, f"no test: only {what}", f"no test: only {what}"
    if requested:
        choice = f"requested ({requested})"
        test = requested
    else:
        smallest = float(expected_counts(table).min())
        test = "chisq" if smallest >= 5 else "fisher"
        choice = (
            f"default: every expected count ≥ 5 (smallest {smallest:.2f}) → Pearson χ² without correction"
            if test == "chisq"
            else f"default: an expected count < 5 (smallest {smallest:.2f}) → Fisher's exact test"
        )
    try:
        if test == "chisq":
            return pearson_chi_square(table), choice, None
        if test == "chisq-yates":
            return pearson_chi_square(table, yates=True), choice, None
        if test == "fisher-mc":
            return fisher_monte_carlo(table, seed=options.seed, resamples=options.resamples), choice, None
        return fisher_exact(table, limit=options.exact_limit), choice, None
    except ExactTestTooLarge as exc:
        fix = (
            f"choose --test {variable}=fisher-mc (Monte-Carlo, seeded by --seed), --test {variable}=chisq, "
            "or raise --exact-limit"
        )
        if requested:
            raise Table1Error(f"--test {variable}={requested}: {exc}; {fix}") from exc
        # A default choice falls back to the Monte-Carlo P of the same test (R's simulate.p.value = TRUE),
        # seeded and so reproducible, and says so: a P with its method named serves more than none.
        result = fisher_monte_carlo(table, seed=options.seed, resamples=options.resamples)
        fallback = (
            f"{choice}; the exact test is beyond the work limit ({options.exact_limit:,} "
            f"partial tables) → Monte-Carlo P ({options.resamples:,} tables, seed {options.seed})"
        )
        return result, fallback, None
    except TestNotApplicable as exc:
        if requested:
            raise Table1Error(f"--test {variable}={requested}: {exc}") from exc
        return None, choice, f"no test: {exc}"


def _run_location_test(
    variable: str, samples: list[np.ndarray], requested: str | None, ties: WilcoxonTies
) -> tuple[HypothesisTestResult | None, str, str | None]:
    present = [s for s in samples if s.size]
    if len(present) < 2:
        return None, "no test: fewer than 2 groups with values", "no test: fewer than 2 groups with values"
    if requested:
        test, choice = requested, f"requested ({requested})"
    elif len(samples) == 2:
        test, choice = "wilcoxon", "default: continuous, 2 groups → Wilcoxon rank-sum"
    else:
        test, choice = "kruskal", f"default: continuous, {len(samples)} groups → Kruskal–Wallis"
    try:
        if test == "kruskal":
            return kruskal_wallis(samples), choice, None
        if test == "wilcoxon":
            return wilcoxon_rank_sum(samples[0], samples[1], ties=ties), choice, None
        return t_test(samples[0], samples[1], equal_variance=test == "t-pooled"), choice, None
    except TestNotApplicable as exc:
        if requested:
            raise Table1Error(f"--test {variable}={requested}: {exc}") from exc
        return None, choice, f"no test: {exc}"


def _categorical_rows(
    frame: pl.DataFrame, variable: str, column_labels: list[str], n_groups: int, digits: int
) -> tuple[list[str], list[SummaryRow], np.ndarray, pl.DataFrame]:
    """Levels, one row per level, the levels × groups table of counts, and the numbers per column."""
    counts = categorical_summary(frame, variable, _GROUP_CODE)
    levels = [_label(v) for v in frame.get_column(variable).drop_nulls().unique().sort().to_list()]
    by_cell = {(code, _label(level)): (n, pct) for code, level, n, pct in counts.iter_rows()}
    rows = [
        SummaryRow(
            level,
            {
                label: _percent(*by_cell.get((code, level), (0, math.nan)), digits)
                for code, label in enumerate(column_labels)
            },
        )
        for level in levels
    ]
    table = np.array(
        [[by_cell.get((code, level), (0, 0.0))[0] for code in range(n_groups)] for level in levels], dtype=np.int64
    ).reshape(len(levels), n_groups)
    return levels, rows, table, counts


def _continuous_rows(
    frame: pl.DataFrame, variable: str, column_labels: list[str], n_groups: int, options: Table1Options
) -> tuple[list[SummaryRow], list[np.ndarray], pl.DataFrame]:
    """One row per chosen statistic, the values of each group, and the numbers per column."""
    summary = continuous_summary(frame, variable, _GROUP_CODE, options.quantiles)
    by_code = {row["group"]: row for row in summary.iter_rows(named=True)}
    rows = [
        SummaryRow(
            CONTINUOUS_STATISTICS[statistic],
            {
                label: _continuous_cell(by_code.get(code, {}), statistic, options.digits)
                for code, label in enumerate(column_labels)
            },
        )
        for statistic in options.continuous_statistics
    ]
    present = frame.filter(pl.col(_GROUP_CODE) < n_groups).select(_GROUP_CODE, pl.col(variable).cast(pl.Float64))
    present = present.drop_nulls()
    codes = present.get_column(_GROUP_CODE).to_numpy()
    values = present.get_column(variable).to_numpy()
    return rows, [values[codes == code] for code in range(n_groups)], summary


def _compare(
    frame: pl.DataFrame,
    variable: str,
    kind: VariableKind,
    groups: list[GroupColumn],
    overall: GroupColumn | None,
    requested: str | None,
    options: Table1Options,
) -> VariableComparison:
    """Summaries per group (the Overall column is one more group code) and the test of one variable."""
    column_labels = [g.label for g in groups] + ([overall.label] if overall else [])
    frame = frame.select(_GROUP_CODE, variable)
    if overall:
        frame = pl.concat([frame, frame.with_columns(pl.lit(len(groups)).cast(pl.Int64).alias(_GROUP_CODE))])
    missing = {
        column_labels[code]: int(m)
        for code, m in missing_counts(frame, variable, _GROUP_CODE).select("group", "missing").iter_rows()
    }
    not_tested = (None, "not tested (--test none)", None)
    levels: list[str] = []
    if kind == "categorical":
        levels, rows, table, statistics = _categorical_rows(frame, variable, column_labels, len(groups), options.digits)
        outcome = not_tested if requested == "none" else _run_categorical_test(variable, table, requested, options)
    else:
        rows, samples, statistics = _continuous_rows(frame, variable, column_labels, len(groups), options)
        outcome = (
            not_tested
            if requested == "none"
            else _run_location_test(variable, samples, requested, options.wilcoxon_ties)
        )
    if any(missing.values()):
        rows.append(SummaryRow("Missing", {label: str(missing.get(label, 0)) for label in column_labels}))
    result, choice, note = outcome
    return VariableComparison(
        variable=variable,
        kind=kind,
        levels=tuple(levels),
        rows=tuple(rows),
        missing=MappingProxyType(missing),
        statistics=statistics.with_columns(
            pl.col("group").replace_strict(list(range(len(column_labels))), column_labels, return_dtype=pl.String)
        ),
        test_choice=choice,
        result=result,
        note=note,
    )


def table1(
    frame: pl.DataFrame,
    by: str,
    variables: Sequence[str] | None = None,
    options: Table1Options | None = None,
) -> Table1Result:
    """Summarise ``variables`` (default: every usable column but ``by`` and ``patient_id``) per ``by`` group."""
    options = options or Table1Options()
    unknown_statistics = [s for s in options.continuous_statistics if s not in CONTINUOUS_STATISTICS]
    if unknown_statistics or not options.continuous_statistics:
        raise Table1Error(f"unknown statistic {unknown_statistics}; use {', '.join(CONTINUOUS_STATISTICS)}")
    coded, groups, excluded = _grouped(frame, by)
    chosen, skipped = _select_variables(frame, by, variables)
    _refuse_numbers_stored_as_text(frame, [c for c in chosen if c not in options.kinds])
    for name, mapping in (("--test", options.tests), ("--type", options.kinds)):
        stray = [v for v in mapping if v not in chosen]
        if stray:
            raise Table1Error(
                f"{name} names {', '.join(repr(v) for v in stray)}, not among the table's variables "
                f"({', '.join(chosen)}); add it with --var or fix the name"
            )
    labels = {g.label for g in groups}
    overall = None
    if options.overall:
        overall_label = OVERALL if OVERALL not in labels else f"{OVERALL} (all groups)"
        overall = GroupColumn(overall_label, sum(g.n for g in groups))
    comparisons = []
    for variable in chosen:
        series = coded.get_column(variable)
        kind = options.kinds.get(variable) or chosen[variable]
        if kind == "continuous" and not series.dtype.is_numeric():
            raise Table1Error(f"--type {variable}=continuous: '{variable}' is {series.dtype}, not numeric")
        requested = options.tests.get(variable)
        if requested and requested != "none":
            _check_requested(variable, kind, requested, series.dtype.is_numeric(), len(groups), by)
        comparisons.append(_compare(coded, variable, kind, groups, overall, requested, options))
    adjusted = adjust_p_values([c.result.p if c.result else None for c in comparisons], options.adjust)
    if options.adjust != "none":
        comparisons = [replace(c, p_adjusted=p) for c, p in zip(comparisons, adjusted, strict=True)]
    return Table1Result(
        by=by,
        groups=tuple(groups),
        overall=overall,
        excluded_missing_group=excluded,
        variables=tuple(comparisons),
        skipped=tuple(skipped),
        options=options,
    )
