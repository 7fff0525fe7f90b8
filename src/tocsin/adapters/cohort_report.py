"""The cohort report: one self-contained HTML page with the tables and curves of a CAR-T cohort paper.

:func:`build_cohort_report` runs the existing estimators on a one-row-per-patient table (the columns of
``tocsin cohort derive``, or others named in :class:`ReportColumns`) and collects the sections; each section
is built only when its columns are in the table, and the report lists the sections left out with the
columns that would enable them. :func:`render_cohort_report` turns the result into HTML (figures inline as
SVG, no script, no style sheet link, no network; no date, so the same input gives the same bytes) and
:func:`write_cohort_report` writes it atomically.

Sections (in order): provenance; Table 1 by group (:func:`tocsin.stats.table1.table1`, default tests);
incidence of each toxicity by grade with exact Clopper–Pearson CIs (:func:`tocsin.stats.incidence.incidence`);
CRS and ICANS durations by grade with ongoing episodes censored (:func:`tocsin.stats.durations.duration_summary`);
a swimmer plot of toxicity episodes; Kaplan–Meier OS and PFS with log-rank P, reverse-KM median follow-up
and survival at landmark times (the same document as ``tocsin cohort survival --json``); cumulative incidence
of relapse and non-relapse mortality with Gray's test.

The swimmer plot draws the engine's episode tables when they are given (an :class:`Episodes`, which
``tocsin cohort report --episodes DIR`` reads from a ``tocsin batch`` directory), else one bar per toxicity per
patient built from the patient table (:func:`episodes_from_patient_table`): onset, summed duration and maximum
grade, so episodes separated by a gap are drawn as one bar.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tocsin import __version__
from tocsin.adapters.atomic_write import write_bytes_atomically
from tocsin.adapters.competing_output import format_p
from tocsin.adapters.incidence_output import category_label, incidence_table
from tocsin.adapters.patient_report import REPORT_CSS
from tocsin.adapters.plots.cohort_figures import cuminc_figure, km_figure, swimmer_figure
from tocsin.adapters.plots.style import figure_svg
from tocsin.adapters.survival_output import survival_document
from tocsin.adapters.table1_output import TABLE1_CSS, table1_html_fragment
from tocsin.cohort.columns import load_columns
from tocsin.stats.durations import duration_summary
from tocsin.stats.incidence import incidence
from tocsin.stats.input_checks import StatsInputError, flag_column, grade_column, numeric_column
from tocsin.stats.proportions import CI_METHOD_LABEL, CIMethod
from tocsin.stats.survival.aalen_johansen import cumulative_incidence_from
from tocsin.stats.survival.competing_events import CompetingRisksInputError, prepare_competing_events
from tocsin.stats.survival.follow_up import reverse_km_follow_up
from tocsin.stats.survival.gray_test import gray_test_from
from tocsin.stats.survival.inputs import SurvivalInputError, survival_inputs
from tocsin.stats.survival.kaplan_meier import KaplanMeierResult, kaplan_meier
from tocsin.stats.survival.logrank import logrank_test
from tocsin.stats.table1 import Table1Error, table1

ID_COLUMN = "patient_id"
#: Confidence bands of more groups overlap into one smear; above this the figures leave them to the tables.
MAX_GROUPS_WITH_BANDS = 2
ALL_PATIENTS = "All patients"
#: Status codes of the relapse / non-relapse-mortality column, as docs/cohort_columns.md defines them.
RELAPSE_CODE, NRM_CODE, CENSORED_CODE = 1, 2, 0
CAUSE_NAMES = {RELAPSE_CODE: "Relapse", NRM_CODE: "Non-relapse mortality"}
TOXICITY_TITLES = {
    "crs_max_grade": "CRS (ASTCT 2019)",
    "crs_max_grade_lee2014": "CRS (Lee 2014)",
    "icans_max_grade": "ICANS (ASTCT 2019)",
    "icaht_early_grade": "Early ICAHT (days 0–30)",
    "icaht_late_grade": "Late ICAHT (after day 30)",
}
_CSS = (
    REPORT_CSS
    + TABLE1_CSS
    + "td.num,th.num{text-align:right}tr.head td{font-weight:600;background:#fafafa}"
    + "ul.omitted li{margin:.2em 0}p.caption{font-size:.85em;color:#444;max-width:60em}"
)


class CohortReportError(ValueError):
    """The report cannot be built from the table as given; the message names the section, column and fix."""


@dataclass(frozen=True)
class ToxicityColumns:
    """The patient-table columns of one toxicity (CRS or ICANS)."""

    name: str
    grade: str
    onset: str
    duration: str
    ongoing: str


@dataclass(frozen=True)
class Endpoint:
    """A time-to-event endpoint: its title and its time (days since infusion) and 0/1 event columns."""

    title: str
    time: str
    event: str


@dataclass(frozen=True)
class ReportColumns:
    """Which columns each section reads (the CLI fills them with the agreed names of the patient table)."""

    grades: tuple[str, ...]
    crs: ToxicityColumns
    icans: ToxicityColumns
    os: Endpoint
    pfs: Endpoint
    competing_time: str
    competing_status: str


@dataclass(frozen=True)
class ReportOptions:
    """What shapes the report besides the data. Times are reported in ``time_unit`` = days / ``days_per_unit``."""

    columns: ReportColumns
    time_unit: str
    days_per_unit: float
    by: str | None = None
    table1_variables: tuple[str, ...] | None = None
    landmarks: tuple[float, ...] = (12.0,)
    swimmer_max: int = 200


@dataclass(frozen=True)
class Provenance:
    """Where the patient table came from: its path, and the derive method document beside it (if any)."""

    table_path: Path
    method_path: Path | None = None
    method: dict[str, Any] | None = None


@dataclass(frozen=True)
class Episodes:
    """Toxicity episodes for the swimmer plot (``EPISODE_COLUMNS``), optional treatment markers, and their origin."""

    crs: pl.DataFrame
    icans: pl.DataFrame
    origin: str
    treatments: pl.DataFrame | None = None


@dataclass(frozen=True)
class Section:
    """One built section: an anchor id, a title and its HTML body."""

    anchor: str
    title: str
    body: str


@dataclass(frozen=True)
class Omission:
    """A section left out, and what would enable it."""

    title: str
    needs: str


@dataclass(frozen=True)
class CohortReport:
    provenance: Provenance
    n_patients: int
    options: ReportOptions
    sections: tuple[Section, ...]
    omissions: tuple[Omission, ...]


# ------------------------------------------------------------------ formatting


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}%"


def _interval(point: dict[str, Any]) -> str:
    """' (lower–upper)' as percentages; nothing where the log-log interval is undefined (an estimate of 0 or 1)."""
    if point["lower"] is None or point["upper"] is None:
        return ""
    return f" ({_percent(point['lower'])}–{_percent(point['upper'])})"


def _not_reached(value: float | None) -> str:
    return "NR" if value is None else _number(value)


def _estimate_ci(value: float | None, lower: float | None, upper: float | None) -> str:
    return f"{_not_reached(value)} ({_not_reached(lower)}–{_not_reached(upper)})"


def _landmark(value: float) -> str:
    return f"{value:g}"


def _missing(table: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c not in table.columns]


def _needs(columns: Sequence[str]) -> str:
    return "columns " + ", ".join(f"<code>{html.escape(c)}</code>" for c in columns)


def _rows_table(headers: Sequence[str], rows: Sequence[tuple[bool, Sequence[str]]], numeric_from: int) -> str:
    """A table whose first ``numeric_from`` columns are text and the rest right-aligned; rows marked True are
    headings (bold), the others have their first cell indented under them."""
    head = "".join(
        f'<th{" class=num" if i >= numeric_from else ""}>{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for is_head, cells in rows:
        classes = ["" if is_head else " class=level", *[" class=num" if i >= numeric_from else "" for i in
                                                          range(1, len(cells))]]
        tds = "".join(f"<td{css}>{html.escape(c)}</td>" for css, c in zip(classes, cells, strict=True))
        body.append(f'<tr{" class=head" if is_head else ""}>{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(figure: Any, anchor: str, caption: str) -> str:
    svg = figure_svg(figure, id_prefix=f"{anchor}-")
    return f'<figure id="{anchor}">{svg}</figure><p class="caption">{html.escape(caption)}</p>'


# ------------------------------------------------------------------ sections


def _group_levels(table: pl.DataFrame, by: str) -> list[str]:
    if by not in table.columns:
        raise CohortReportError(f"--by {by}: no such column; the table has {', '.join(table.columns)}")
    levels = table.get_column(by).drop_nulls().cast(pl.String).unique().sort().to_list()
    if len(levels) < 2:
        shown = f"one value ({levels[0]!r})" if levels else "no values"
        raise CohortReportError(
            f"--by {by}: the column has {shown}; comparing groups needs at least 2 (choose another column)"
        )
    return levels


def _table1_variables(table: pl.DataFrame, options: ReportOptions) -> tuple[list[str] | None, str]:
    """The variables of Table 1 and a sentence saying how they were chosen."""
    if options.table1_variables:
        return list(options.table1_variables), "the variables named with --table1-var"
    baseline = [
        c.name
        for c in load_columns().columns
        if c.group == "baseline" and c.name in table.columns and c.name not in (options.by, ID_COLUMN)
    ]
    if baseline:
        return baseline, "the baseline columns of the patient-table dictionary present in the table"
    return None, "every usable column (the table has none of the dictionary's baseline columns)"


def _table1_section(table: pl.DataFrame, options: ReportOptions, by: str) -> Section:
    variables, chosen = _table1_variables(table, options)
    try:
        result = table1(table, by, variables)
    except Table1Error as exc:
        raise CohortReportError(f"Table 1: {exc}") from exc
    warnings = "".join(f'<p class="note">warning: {html.escape(w)}</p>' for w in result.warnings)
    intro = (
        f"<p>Characteristics by <code>{html.escape(by)}</code>: {html.escape(chosen)}. Tests are the "
        "defaults of <code>tocsin cohort table1</code> (gtsummary's): Wilcoxon rank-sum / Kruskal–Wallis for "
        "continuous variables, Pearson χ² or Fisher's exact test for categorical ones.</p>"
    )
    return Section("table1", f"Table 1 by {by}", intro + table1_html_fragment(result) + warnings)


def _incidence_section(table: pl.DataFrame, options: ReportOptions, grades: list[str]) -> Section:
    try:
        result = incidence(table, grades, by=options.by, method=CIMethod.CLOPPER_PEARSON)
    except StatsInputError as exc:
        raise CohortReportError(f"incidence: {exc}") from exc
    frame = incidence_table(result)
    groups: list[str | None] = [None, *(_group_levels(table, options.by) if options.by else [])]
    sizes = {None: table.height}
    if options.by:
        sizes |= {
            str(k): int(n) for k, n in table.get_column(options.by).cast(pl.String).value_counts().iter_rows()
        }
    headers = ["Toxicity / grade", *[f"{g or ALL_PATIENTS} (N = {sizes.get(g, 0)})" for g in groups]]
    rows: list[tuple[bool, list[str]]] = []
    for toxicity in result.toxicities:
        mine = frame.filter(pl.col("toxicity") == toxicity)
        by_cell = {(r["group"], r["kind"], r["grade"]): r for r in mine.iter_rows(named=True)}
        first = {r["group"]: r for r in mine.filter((pl.col("kind") == "at_least") & (pl.col("grade") == 1))
                 .iter_rows(named=True)}
        rows.append((True, [TOXICITY_TITLES.get(toxicity, toxicity),
                            *[_assessed(first.get(g)) for g in groups]]))
        for kind, grade in mine.select("kind", "grade").unique(maintain_order=True).iter_rows():
            cells = []
            for g in groups:
                row = by_cell.get((g, kind, grade))
                cells.append("—" if row is None or row["n_known"] == 0 else
                             f"{row['events']}/{row['n_known']} ({_percent(row['estimate'])}; "
                             f"{_percent(row['lower'])}–{_percent(row['upper'])})")
            rows.append((False, [category_label(kind, grade), *cells]))
    note = (
        f"<p class='note'>n/N (%; 95% CI, {html.escape(CI_METHOD_LABEL[result.method])}). N = patients whose grade "
        "is known; patients not assessed are counted on the toxicity's first row and never as grade 0.</p>"
    )
    return Section("incidence", "Incidence by grade", _rows_table(headers, rows, 1) + note)


def _assessed(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    unknown = f", {row['n_unknown']} not assessed" if row["n_unknown"] else ""
    return f"assessed {row['n_known']}{unknown}"


def _durations_section(table: pl.DataFrame, options: ReportOptions, toxicities: list[ToxicityColumns]) -> Section:
    parts = []
    for toxicity in toxicities:
        try:
            result = duration_summary(table, toxicity.duration, toxicity.ongoing, grade=toxicity.grade, by=options.by)
        except StatsInputError as exc:
            raise CohortReportError(f"{toxicity.name} durations: {exc}") from exc
        headers = ["Group", "Grade", "Episodes", "Resolved", "Ongoing", "Unknown", "Median (IQR), resolved",
                   "Range, resolved", "KM median (ongoing censored)"]
        rows = []
        for row in result.summary.iter_rows(named=True):
            resolved = row["n_resolved"] > 0
            rows.append((row["grade"] is None, [
                row["group"] or ALL_PATIENTS,
                "all grades" if row["grade"] is None else str(row["grade"]),
                str(row["n_episodes"]), str(row["n_resolved"]), str(row["n_ongoing"]), str(row["n_unknown"]),
                f"{_number(row['resolved_median'])} ({_number(row['resolved_q1'])}–{_number(row['resolved_q3'])})"
                if resolved else "—",
                f"{_number(row['resolved_min'])}–{_number(row['resolved_max'])}" if resolved else "—",
                _number(row["km_median"]),
            ]))
        parts.append(f"<h3>{html.escape(toxicity.name)}: <code>{html.escape(toxicity.duration)}</code> by "
                     f"<code>{html.escape(toxicity.grade)}</code></h3>" + _rows_table(headers, rows, 2))
    note = (
        "<p class='note'>Days. A patient's duration is the sum of their episodes (onset to resolution); an episode "
        "still ongoing at the last observation counts to that observation. The resolved-only median leaves ongoing "
        "episodes out (and so is biased down); the Kaplan–Meier median counts them as censored at their observed "
        "duration. Quartiles: R type 7.</p>"
    )
    return Section("durations", "Durations by grade", "".join(parts) + note)


def episodes_from_patient_table(table: pl.DataFrame, toxicity: ToxicityColumns) -> pl.DataFrame:
    """One episode row (``EPISODE_COLUMNS``) per patient with the toxicity: onset, summed duration, max grade.

    Raises :class:`StatsInputError` naming the column and patient for a value that is not a grade, a day or a flag.
    """
    frame = pl.DataFrame({
        "patient_id": table.get_column(ID_COLUMN).cast(pl.String),
        "episode": pl.Series([1] * table.height, dtype=pl.Int64),
        "onset_day": numeric_column(table, toxicity.onset, ID_COLUMN, "an onset is a day since infusion"),
        "peak_grade": grade_column(table, toxicity.grade, ID_COLUMN),
        "duration_days": numeric_column(table, toxicity.duration, ID_COLUMN, "a duration is a number of days"),
        "ongoing": flag_column(table, toxicity.ongoing, ID_COLUMN).fill_null(False),
    })
    return frame.filter((pl.col("peak_grade") >= 1) & pl.col("onset_day").is_not_null())


def _swimmer_section(table: pl.DataFrame, episodes: Episodes, max_patients: int) -> Section:
    crs, icans, treatments = episodes.crs, episodes.icans, episodes.treatments
    if ID_COLUMN in table.columns:
        # the report is about the patients of the table: episodes of other patients in the directory are left out
        crs, icans, treatments = _only(table.get_column(ID_COLUMN).cast(pl.String), crs, icans, treatments)
    with_episode = pl.concat([crs.select(pl.col("patient_id").cast(pl.String)),
                              icans.select(pl.col("patient_id").cast(pl.String))]).get_column("patient_id")
    with_episode = with_episode.unique().sort()
    if with_episode.len() == 0:
        return Section("swimmer", "Toxicity episodes", "<p>No patient had a CRS or ICANS episode (grade ≥ 1).</p>")
    shown = f"The {with_episode.len()} patient(s) with at least one episode"
    if with_episode.len() > max_patients:
        # a lane per patient of a large cohort is a figure nobody can read: a reproducible random sample instead
        crs, icans, treatments = _only(with_episode.sample(max_patients, seed=0), crs, icans, treatments)
        shown = (f"A random sample (seed 0) of {max_patients} of the {with_episode.len()} patients with at least "
                 "one episode (--swimmer-max)")
    figure = swimmer_figure(crs, icans, treatments, title=None)
    caption = (
        f"{shown}, ordered by first onset. {episodes.origin} "
        "Bar colour = peak grade; an arrow marks an episode still ongoing at the last observation."
    )
    return Section("swimmer", "Toxicity episodes", _figure(figure, "swimmer-figure", caption))


def _only(
    ids: pl.Series, crs: pl.DataFrame, icans: pl.DataFrame, treatments: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    keep = pl.col("patient_id").cast(pl.String).is_in(ids.to_list())
    return crs.filter(keep), icans.filter(keep), treatments.filter(keep) if treatments is not None else None


def _survival_document(
    times: np.ndarray, event: np.ndarray, group: np.ndarray | None, options: ReportOptions, endpoint: Endpoint
) -> tuple[KaplanMeierResult, dict[str, Any]]:
    """The curves and the document ``tocsin cohort survival --json --time-unit UNIT --at ...`` gives."""
    curves = kaplan_meier(times, event, group)
    try:
        test = logrank_test(times, event, group) if group is not None else None
    except ValueError as exc:
        raise CohortReportError(f"{endpoint.title}: {exc}") from exc
    document = survival_document(
        curves,
        curves.survival_at(list(options.landmarks)),
        reverse_km_follow_up(times, event, group),
        None,
        test,
        columns={"time": endpoint.time, "event": endpoint.event, "by": options.by if group is not None else None,
                 "strata": None},
        time_unit=options.time_unit,
    )
    return curves, document


def _survival_row(label: str, group: dict[str, Any], heading: bool = False) -> tuple[bool, list[str]]:
    landmarks = [
        "beyond follow-up" if point["survival"] is None else
        f"{_percent(point['survival'])} ± {_percent(point['std_err'])}{_interval(point)}; {point['n_risk']}"
        for point in group["survival_at"]
    ]
    follow = group["follow_up"]
    return (heading, [
        label, str(group["n"]), str(group["events"]),
        _estimate_ci(group["median"], group["median_lower"], group["median_upper"]),
        *landmarks,
        _estimate_ci(follow["median"], follow["lower"], follow["upper"]),
    ])


def _survival_section(table: pl.DataFrame, options: ReportOptions, endpoint: Endpoint) -> Section:
    try:
        inputs = survival_inputs(table, endpoint.time, endpoint.event, group=options.by)
    except SurvivalInputError as exc:
        raise CohortReportError(f"{endpoint.title}: {exc}") from exc
    times = inputs.time / options.days_per_unit
    overall_curves, overall = _survival_document(times, inputs.event, None, options, endpoint)
    rows = [_survival_row(ALL_PATIENTS, overall["groups"][0], heading=options.by is not None)]
    plotted = overall_curves.summary.with_columns(pl.lit(None, pl.String).alias("group"))
    body_after = ""
    if options.by:
        curves, grouped = _survival_document(times, inputs.event, inputs.group, options, endpoint)
        rows += [_survival_row(group["group"], group) for group in grouped["groups"]]
        plotted = curves.summary
        test = grouped["test"]
        body_after = (f"<p>Log-rank test: χ² = {_number(test['statistic'], 3)} on {test['df']} df, "
                      f"P = {format_p(test['p'])}</p>")
    unit = options.time_unit
    singular = unit[:-1] if unit.endswith("s") else unit
    headers = ["Group", "N", "Events", f"Median, {unit} (95% CI)",
               *[f"{_landmark(t)}-{singular} survival ± SE (95% CI); at risk" for t in options.landmarks],
               f"Median follow-up, {unit} (95% CI)"]
    n_curves = plotted.get_column("group").n_unique()
    figure = km_figure(plotted, time_label=f"Time since infusion ({unit})", y_label=f"{endpoint.title} (probability)",
                       confidence=n_curves <= MAX_GROUPS_WITH_BANDS)
    caption = (
        f"Kaplan–Meier estimate of {endpoint.title.lower()} from {endpoint.time} / {endpoint.event}, "
        + _bands_phrase(n_curves, "pointwise log-log confidence bands (Greenwood variance)")
        + ", censored patients as ticks and the numbers at risk below. NR = not reached. Median follow-up by the "
        "reverse Kaplan–Meier method (Schemper & Smith 1996)."
    )
    anchor = endpoint.title.lower().replace(" ", "-")
    return Section(anchor, endpoint.title,
                   _rows_table(headers, rows, 1) + body_after + _figure(figure, f"{anchor}-figure", caption))


def _competing_section(table: pl.DataFrame, options: ReportOptions) -> Section:
    columns = options.columns
    names = (
        [f"patient {v}" for v in table.get_column(ID_COLUMN).cast(pl.String).to_list()]
        if ID_COLUMN in table.columns else None
    )
    time = table.get_column(columns.competing_time)
    if not time.dtype.is_numeric():
        raise CohortReportError(
            f"relapse / non-relapse mortality: column {columns.competing_time!r} holds {time.dtype}, not days; "
            "give a column of numbers (days since infusion)"
        )
    status = table.get_column(columns.competing_status).to_list()
    days = (time.cast(pl.Float64) / options.days_per_unit).to_numpy()
    groups = table.get_column(options.by).cast(pl.String).to_list() if options.by else None
    try:
        overall = prepare_competing_events(days, status, [RELAPSE_CODE, NRM_CODE], [CENSORED_CODE], None, names)
        grouped = (prepare_competing_events(days, status, [RELAPSE_CODE, NRM_CODE], [CENSORED_CODE], groups, names)
                   if groups else None)
    except CompetingRisksInputError as exc:
        raise CohortReportError(f"relapse / non-relapse mortality ({columns.competing_status}): {exc}") from exc
    unit = options.time_unit
    headers = ["Group", "Cause", *[f"At {_landmark(t)} {unit}: cumulative incidence (95% CI); at risk"
                                   for t in options.landmarks]]
    fits = [(True, cumulative_incidence_from(overall))] + ([(False, cumulative_incidence_from(grouped))]
                                                          if grouped else [])
    rows = []
    for is_overall, fit in fits:
        at = fit.at(list(options.landmarks))
        for (group, cause), points in at.group_by(["group", "cause"], maintain_order=True):
            cells = [
                "beyond follow-up" if p["cuminc"] is None else
                f"{_percent(p['cuminc'])}{_interval(p)}; {p['n_risk']}"
                for p in points.iter_rows(named=True)
            ]
            rows.append((is_overall and grouped is not None,
                         [ALL_PATIENTS if is_overall else str(group), CAUSE_NAMES[cause], *cells]))
    tests = [gray_test_from(grouped, cause) for cause in grouped.event_codes] if grouped else []
    body = _rows_table(headers, rows, 2)
    for test in tests:
        statistic = "—" if test.statistic is None else _number(test.statistic, 3)
        body += (f"<p>Gray's test, {CAUSE_NAMES[test.cause].lower()}: χ² = {statistic} on {test.df} df, "
                 f"P = {format_p(test.p)}</p>")
    # Drawn from the estimate at every follow-up time, not only at the cause's event times, so the numbers at risk
    # under the curves count the patients censored between events and the curves run to the last follow-up.
    shown = fits[-1][1]
    every_time = np.unique(np.concatenate([[0.0], *shown.follow_up_times.values()]))
    plotted = shown.at(every_time.tolist()).drop_nulls("cuminc").with_columns(
        pl.col("cause").replace_strict(CAUSE_NAMES, return_dtype=pl.String),
        pl.col("group").cast(pl.String) if grouped else pl.lit(None, pl.String).alias("group"),
    )
    n_groups = len(shown.group_labels)
    source = (
        f"Aalen–Johansen cumulative incidence from {columns.competing_time} / {columns.competing_status} "
        f"({RELAPSE_CODE} = relapse, {NRM_CODE} = death without relapse, {CENSORED_CODE} = censored), "
        + _bands_phrase(n_groups, "log-log bands (cmprsk variance)") + ", and the numbers at risk below."
    )
    time_label = f"Time since infusion ({unit})"
    if grouped is None:
        figures = _figure(cuminc_figure(plotted, time_label=time_label), "competing-risks-figure", source)
    else:
        # one figure per cause: groups x causes curves in one axis (and their legend) hide each other
        figures = "".join(
            _figure(
                cuminc_figure(plotted.filter(pl.col("cause") == name), time_label=time_label,
                              y_label=f"Cumulative incidence of {name.lower()}",
                              confidence=n_groups <= MAX_GROUPS_WITH_BANDS),
                f"competing-risks-figure-{code}", f"{name} by {options.by}. {source}",
            )
            for code, name in CAUSE_NAMES.items()
        )
    return Section("competing-risks", "Relapse and non-relapse mortality", body + figures)


def _bands_phrase(n_curves: int, bands: str) -> str:
    """How a caption states the confidence bands, which are left out of figures with many groups."""
    if n_curves <= MAX_GROUPS_WITH_BANDS:
        return f"with 95% {bands}"
    return f"without bands ({n_curves} groups; the table above gives the 95% intervals at the landmark times)"


# ------------------------------------------------------------------ assembly


def build_cohort_report(
    table: pl.DataFrame, options: ReportOptions, provenance: Provenance, episodes: Episodes | None = None
) -> CohortReport:
    """Run every section whose columns are in ``table``; raise :class:`CohortReportError` on unusable data."""
    if table.height == 0:
        raise CohortReportError("the table has no patients")
    if options.by:
        _group_levels(table, options.by)
    columns = options.columns
    sections: list[Section] = []
    omissions: list[Omission] = []

    def attempt(title: str, needs: Sequence[str], build: Callable[[], Section], hint: str = "") -> None:
        absent = _missing(table, needs)
        if absent:
            omissions.append(Omission(title, _needs(absent) + hint))
        else:
            sections.append(build())

    if options.by:
        sections.append(_table1_section(table, options, options.by))
    else:
        omissions.append(Omission("Table 1", "a group column to compare: <code>--by GROUP</code>"))
    grades = [c for c in columns.grades if c in table.columns]
    attempt("Incidence by grade", [] if grades else list(columns.grades),
            lambda: _incidence_section(table, options, grades), " (any one of them; or --grade-column COL)")
    toxicities = [t for t in (columns.crs, columns.icans) if not _missing(table, [t.grade, t.duration, t.ongoing])]
    attempt("Durations by grade", [] if toxicities else [columns.crs.grade, columns.crs.duration, columns.crs.ongoing],
            lambda: _durations_section(table, options, toxicities), " (or the ICANS ones)")
    if episodes is not None:
        sections.append(_swimmer_section(table, episodes, options.swimmer_max))
    else:
        drawable = [t for t in (columns.crs, columns.icans)
                    if not _missing(table, [ID_COLUMN, t.grade, t.onset, t.duration, t.ongoing])]
        needs = [ID_COLUMN, columns.crs.grade, columns.crs.onset, columns.crs.duration, columns.crs.ongoing]
        attempt("Toxicity episodes", [] if drawable else needs,
                lambda: _swimmer_section(table, _patient_table_episodes(table, columns, drawable), options.swimmer_max),
                " (or the ICANS ones), or the episode tables: --episodes DIR")
    for endpoint in (columns.os, columns.pfs):
        attempt(endpoint.title, [endpoint.time, endpoint.event],
                lambda e=endpoint: _survival_section(table, options, e))
    attempt("Relapse and non-relapse mortality", [columns.competing_time, columns.competing_status],
            lambda: _competing_section(table, options))
    return CohortReport(provenance, table.height, options, tuple(sections), tuple(omissions))


def _patient_table_episodes(
    table: pl.DataFrame, columns: ReportColumns, drawable: list[ToxicityColumns]
) -> Episodes:
    empty = pl.DataFrame(schema={"patient_id": pl.String, "episode": pl.Int64, "onset_day": pl.Float64,
                                 "peak_grade": pl.Int64, "duration_days": pl.Float64, "ongoing": pl.Boolean})
    try:
        frames = {t.name: episodes_from_patient_table(table, t) for t in drawable}
    except StatsInputError as exc:
        raise CohortReportError(f"swimmer plot: {exc}") from exc
    return Episodes(
        crs=frames.get(columns.crs.name, empty),
        icans=frames.get(columns.icans.name, empty),
        origin="Built from the patient table: one bar per toxicity per patient, from the onset for the summed "
        "duration of its episodes, coloured by the maximum grade (give --episodes DIR, a `tocsin batch` output, "
        "to draw each episode).",
    )


# ------------------------------------------------------------------ HTML


def _provenance_html(report: CohortReport) -> str:
    p = report.provenance
    options = report.options
    items = [
        f"Tocsin {html.escape(__version__)}",
        f"patient table <code>{html.escape(str(p.table_path))}</code>: {report.n_patients} patients",
    ]
    if p.method is not None:
        config = p.method.get("config") if isinstance(p.method.get("config"), dict) else {}
        items.append(
            f"derived by <code>tocsin cohort derive</code> (<code>{html.escape(str(p.method_path))}</code>): grading "
            f"config {html.escape(str(config.get('name', '?')))} (fingerprint "
            f"<code>{html.escape(str(config.get('fingerprint', '?')))}</code>), column dictionary "
            f"{html.escape(str(p.method.get('columns_version', '?')))}"
            + (f", from {html.escape(', '.join(map(str, p.method['inputs'])))}" if p.method.get("inputs") else "")
        )
    else:
        items.append(
            "no derive method file beside the table"
            + (f" (<code>{html.escape(str(p.method_path))}</code>)" if p.method_path else "")
            + ": the grading configuration behind the columns is not recorded"
        )
    items.append(f"groups: <code>{html.escape(options.by)}</code>" if options.by else "no groups (--by not given)")
    items.append(f"times in {html.escape(options.time_unit)} since infusion (days / {options.days_per_unit:g})")
    return "<ul class='small'>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def render_cohort_report(report: CohortReport) -> str:
    """The report as one self-contained HTML document."""
    title = f"Tocsin cohort report — {report.provenance.table_path.name}"
    contents = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in report.sections)
    omitted = ""
    if report.omissions:
        omitted = "<h2>Sections left out</h2><ul class='omitted'>" + "".join(
            f"<li>{html.escape(o.title)}: needs {o.needs}</li>" for o in report.omissions
        ) + "</ul>"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _provenance_html(report),
        f"<ol>{contents}</ol>",
        omitted,
        *[f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in report.sections],
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def write_cohort_report(text: str, out: Path) -> Path:
    """Write ``text`` to ``out`` atomically (a failure keeps the old file)."""
    write_bytes_atomically(out, text.encode("utf-8"))
    return out
