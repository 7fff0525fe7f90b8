"""Readable terminal output (Rich): per patient, the grade timeline with its reasons, and the episodes.

The timeline shows the assessments at which the grade, the domain or the reason changed, so that an
hourly course reads as a short story rather than 700 identical rows.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

GRADE_STYLE = {None: "dim", 0: "green", 1: "yellow", 2: "dark_orange", 3: "red", 4: "bold red", 5: "bold white on red"}


def _grade_text(grade: int | None) -> Text:
    return Text("?" if grade is None else str(grade), style=GRADE_STYLE.get(grade, ""))


def _why(row: dict[str, Any]) -> str:
    parts = [
        f"{e['item']} {e['value']} (day {e['day']:g})" if e["day"] is not None else f"{e['item']} {e['value']}"
        for e in row["evidence"]
    ]
    if row["missing"]:
        parts.append("needs " + ", ".join(row["missing"]))
    return "; ".join(parts) or "—"


def _changes(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous = None
    for row in timeline:
        key = (row["grade"], row["domain"], row["rule"], tuple(row["missing"]))
        if key != previous:
            out.append(row)
            previous = key
    return out


def _timeline_table(title: str, block: dict[str, Any]) -> Table | Text:
    if not block["timeline"]:
        return Text(f"{title}: no assessment recorded — cannot grade", style="dim")
    table = Table(title=f"{title} — {block['scale']} (doi:{block['doi']})", title_justify="left", expand=True)
    table.add_column("day", justify="right", no_wrap=True)
    table.add_column("grade", justify="center")
    table.add_column("domain")
    table.add_column("rule", overflow="fold")
    table.add_column("why", overflow="fold", ratio=3)
    for row in _changes(block["timeline"]):
        table.add_row(f"{row['day']:.2f}", _grade_text(row["grade"]), row["domain"] or "", row["rule"] or "", _why(row))
    return table


def _episode_table(title: str, block: dict[str, Any]) -> Table | Text:
    if not block["episodes"]:
        return Text(f"{title}: no episode", style="dim")
    table = Table(title=f"{title} episodes", title_justify="left")
    for column in ("#", "onset day", "peak grade", "peak day", "resolved day", "duration (d)", "status"):
        table.add_column(column, justify="right")
    for e in block["episodes"]:
        status = "ongoing" if e["ongoing"] else "resolved"
        if e["recurrence"]:
            status += ", recurrence"
        table.add_row(
            str(e["episode"]),
            f"{e['onset_day']:.2f}",
            _grade_text(e["peak_grade"]),
            f"{e['peak_day']:.2f}",
            "—" if e["resolved_day"] is None else f"{e['resolved_day']:.2f}",
            f"{e['duration_days']:.2f}",
            status,
        )
    return table


def _summary_line(name: str, block: dict[str, Any]) -> str:
    days = ", ".join(f"G{g}: {n} d" for g, n in block["days_at_grade"].items() if n and g != "0")
    onset = "—" if block["onset_day"] is None else f"day {block['onset_day']:.2f}"
    return (
        f"{name}: max grade {block['max_grade'] if block['max_grade'] is not None else '?'}, "
        f"onset {onset}, {block['n_episodes']} episode(s)" + (f"; {days}" if days else "")
    )


def _grade_or_range(block: dict[str, Any]) -> str:
    if block.get("grade") is not None:
        return str(block["grade"])
    if block.get("grade_min") is not None:
        return f"{block['grade_min']}–{block['grade_max']} (not evaluable)"
    return "?"


def _hematology_lines(patient: dict[str, Any]) -> list[Text]:
    """One line each: worst cytopenia grades, ICAHT, PHT, baseline scores, kinetics."""
    lines = []
    cytopenia = patient["cytopenia"]
    if cytopenia["worst"]:
        worst = ", ".join(
            f"{lineage} {w['worst_grade'] if w['worst_grade'] is not None else '?'}"
            + (f" (+{w['unresolved']} ungraded)" if w["unresolved"] else "")
            for lineage, w in cytopenia["worst"].items()
        )
        lines.append(Text(f"Cytopenia ({cytopenia['scale']}), worst grade: {worst}"))
    icaht = patient["icaht"]
    if icaht is not None:
        early, late, platelets = icaht["early"], icaht["late"], icaht["thrombocytopenia"]
        lines.append(
            Text(
                f"ICAHT early {_grade_or_range(early)} (ANC ≤500: {early['days_anc_le_500']} d, ≤100: "
                f"{early['days_anc_le_100']} d), late {_grade_or_range(late)}; T-ICAHT early "
                f"{_grade_or_range(platelets['early'])}, late {_grade_or_range(platelets['late'])}"
            )
        )
    pht = patient["pht"]
    if pht is not None:
        state = {True: f"yes, {pht['pht_pattern']} ({pht['pht_lineages']})", False: "no", None: "unknown"}[pht["pht"]]
        lines.append(Text(f"Cytopenia at day 28 (PHT): {state}" + ("; biphasic" if pht["biphasic"] else "")))
    scores = patient["scores"]
    if scores:
        hematotox, easix = scores["car_hematotox"], scores["easix"]
        score = (
            hematotox["score"]
            if hematotox["score"] is not None
            else (f"{hematotox['score_at_least']}–{hematotox['score_at_most']}")
        )
        missing = f", needs {', '.join(hematotox['missing'])}" if hematotox["missing"] else ""
        easix_value = "?" if easix["easix"] is None else f"{easix['easix']:.2f}"
        lines.append(
            Text(f"CAR-HEMATOTOX {score} ({hematotox['risk'] or 'risk not settled'}{missing}); EASIX {easix_value}")
        )
    kinetics = patient["kinetics"]
    if kinetics.get("assay"):
        lines.append(
            Text(
                f"CAR-T kinetics ({kinetics['assay']}): Cmax {kinetics['cmax']} {kinetics['unit']} on day "
                f"{kinetics['tmax_day']}, last quantifiable day {kinetics['tlast_day']}"
            )
        )
    return lines


def print_document(document: dict[str, Any], console: Console | None = None) -> None:
    """Print every patient of a ``result_document`` as panels with tables."""
    console = console or Console()
    config = document["config"]
    console.print(
        f"[bold]Tocsin {document['tocsin_version']}[/] — config '{config['name']}' "
        f"({config['fingerprint']}), vocabulary {document['vocabulary_version']}"
    )
    for patient in document["patients"]:
        header = (
            f"[bold]{patient['patient_id']}[/]  product {patient['product']}  "
            f"age {patient['age_years'] if patient['age_years'] is not None else 'unknown'}"
        )
        body = Group(
            Text(_summary_line("CRS", patient["crs"])),
            Text(_summary_line("ICANS", patient["icans"])),
            *_hematology_lines(patient),
            _timeline_table("CRS", patient["crs"]),
            _episode_table("CRS", patient["crs"]),
            _timeline_table("ICANS", patient["icans"]),
            _episode_table("ICANS", patient["icans"]),
        )
        console.print(Panel(body, title=header, title_align="left"))
    print_problems(document["input_problems"], console)
    console.print("[dim]Tocsin supports, and does not replace, the clinician's judgement.[/]")


def print_problems(problems: list[dict[str, Any]], console: Console) -> None:
    if not problems:
        return
    table = Table(title="Input problems", title_justify="left", expand=True)
    for column in ("severity", "file", "line", "field", "value", "problem", "fix"):
        table.add_column(column, overflow="fold")
    for p in problems:
        table.add_row(
            p["severity"], str(p["file"]), str(p["line"]), p["field"], str(p["value"]), p["message"], p["fix"]
        )
    console.print(table)
