"""Table 1 out of the process: a JSON document with stable keys, and terminal, CSV, DOCX and HTML renderings.

Every file is written to a temporary sibling and renamed into place, so a failed write leaves the previous
file intact. The JSON keys per variable are stable: ``variable, levels, groups, test, statistic, df, p,
p_adjusted`` (plus ``kind, test_name, statistic_name, method, test_choice, note, missing, summary, details``).
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from tocsin.stats.table1 import Table1Result, VariableComparison

FORMATS = ("csv", "docx", "html", "json")


class Table1OutputError(ValueError):
    """The output cannot be written as asked (unknown format, unwritable place); the message names the fix."""


def _variable_document(variable: VariableComparison) -> dict[str, Any]:
    result = variable.result
    return {
        "variable": variable.variable,
        "kind": variable.kind,
        "levels": list(variable.levels),
        "groups": variable.statistics.to_dicts(),
        "test": result.test if result else None,
        "test_name": result.name if result else None,
        "statistic": result.statistic if result else None,
        "statistic_name": result.statistic_name if result else None,
        "df": result.df if result else None,
        "p": result.p if result else None,
        "p_adjusted": variable.p_adjusted,
        "method": result.method if result else None,
        "details": dict(result.details) if result else {},
        "test_choice": variable.test_choice,
        "note": variable.note,
        "missing": dict(variable.missing),
        "summary": [{"label": row.label, **row.cells} for row in variable.rows],
    }


def table1_document(result: Table1Result) -> dict[str, Any]:
    """The JSON-ready document: the groups, the options that shaped the table, and one entry per variable."""
    options = result.options
    return {
        "by": result.by,
        "groups": [{"label": g.label, "n": g.n} for g in result.groups],
        "overall": {"label": result.overall.label, "n": result.overall.n} if result.overall else None,
        "excluded_missing_group": result.excluded_missing_group,
        "skipped_columns": list(result.skipped),
        "warnings": list(result.warnings),
        "options": {
            "adjust": options.adjust,
            "continuous_statistics": list(options.continuous_statistics),
            "quantiles": options.quantiles,
            "digits": options.digits,
            "p_digits": options.p_digits,
            "exact_limit": options.exact_limit,
            "seed": options.seed,
            "resamples": options.resamples,
            "wilcoxon_ties": options.wilcoxon_ties,
            "tests": dict(options.tests),
            "kinds": dict(options.kinds),
        },
        "variables": [_variable_document(v) for v in result.variables],
    }


def table1_json(result: Table1Result) -> bytes:
    """The document as indented JSON bytes (NaN becomes null)."""
    return orjson.dumps(table1_document(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def _header(result: Table1Result) -> list[str]:
    columns = [f"{g.label} (N = {g.n})" for g in result.groups]
    if result.overall:
        columns.append(f"{result.overall.label} (N = {result.overall.n})")
    extra = ["Test", "Statistic", "df", "P"] + (["P (adjusted)"] if result.options.adjust != "none" else [])
    return ["Characteristic", *columns, *extra]


def _body(result: Table1Result) -> list[tuple[bool, list[str]]]:
    """Rows as (is the variable's first row, cells in header order)."""
    summary = result.summary
    names = summary.columns
    rows = []
    for record in summary.iter_rows():
        cells = dict(zip(names, record, strict=True))
        head = cells["label"] == cells["variable"]
        label = cells["label"] if head else f"    {cells['label']}"
        values = [cells[c] for c in result.column_labels]
        tail = [cells["test"], cells["statistic"], cells["df"], cells["p"]]
        tail += [cells["p_adjusted"]] if "p_adjusted" in cells else []
        rows.append((head, [label, *values, *tail]))
    return rows


def _footnotes(result: Table1Result) -> list[str]:
    notes = []
    for variable in result.variables:
        if variable.result:
            notes.append(
                f"{variable.variable}: {variable.result.name}, {variable.result.method}; {variable.test_choice}"
            )
        elif variable.note:
            notes.append(f"{variable.variable}: {variable.note}")
    if result.options.adjust != "none":
        family = sum(1 for v in result.variables if v.result)
        notes.append(f"P (adjusted): {result.options.adjust.capitalize()} over the {family} tests")
    if result.excluded_missing_group:
        notes.append(f"{result.excluded_missing_group} patient(s) with no '{result.by}' value are left out")
    conventions = []
    if any(v.kind == "categorical" for v in result.variables):
        conventions.append("n (%) of the non-missing values per column")
    if "median-iqr" in result.options.continuous_statistics and any(v.kind == "continuous" for v in result.variables):
        definition = "Hyndman–Fan type 2, SAS default" if result.options.quantiles == "type2" else "R type 7"
        conventions.append(f"Q1, Q3: quartiles ({definition})")
    return [*conventions, *notes]


def print_table1(result: Table1Result, console: Console) -> None:
    """Rich table on the terminal, with the test choices as footnotes."""
    table = Table(title=f"Table 1 by {result.by}", show_lines=False)
    n_value_columns = len(result.column_labels)
    for index, name in enumerate(_header(result)):
        # summary cells stay whole ("18.0 (1.0–115.0)"); the label and test columns wrap at words
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=0 < index <= n_value_columns)
    for head, cells in _body(result):
        table.add_row(*cells, style="bold" if head else None)
    console.print(table)
    for note in _footnotes(result):
        console.print(f"[dim]{note}[/]")


