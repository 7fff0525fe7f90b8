"""``tocsin assess`` output: the JSON document (stable keys) and the Rich tables, from the core's frames.

JSON shape (docs/assess.md): ``{"patient_id", "at", "grades", "suggestions": [{"id", "action", "drug",
"dose_mg", "dose_basis", "route", "frequency", "next_allowed_at", "limits", "because", "rule", "pack",
"citation", ...}], "alerts": [...], "cannot_evaluate": [...], "exposure": {...}, "reminders": [...], "pack": {...},
"packs": [...], "note"}``. ``pack`` is the first pack asked for; ``packs`` lists every one (``--pack`` repeated).
Times (``at``, ``next_allowed_at``) are ISO when the patient's infusion time is known, else days; the reminder
windows (``window_start``, ``window_stop``) are days since infusion, as :func:`prophylaxis_reminders` gives them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from tocsin.core.dosing import SUPPORTS_JUDGEMENT
from tocsin.core.guidance.packs import Pack, PackError, parse_pack

_SUGGESTION_KEYS = (
    "id", "action", "drug", "regimen", "status", "dose_mg", "per_kg_mg", "dose_basis", "cap_applied", "route",
    "frequency", "next_allowed_at", "limits", "because", "what_would_change", "rule", "pack", "pack_version",
    "citation", "evidence", "tag", "source", "rank",
)  # fmt: skip
_REMINDER_KEYS = (
    "reminder", "target", "text", "due", "given", "window", "window_start", "window_stop", "because", "needs",
    "source", "note",
)  # fmt: skip


def read_pack_file(path: Path) -> Pack:
    """A centre's pack file (a copy of a packaged pack with changed values), validated."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PackError(f"{path}: cannot read the pack file ({exc.strerror})") from exc
    return parse_pack(text, str(path))


def _when(day: float | None, start: datetime | None) -> Any:
    if day is None:
        return None
    return (start + timedelta(days=day)).isoformat(timespec="minutes") if start else round(day, 4)


def _pack_info(pack: Pack) -> dict[str, str]:
    return {"name": pack.name, "version": pack.version, "title": pack.title, "citation": pack.citation,
            "doi": pack.doi, "evidence_note": pack.evidence_note}  # fmt: skip


def _by_query(frame: pl.DataFrame) -> dict[tuple[str, float], list[dict[str, Any]]]:
    out: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault((row["patient_id"], row["at"]), []).append(row)
    return out


