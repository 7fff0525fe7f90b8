"""The ``tocsin`` command line: grade event files, run the demo, generate synthetic cohorts, publish schemas.

Exit codes: 0 success; 2 bad input (nothing is graded unless ``--lenient``).
"""

from __future__ import annotations

import sys
from datetime import datetime
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated

import orjson
import polars as pl
import typer
from rich.console import Console

from tocsin.adapters.config_file import ConfigFileError, load_config
from tocsin.adapters.console import print_document
from tocsin.adapters.files import InputFileError, read_event_files
from tocsin.adapters.json_output import result_document
from tocsin.cli_cohort import cohort_app
from tocsin.cli_report import report
from tocsin.cli_shared import fail, normalise_raw, refuse_rows
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.vocabulary import load_vocabulary

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tocsin: explained CAR-T toxicity grades (CRS, ICANS) from the raw course.",
)
app.add_typer(cohort_app, name="cohort")


class CrsScaleOption(str, Enum):
    astct2019 = "astct2019"
    lee2014 = "lee2014"


def _config(config_file: Path | None, crs_scale: CrsScaleOption | None) -> GradingConfig:
    config = load_config(config_file) if config_file else GradingConfig()
    if crs_scale is not None:
        config = config.model_copy(update={"crs": config.crs.model_copy(update={"scale": crs_scale.value})})
    return config


def run_grading(files: list[Path], config: GradingConfig, lenient: bool) -> dict:
    """Read, validate and grade; raise ``typer.Exit(2)`` on bad input unless lenient."""
    vocabulary = load_vocabulary()
    normalised = normalise_raw(read_event_files(files), config, vocabulary)
    if not normalised.ok and not lenient:
        refuse_rows(
            normalised.errors,
            f"[bold red]{normalised.problems.height} row(s) refused; nothing was graded.[/] "
            "Fix them, or use --lenient to grade the valid rows and report the rest.",
        )
    return result_document(grade_normalised(normalised, config, vocabulary))


