"""Screens for IEC-HS (Hines 2023) and carHLH (Neelapu 2018): which criteria are met, not met, or missing.

IEC-HS: Hines MR et al. Transplant Cell Ther 2023;29:438.e1-438.e16, doi:10.1016/j.jtct.2023.03.006.
carHLH: Neelapu SS et al. Nat Rev Clin Oncol 2018;15:47-62, doi:10.1038/nrclinonc.2017.148.
criteria.md §4.1 marks both [M] (not confirmed against the full text): these functions never diagnose. At
each evaluation time they say, per criterion, met / not met / missing (and what it needs), and give the
screen status ``possible`` (the pattern is there: for clinician adjudication), ``not_met`` or
``incomplete`` (a missing criterion would decide).

- IEC-HS: ferritin > 2 x ULN or > 2 x the value at infusion, plus >= 1 of: new or worsening cytopenia,
  AST/ALT > 5 x ULN, fibrinogen < 150 mg/dL, LDH > ULN, haemophagocytosis.
- carHLH: peak ferritin > 10 000 ng/mL plus >= 2 of: grade >= 3 liver (AST/ALT > 5 x ULN, bilirubin
  > 3 x ULN), grade >= 3 renal (creatinine > 3 x the value at infusion or > 3 x ULN), grade >= 3 pulmonary
  oedema, haemophagocytosis.

Labs are the worst value in the ``scores.hlh_screen_window_days`` up to the evaluation time. ULNs come
from the rows' ``uln`` column (ferritin rows have none: ``scores.ferritin_uln_ng_ml``); "at infusion" is
the last value at or before day 0 within ``scores.baseline_lookback_days``. Haemophagocytosis, pulmonary
oedema and oliguria have no event item and stay missing. Limits are data: ``tocsin/data/criteria/iec_hs.yaml``.

Example
-------
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> import polars as pl
>>> rows = [("0", "infusion", "axi-cel", ""), ("-1", "ferritin", "500", "ng/mL"), ("8", "ferritin", "4000", "ng/mL"),
...         ("8", "fibrinogen", "120", "mg/dL")]
>>> raw = pl.DataFrame({"patient_id": ["P"] * 4, "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": ["f"] * 4, "line": list(range(4))})
>>> n = normalise_events(raw, load_vocabulary())
>>> iec_hs_screen(n.events, n.patients, at=8.0).select("status", "met").row(0)
('possible', ['IECHS-FERRITIN', 'IECHS-FIBRINOGEN'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl

from tocsin.config import ScoresConfig
from tocsin.core.scores.baseline import (
    ANCHOR_INFUSION,
    LabRows,
    Pick,
    Windows,
    baseline_frame,
    evaluation_windows,
    gathered,
    identity,
    lab_rows,
    labels,
    patient_codes,
    patient_table,
    picked_columns,
    picked_rows,
    position_of,
)
from tocsin.criteria import load_scale

SCALE = load_scale("iec_hs")
LIMITS = SCALE.table("limits")
#: Labs read in the window, and the worst direction of each.
WINDOW_LABS: dict[str, Pick] = {
    "ferritin": "max",
    "anc": "min",
    "plt": "min",
    "hgb": "min",
    "ast": "max",
    "alt": "max",
    "bilirubin": "max",
    "fibrinogen": "min",
    "ldh": "max",
    "creatinine": "max",
}
#: Labs whose value at infusion a criterion compares with.
INFUSION_LABS = ("ferritin", "anc", "plt", "hgb", "creatinine")
#: Criteria without an event item: always missing.
UNOBSERVABLE = pl.lit(None, pl.Boolean)


def _value(item: str) -> pl.Expr:
    return pl.col(f"{item}_value")


def _above_uln(item: str, times: float) -> pl.Expr:
    return _value(item) > times * pl.col(f"{item}_uln")


def _iec_hs_criteria() -> dict[str, pl.Expr]:
    ferritin = (_value("ferritin") > LIMITS["iec_hs_ferritin_x_uln"] * pl.col("ferritin_uln")) | (
        _value("ferritin") > LIMITS["iec_hs_ferritin_x_baseline"] * pl.col("ferritin_at_infusion")
    )
    # New or worsening: below the limit and below the value at infusion (a lineage without one counts).
    lineages = [
        (_value(lab) < limit) & (_value(lab) < pl.col(f"{lab}_at_infusion")).fill_null(True)
        for lab, limit in LIMITS["iec_hs_cytopenia"].items()
    ]
    times = LIMITS["iec_hs_transaminase_x_uln"]
    return {
        "IECHS-FERRITIN": ferritin,
        "IECHS-CYTOPENIA": pl.reduce(lambda a, b: a | b, lineages),
        "IECHS-TRANSAMINASES": _above_uln("ast", times) | _above_uln("alt", times),
        "IECHS-FIBRINOGEN": _value("fibrinogen") < LIMITS["iec_hs_fibrinogen_mg_dl"],
        "IECHS-LDH": _above_uln("ldh", LIMITS["iec_hs_ldh_x_uln"]),
        "IECHS-HEMOPHAGOCYTOSIS": UNOBSERVABLE,
    }


def _car_hlh_criteria() -> dict[str, pl.Expr]:
    liver = [_above_uln(lab, times) for lab, times in LIMITS["car_hlh_liver_x_uln"].items()]
    times = LIMITS["car_hlh_creatinine_x"]
    return {
        "CARHLH-FERRITIN": _value("ferritin") > LIMITS["car_hlh_ferritin_ng_ml"],
        "CARHLH-LIVER": pl.reduce(lambda a, b: a | b, liver),
        "CARHLH-RENAL": (_value("creatinine") > times * pl.col("creatinine_at_infusion"))
        | _above_uln("creatinine", times),
        "CARHLH-PULMONARY-EDEMA": UNOBSERVABLE,
        "CARHLH-HEMOPHAGOCYTOSIS": UNOBSERVABLE,
    }


def screen_inputs(labs: LabRows, patients: pl.DataFrame, windows: Windows, config: ScoresConfig) -> pl.DataFrame:
    """Per evaluation window, the window labs and the labs at infusion both screens read (``labs`` holding at
    least :data:`WINDOW_LABS` and :data:`INFUSION_LABS`)."""
    codes = patient_codes(windows.patient_id)
    rows = picked_rows(labs, codes, windows.at, WINDOW_LABS, config.hlh_screen_window_days, windows.closed)
    picked = picked_columns(labs, rows, {lab: lab for lab in WINDOW_LABS}, list(WINDOW_LABS), ("value", "day", "uln"))
    ids = patient_table(patients)
    at_infusion = baseline_frame(
        labs, ids, {lab: lab for lab in INFUSION_LABS}, config.baseline_lookback_days, ("value",), ANCHOR_INFUSION
    )
    # Each window's patient's row of the per-patient table (none for a patient the table does not list).
    of_window = position_of(patient_codes(ids), codes)
    infusion = [
        pl.Series(
            f"{lab}_at_infusion",
            gathered(at_infusion.get_column(f"{lab}_value").to_numpy(), of_window),
            nan_to_null=True,
        )
        for lab in INFUSION_LABS
    ]
    frame = windows.frame().hstack([*picked.values(), *infusion])
    return frame.with_columns(pl.col("ferritin_uln").fill_null(pl.lit(config.ferritin_uln_ng_ml, pl.Float64)))


def _screen(frame: pl.DataFrame, name: str, criteria: Callable[[], Mapping[str, pl.Expr]]) -> pl.DataFrame:
    spec = SCALE.table("screens")[name]
    # Each criterion becomes a column first: inlined, every one would be planned again in each output.
    frame = frame.with_columns(expr.alias(f"_{rule}") for rule, expr in criteria().items())
    state = {rule: pl.col(f"_{rule}") for rule in criteria()}
    supporting = [state[rule] for rule in spec["supporting"]]
    met_count = pl.sum_horizontal(s.fill_null(False) for s in supporting)
    reachable = pl.sum_horizontal(s.fill_null(True) for s in supporting)
    core = state[spec["core"]]
    needed = spec["supporting_needed"]
    status = (
        pl.when(core.fill_null(False) & (met_count >= needed))
        .then(pl.lit("possible"))
        .when(~core.fill_null(True) | (reachable < needed))
        .then(pl.lit("not_met"))
        .otherwise(pl.lit("incomplete"))
    )
    needs = SCALE.table("needs")
    lab_columns = [pl.col(f"{lab}_{field}") for lab in WINDOW_LABS for field in ("value", "day", "uln")] + [
        pl.col(f"{lab}_at_infusion") for lab in INFUSION_LABS
    ]
    return frame.with_columns(status.alias("status")).select(
        "patient_id",
        "at",
        "day",
        pl.lit(name).alias("screen"),
        "status",
        pl.col("status")
        .replace_strict(
            {"possible": spec["rule_possible"], "not_met": spec["rule_not_met"], "incomplete": spec["rule_incomplete"]}
        )
        .alias("rule"),
        labels({rule: expr for rule, expr in state.items()}).alias("met"),
        labels({rule: ~expr for rule, expr in state.items()}).alias("not_met"),
        labels({f"{rule}: needs {needs[rule]}": expr.is_null() for rule, expr in state.items()}).alias("missing"),
        *lab_columns,
        pl.lit(SCALE.table("caveats")).alias("caveats"),
        *identity(SCALE),
        pl.lit(spec["citation"]).alias("screen_citation"),
        pl.lit(spec["doi"]).alias("screen_doi"),
    )


def iec_hs_screen(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    at: float | pl.DataFrame | None = None,
) -> pl.DataFrame:
    """IEC-HS screen (Hines 2023, doi:10.1016/j.jtct.2023.03.006) per patient and evaluation time.

    ``at`` as for :func:`tocsin.core.scores.hscore.hscore` (None = each day from infusion). One row per
    patient and time: ``patient_id, at, day, screen, status (possible | not_met | incomplete), rule,
    met, not_met`` (rule ids), ``missing`` ("<rule id>: needs ..."), per lab ``<lab>_value``, ``_day``,
    ``_uln`` (canonical units) and ``<lab>_at_infusion``, then ``caveats, scale, version, citation, doi,
    screen_citation, screen_doi``.
    """
    return _screen(_inputs(events, patients, config, at), "iec_hs", _iec_hs_criteria)


def car_hlh_screen(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    at: float | pl.DataFrame | None = None,
) -> pl.DataFrame:
    """carHLH screen (Neelapu 2018, doi:10.1038/nrclinonc.2017.148); same rows and columns as :func:`iec_hs_screen`.

    The "during CRS" condition of carHLH is not checked here (CRS grades come from the engine); the
    screen reads the peak ferritin in the window.
    """
    return _screen(_inputs(events, patients, config, at), "car_hlh", _car_hlh_criteria)


def hlh_screens(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    at: float | pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both screens, :func:`iec_hs_screen` and :func:`car_hlh_screen`, from one read of the labs they share."""
    return screens(_inputs(events, patients, config, at))


def screens(inputs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both screens from one :func:`screen_inputs`."""
    return _screen(inputs, "iec_hs", _iec_hs_criteria), _screen(inputs, "car_hlh", _car_hlh_criteria)


def _inputs(
    events: pl.DataFrame, patients: pl.DataFrame, config: ScoresConfig, at: float | pl.DataFrame | None
) -> pl.DataFrame:
    labs = lab_rows(events, {*WINDOW_LABS, *INFUSION_LABS})
    return screen_inputs(labs, patients, evaluation_windows(events, patients, at), config)
