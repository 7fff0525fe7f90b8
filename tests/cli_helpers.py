"""Driving the ``tocsin`` command line in tests: typer's CliRunner on ``tocsin.cli.app``, wide and colourless."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from tocsin.cli import app

ROOT = Path(__file__).resolve().parents[1]
#: Rich tables on one line each, no escape codes.
WIDE = {"COLUMNS": "320", "NO_COLOR": "1"}


def run(*args: object) -> Result:
    """``tocsin ARGS...`` (each argument as text: paths may be given as ``Path``)."""
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)
