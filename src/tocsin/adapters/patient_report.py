"""One patient's report: the course figure, the episodes with their max grades and the rules behind them.

HTML is one self-contained file (the figure is inline SVG; no script, no style sheet, no network);
PDF is written with matplotlib's ``PdfPages`` (the figure, then the tables), so neither needs anything
installed beyond the Python packages. Everything shown comes from the engine's
:class:`~tocsin.core.engine.GradingResult`: the report never grades.

The file is written to a temporary name beside ``out`` and renamed when complete, so a failed run
leaves an existing report untouched.

Example
-------
>>> import polars as pl, tempfile
>>> from pathlib import Path
>>> from tocsin.config import GradingConfig
>>> from tocsin.core.engine import grade_normalised
>>> from tocsin.core.events import IngestLimits, normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> raw = pl.DataFrame({"patient_id": "P", "day": ["0", "1.5"], "item": ["infusion", "temperature"],
...                     "value": ["axi-cel", "39.1"], "unit": ["", "Cel"], "file": "x", "line": [2, 3]})
>>> normalised = normalise_events(raw, load_vocabulary(), IngestLimits(earliest_day=-30))
>>> result = grade_normalised(normalised, GradingConfig())
>>> out = Path(tempfile.mkdtemp()) / "P.html"
>>> write_patient_report(result, normalised.events, "P", out).name
'P.html'
"""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from tocsin import __version__
from tocsin.adapters.atomic_write import write_atomically
from tocsin.adapters.plots.course_figure import PatientCourse, course_figure, dose_label, drug_items, patient_course
from tocsin.adapters.plots.style import GRADE_COLOURS, display_name, figure_svg, new_figure
from tocsin.core.engine import GradingResult, ToxicityResult
from tocsin.core.timeline import PID
from tocsin.vocabulary import load_vocabulary

REPORT_FORMATS = (".html", ".pdf")


@dataclass(frozen=True)
class EpisodeRow:
    """One episode as the report lists it; ``rule`` and ``evidence`` are those of the assessment at the peak."""

    toxicity: str
    episode: int
    onset_day: float | None
    peak_grade: int
    peak_day: float
    resolved_day: float | None
    duration_days: float | None
    ongoing: bool
    rule: str
    evidence: str


@dataclass(frozen=True)
class ToxicitySummary:
    toxicity: str
    scale: str
    doi: str
    max_grade: int | None
    onset_day: float | None
    n_episodes: int


@dataclass(frozen=True)
class DrugSummary:
    drug: str
    n_doses: int
    first_day: float
    last_day: float
    doses: str


@dataclass(frozen=True)
class ReportContent:
    """Everything a patient report shows, rendered to HTML or PDF."""

    course: PatientCourse
    toxicities: list[ToxicitySummary]
    episodes: list[EpisodeRow]
    rules: dict[str, str]
    drugs: list[DrugSummary]
    provenance: str


def _evidence_text(evidence: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e['item']} {e['value']} (day {e['day']:g})" for e in evidence)


def _toxicity_content(
    name: str, result: ToxicityResult, patient_id: str
) -> tuple[ToxicitySummary, list[EpisodeRow], dict[str, str]]:
    mine = pl.col(PID).cast(pl.Utf8) == patient_id
    summary = result.summary.filter(mine)
    row = summary.row(0, named=True) if summary.height else {}
    explained = result.explained([patient_id])
    at_peak = {r["t"]: r for r in explained.select("t", "rule", "evidence").iter_rows(named=True)}
    episodes = []
    for episode in result.episodes.filter(mine).iter_rows(named=True):
        peak = at_peak.get(episode["peak_day"], {"rule": "", "evidence": []})
        episodes.append(
            EpisodeRow(
                toxicity=name,
                episode=episode["episode"],
                onset_day=episode["onset_day"],
                peak_grade=episode["peak_grade"],
                peak_day=episode["peak_day"],
                resolved_day=episode["resolved_day"],
                duration_days=episode["duration_days"],
                ongoing=episode["ongoing"],
                rule=peak["rule"] or "",
                evidence=_evidence_text(peak["evidence"]),
            )
        )
    cited = {e.rule for e in episodes}
    rules = {r.id: r.text for r in result.scale.rules if r.id in cited}
    toxicity = ToxicitySummary(
        toxicity=name,
        scale=f"{result.scale.title} ({result.scale.version})",
        doi=result.scale.doi,
        max_grade=row.get("max_grade"),
        onset_day=row.get("onset_day"),
        n_episodes=row.get("n_episodes") or 0,
    )
    return toxicity, episodes, rules


