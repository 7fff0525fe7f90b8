"""The options every ``tocsin cohort`` command spells the same way, and the parsers of their ``NAME=VALUE`` forms.

One name per meaning: the patient table is the first argument, ``--by`` names the group column, ``--json``
prints the document, ``--out`` writes a file (atomically), ``--conf-level`` is the confidence level (as R's
``conf.level``), ``--reference COLUMN=LEVEL`` picks the reference level of a categorical covariate.
Light on purpose (Typer and orjson only): the command modules are imported whenever ``tocsin`` starts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tocsin.cli_cohort.app import fail

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
#: --time-unit months: days / 30.4375 (a Julian year of 365.25 days over 12).
DAYS_PER_MONTH = 365.25 / 12
DOCUMENT_OR_TABLE_SUFFIXES = (".json", *TABLE_SUFFIXES)


class TimeUnit(str, Enum):
    """The unit of the times a command prints (its input times are days since infusion)."""

    days = "days"
    months = "months"


def _check_conf_level(value: float) -> float:
    if not 0 < value < 1:
        fail(f"--conf-level {value}: give a confidence level between 0 and 1, e.g. 0.95")
    return value


PatientsArgument = Annotated[
    Path, typer.Argument(help="Patient table (.csv or .parquet), one row per patient (`tocsin cohort derive`).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON document (stable keys) instead of tables.")]
ConfLevelOption = Annotated[
    float,
    typer.Option("--conf-level", callback=_check_conf_level, help="Confidence level of the intervals (0-1)."),
]
ByOption = Annotated[str | None, typer.Option("--by", help="Group column whose groups are compared (e.g. product).")]
RequiredByOption = Annotated[str, typer.Option("--by", help="Group column whose groups are compared (e.g. product).")]
ReferenceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--reference",
        help="Reference level COLUMN=LEVEL of a categorical covariate (repeatable; default: the first sorted level).",
    ),
]


def out_option(help: str) -> Any:
    """``--out PATH`` (optional), with what the command writes in its help."""
    return Annotated[Path | None, typer.Option("--out", help=help)]


def by_option(help: str) -> Any:
    """``--by COLUMN`` (optional), with what the command does with the groups in its help."""
    return Annotated[str | None, typer.Option("--by", help=help)]


def print_json(document: Mapping[str, Any]) -> None:
    """``--json``: the document on stdout, indented, NumPy scalars as numbers, one newline at the end."""
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def check_out_suffix(out: Path | None, suffixes: Sequence[str] = DOCUMENT_OR_TABLE_SUFFIXES) -> None:
    """Refuse an ``--out`` whose suffix names no format the command writes, before any work is done."""
    if out is not None and out.suffix.lower() not in suffixes:
        shown = [s for s in suffixes if s != ".pq"]  # .pq is another spelling of .parquet
        fail(f"--out {out}: unknown format '{out.suffix}'; use {', '.join(shown[:-1])} or {shown[-1]}")


def parse_pairs(texts: Sequence[str], option: str, form: str, example: str) -> dict[str, str]:
    """``["product=axi-cel", ...]`` → ``{"product": "axi-cel"}`` (spaces around the parts dropped).

    A malformed item is refused with ``form`` and ``example``; a name given twice with different values too.
    """
    pairs: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            fail(f"{option} {text!r}: write {form}, e.g. {option} {example}")
        if name in pairs and pairs[name] != value:
            fail(f"{option} names {name!r} twice ({pairs[name]}, {value}); give one value per name")
        pairs[name] = value
    return pairs


def parse_references(texts: Sequence[str] | None) -> dict[str, str]:
    """``--reference COLUMN=LEVEL`` pairs (cox, logistic)."""
    return parse_pairs(texts or [], "--reference", "COLUMN=LEVEL", "product=axi-cel")
