"""``tocsin cohort cox``: Cox proportional-hazards regression from a patient table.

Example (overall survival by product and age, axi-cel as the reference)::

    tocsin cohort cox patients.csv --time os_days --event os_event \\
        --covariate product --covariate age_years --reference product=axi-cel
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tocsin.cli_cohort.app import cohort_app, input_errors
from tocsin.cli_cohort.options import (
    ConfLevelOption,
    JsonOption,
    PatientsArgument,
    ReferenceOption,
    check_out_suffix,
    out_option,
    parse_references,
    print_json,
)

CoxOut = out_option("Write the result: .json document, or the terms as .csv/.parquet.")


@cohort_app.command("cox")
def cox_command(
    patients: PatientsArgument,
    time: Annotated[str, typer.Option("--time", help="Column with the time to event or censoring.")],
    event: Annotated[str, typer.Option("--event", help="Column with 1 = event, 0 = censored.")],
    covariate: Annotated[list[str], typer.Option("--covariate", help="Covariate column (repeatable).")],
    reference: ReferenceOption = None,
    conf_level: ConfLevelOption = 0.95,
    json_output: JsonOption = False,
    out: CoxOut = None,
) -> None:
    """Cox regression (Efron ties, as R coxph): HR, CI, Wald P, LR/Wald/score tests, proportional-hazards test."""
    # the estimators (scipy, lifelines, ...) load here, not when `tocsin` starts (see table1_command)
    from tocsin.adapters.competing_output import write_json
    from tocsin.adapters.cox_output import cox_document, print_cox
    from tocsin.adapters.patient_table import read_patient_table, row_names, write_patient_table
    from tocsin.stats.survival.cox import cox_regression
    from tocsin.stats.survival.proportional_hazards import proportional_hazards_test

    check_out_suffix(out)
    references = parse_references(reference)
    with input_errors(patients):
        table = read_patient_table(patients, [time, event, *covariate])
        fit = cox_regression(table, time, event, covariate, references, conf_level, row_names(table))
        zph = proportional_hazards_test(fit)
    meta = {"source": str(patients), "time": time, "event": event, "covariates": covariate}
    if out is not None:
        if out.suffix.lower() == ".json":
            write_json(cox_document(fit, zph, meta), out)
        else:
            write_patient_table(fit.summary, out)
        Console(stderr=True).print(f"Cox model of {patients} -> {out}")
    if json_output:
        print_json(cox_document(fit, zph, meta))
    elif out is None:
        print_cox(Console(), fit, zph)