def assess_documents(
    facts: pl.DataFrame,
    suggestions: pl.DataFrame,
    packs: list[Pack],
    infusion_times: dict[str, datetime | None],
    reminders: pl.DataFrame,
) -> list[dict[str, Any]]:
    """One document per (patient, at) query row of ``facts``.

    ``suggestions`` holds the rows of every pack in ``packs`` (:func:`~tocsin.core.guidance.suggest` per pack);
    ``reminders`` the prophylaxis reminders at the same queries (:func:`tocsin.core.situation.prophylaxis_reminders`).
    """
    by_query = _by_query(suggestions)
    reminders_by_query = _by_query(reminders)
    documents = []
    for f in facts.iter_rows(named=True):
        pid, at = f["patient_id"], f["at"]
        start = infusion_times.get(pid)
        rows = by_query.get((pid, at), [])
        suggestions_out, alerts, unevaluated = [], [], []
        for r in rows:
            if r["kind"] == "suggestion":
                item = {k: r[k] for k in _SUGGESTION_KEYS}
                item["next_allowed_at"] = _when(r["next_allowed_at"], start)
                suggestions_out.append(item)
            elif r["kind"] == "alert":
                alerts.append({"id": r["id"], "severity": r["severity"], "message": r["action"], "rule": r["rule"],
                               "because": r["because"], "pack": r["pack"], "citation": r["citation"]})  # fmt: skip
            else:
                unevaluated.append({"rule": r["rule"], "needs": r["needs"], "message": r["action"]})
        documents.append(
            {
                "patient_id": pid,
                "at": _when(at, start),
                "day": round(at, 4),
                "grades": {
                    "crs": f.get("crs_grade"),
                    "icans": f.get("icans_grade"),
                    "hours_at_current_crs_grade": f.get("hours_at_current_crs_grade"),
                    "hours_at_current_icans_grade": f.get("hours_at_current_icans_grade"),
                },
                "suggestions": suggestions_out,
                "alerts": alerts,
                "cannot_evaluate": unevaluated,
                "exposure": {
                    "weight_kg": f.get("weight"),
                    "age_years": f.get("age_years"),
                    "tocilizumab_doses_given": f.get("tocilizumab_doses_given"),
                    "tocilizumab_doses_24h": f.get("tocilizumab_doses_24h"),
                    "tocilizumab_next_allowed_at": _when(f.get("tocilizumab_next_allowed_at"), start),
                    "hours_since_last_tocilizumab": f.get("hours_since_last_tocilizumab"),
                    "steroid_mp_eq_mg_24h": f.get("steroid_mp_eq_mg_24h"),
                    "steroid_mp_eq_mg_total": f.get("steroid_mp_eq_mg_total"),
                    "days_on_steroids": f.get("days_on_steroids"),
                },
                "reminders": [{k: r[k] for k in _REMINDER_KEYS} for r in reminders_by_query.get((pid, at), [])],
                "pack": _pack_info(packs[0]),
                "packs": [_pack_info(p) for p in packs],
                "note": SUPPORTS_JUDGEMENT,
            }
        )
    return documents


def print_assessments(documents: list[dict[str, Any]], console: Console) -> None:
    """Rich tables: grades, alerts, ranked suggestions, and the rules that cannot be evaluated."""
    for doc in documents:
        g = doc["grades"]
        console.rule(f"[bold]{doc['patient_id']}[/] at {doc['at']}  CRS {g['crs']}  ICANS {g['icans']}")
        for pack in doc["packs"]:
            console.print(f"pack {pack['name']} {pack['version']}: {pack['citation']}")
        if doc["alerts"]:
            table = Table(title="Alerts", title_justify="left", expand=True)
            for c in ("severity", "message", "rule"):
                table.add_column(c, overflow="fold")
            for a in doc["alerts"]:
                table.add_row(a["severity"], a["message"], a["rule"])
            console.print(table)
        table = Table(title="Suggestions", title_justify="left", expand=True)
        for c in ("action", "status", "dose", "next allowed", "because", "evidence", "rule"):
            table.add_column(c, overflow="fold")
        for s in doc["suggestions"]:
            dose = f"{s['dose_mg']:g} mg" if s["dose_mg"] is not None else (s["dose_basis"] or "")
            table.add_row(s["action"], s["status"], dose, str(s["next_allowed_at"] or ""), "; ".join(s["because"]),
                          f"{s['evidence']} [{s['tag']}]", s["rule"])  # fmt: skip
        console.print(table)
        # Only what is due (or cannot be told) now: the full list with windows is in the JSON.
        due = [r for r in doc["reminders"] if r["due"] is not False]
        if due:
            table = Table(title="Prophylaxis reminders", title_justify="left", expand=True)
            for c in ("target", "regimen", "due", "given", "window"):
                table.add_column(c, overflow="fold")
            for r in due:
                flag = "yes" if r["due"] else f"unknown (needs {r['needs']})"
                given = {True: "yes", False: "no", None: "not recorded"}[r["given"]]
                table.add_row(r["target"], r["text"], flag, given, r["window"])
            console.print(table)
        if doc["cannot_evaluate"]:
            console.print(
                "[yellow]cannot evaluate:[/] "
                + "; ".join(f"{u['rule']} (needs {', '.join(u['needs'])})" for u in doc["cannot_evaluate"])
            )
    console.print(f"[dim]{SUPPORTS_JUDGEMENT}[/]")
