"""``tocsin cohort table1 PATIENTS --by GROUP``: the baseline/comparison table with a test per variable."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tocsin.cli_cohort.app import cohort_app, fail, input_errors
from tocsin.cli_cohort.options import JsonOption, PatientsArgument, RequiredByOption, out_option
from tocsin.stats.multiplicity import Adjustment
from tocsin.stats.summaries import QuantileDefinition
from tocsin.stats.table1_vocabulary import CONTINUOUS_STATISTICS, KINDS, TESTS, WilcoxonTies

Table1Out = out_option("Write .csv, .docx, .html or .json.")


@cohort_app.command("table1")
def table1_command(
    patients: PatientsArgument,
    by: RequiredByOption,
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
        QuantileDefinition, typer.Option("--quartiles", help="Quartile definition: type2 (SAS) or type7 (R).")
    ] = "type2",
    adjust: Annotated[Adjustment, typer.Option("--adjust", help="Multiple-comparison adjustment.")] = "none",
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
        WilcoxonTies,
        typer.Option(
            "--wilcoxon-ties",
            help="Tied groups < 50: normal approximation (R < 4.6, default) or exact conditional (R >= 4.6).",
        ),
    ] = "normal",
    overall: Annotated[bool, typer.Option("--overall/--no-overall", help="Add an Overall column.")] = True,
    json_output: JsonOption = False,
    out: Table1Out = None,
) -> None:
    """Table 1: n (%), median (Q1, Q3) and/or mean (SD) per group, a test per variable, exact P values."""
    # scipy and statsmodels load here, not when `tocsin` starts (they cost every other command a second)
    from tocsin.adapters.patient_table import read_patient_table
    from tocsin.adapters.table1_output import Table1OutputError, print_table1, table1_json, write_table1
    from tocsin.stats.table1 import Table1Options, parse_assignments, table1

    limits = {"exact_limit": exact_limit, "resamples": resamples}
    with input_errors(patients):
        options = Table1Options(
            **{name: value for name, value in limits.items() if value is not None},
            tests=parse_assignments(tests or [], TESTS, "--test"),
            kinds=parse_assignments(kinds or [], KINDS, "--type"),  # type: ignore[arg-type]
            continuous_statistics=tuple(dict.fromkeys(statistics or ["median-iqr"])),
            quantiles=quantiles,
            adjust=adjust,
            digits=digits,
            p_digits=p_digits,
            seed=seed,
            wilcoxon_ties=wilcoxon_ties,
            overall=overall,
        )
        frame = read_patient_table(patients, required=[by])
        result = table1(frame, by, variables or None, options)
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
