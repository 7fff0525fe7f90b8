"""``tocsin cohort table1 PATIENTS --by GROUP``: the baseline/comparison table with a test per variable."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tocsin.cli_cohort.app import cohort_app, fail
from tocsin.stats.table1_vocabulary import CONTINUOUS_STATISTICS, KINDS, TESTS


class AdjustOption(str, Enum):
    none = "none"
    bonferroni = "bonferroni"
    holm = "holm"


class WilcoxonTiesOption(str, Enum):
    normal = "normal"
    exact = "exact"


class QuantileOption(str, Enum):
    type2 = "type2"
    type7 = "type7"


@cohort_app.command("table1")
def table1_command(
    patients: Annotated[Path, typer.Argument(help="One-row-per-patient table (.csv or .parquet).")],
    by: Annotated[str, typer.Option("--by", help="Group column (e.g. product).")],
    variables: Annotated[
        list[str] | None, typer.Option("--var", help="Variable to include (repeat); default: every usable column.")
    ] = None,
    tests: Annotated[
        list[str] | None,
        typer.Option("--test", help=f"VAR=TEST (repeat); TEST one of {', '.join(TESTS)}; default as gtsummary."),
    ] = None,
    kinds: Annotated[
        list[str] | None, typer.Option("--type", help="VAR=categorical|continuous, overriding the guess (repeat).")
    ] = None,
    statistics: Annotated[
        list[str] | None,
        typer.Option("--stat", help=f"Continuous summary (repeat): {', '.join(CONTINUOUS_STATISTICS)}."),
    ] = None,
    quantiles: Annotated[
        QuantileOption, typer.Option("--quartiles", help="Quartile definition: type2 (SAS) or type7 (R).")
    ] = QuantileOption.type2,
    adjust: Annotated[AdjustOption, typer.Option("--adjust", help="Multiple-comparison adjustment.")] = (
        AdjustOption.none
    ),
    digits: Annotated[int, typer.Option("--digits", min=0, max=6, help="Decimals of summaries.")] = 1,
    p_digits: Annotated[int, typer.Option("--p-digits", min=1, max=10, help="Decimals of P values.")] = 3,
    exact_limit: Annotated[
        int | None,
        typer.Option("--exact-limit", min=1, help="Work limit of the exact r×c Fisher test (default 10,000,000)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the Monte-Carlo Fisher test (fisher-mc).")] = 1,
    resamples: Annotated[
        int | None, typer.Option("--resamples", min=1, help="Tables drawn by fisher-mc (default 2000, as R).")
    ] = None,
    wilcoxon_ties: Annotated[
        WilcoxonTiesOption,
        typer.Option(
            "--wilcoxon-ties",
            help="Tied groups < 50: normal approximation (R < 4.6, default) or exact conditional (R >= 4.6).",
        ),
    ] = WilcoxonTiesOption.normal,
    overall: Annotated[bool, typer.Option("--overall/--no-overall", help="Add an Overall column.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON document instead of the table.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write .csv, .docx, .html or .json.")] = None,
) -> None:
    """Table 1: n (%), median (Q1, Q3) and/or mean (SD) per group, a test per variable, exact P values."""
    # scipy and statsmodels load here, not when `tocsin` starts (they cost every other command a second)
    from tocsin.adapters.patient_table import PatientTableError, read_patient_table
    from tocsin.adapters.table1_output import Table1OutputError, print_table1, table1_json, write_table1
    from tocsin.stats.table1 import Table1Error, Table1Options, parse_assignments, table1

    limits = {"exact_limit": exact_limit, "resamples": resamples}
    try:
        options = Table1Options(
            **{name: value for name, value in limits.items() if value is not None},
            tests=parse_assignments(tests or [], TESTS, "--test"),
            kinds=parse_assignments(kinds or [], KINDS, "--type"),  # type: ignore[arg-type]
            continuous_statistics=tuple(dict.fromkeys(statistics or ["median-iqr"])),
            quantiles=quantiles.value,
            adjust=adjust.value,
            digits=digits,
            p_digits=p_digits,
            seed=seed,
            wilcoxon_ties=wilcoxon_ties.value,
            overall=overall,
        )
        frame = read_patient_table(patients, required=[by])
        result = table1(frame, by, variables or None, options)
    except (PatientTableError, Table1Error) as exc:
        fail(f"{patients}: {exc}" if isinstance(exc, Table1Error) else str(exc))
        return
    for warning in result.warnings:
        Console(stderr=True).print(f"[yellow]warning:[/] {warning}")
    if out is not None:
        try:
            write_table1(result, out)
        except Table1OutputError as exc:
            fail(str(exc))
        Console(stderr=True).print(f"Table 1 of {len(result.variables)} variable(s) by {by} -> {out}")
    if json_output:
        typer.echo(table1_json(result).decode())
    elif out is None:
        print_table1(result, Console())