def _drug_summaries(course: PatientCourse) -> list[DrugSummary]:
    out = []
    for item in drug_items(course):
        rows = course.item_rows([item])
        labels = list(dict.fromkeys(dose_label(r) for r in rows.iter_rows(named=True)))
        out.append(
            DrugSummary(
                drug=display_name(item),
                n_doses=rows.height,
                first_day=float(rows["t"].min()),
                last_day=float(rows["t"].max()),
                doses=", ".join(labels),
            )
        )
    return out


def report_content(result: GradingResult, events: pl.DataFrame, patient_id: str) -> ReportContent:
    """Collect what the report shows for ``patient_id`` (``KeyError`` if the patient is not in ``result``)."""
    course = patient_course(result, events, patient_id)
    toxicities, episodes, rules = [], [], {}
    for name, toxicity in (("CRS", result.crs), ("ICANS", result.icans)):
        summary, rows, cited = _toxicity_content(name, toxicity, patient_id)
        toxicities.append(summary)
        episodes.extend(rows)
        rules.update(cited)
    config = result.config
    provenance = (
        f"Tocsin {__version__}; grading config {config.name!r} (fingerprint {config.fingerprint()}); "
        f"vocabulary {load_vocabulary().version}. Day 0 = infusion."
    )
    return ReportContent(course, toxicities, episodes, rules, _drug_summaries(course), provenance)


# ------------------------------------------------------------------ formatting