@app.command()
def grade(
    files: Annotated[list[Path], typer.Argument(help="Event files (.csv, .parquet, .jsonl).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
    crs_scale: Annotated[CrsScaleOption | None, typer.Option("--crs-scale", help="CRS scale.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Grading config (TOML or YAML).")] = None,
    lenient: Annotated[bool, typer.Option("--lenient", help="Grade valid rows; report the bad ones.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON document to this file.")] = None,
) -> None:
    """Grade CRS and ICANS for every patient in the event files, with the reason for every grade."""
    try:
        config = _config(config_file, crs_scale)
        document = run_grading(files, config, lenient)
    except (InputFileError, ConfigFileError) as exc:
        fail(str(exc))
        return
    payload = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(payload)
    if json_output:
        sys.stdout.buffer.write(payload + b"\n")
    else:
        print_document(document)


@app.command()
def batch(
    file: Annotated[Path, typer.Argument(help="Parquet event file (sorted by patient reads fastest).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for the Parquet tables.")],
    crs_scale: Annotated[CrsScaleOption | None, typer.Option("--crs-scale", help="CRS scale.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Grading config (TOML or YAML).")] = None,
    chunk_patients: Annotated[int, typer.Option("--chunk-patients", min=1, help="Patients per batch.")] = 400,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes grading chunks in parallel, this one included.")
    ] = 1,
    evidence: Annotated[
        bool, typer.Option("--evidence", help="Also write the observations behind every grade (larger output).")
    ] = False,
    cohort: Annotated[
        bool, typer.Option("--cohort", help="Also write the tables `tocsin cohort derive` reads (grades CRS twice).")
    ] = False,
) -> None:
    """Grade a registry-sized Parquet file in chunks; write timelines, episodes, summaries as Parquet.

    Rows that fail validation are refused and written to input_problems/ (the other rows are graded).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tocsin.adapters.batch import grade_parquet_to_directory

    try:
        config = _config(config_file, crs_scale)
    except (ConfigFileError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    try:
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as progress:
            task = progress.add_task("grading patients", total=None)  # (the total once the chunks are planned)
            stats = grade_parquet_to_directory(
                file,
                out,
                config,
                chunk_patients,
                on_chunk=lambda n, _rows: progress.advance(task, n),
                workers=workers,
                evidence=evidence,
                cohort=cohort,
                on_plan=lambda patients: progress.update(task, total=patients),
            )
    except (InputFileError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    Console().print(
        f"{stats.patients:,} patients, {stats.events:,} events graded -> {out}"
        + (f"; {stats.refused_rows:,} rows refused (see {out}/input_problems)" if stats.refused_rows else "")
    )


@app.command()
def config(
    config_file: Annotated[Path | None, typer.Option("--config", help="Show this file's values instead.")] = None,
) -> None:
    """Print the grading configuration (defaults, or a file's) as an annotated TOML file to copy and edit."""
    from tocsin.config import annotated_toml

    try:
        chosen = load_config(config_file) if config_file else GradingConfig()
    except ConfigFileError as exc:
        fail(str(exc))
        return
    sys.stdout.write(annotated_toml(chosen))


def _query_days(at: str, infusion_times: dict[str, datetime | None]) -> dict[str, float]:
    """``--at`` as days since infusion per patient: a number is a day, otherwise an ISO time."""
    try:
        return {pid: float(at) for pid in infusion_times}
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(at).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"--at {at!r} is neither a day (e.g. 3.5) nor an ISO time (e.g. 2024-05-02T08:00)") from None
    days = {}
    for pid, start in infusion_times.items():
        if start is None:
            raise ValueError(f"--at {at!r} is a clock time but patient {pid} has no infusion time: give a day instead")
        days[pid] = (when - start).total_seconds() / 86400
    return days


@app.command()
def assess(
    files: Annotated[list[Path], typer.Argument(help="Event files (.csv, .parquet, .jsonl).")],
    at: Annotated[str, typer.Option("--at", help="Day since infusion (3.5) or ISO time.")],
    patient: Annotated[str | None, typer.Option("--patient", help="Only this patient.")] = None,
    pack_names: Annotated[
        list[str] | None,
        typer.Option("--pack", help="Packaged guideline pack; repeat for several (default asco2021)."),
    ] = None,
    pack_file: Annotated[Path | None, typer.Option("--pack-file", help="A centre's pack file (YAML).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    config_file: Annotated[Path | None, typer.Option("--config", help="Grading config (TOML or YAML).")] = None,
) -> None:
    """Grades now and what the guideline pack suggests: ranked actions, doses with caps, timers and alerts."""
    from tocsin.adapters.assess_output import assess_documents, print_assessments, read_pack_file
    from tocsin.core.guidance import PackError, assessment_facts, load_pack, suggest
    from tocsin.core.situation import prophylaxis_reminders

    try:
        config = _config(config_file, None)
        # A pack file alone replaces the default pack; with --pack it is added to the named packs.
        names = pack_names or ([] if pack_file else ["asco2021"])
        packs = [load_pack(name) for name in dict.fromkeys(names)]
        if pack_file:
            packs.append(read_pack_file(pack_file))
        vocabulary = load_vocabulary()
        normalised = normalise_raw(read_event_files(files), config, vocabulary)
        if not normalised.ok:
            refused = normalised.problems.height
            refuse_rows(normalised.errors, f"[bold red]{refused} row(s) refused; nothing was assessed.[/]")
        result = grade_normalised(normalised, config, vocabulary)
        infusion = {str(r["patient_id"]): r["infusion_time"] for r in result.patients.iter_rows(named=True)}
        if patient is not None:
            if patient not in infusion:
                raise ValueError(f"--patient {patient!r} is not in the files (patients: {', '.join(infusion)})")
            infusion = {patient: infusion[patient]}
        days = _query_days(at, infusion)
    except (InputFileError, ConfigFileError, PackError, ValueError) as exc:
        fail(str(exc))
        return
    queries = pl.DataFrame({"patient_id": list(days), "at": list(days.values())})
    facts = assessment_facts(result, normalised.events, queries)
    # Each pack is evaluated on its own: an alert's `suppresses` acts within its pack (docs/assess.md).
    suggestions = pl.concat([suggest(facts, pack) for pack in packs])
    reminders = prophylaxis_reminders(normalised.events, queries, result.config)
    documents = assess_documents(facts, suggestions, packs, infusion, reminders)
    if json_output:
        payload = documents[0] if len(documents) == 1 else documents
        sys.stdout.buffer.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_assessments(documents, Console())


def example_files() -> list[Path]:
    """The bundled example courses: packaged in a wheel, or the repository's ``examples/`` in a checkout."""
    packaged = resources.files("tocsin").joinpath("examples")
    folder = Path(str(packaged)) if packaged.is_dir() else Path(__file__).resolve().parents[2] / "examples"
    return sorted(p for p in folder.glob("*.csv"))


#: Variables of the demo's Table 1: baseline, toxicities and treatment (a seed-001-style comparison).
DEMO_TABLE1_VARIABLES = [
    "age_years", "sex", "disease", "crs_max_grade", "icans_max_grade", "icaht_early_grade",
    "tocilizumab_doses", "steroid_mp_equivalent_mg", "infection_any", "response_day28",
]


def _demo_cohort(out: Path, patients: int) -> None:
    """The cohort walk-through: synthetic courses -> batch -> one row per patient -> Table 1, KM, reports.

    Each step calls the command a user would type (printed before it), so the demo shows the real commands.
    """
    from tocsin.cli_cohort.derive_command import derive
    from tocsin.cli_cohort.report_command import report_command
    from tocsin.cli_cohort.survival_command import survival
    from tocsin.cli_cohort.table1_command import table1_command

    console = Console()
    synthetic, graded, table = out / "synthetic", out / "graded", out / "patients.parquet"
    by = "car_hematotox_risk"

    def step(command: str) -> None:
        console.print(f"\n[bold cyan]$ {command}[/]", soft_wrap=True)

    step(f"tocsin synth --patients {patients} --seed 2026 --out {synthetic}")
    synth(patients=patients, seed=2026, out=synthetic, fmt=SynthFormat.parquet)
    step(f"tocsin batch {synthetic}/events.parquet --out {graded} --cohort")
    batch(file=synthetic / "events.parquet", out=graded, cohort=True)
    step(f"tocsin cohort derive {graded} --out {table}")
    derive(courses=[graded], out=table)
    step(f"tocsin cohort table1 {table} --by {by} --var ... --adjust holm")
    table1_command(patients=table, by=by, variables=DEMO_TABLE1_VARIABLES, adjust="holm")
    step(f"tocsin cohort survival {table} --time os_days --event os_event --by {by} --at 365")
    survival(patients=table, time="os_days", event="os_event", by=by, at=[365.0])
    step(f"tocsin cohort report {table} --by {by} --episodes {graded} --out {out}/cohort_report.html")
    report_command(patients=table, out=out / "cohort_report.html", by=by, episodes=graded)
    for example in (p for p in example_files() if p.name == "seed002_hu2024.csv"):
        step(f"tocsin report {example.name} --out {out}/seed002_report.html")
        report(files=[example], out=out / "seed002_report.html")
    console.print(f"[bold]Open {out}/cohort_report.html and {out}/seed002_report.html in a browser.")


@app.command()
def demo(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    cohort: Annotated[
        bool, typer.Option("--cohort/--no-cohort", help="Also run the cohort walk-through on a synthetic cohort.")
    ] = True,
    out: Annotated[Path, typer.Option("--out", help="Where the cohort walk-through writes its files.")] = Path(
        "out/demo"
    ),
    patients: Annotated[int, typer.Option("--patients", min=20, help="Patients of the synthetic cohort.")] = 300,
) -> None:
    """Grade the bundled example courses (source papers) and print a readable summary per patient; then derive,
    tabulate and plot a synthetic cohort the way a cohort paper does (``--no-cohort`` to skip)."""
    files = example_files()
    if not files:
        fail("no example courses found (expected examples/*.csv)")
    document = run_grading(files, GradingConfig(name="default"), lenient=False)
    if json_output:
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    print_document(document)
    if cohort:
        _demo_cohort(out, patients)


class SynthFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"


@app.command()
def synth(
    patients: Annotated[int, typer.Option("--patients", min=1, help="Number of patients.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same cohort).")] = 1,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("synthetic"),
    fmt: Annotated[SynthFormat, typer.Option("--format", help="File format.")] = SynthFormat.parquet,
) -> None:
    """Generate a deterministic synthetic cohort: 30-day courses, 6-24 months of follow-up, ground-truth labels."""
    from tocsin.synth import generate_cohort, write_cohort

    cohort = generate_cohort(patients, seed)
    paths = write_cohort(cohort, out, fmt.value)
    Console().print(f"{cohort.events.height:,} events for {patients:,} patients -> " + ", ".join(str(p) for p in paths))


@app.command()
def schema(
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON Schema.")] = Path(
        "docs/event.schema.json"
    ),
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the vocabulary as Markdown.")] = None,
) -> None:
    """Publish the event-row JSON Schema (and the vocabulary page) generated from the vocabulary table."""
    vocabulary = load_vocabulary()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(vocabulary.json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
    written = [out]
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(vocabulary.markdown(), encoding="utf-8")
        written.append(markdown)
    Console().print("wrote " + ", ".join(str(p) for p in written))


app.command()(report)

if __name__ == "__main__":  # pragma: no cover
    app()
