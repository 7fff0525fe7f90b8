"""What every ``tocsin`` command shares: the bad-input exit, and reading event files as the bedside does.

Light on purpose (Polars, Typer, Rich and the ingest core): ``tocsin`` imports it whenever it starts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import NoReturn

import polars as pl
import typer
from rich.console import Console

from tocsin.adapters.console import print_problems
from tocsin.config import GradingConfig
from tocsin.core.events import IngestLimits, NormalisedEvents, normalise_events
from tocsin.vocabulary import Vocabulary

BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with the bad-input code (2)."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(BAD_INPUT)


def normalise_raw(raw: pl.DataFrame, config: GradingConfig, vocabulary: Vocabulary) -> NormalisedEvents:
    """Validate raw event rows as the command line does: from the config's earliest day, nothing after now."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return normalise_events(raw, vocabulary, IngestLimits(earliest_day=config.earliest_day, not_after=now))


def refuse_rows(errors: pl.DataFrame, message: str) -> NoReturn:
    """List the refused rows and ``message`` (Rich markup) on stderr, and exit with the bad-input code (2)."""
    err = Console(stderr=True)
    print_problems(errors.to_dicts(), err)
    err.print(message)
    raise typer.Exit(BAD_INPUT)
