"""``tocsin cohort derive``: one row per patient from raw event files or from ``tocsin batch --cohort`` output.

Raw files are read, validated (as ``tocsin grade``: nothing is derived from refused rows unless ``--lenient``)
and graded in chunks of patients; a batch directory's tables are read as they are. The table is checked
against the column dictionary and written atomically (``write_patient_table``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from tocsin.adapters.atomic_write import write_bytes_atomically
from tocsin.adapters.cohort_sources import BatchDirectoryError, read_batch_tables
from tocsin.adapters.config_file import ConfigFileError, load_config
from tocsin.adapters.console import print_problems
from tocsin.adapters.files import InputFileError, read_event_file
from tocsin.adapters.patient_table import PatientTableError, write_patient_table
from tocsin.cli_cohort.app import cohort_app, fail
from tocsin.cli_cohort.options import TABLE_SUFFIXES, check_out_suffix
from tocsin.cli_shared import normalise_raw
from tocsin.cohort.derive import (
    REQUIRED_TABLES,
    DeriveInputError,
    DerivedPatients,
    derive_from_events,
    derive_patients,
)
from tocsin.config import GradingConfig
from tocsin.core.events import NormalisedEvents
from tocsin.vocabulary import load_vocabulary

#: Input problems listed after a derivation (the rest are counted).
SHOWN_PROBLEMS = 20


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _patient_chunks(normalised: NormalisedEvents, chunk_patients: int) -> list[tuple[int, NormalisedEvents]]:
    """The validated events split into chunks of patients in one pass (not one filter of every row per chunk)."""
    ids = normalised.patients.get_column("patient_id").cast(pl.Utf8).to_list()
    chunk_of = {pid: i // chunk_patients for i, pid in enumerate(ids)}

    def split(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
        chunk = pl.col("patient_id").cast(pl.Utf8).replace_strict(chunk_of, default=None, return_dtype=pl.Int64)
        parts = frame.with_columns(chunk.alias("_chunk")).partition_by("_chunk", as_dict=True, include_key=False)
        return {key[0]: part for key, part in parts.items() if key[0] is not None}

    events, errors, patients = split(normalised.events), split(normalised.errors), split(normalised.patients)
    return [
        (
            patients[i].height,
            NormalisedEvents(
                events=events.get(i, normalised.events.clear()),
                errors=errors.get(i, normalised.errors.clear()),
                patients=patients[i],
            ),
        )
        for i in sorted(patients)
    ]


def _from_files(files: list[Path], config: GradingConfig, lenient: bool, chunk_patients: int) -> DerivedPatients:
    vocabulary = load_vocabulary()
    with _progress() as progress:
        reading = progress.add_task("reading files", total=len(files))
        frames = []
        for path in files:
            frames.append(read_event_file(path))
            progress.advance(reading)
        raw = pl.concat(frames, how="diagonal_relaxed")
        normalised = normalise_raw(raw, config, vocabulary)
        if not normalised.ok and not lenient:
            progress.stop()
            print_problems(normalised.errors.to_dicts(), Console(stderr=True))
            fail(
                f"{normalised.problems.height} row(s) refused; nothing was derived. "
                "Fix them, or use --lenient to derive from the valid rows and report the rest."
            )
        grading = progress.add_task("grading patients", total=normalised.patients.height)
        parts = []
        for size, chunk in _patient_chunks(normalised, chunk_patients):
            parts.append(derive_from_events(chunk, config, vocabulary))
            progress.advance(grading, size)
    if normalised.errors.height:
        # Refused rows (--lenient) and kept rows with a caveat (e.g. a mg/kg dose without a weight: its mg total
        # is null in the table) are listed, so no gap in the table is silent.
        err = Console(stderr=True)
        print_problems(normalised.errors.head(SHOWN_PROBLEMS).to_dicts(), err)
        if normalised.errors.height > SHOWN_PROBLEMS:
            err.print(f"... and {normalised.errors.height - SHOWN_PROBLEMS:,} more (`tocsin grade --json` lists all)")
    if not parts:
        fail("no patients in the event files (every row was refused?)")
    table = pl.concat([p.table for p in parts]).sort("patient_id")
    return DerivedPatients(table=table, method=parts[0].method)


def _from_batch(folders: list[Path], config: GradingConfig) -> DerivedPatients:
    with _progress() as progress:
        task = progress.add_task("reading batch tables", total=len(REQUIRED_TABLES))
        tables = read_batch_tables(folders, on_table=lambda _name: progress.advance(task))
    return derive_patients(tables, config)


def method_path(out: Path) -> Path:
    """The JSON beside the table that names how it was derived (a CSV cannot carry it)."""
    return out.with_name(out.name + ".method.json")


def _write_method(derived: DerivedPatients, courses: list[Path], out: Path) -> None:
    document = {**derived.method, "inputs": [str(p) for p in courses], "table": out.name}
    write_bytes_atomically(
        method_path(out), orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    )


@cohort_app.command("derive")
def derive(
    courses: Annotated[
        list[Path],
        typer.Argument(help="Event files (.csv, .parquet, .jsonl), or `tocsin batch --cohort` output directories."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Patient table to write: .csv or .parquet.")],
    config_file: Annotated[Path | None, typer.Option("--config", help="Grading config (TOML or YAML).")] = None,
    lenient: Annotated[
        bool, typer.Option("--lenient", help="Derive from the valid rows; report the bad ones.")
    ] = False,
    chunk_patients: Annotated[int, typer.Option("--chunk-patients", min=1, help="Patients graded at once.")] = 400,
) -> None:
    """One row per patient (docs/cohort_columns.md): baseline, CRS/ICANS, treatments, cytopenias, kinetics,
    infections, response at day 28, OS/PFS and relapse vs non-relapse mortality.

    Beside the table, OUT.method.json names the column dictionary version, the configuration and the inputs.
    """
    check_out_suffix(out, TABLE_SUFFIXES)
    folders = [p for p in courses if p.is_dir()]
    if folders and len(folders) != len(courses):
        fail(
            "give either event files or `tocsin batch --cohort` directories, not both ("
            + ", ".join(str(p) for p in folders)
            + " are directories)"
        )
    try:
        config = load_config(config_file) if config_file else GradingConfig()
        derived = _from_batch(folders, config) if folders else _from_files(courses, config, lenient, chunk_patients)
        write_patient_table(derived.table, out)
        _write_method(derived, courses, out)
    except (InputFileError, ConfigFileError, BatchDirectoryError, DeriveInputError, PatientTableError, OSError) as exc:
        fail(str(exc))
        return
    Console().print(
        f"{derived.table.height:,} patients, {derived.table.width} columns -> {out} "
        f"(columns: docs/cohort_columns.md, dictionary {derived.method['columns_version']}, "
        f"config {config.name} {config.fingerprint()})"
    )
