"""``tocsin cohort incidence | durations | logistic``: toxicity incidence with CIs, episode durations, predictors."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tocsin.cli_cohort.app import cohort_app, fail, input_errors
from tocsin.cli_cohort.options import (
    TABLE_SUFFIXES,
    ByOption,
    ConfLevelOption,
    JsonOption,
    PatientsArgument,
    ReferenceOption,
    check_out_suffix,
    out_option,
    parse_references,
    print_json,
)
from tocsin.stats.methods import CIMethod

DEFAULT_GRADE_COLUMNS = (
    "crs_max_grade",
    "crs_max_grade_lee2014",
    "icans_max_grade",
    "icaht_early_grade",
    "icaht_late_grade",
)

IncidenceOut = out_option("Also write the rows as CSV/Parquet to this file.")


@cohort_app.command("incidence")
def incidence_command(
    patients: PatientsArgument,
    grade_column: Annotated[
        list[str] | None,
        typer.Option("--grade-column", help="Grade column (repeatable); default: the standard grade columns present."),
    ] = None,
    by: ByOption = None,
    ci: Annotated[CIMethod, typer.Option("--ci", help="Confidence interval method.")] = CIMethod.CLOPPER_PEARSON,
    conf_level: ConfLevelOption = 0.95,
    at_least: Annotated[
        list[int] | None,
        typer.Option("--at-least", min=1, max=5, help="Report grade >= K (repeatable); default 1 (any) and 3."),
    ] = None,
    json_output: JsonOption = False,
    out: IncidenceOut = None,
) -> None:
    """Incidence of each toxicity (any grade, grade >= 3, each grade) with exact or Wilson CIs, per group."""
    # the estimators (scipy, lifelines, ...) load here, not when `tocsin` starts (see table1_command)
    from tocsin.adapters.incidence_output import incidence_document, incidence_table, print_incidence
    from tocsin.adapters.patient_table import read_patient_table, write_patient_table
    from tocsin.stats.incidence import DEFAULT_AT_LEAST, incidence

    check_out_suffix(out, TABLE_SUFFIXES)
    with input_errors(patients):
        table = read_patient_table(patients, [*(grade_column or []), *([by] if by else [])])
        columns = grade_column or [c for c in DEFAULT_GRADE_COLUMNS if c in table.columns]
        if not columns:
            fail(f"{patients}: none of the standard grade columns ({', '.join(DEFAULT_GRADE_COLUMNS)}) is in the "
                 "table; name one with --grade-column COL")
        result = incidence(table, columns, by=by, method=ci, confidence=conf_level,
                           at_least=at_least or DEFAULT_AT_LEAST)
        if out is not None:
            write_patient_table(incidence_table(result), out)
    if json_output:
        print_json(incidence_document(result))
    else:
        print_incidence(result, Console())


@cohort_app.command("durations")
def durations_command(
    patients: PatientsArgument,
    duration: Annotated[str, typer.Option("--duration", help="Duration column in days (e.g. crs_duration_days).")],
    ongoing: Annotated[str, typer.Option("--ongoing", help="Ongoing-episode flag column (e.g. crs_ongoing).")],
    grade_column: Annotated[
        str | None, typer.Option("--grade-column", help="Grade column to stratify by (e.g. crs_max_grade).")
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Durations by grade and group: resolved median (IQR; range) and the KM median with ongoing censored."""
    # the estimators (scipy, lifelines, ...) load here, not when `tocsin` starts (see table1_command)
    from tocsin.adapters.incidence_output import durations_document, print_durations
    from tocsin.adapters.patient_table import read_patient_table
    from tocsin.stats.durations import duration_summary

    with input_errors(patients):
        table = read_patient_table(patients, [duration, ongoing, *([grade_column] if grade_column else []),
                                              *([by] if by else [])])
        result = duration_summary(table, duration, ongoing, grade=grade_column, by=by)
    if json_output:
        print_json(durations_document(result))
    else:
        print_durations(result, Console())


@cohort_app.command("logistic")
def logistic_command(
    patients: PatientsArgument,
    outcome: Annotated[str, typer.Option("--outcome", help="Outcome column: 0/1, true/false, or a grade with "
                                          "--threshold.")],
    predictor: Annotated[list[str], typer.Option("--predictor", help="Predictor column (repeatable).")],
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Model 'outcome >= THRESHOLD' (e.g. 3 for grade >= 3).")
    ] = None,
    categorical: Annotated[
        list[str] | None, typer.Option("--categorical", help="Treat this numeric predictor as categories.")
    ] = None,
    reference: ReferenceOption = None,
    conf_level: ConfLevelOption = 0.95,
    profile: Annotated[bool, typer.Option("--profile/--no-profile", help="Also give profile-likelihood CIs.")] = True,
    json_output: JsonOption = False,
) -> None:
    """Logistic regression: OR, Wald and profile-likelihood CIs, P; rows dropped for missing values listed."""
    # the estimators (scipy, lifelines, ...) load here, not when `tocsin` starts (see table1_command)
    from tocsin.adapters.incidence_output import logistic_document, print_logistic
    from tocsin.adapters.patient_table import read_patient_table
    from tocsin.stats.logistic import logistic_regression

    references = parse_references(reference)
    with input_errors(patients):
        table = read_patient_table(patients, [outcome, *predictor])
        result = logistic_regression(table, outcome, predictor, threshold=threshold, categorical=categorical or (),
                                     reference=references, confidence=conf_level, profile=profile)
    if json_output:
        print_json(logistic_document(result))
    else:
        print_logistic(result, Console())
