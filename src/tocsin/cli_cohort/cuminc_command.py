"""``tocsin cohort cuminc``: cumulative incidence of competing events and Gray's test, from a patient table.

Example (relapse with non-relapse mortality competing, by product)::

    tocsin cohort cuminc patients.csv --time relapse_nrm_days --status relapse_nrm_status \\
        --event-code 1 --competing-code 2 --censor-code 0 --by product --at 180 --at 365
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console

from tocsin.cli_cohort.app import cohort_app, fail, input_errors
from tocsin.cli_cohort.options import (
    ConfLevelOption,
    JsonOption,
    PatientsArgument,
    by_option,
    check_out_suffix,
    out_option,
    print_json,
)
from tocsin.stats.methods import CumincConfidenceType

CumincBy = by_option("Column whose groups are compared (Gray's test).")
CumincOut = out_option("Write the result: .json document, or the curves as .csv/.parquet.")


def typed_codes(path: Path, table: pl.DataFrame, column: str, codes: list[str], option: str) -> list[object]:
    """Codes as the status column stores them: numbers for a numeric column, text otherwise."""
    if not table.schema[column].is_numeric():
        return list(codes)
    typed: list[object] = []
    for code in codes:
        try:
            number = float(code)
        except ValueError:
            fail(f"{path}: {option} {code!r} is not a number, but column {column!r} holds numbers; give its code")
        typed.append(int(number) if number.is_integer() else number)
    return typed


@cohort_app.command("cuminc")
def cuminc_command(
    patients: PatientsArgument,
    time: Annotated[str, typer.Option("--time", help="Column with the time to the first event or censoring.")],
    status: Annotated[str, typer.Option("--status", help="Column with the status code of each patient.")],
    event_code: Annotated[str, typer.Option("--event-code", help="Status code of the event of interest.")],
    competing_code: Annotated[
        list[str] | None, typer.Option("--competing-code", help="Status code of a competing event (repeatable).")
    ] = None,
    censor_code: Annotated[
        list[str] | None, typer.Option("--censor-code", help="Status code meaning censored (repeatable; default 0).")
    ] = None,
    by: CumincBy = None,
    strata: Annotated[
        str | None, typer.Option("--strata", help="Column to stratify Gray's test by (estimates are not).")
    ] = None,
    at: Annotated[list[float] | None, typer.Option("--at", help="Time at which to report (repeatable).")] = None,
    conf_level: ConfLevelOption = 0.95,
    conf_type: Annotated[
        CumincConfidenceType, typer.Option("--conf-type", help="Intervals: log-log (default, as tidycmprsk) or plain.")
    ] = "log-log",
    json_output: JsonOption = False,
    out: CumincOut = None,
) -> None:
    """Cumulative incidence (Aalen–Johansen, as R cmprsk::cuminc) of an event with competing events; Gray's test."""
    # the estimators (scipy, lifelines, ...) load here, not when `tocsin` starts (see table1_command)
    from tocsin.adapters.competing_output import cuminc_document, print_cuminc, write_json
    from tocsin.adapters.patient_table import read_patient_table, row_names, write_patient_table
    from tocsin.stats.survival.aalen_johansen import cumulative_incidence_from
    from tocsin.stats.survival.competing_events import prepare_competing_events
    from tocsin.stats.survival.gray_test import gray_test_from

    check_out_suffix(out)
    if strata and not by:
        fail("--strata stratifies Gray's test of the --by groups; give --by as well")
    required = [time, status] + [c for c in (by, strata) if c]
    with input_errors(patients):
        table = read_patient_table(patients, required)
    if not table.schema[time].is_numeric():
        fail(f"{patients}: column {time!r} must hold numbers (times), it holds {table.schema[time]}")
    declared = [event_code, *(competing_code or [])]
    events = typed_codes(patients, table, status, declared, "--event-code/--competing-code")
    censored = typed_codes(patients, table, status, censor_code or ["0"], "--censor-code")
    names = row_names(table)
    with input_errors(patients):
        data = prepare_competing_events(
            table.get_column(time).to_list(),
            table.get_column(status).to_list(),
            events,
            censored,
            table.get_column(by).to_list() if by else None,
            names,
        )
        fit = cumulative_incidence_from(data, conf_level=conf_level, conf_type=conf_type)
        at_times = fit.at(at) if at else None
        strata_index = None
        if strata:
            values = table.get_column(strata)
            if values.null_count():
                missing = [names[r] for r in values.is_null().arg_true().to_list()]
                fail(f"{patients}: {', '.join(missing[:5])}: column {strata!r} is missing; fill it in or drop the rows")
            strata_index = values.cast(pl.String).rank("dense").to_numpy()
        tests = (
            [gray_test_from(data, cause, strata_index) for cause in data.event_codes]
            if len(data.group_labels) > 1
            else []
        )
    cause_names = {events[0]: f"{events[0]} (event)"} | {code: f"{code} (competing)" for code in events[1:]}
    meta = {
        "source": str(patients),
        "time": time,
        "status": status,
        "by": by,
        "strata": strata,
        "event_codes": {"event": events[0], "competing": events[1:]},
        "censor_codes": censored,
    }
    if out is not None:
        if out.suffix.lower() == ".json":
            write_json(cuminc_document(fit, at_times, tests, meta), out)
        else:
            write_patient_table(fit.summary, out)
        Console(stderr=True).print(f"cumulative incidence of {patients} -> {out}")
    if json_output:
        print_json(cuminc_document(fit, at_times, tests, meta))
    elif out is None:
        print_cuminc(Console(), fit, at_times, tests, cause_names)
