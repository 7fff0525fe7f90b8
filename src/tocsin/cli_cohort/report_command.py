"""``tocsin cohort report``: the cohort's tables and curves as one self-contained HTML file.

    tocsin cohort report patients.parquet --out cohort.html --by product --episodes graded/

Column options default to the agreed names of ``tocsin cohort derive``; a section whose default columns are
absent is left out (the report says which columns would enable it), but a column named on the command line
must exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import polars as pl
import typer
from rich.console import Console

from tocsin.adapters.patient_table import PatientTableError, read_patient_table
from tocsin.cli_cohort.app import cohort_app, fail
from tocsin.cli_cohort.derive_command import method_path
from tocsin.cli_cohort.options import DAYS_PER_MONTH, TimeUnit

if TYPE_CHECKING:
    from tocsin.adapters.cohort_report import Episodes

#: ICAHT next to CRS and ICANS; the Lee 2014 CRS grade can be added with --grade-column.
REPORT_GRADE_COLUMNS = ("crs_max_grade", "icans_max_grade", "icaht_early_grade", "icaht_late_grade")
EPISODE_TABLES = ("crs_episodes", "icans_episodes")
TREATMENT_TABLE = "cohort_events"

def _chosen(table: pl.DataFrame, given: str | None, default: str, option: str) -> str:
    """The column an option names (it must exist), or the agreed default (which may be absent)."""
    if given is None:
        return default
    if given not in table.columns:
        fail(f"{option} {given}: no such column; the table has {', '.join(table.columns)}")
    return given


def _read_method(patients: Path) -> tuple[Path, dict | None]:
    path = method_path(patients)
    if not path.exists():
        return path, None
    try:
        document = orjson.loads(path.read_bytes())
    except (orjson.JSONDecodeError, OSError) as exc:
        fail(f"{path}: not a readable derive method file ({exc}); re-run `tocsin cohort derive` or remove it")
    if not isinstance(document, dict):
        fail(f"{path}: a derive method file is a JSON object; re-run `tocsin cohort derive` or remove it")
    return path, document


def _episodes(folder: Path) -> Episodes:
    from tocsin.adapters.cohort_report import Episodes
    from tocsin.adapters.cohort_sources import BatchDirectoryError, read_batch_tables
    from tocsin.adapters.plots.cohort_figures import EPISODE_COLUMNS, treatments_from_events

    names = [*EPISODE_TABLES, *([TREATMENT_TABLE] if sorted((folder / TREATMENT_TABLE).glob("part-*.parquet")) else [])]
    try:
        tables = read_batch_tables([folder], names=names)
    except BatchDirectoryError as exc:
        fail(f"--episodes {folder}: {exc}")
    for name in EPISODE_TABLES:
        absent = [c for c in EPISODE_COLUMNS if c not in tables[name].columns]
        if absent:
            fail(f"--episodes {folder}: table {name} lacks {', '.join(absent)}; re-run `tocsin batch` on the events")
    treatments = treatments_from_events(tables[TREATMENT_TABLE]) if TREATMENT_TABLE in tables else None
    return Episodes(
        crs=tables["crs_episodes"],
        icans=tables["icans_episodes"],
        treatments=treatments,
        origin=f"Episodes from the engine's episode tables in {folder} (each episode its own bar)"
        + ("; tocilizumab and steroid doses from its cohort_events." if treatments is not None else "."),
    )


@cohort_app.command("report")
def report_command(
    patients: Annotated[Path, typer.Argument(help="Patient table (.csv or .parquet) of `tocsin cohort derive`.")],
    out: Annotated[Path, typer.Option("--out", help="The report: a self-contained .html file.")],
    by: Annotated[str | None, typer.Option("--by", help="Compare the groups of this column (e.g. product).")] = None,
    episodes: Annotated[
        Path | None,
        typer.Option("--episodes", help="A `tocsin batch` output directory: draw the swimmer plot from its episodes."),
    ] = None,
    swimmer_max: Annotated[
        int, typer.Option("--swimmer-max", min=1, help="Most patients in the swimmer plot (a random sample beyond).")
    ] = 200,
    table1_var: Annotated[
        list[str] | None,
        typer.Option("--table1-var", help="Table 1 variable (repeat); default: the baseline columns present."),
    ] = None,
    grade_column: Annotated[
        list[str] | None,
        typer.Option("--grade-column", help=f"Grade column (repeat); default {', '.join(REPORT_GRADE_COLUMNS)}."),
    ] = None,
    at: Annotated[
        list[float] | None,
        typer.Option("--at", help="Landmark time for survival and cumulative incidence (repeat; default 12)."),
    ] = None,
    time_unit: Annotated[
        TimeUnit, typer.Option("--time-unit", help="Unit of the curves and of --at (months = days / 30.4375).")
    ] = TimeUnit.months,
    os_time: Annotated[str | None, typer.Option("--os-time", help="OS time column; default os_days.")] = None,
    os_event: Annotated[str | None, typer.Option("--os-event", help="OS event (1 = died); default os_event.")] = None,
    pfs_time: Annotated[str | None, typer.Option("--pfs-time", help="PFS time column; default pfs_days.")] = None,
    pfs_event: Annotated[str | None, typer.Option("--pfs-event", help="PFS event column; default pfs_event.")] = None,
    competing_time: Annotated[
        str | None, typer.Option("--competing-time", help="Relapse / NRM time column; default relapse_nrm_days.")
    ] = None,
    competing_status: Annotated[
        str | None,
        typer.Option(
            "--competing-status", help="Status column (0 censored, 1 relapse, 2 NRM); default relapse_nrm_status."
        ),
    ] = None,
) -> None:
    """Table 1, incidence by grade, durations, swimmer plot, OS/PFS Kaplan–Meier and relapse/NRM in one HTML."""
    from tocsin.adapters.cohort_report import (
        CohortReportError,
        Endpoint,
        Provenance,
        ReportColumns,
        ReportOptions,
        ToxicityColumns,
        build_cohort_report,
        render_cohort_report,
        write_cohort_report,
    )

    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"--out {out}: the cohort report is HTML; use a file name ending in .html")
    if episodes is not None and not episodes.is_dir():
        fail(f"--episodes {episodes}: no such directory; give the --out directory of `tocsin batch`")
    if table1_var and not by:
        fail("--table1-var chooses the variables of Table 1, which compares groups; give the groups with --by")
    landmarks = tuple(at or [12.0])
    if any(t <= 0 for t in landmarks):
        fail(f"--at {', '.join(f'{t:g}' for t in landmarks)}: landmark times are after day 0")
    try:
        table = read_patient_table(patients, [c for c in (by, *(table1_var or []), *(grade_column or [])) if c])
    except PatientTableError as exc:
        fail(str(exc))
    columns = ReportColumns(
        grades=tuple(grade_column or REPORT_GRADE_COLUMNS),
        crs=ToxicityColumns("CRS", "crs_max_grade", "crs_onset_day", "crs_duration_days", "crs_ongoing"),
        icans=ToxicityColumns("ICANS", "icans_max_grade", "icans_onset_day", "icans_duration_days", "icans_ongoing"),
        os=Endpoint("Overall survival", _chosen(table, os_time, "os_days", "--os-time"),
                    _chosen(table, os_event, "os_event", "--os-event")),
        pfs=Endpoint("Progression-free survival", _chosen(table, pfs_time, "pfs_days", "--pfs-time"),
                     _chosen(table, pfs_event, "pfs_event", "--pfs-event")),
        competing_time=_chosen(table, competing_time, "relapse_nrm_days", "--competing-time"),
        competing_status=_chosen(table, competing_status, "relapse_nrm_status", "--competing-status"),
    )
    scale = DAYS_PER_MONTH if time_unit is TimeUnit.months else 1.0
    options = ReportOptions(columns=columns, by=by, table1_variables=tuple(table1_var) if table1_var else None,
                            landmarks=landmarks, time_unit=time_unit.value, days_per_unit=scale,
                            swimmer_max=swimmer_max)
    method_file, method = _read_method(patients)
    swimmer = _episodes(episodes) if episodes is not None else None
    try:
        report = build_cohort_report(table, options, Provenance(patients, method_file, method), swimmer)
    except CohortReportError as exc:
        fail(f"{patients}: {exc}")
    try:
        write_cohort_report(render_cohort_report(report), out)
    except OSError as exc:
        fail(f"--out {out}: cannot be written ({exc.strerror}); choose a writable place")
    left_out = f"; left out: {', '.join(o.title for o in report.omissions)}" if report.omissions else ""
    Console(stderr=True).print(f"cohort report of {report.n_patients} patients -> {out}{left_out}")
