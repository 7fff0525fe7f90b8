"""The ``tocsin cohort`` Typer group and what its commands share (bad input exits 2 with a clear message)."""

from __future__ import annotations

import typer
from rich.console import Console

cohort_app = typer.Typer(
    no_args_is_help=True,
    help="Cohort analytics: derive one row per patient, Table 1, survival, incidence, reports.",
)
BAD_INPUT = 2


def fail(message: str) -> None:
    """Print ``message`` as an error on stderr and exit with the bad-input code (2)."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(BAD_INPUT)
