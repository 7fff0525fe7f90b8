"""The ``tocsin cohort`` Typer group and what its commands share (bad input exits 2 with a clear message)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from tocsin.adapters.patient_table import PatientTableError
from tocsin.cli_shared import BAD_INPUT, fail
from tocsin.stats.input_checks import StatsInputError

cohort_app = typer.Typer(
    no_args_is_help=True,
    help="Cohort analytics: derive one row per patient, Table 1, survival, incidence, reports.",
)
__all__ = ["BAD_INPUT", "cohort_app", "fail", "input_errors"]


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