def _day(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _grade(value: int | None) -> str:
    return "not assessed" if value is None else str(value)


def _episode_cells(e: EpisodeRow) -> list[str]:
    resolved = "ongoing" if e.ongoing else _day(e.resolved_day)
    duration = "—" if e.duration_days is None else f"{e.duration_days:.1f}" + ("+" if e.ongoing else "")
    return [
        e.toxicity,
        str(e.episode),
        _day(e.onset_day),
        str(e.peak_grade),
        _day(e.peak_day),
        resolved,
        duration,
        e.rule,
        e.evidence,
    ]


EPISODE_HEADERS = [
    "Toxicity",
    "Episode",
    "Onset day",
    "Peak grade",
    "Peak day",
    "Resolved day",
    "Duration (days)",
    "Rule at peak",
    "Observations at peak",
]
SUMMARY_HEADERS = ["Toxicity", "Scale", "Max grade", "Onset day", "Episodes"]
DRUG_HEADERS = ["Drug", "Doses", "First day", "Last day", "Dose(s) given"]


def _summary_cells(t: ToxicitySummary) -> list[str]:
    return [t.toxicity, t.scale, _grade(t.max_grade), _day(t.onset_day), str(t.n_episodes)]


def _drug_cells(d: DrugSummary) -> list[str]:
    return [d.drug, str(d.n_doses), _day(d.first_day), _day(d.last_day), d.doses]


# ------------------------------------------------------------------ HTML

#: The reports' shared look (the cohort report adds its own rules to it).
REPORT_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.grade{display:inline-block;width:1.6em;text-align:center;border-radius:2px}
.small{font-size:.8em;color:#555}figure{margin:0}svg{max-width:100%;height:auto}
"""


def _html_table(headers: list[str], rows: list[list[str]], grade_column: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = html.escape(cell)
            if i == grade_column and cell.isdigit():
                grade = int(cell)
                colour = "#fff" if grade >= 3 else "#000"
                text = f'<span class="grade" style="background:{GRADE_COLOURS[grade]};color:{colour}">{text}</span>'
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(content: ReportContent, figure: Figure) -> str:
    """The report as one self-contained HTML document (figure inline as SVG)."""
    course = content.course
    title = f"Tocsin course report — patient {course.patient_id}"
    episodes = (
        _html_table(EPISODE_HEADERS, [_episode_cells(e) for e in content.episodes], grade_column=3)
        if content.episodes
        else "<p>No CRS or ICANS episode (grade ≥ 1) was graded.</p>"
    )
    rules = "".join(
        f"<dt><code>{html.escape(rule)}</code></dt><dd>{html.escape(text)}</dd>" for rule, text in content.rules.items()
    )
    references = "".join(
        f"<li>{html.escape(t.toxicity)}: {html.escape(t.scale)}, doi:{html.escape(t.doi)}</li>"
        for t in content.toxicities
    )
    drugs = (
        _html_table(DRUG_HEADERS, [_drug_cells(d) for d in content.drugs]) if content.drugs else "<p>None recorded.</p>"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="small">{html.escape(content.provenance)}</p>',
        "<h2>Maximum grades</h2>",
        _html_table(SUMMARY_HEADERS, [_summary_cells(t) for t in content.toxicities], grade_column=2),
        "<h2>Course</h2>",
        f'<figure id="course-figure">{figure_svg(figure)}</figure>',
        "<h2>Episodes</h2>",
        episodes,
        "<h2>Rules behind the peak grades</h2>",
        f"<dl>{rules}</dl>" if rules else "<p>—</p>",
        f"<ul class='small'>{references}</ul>",
        "<h2>Drugs given</h2>",
        drugs,
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ PDF


_TEXT_SIZES = {"title": 13, "heading": 11, "body": 9, "small": 8}
_TEXT_STEPS = {"title": 0.045, "heading": 0.045, "body": 0.03, "small": 0.03}


def _table_lines(content: ReportContent) -> list[tuple[str, str]]:
    """The summary, episode, rule and drug tables as (text, kind) lines, wrapped to a landscape A4 width."""
    lines: list[tuple[str, str]] = [(f"Patient {content.course.patient_id}: grades, episodes and rules", "title")]
    lines.append((content.provenance, "small"))
    lines.append(("Maximum grades", "heading"))
    lines += [
        ("   ".join(f"{h}: {c}" for h, c in zip(SUMMARY_HEADERS, _summary_cells(t))), "body")
        for t in content.toxicities
    ]
    lines.append(("Episodes", "heading"))
    if not content.episodes:
        lines.append(("No CRS or ICANS episode (grade >= 1) was graded.", "body"))
    for e in content.episodes:
        cells = _episode_cells(e)
        lines.append(("   ".join(f"{h}: {c}" for h, c in zip(EPISODE_HEADERS[:7], cells[:7])), "body"))
        lines += [(f"      {chunk}", "small") for chunk in textwrap.wrap(f"{cells[7]} — {cells[8]}", 150)]
    lines.append(("Rules behind the peak grades", "heading"))
    for rule, text in content.rules.items():
        lines += [(chunk, "small") for chunk in textwrap.wrap(f"{rule}: {text}", 160)]
    lines.append(("Drugs given", "heading"))
    for d in content.drugs:
        text = "   ".join(f"{h}: {c}" for h, c in zip(DRUG_HEADERS, _drug_cells(d)))
        lines += [(chunk, "small") for chunk in textwrap.wrap(text, 160)]
    return lines


def _table_pages(content: ReportContent) -> list[Figure]:
    """Landscape A4 pages holding the table lines; a long course continues on further pages."""
    pages: list[Figure] = []
    y = 0.0
    for text, kind in _table_lines(content):
        if y - _TEXT_STEPS[kind] < 0.0:
            page = new_figure(11.69, 8.27)
            ax = page.add_axes((0.04, 0.04, 0.92, 0.92))
            ax.axis("off")
            pages.append(page)
            y = 1.0
        y -= _TEXT_STEPS[kind]
        bold = kind in ("title", "heading")
        ax.text(
            0,
            y,
            text,
            fontsize=_TEXT_SIZES[kind],
            fontweight="bold" if bold else "normal",
            va="top",
            transform=ax.transAxes,
        )
    return pages


def _write_pdf(path: Path, figure: Figure, content: ReportContent) -> None:
    metadata = {
        "Title": f"Tocsin course report — patient {content.course.patient_id}",
        "Creator": f"Tocsin {__version__}",
        "CreationDate": None,
    }
    with PdfPages(path, metadata=metadata) as pdf:
        pdf.savefig(figure)
        for page in _table_pages(content):
            pdf.savefig(page)


def write_patient_report(result: GradingResult, events: pl.DataFrame, patient_id: str, out: Path) -> Path:
    """Write the report of ``patient_id`` to ``out`` (.html or .pdf) atomically; return ``out``.

    Raises ``ValueError`` for an unsupported suffix and ``KeyError`` for an unknown patient, before
    anything is written.
    """
    suffix = out.suffix.lower()
    if suffix not in REPORT_FORMATS:
        raise ValueError(f"{out}: unsupported report format {out.suffix!r}; use a file ending in .html or .pdf")
    content = report_content(result, events, patient_id)
    figure = course_figure(content.course)
    if suffix == ".html":
        write_atomically(out, lambda temporary: temporary.write_text(render_html(content, figure), encoding="utf-8"))
    else:
        write_atomically(out, lambda temporary: _write_pdf(temporary, figure, content))
    return out
