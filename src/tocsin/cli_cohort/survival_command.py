"""``tocsin cohort survival``: Kaplan–Meier, log-rank, reverse-KM follow-up and RMST from a patient table."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tocsin.cli_cohort.app import cohort_app, fail, input_errors
from tocsin.cli_cohort.options import (  # DAYS_PER_MONTH and TimeUnit are imported from here too (cohort report)
    DAYS_PER_MONTH,
    ConfLevelOption,
    JsonOption,
    PatientsArgument,
    TimeUnit,
    by_option,
    check_out_suffix,
    out_option,
    print_json,
)
from tocsin.stats.methods import SurvivalConfidenceType

SurvivalBy = by_option("Compare the groups of this column (log-rank).")
SurvivalOut = out_option("Write the result: .json = the report, .csv/.parquet = the curve table.")




@cohort_app.command("survival")
def survival(
    patients: PatientsArgument,
    time: Annotated[str, typer.Option("--time", help="Time column, in days since infusion (e.g. os_days).")],
    event: Annotated[str, typer.Option("--event", help="Event column: 1/true = event, 0/false = censored.")],
    by: SurvivalBy = None,
    strata: Annotated[
        str | None, typer.Option("--strata", help="Stratify the log-rank test by this column (needs --by).")
    ] = None,
    at: Annotated[
        list[float] | None,
        typer.Option("--at", help="Report survival ± SE and the number at risk at this time (repeat for several)."),
    ] = None,
    ci: Annotated[
        SurvivalConfidenceType,
        typer.Option("--ci", help="CI transform: log-log (SAS default), log (R survfit default) or plain."),
    ] = "log-log",
    conf_level: ConfLevelOption = 0.95,
    rmst_horizon: Annotated[
        float | None, typer.Option("--rmst-horizon", help="Restricted mean survival up to this time.")
    ] = None,
    time_unit: Annotated[
        TimeUnit,
        typer.Option("--time-unit", help="Unit of the output, --at and --rmst-horizon (months = days / 30.4375)."),
    ] = TimeUnit.days,
    event_code: Annotated[
        list[str] | None, typer.Option("--event-code", help="A value of --event that means event (e.g. 2).")
    ] = None,
    censor_code: Annotated[
        list[str] | None, typer.Option("--censor-code", help="A value of --event that means censored (e.g. 1).")
    ] = None,
    json_output: JsonOption = False,
    out: SurvivalOut = None,
) -> None:
    """Kaplan–Meier per group with Greenwood CIs, medians, survival at times, log-rank, follow-up and RMST."""
    # the estimators (scipy, lifelines, ...) load here, not when `tocsin` starts (see table1_command)
    from tocsin.adapters.patient_table import read_patient_table, write_patient_table
    from tocsin.adapters.survival_output import print_survival, survival_document, write_document
    from tocsin.stats.survival.follow_up import reverse_km_follow_up
    from tocsin.stats.survival.inputs import survival_inputs
    from tocsin.stats.survival.kaplan_meier import kaplan_meier
    from tocsin.stats.survival.logrank import logrank_test
    from tocsin.stats.survival.rmst import restricted_mean_survival

    if strata and not by:
        fail("--strata stratifies the comparison of groups; name the groups to compare with --by")
    check_out_suffix(out)
    required = [c for c in (time, event, by, strata) if c]
    with input_errors(patients):
        table = read_patient_table(patients, required)
        inputs = survival_inputs(
            table, time, event, group=by, strata=strata, event_codes=event_code or (), censor_codes=censor_code or ()
        )
    scale = DAYS_PER_MONTH if time_unit is TimeUnit.months else 1.0
    times = inputs.time / scale
    curves = kaplan_meier(times, inputs.event, inputs.group, conf_type=ci, conf_level=conf_level)
    test = None
    if by and curves.groups.height >= 2:
        try:
            test = logrank_test(times, inputs.event, inputs.group, inputs.strata)
        except ValueError as exc:
            fail(f"{patients}: {exc}")
    elif strata:
        fail(f"{patients}: column '{by}' has one group only; a stratified test needs at least two groups")
    rmst = None
    if rmst_horizon is not None:
        if rmst_horizon <= 0:
            fail(f"--rmst-horizon {rmst_horizon}: give a time after day 0 (in {time_unit.value})")
        rmst = restricted_mean_survival(times, inputs.event, inputs.group, horizon=rmst_horizon, conf_level=conf_level)
    document = survival_document(
        curves,
        curves.survival_at(at or []),
        reverse_km_follow_up(times, inputs.event, inputs.group, conf_type=ci, conf_level=conf_level),
        rmst,
        test,
        columns={"time": time, "event": event, "by": by, "strata": strata},
        time_unit=time_unit.value,
    )
    if out is not None:
        if out.suffix.lower() == ".json":
            write_document(document, out)
        else:
            write_patient_table(curves.summary, out)
    if json_output:
        print_json(document)
    elif out is None:
        print_survival(document, Console())
