"""The ``tocsin cohort`` Typer group and what its commands share (bad input exits 2 with a clear message)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from tocsin.adapters.patient_table import PatientTableError
from tocsin.stats.input_checks import StatsInputError

cohort_app = typer.Typer(
    no_args_is_help=True,
    help="Cohort analytics: derive one row per patient, Table 1, survival, incidence, reports.",
)
BAD_INPUT = 2


def fail(message: str) -> None:
    """Print ``message`` as an error on stderr and exit with the bad-input code (2)."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(BAD_INPUT)


@contextmanager
def input_errors(patients: Path) -> Iterator[None]:
    """Bad input exits 2: a table that cannot be read (its message names the file) or a column an analysis
    cannot use (any :class:`StatsInputError`; the message is prefixed with the file)."""
    try:
        yield
    except PatientTableError as exc:
        fail(str(exc))
    except StatsInputError as exc:
        fail(f"{patients}: {exc}")
