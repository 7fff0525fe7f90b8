"""``tocsin report``: one patient's course as a self-contained HTML or a PDF report with its figure.

tocsin report examples/seed002_hu2024.csv --out seed002.html
tocsin report events.csv --patient SYN00003 --out SYN00003.pdf --config centre.toml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console

from tocsin.adapters.config_file import ConfigFileError, load_config
from tocsin.adapters.files import InputFileError, read_event_files
from tocsin.cli_shared import fail, normalise_raw, refuse_rows
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import NormalisedEvents
from tocsin.core.timeline import PID
from tocsin.vocabulary import load_vocabulary


def _chosen_patient(normalised: NormalisedEvents, patient: str | None, files: list[Path]) -> str:
    known = normalised.patients.get_column(PID).cast(pl.Utf8).to_list()
    names = ", ".join(str(f) for f in files)
    if patient is None:
        if len(known) == 1:
            return known[0]
        raise ValueError(
            f"{names}: {len(known)} patients ({', '.join(known[:10])}{', ...' if len(known) > 10 else ''}); "
            "a report is for one patient: add --patient ID"
        )
    if patient not in known:
        raise ValueError(f"--patient {patient!r} is not in {names} (patients: {', '.join(known[:20])}); check the id")
    return patient


def _only(normalised: NormalisedEvents, patient_id: str) -> NormalisedEvents:
    """The one patient's rows: a report grades a batch of one, whatever the file holds."""
    mine = pl.col(PID).cast(pl.Utf8) == patient_id
    return NormalisedEvents(
        events=normalised.events.filter(mine),
        errors=normalised.errors.filter(pl.col(PID).cast(pl.Utf8) == patient_id),
        patients=normalised.patients.filter(mine),
    )


def report(
    files: Annotated[list[Path], typer.Argument(help="Event files of the course (.csv, .parquet, .jsonl).")],
    out: Annotated[Path, typer.Option("--out", help="Report file: .html (self-contained) or .pdf.")],
    patient: Annotated[str | None, typer.Option("--patient", help="The patient, when the files hold several.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Grading config (TOML or YAML).")] = None,
) -> None:
    """One patient's course on a day axis (grades, vitals, labs, support, drugs, counts, CAR-T) with its episodes."""
    # matplotlib loads here, not when `tocsin` starts
    from tocsin.adapters.patient_report import REPORT_FORMATS, write_patient_report

    if out.suffix.lower() not in REPORT_FORMATS:
        fail(f"--out {out}: the report format comes from the suffix; use a file ending in .html or .pdf")
    try:
        config = load_config(config_file) if config_file else GradingConfig()
        vocabulary = load_vocabulary()
        normalised = normalise_raw(read_event_files(files), config, vocabulary)
        patient_id = _chosen_patient(normalised, patient, files)
    except (InputFileError, ConfigFileError, ValueError) as exc:
        fail(str(exc))
        return
    mine = _only(normalised, patient_id)
    if not mine.ok:
        refused = f"{mine.problems.height} row(s) of patient {patient_id} refused"
        refuse_rows(mine.errors, f"[bold red]{refused}; no report was written.[/]")
    result = grade_normalised(mine, config, vocabulary)
    try:
        written = write_patient_report(result, mine.events, patient_id, out)
    except (ValueError, OSError) as exc:
        fail(f"{out}: {exc}")
        return
    Console().print(f"report for patient {patient_id} -> {written}")
