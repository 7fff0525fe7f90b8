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

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from tocsin.config import ScoresConfig
from tocsin.core.scores.baseline import (
    ANCHOR_INFUSION,
    LabRows,
    PatientTable,
    Pick,
    FrameColumns,
    Windows,
    baseline_rows,
    evaluation_windows,
    field_values,
    frames,
    gathered,
    identity_columns,
    lab_rows,
    patient_rows,
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
Column = Mapping[str, np.ndarray]
# Criteria hold three-valued (Kleene) truth, as Polars' booleans do: 1.0 met, 0.0 not met, NaN missing.


def _kleene_or(*states: np.ndarray) -> np.ndarray:
    out = states[0]
    for state in states[1:]:
        out = np.where((out == 1) | (state == 1), 1.0, np.where(np.isnan(out) | np.isnan(state), np.nan, 0.0))
    return out


def _kleene_and(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where((a == 0) | (b == 0), 0.0, np.where(np.isnan(a) | np.isnan(b), np.nan, 1.0))


def _missing_as(state: np.ndarray, value: float) -> np.ndarray:
    return np.where(np.isnan(state), value, state)


def _above(value: np.ndarray, limit: np.ndarray | float) -> np.ndarray:
    return np.where(np.isnan(value) | np.isnan(limit), np.nan, value > limit)


def _below(value: np.ndarray, limit: np.ndarray | float) -> np.ndarray:
    return np.where(np.isnan(value) | np.isnan(limit), np.nan, value < limit)


def _iec_hs_criteria(c: Column) -> dict[str, np.ndarray]:
    ferritin = _kleene_or(
        _above(c["ferritin_value"], LIMITS["iec_hs_ferritin_x_uln"] * c["ferritin_uln"]),
        _above(c["ferritin_value"], LIMITS["iec_hs_ferritin_x_baseline"] * c["ferritin_at_infusion"]),
    )
    # New or worsening: below the limit and below the value at infusion (a lineage without one counts).
    lineages = [
        _kleene_and(
            _below(c[f"{lab}_value"], limit), _missing_as(_below(c[f"{lab}_value"], c[f"{lab}_at_infusion"]), 1.0)
        )
        for lab, limit in LIMITS["iec_hs_cytopenia"].items()
    ]
    times = LIMITS["iec_hs_transaminase_x_uln"]
    return {
        "IECHS-FERRITIN": ferritin,
        "IECHS-CYTOPENIA": _kleene_or(*lineages),
        "IECHS-TRANSAMINASES": _kleene_or(
            *(_above(c[f"{lab}_value"], times * c[f"{lab}_uln"]) for lab in ("ast", "alt"))
        ),
        "IECHS-FIBRINOGEN": _below(c["fibrinogen_value"], LIMITS["iec_hs_fibrinogen_mg_dl"]),
        "IECHS-LDH": _above(c["ldh_value"], LIMITS["iec_hs_ldh_x_uln"] * c["ldh_uln"]),
        "IECHS-HEMOPHAGOCYTOSIS": np.full(c["ferritin_value"].shape, np.nan),  # no event item: always missing
    }


def _car_hlh_criteria(c: Column) -> dict[str, np.ndarray]:
    liver = [_above(c[f"{lab}_value"], times * c[f"{lab}_uln"]) for lab, times in LIMITS["car_hlh_liver_x_uln"].items()]
    times = LIMITS["car_hlh_creatinine_x"]
    unobservable = np.full(c["ferritin_value"].shape, np.nan)  # no event item: always missing
    return {
        "CARHLH-FERRITIN": _above(c["ferritin_value"], LIMITS["car_hlh_ferritin_ng_ml"]),
        "CARHLH-LIVER": _kleene_or(*liver),
        "CARHLH-RENAL": _kleene_or(
            _above(c["creatinine_value"], times * c["creatinine_at_infusion"]),
            _above(c["creatinine_value"], times * c["creatinine_uln"]),
        ),
        "CARHLH-PULMONARY-EDEMA": unobservable,
        "CARHLH-HEMOPHAGOCYTOSIS": unobservable,
    }


#: The screens by name, and the criteria each holds.
_CRITERIA: dict[str, Callable[[Column], Mapping[str, np.ndarray]]] = {
    "iec_hs": _iec_hs_criteria,
    "car_hlh": _car_hlh_criteria,
}


#: The lab columns of the screens' inputs (and outputs), in order.
LAB_COLUMNS = [f"{lab}_{field}" for lab in WINDOW_LABS for field in ("value", "day", "uln")] + [
    f"{lab}_at_infusion" for lab in INFUSION_LABS
]


def _window_lab_values(
    labs: LabRows, patients: PatientTable, windows: Windows, config: ScoresConfig
) -> dict[str, np.ndarray]:
    """The :data:`LAB_COLUMNS` of :func:`screen_inputs` as arrays (NaN where missing)."""
    codes = windows.codes
    rows = picked_rows(labs, codes, windows.at, WINDOW_LABS, config.hlh_screen_window_days, windows.closed)
    lookback = config.baseline_lookback_days
    _, infusion_rows = baseline_rows(labs, patients.codes, INFUSION_LABS, lookback, ANCHOR_INFUSION)
    # Each window's patient's row of the per-patient table (none for a patient the table does not list).
    of_window = position_of(patients.codes, codes)
    default = np.nan if config.ferritin_uln_ng_ml is None else float(config.ferritin_uln_ng_ml)
    source = field_values(labs)
    picked = {field: gathered(source[field], rows) for field in ("value", "day", "uln")}  # every lab at once
    at_infusion = gathered(gathered(labs.columns["num"], infusion_rows), of_window)
    values: dict[str, np.ndarray] = {}
    for slot, lab in enumerate(WINDOW_LABS):
        for field in ("value", "day", "uln"):
            values[f"{lab}_{field}"] = picked[field][:, slot]
    # Ferritin rows carry no ULN: the configured one.
    values["ferritin_uln"] = np.where(np.isnan(values["ferritin_uln"]), default, values["ferritin_uln"])
    for slot, lab in enumerate(INFUSION_LABS):
        values[f"{lab}_at_infusion"] = at_infusion[:, slot]
    return values


def _lab_columns(values: Column, height: int) -> FrameColumns:
    columns = FrameColumns(height)
    for name in LAB_COLUMNS:
        columns.numbers(name, values[name])
    return columns


def screen_inputs(labs: LabRows, patients: pl.DataFrame, windows: Windows, config: ScoresConfig) -> pl.DataFrame:
    """Per evaluation window, the window labs and the labs at infusion both screens read (``labs`` holding at
    least :data:`WINDOW_LABS` and :data:`INFUSION_LABS`)."""
    columns = FrameColumns(windows.at.size)
    columns.series(*windows.columns)
    columns.include(_lab_columns(_window_lab_values(labs, patient_rows(patients), windows, config), windows.at.size))
    return columns.frame()


def _shared_columns(lab_columns: FrameColumns) -> FrameColumns:
    """The columns both screens share after their own: the :data:`LAB_COLUMNS` (``lab_columns``), the caveats and
    the scale's identity (built once for both)."""
    lab_columns.constant_list("caveats", list(SCALE.table("caveats")))
    identity_columns(SCALE, lab_columns)
    return lab_columns


def _screen(windows: Sequence[pl.Series], labs: Column, shared: FrameColumns, name: str) -> FrameColumns:
    """One screen's columns: ``windows`` (the patient_id, at and day columns), the screen's criteria on the ``labs``
    values, the ``shared`` columns (:func:`_shared_columns`), then the screen's citation."""
    spec = SCALE.table("screens")[name]
    state = _CRITERIA[name](labs)
    supporting = [state[rule] for rule in spec["supporting"]]
    met_count = sum(_missing_as(s, 0.0) for s in supporting)
    reachable = sum(_missing_as(s, 1.0) for s in supporting)
    core, needed = state[spec["core"]], spec["supporting_needed"]
    # 0 possible (the pattern is there), 1 not met, 2 incomplete (a missing criterion would decide).
    status = np.where((core == 1) & (met_count >= needed), 0, np.where((core == 0) | (reachable < needed), 1, 2))
    needs = SCALE.table("needs")
    columns = FrameColumns(windows[0].len())
    columns.series(*windows)
    columns.text("screen", [name])
    columns.text("status", ["possible", "not_met", "incomplete"], status)
    columns.text("rule", [spec["rule_possible"], spec["rule_not_met"], spec["rule_incomplete"]], status)
    columns.labels("met", {rule: s == 1 for rule, s in state.items()})
    columns.labels("not_met", {rule: s == 0 for rule, s in state.items()})
    columns.labels("missing", {f"{rule}: needs {needs[rule]}": np.isnan(s) for rule, s in state.items()})
    columns.include(shared)
    columns.text("screen_citation", [spec["citation"]])
    columns.text("screen_doi", [spec["doi"]])
    return columns


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
    return _screen_columns(*_inputs(events, patients, config, at), ("iec_hs",))[0].frame()


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
    return _screen_columns(*_inputs(events, patients, config, at), ("car_hlh",))[0].frame()


def hlh_screens(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    at: float | pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both screens, :func:`iec_hs_screen` and :func:`car_hlh_screen`, from one read of the labs they share."""
    return screens_in_windows(*_inputs(events, patients, config, at))


def screens(inputs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both screens from one :func:`screen_inputs`."""
    windows = tuple(inputs.get_column(c) for c in ("patient_id", "at", "day"))
    labs = {c: inputs.get_column(c).to_numpy() for c in LAB_COLUMNS}
    lab_columns = FrameColumns(inputs.height)
    lab_columns.series(*(inputs.get_column(c) for c in LAB_COLUMNS))
    shared = _shared_columns(lab_columns)
    iec_hs, car_hlh = frames(*(_screen(windows, labs, shared, name) for name in _CRITERIA))
    return iec_hs, car_hlh


def screens_in_windows(
    labs: LabRows, patients: PatientTable, windows: Windows, config: ScoresConfig = ScoresConfig()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both screens at ``windows``, as :func:`screens` of :func:`screen_inputs` gives them, from the rows of a batch
    (``labs`` holding at least :data:`WINDOW_LABS` and :data:`INFUSION_LABS`)."""
    iec_hs, car_hlh = frames(*screen_columns(labs, patients, windows, config))
    return iec_hs, car_hlh


def screen_columns(
    labs: LabRows, patients: PatientTable, windows: Windows, config: ScoresConfig = ScoresConfig()
) -> tuple[FrameColumns, FrameColumns]:
    """The columns of :func:`screens_in_windows` (IEC-HS, carHLH), to build with other frames
    (:func:`tocsin.core.scores.baseline.frames`). The labs stay arrays, without the frame of inputs that
    :func:`screens` reads back column by column."""
    iec_hs, car_hlh = _screen_columns(labs, patients, windows, config, tuple(_CRITERIA))
    return iec_hs, car_hlh


def _screen_columns(
    labs: LabRows, patients: PatientTable, windows: Windows, config: ScoresConfig, names: tuple[str, ...]
) -> list[FrameColumns]:
    values = _window_lab_values(labs, patients, windows, config)
    shared = _shared_columns(_lab_columns(values, windows.at.size))
    return [_screen(windows.columns, values, shared, name) for name in names]


def _inputs(
    events: pl.DataFrame, patients: pl.DataFrame, config: ScoresConfig, at: float | pl.DataFrame | None
) -> tuple[LabRows, PatientTable, Windows, ScoresConfig]:
    labs = lab_rows(events, {*WINDOW_LABS, *INFUSION_LABS})
    table = patient_rows(patients)
    return labs, table, evaluation_windows(events, patients, at, table=table), config