def table1_csv(result: Table1Result) -> bytes:
    """The display table as CSV (one line per displayed row, header with the group sizes)."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_header(result))
    for _, cells in _body(result):
        writer.writerow([c.strip() if i == 0 else c for i, c in enumerate(cells)])
    return buffer.getvalue().encode("utf-8")


def table1_html(result: Table1Result) -> bytes:
    """A self-contained HTML page (inline CSS, no scripts or external files)."""
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
        "th:first-child,td:first-child{text-align:left}tr.variable td{font-weight:600;border-top:1px solid #999}"
        "td.level{padding-left:2em}p.note{color:#555;font-size:90%;margin:2px 0}"
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(result))
    lines = []
    for is_head, cells in _body(result):
        first = html.escape(cells[0].strip())
        rest = "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:])
        css = ' class="variable"' if is_head else ""
        lines.append(f"<tr{css}><td{'' if is_head else ' class=level'}>{first}</td>{rest}</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in _footnotes(result))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Table 1 by {html.escape(result.by)}</title><style>{style}</style></head><body>"
        f"<h1>Table 1 by {html.escape(result.by)}</h1><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table>{notes}</body></html>\n"
    )
    return page.encode("utf-8")


def table1_docx(result: Table1Result) -> bytes:
    """A Word document: the table (bold variable rows, indented levels) and the footnotes."""
    from docx import Document
    from docx.shared import Pt

    document = Document()
    document.add_heading(f"Table 1 by {result.by}", level=1)
    header = _header(result)
    body = _body(result)
    table = document.add_table(rows=1 + len(body), cols=len(header))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        cell.text = text
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for row, (is_head, cells) in zip(table.rows[1:], body, strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
            for run in cell.paragraphs[0].runs:
                run.bold = is_head
                run.font.size = Pt(9)
    for note in _footnotes(result):
        document.add_paragraph(note).runs[0].font.size = Pt(8)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


RENDERERS: dict[str, Callable[[Table1Result], bytes]] = {
    "csv": table1_csv,
    "docx": table1_docx,
    "html": table1_html,
    "json": table1_json,
}


def write_table1(result: Table1Result, path: Path) -> None:
    """Write in the format of the suffix (.csv, .docx, .html/.htm, .json) via a temporary file and rename."""
    suffix = path.suffix.lower().lstrip(".")
    suffix = "html" if suffix == "htm" else suffix
    if suffix not in RENDERERS:
        raise Table1OutputError(f"{path}: unknown format '.{suffix}'; use one of {', '.join('.' + f for f in FORMATS)}")
    content = RENDERERS[suffix](result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(content)
        partial.replace(path)
    except OSError as exc:
        raise Table1OutputError(f"{path}: cannot be written ({exc.strerror}); choose a writable --out") from exc
