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

from collections.abc import Sequence
from typing import Literal, NamedTuple

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
    frames,
    identity_columns,
    lab_rows,
    patient_rows,
    picked_rows,
    position_of,
)
from tocsin.core.kernels_scores import KLEENE_MET, KLEENE_MISSING, KLEENE_NOT_MET, kleene_screens, picked_fields
from tocsin.criteria import load_scale

SCALE = load_scale("iec_hs")
LIMITS = SCALE.table("limits")
# The scale's tables the screens read, looked up once (each lookup of an extra field of the model costs ~1 µs).
_SCREENS, _NEEDS, _CAVEATS = SCALE.table("screens"), SCALE.table("needs"), SCALE.table("caveats")
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
#: The lab columns of the screens' inputs (and outputs), in order.
LAB_COLUMNS = [f"{lab}_{field}" for lab in WINDOW_LABS for field in ("value", "day", "uln")] + [
    f"{lab}_at_infusion" for lab in INFUSION_LABS
]

# Criteria hold three-valued (Kleene) truth, as Polars' booleans do, as ordered codes: "or" is then the highest of
# its terms and "and" the lowest, so every criterion of both screens is one compiled pass over all windows.
NOT_MET, MISSING, MET = KLEENE_NOT_MET, KLEENE_MISSING, KLEENE_MET


class _Compare(NamedTuple):
    """``value op limit`` (``limit`` times the column ``of``, when given), ``missing`` when either side is."""

    value: str  # a column of LAB_COLUMNS
    op: Literal[">", "<"]
    limit: float
    of: str | None = None
    missing: int = MISSING


#: No event item records it (haemophagocytosis, pulmonary oedema): always missing.
_UNOBSERVABLE = _Compare("", ">", 0.0)


def _iec_hs_criteria() -> dict[str, list[list[_Compare]]]:
    """Each IEC-HS criterion as "any of" (the outer list) "all of" (the inner lists)."""
    times = LIMITS["iec_hs_transaminase_x_uln"]
    return {
        "IECHS-FERRITIN": [
            [_Compare("ferritin_value", ">", LIMITS["iec_hs_ferritin_x_uln"], "ferritin_uln")],
            [_Compare("ferritin_value", ">", LIMITS["iec_hs_ferritin_x_baseline"], "ferritin_at_infusion")],
        ],
        # New or worsening: below the limit and below the value at infusion (a lineage without one counts).
        "IECHS-CYTOPENIA": [
            [_Compare(f"{lab}_value", "<", limit), _Compare(f"{lab}_value", "<", 1.0, f"{lab}_at_infusion", MET)]
            for lab, limit in LIMITS["iec_hs_cytopenia"].items()
        ],
        "IECHS-TRANSAMINASES": [[_Compare(f"{lab}_value", ">", times, f"{lab}_uln")] for lab in ("ast", "alt")],
        "IECHS-FIBRINOGEN": [[_Compare("fibrinogen_value", "<", LIMITS["iec_hs_fibrinogen_mg_dl"])]],
        "IECHS-LDH": [[_Compare("ldh_value", ">", LIMITS["iec_hs_ldh_x_uln"], "ldh_uln")]],
        "IECHS-HEMOPHAGOCYTOSIS": [[_UNOBSERVABLE]],
    }


def _car_hlh_criteria() -> dict[str, list[list[_Compare]]]:
    """Each carHLH criterion as "any of" (the outer list) "all of" (the inner lists)."""
    times = LIMITS["car_hlh_creatinine_x"]
    return {
        "CARHLH-FERRITIN": [[_Compare("ferritin_value", ">", LIMITS["car_hlh_ferritin_ng_ml"])]],
        "CARHLH-LIVER": [
            [_Compare(f"{lab}_value", ">", times, f"{lab}_uln")] for lab, times in LIMITS["car_hlh_liver_x_uln"].items()
        ],
        "CARHLH-RENAL": [
            [_Compare("creatinine_value", ">", times, "creatinine_at_infusion")],
            [_Compare("creatinine_value", ">", times, "creatinine_uln")],
        ],
        "CARHLH-PULMONARY-EDEMA": [[_UNOBSERVABLE]],
        "CARHLH-HEMOPHAGOCYTOSIS": [[_UNOBSERVABLE]],
    }


#: The screens by name, and the criteria each holds.
_CRITERIA = {"iec_hs": _iec_hs_criteria(), "car_hlh": _car_hlh_criteria()}


class _Plan(NamedTuple):
    """Every criterion of both screens as the arrays :func:`tocsin.core.kernels_scores.kleene_screens` reads: the
    comparisons on the rows of the lab matrix (the :data:`LAB_COLUMNS`, then a row of ones for a fixed limit and
    one of NaN for no value), and each criterion's comparisons (criteria x terms x factors; a short list repeats
    its first entry, which changes no highest or lowest)."""

    value: np.ndarray
    of: np.ndarray
    limit: np.ndarray
    above: np.ndarray
    missing: np.ndarray
    terms: np.ndarray
    # Per screen: its first criterion, its core criterion and the supporting ones it needs; per criterion: its
    # bit in the screen's labels, whether it supports its screen.
    first: np.ndarray
    core: np.ndarray
    needed: np.ndarray
    bit: np.ndarray
    supporting: np.ndarray
    rows: dict[str, slice]  # each screen's criteria among all (last: the fields before are the kernel's arrays)


def _plan() -> _Plan:
    row = {name: k for k, name in enumerate(LAB_COLUMNS)}
    one, none = len(LAB_COLUMNS), len(LAB_COLUMNS) + 1
    compares: list[_Compare] = []
    terms: list[list[list[int]]] = []
    rows: dict[str, slice] = {}
    for screen, criteria in _CRITERIA.items():
        rows[screen] = slice(len(terms), len(terms) + len(criteria))
        for conjunctions in criteria.values():
            terms.append([])
            for factors in conjunctions:
                terms[-1].append(list(range(len(compares), len(compares) + len(factors))))
                compares += factors
    width = max(len(factors) for criterion in terms for factors in criterion)
    depth = max(len(criterion) for criterion in terms)
    padded = [[f + f[:1] * (width - len(f)) for f in c] for c in terms]
    padded = [c + c[:1] * (depth - len(c)) for c in padded]
    specs = _SCREENS
    rules = [(screen, rule) for screen, criteria in _CRITERIA.items() for rule in criteria]
    return _Plan(
        value=np.array([row.get(c.value, none) for c in compares]),
        of=np.array([one if c.of is None else row[c.of] for c in compares]),
        limit=np.array([float(c.limit) for c in compares]),
        above=np.array([c.op == ">" for c in compares]),
        missing=np.array([c.missing for c in compares]),
        terms=np.array(padded, dtype=np.int64),
        first=np.array([rows[screen].start for screen in _CRITERIA]),
        core=np.array([rules.index((screen, specs[screen]["core"])) for screen in _CRITERIA]),
        needed=np.array([specs[screen]["supporting_needed"] for screen in _CRITERIA]),
        bit=np.array([1 << list(_CRITERIA[screen]).index(rule) for screen, rule in rules]),
        supporting=np.array([rule in specs[screen]["supporting"] for screen, rule in rules]),
        rows=rows,
    )


_PLAN = _plan()


class _Screened(NamedTuple):
    """Per criterion of both screens (in the order of :data:`_CRITERIA`) and window, its state (NOT_MET, MISSING or
    MET); per screen and window, the status (0 possible: the pattern is there; 1 not met; 2 incomplete: a missing
    criterion would decide) and the criteria met, not met and missing (bit k: the screen's k-th criterion)."""

    states: np.ndarray
    status: np.ndarray
    met: np.ndarray
    not_met: np.ndarray
    missing: np.ndarray


def _screened(labs: np.ndarray) -> _Screened:
    """The :class:`_Screened` of both screens from the lab matrix (the :data:`LAB_COLUMNS` x windows)."""
    return _Screened(*kleene_screens(labs, *_PLAN[:-1]))


def _window_lab_values(labs: LabRows, patients: PatientTable, windows: Windows, config: ScoresConfig) -> np.ndarray:
    """The :data:`LAB_COLUMNS` of :func:`screen_inputs` as a matrix (columns x windows, NaN where missing)."""
    codes = windows.codes
    rows = picked_rows(labs, codes, windows.at, WINDOW_LABS, config.hlh_screen_window_days, windows.closed)
    lookback = config.baseline_lookback_days
    _, infusion_rows = baseline_rows(labs, patients.codes, INFUSION_LABS, lookback, ANCHOR_INFUSION)
    # Each window's patient's row of the per-patient table (none for a patient the table does not list).
    of_window = position_of(patients.codes, codes)
    listed = of_window >= 0
    window_infusion_rows = np.full((codes.size, len(INFUSION_LABS)), -1)
    window_infusion_rows[listed] = infusion_rows[of_window[listed]]
    # Labs x fields x windows: each lab's value, day and ULN rows, as LAB_COLUMNS has them.
    picked = picked_fields(rows, labs.column("num"), labs.t, labs.column_at("uln", rows)).reshape(-1, codes.size)
    at_infusion = picked_fields(window_infusion_rows, labs.column("num")).reshape(-1, codes.size)
    values = np.concatenate((picked, at_infusion))
    # Ferritin rows carry no ULN: the configured one.
    ferritin_uln = values[LAB_COLUMNS.index("ferritin_uln")]
    if config.ferritin_uln_ng_ml is not None:
        ferritin_uln[np.isnan(ferritin_uln)] = float(config.ferritin_uln_ng_ml)
    return values


def _lab_columns(values: np.ndarray, height: int) -> FrameColumns:
    columns = FrameColumns(height)
    columns.numbers_rows(LAB_COLUMNS, values)
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
    lab_columns.constant_list("caveats", list(_CAVEATS))
    identity_columns(SCALE, lab_columns)
    return lab_columns


def _screen(windows: Sequence[pl.Series], screened: _Screened, shared: FrameColumns, name: str) -> FrameColumns:
    """One screen's columns: ``windows`` (the patient_id, at and day columns), the screen's status and criteria
    (its row of ``screened``), the ``shared`` columns (:func:`_shared_columns`), then the screen's citation."""
    spec = _SCREENS[name]
    rules = list(_CRITERIA[name])
    k = list(_CRITERIA).index(name)
    status = screened.status[k]
    needs = _NEEDS
    columns = FrameColumns(windows[0].len())
    columns.series(*windows)
    columns.text("screen", [name])
    columns.text("status", ["possible", "not_met", "incomplete"], status)
    columns.text("rule", [spec["rule_possible"], spec["rule_not_met"], spec["rule_incomplete"]], status)
    columns.label_bits("met", rules, screened.met[k])
    columns.label_bits("not_met", rules, screened.not_met[k])
    columns.label_bits("missing", [f"{rule}: needs {needs[rule]}" for rule in rules], screened.missing[k])
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
    screened = _screened(np.stack([inputs.get_column(c).to_numpy() for c in LAB_COLUMNS]))
    lab_columns = FrameColumns(inputs.height)
    lab_columns.series(*(inputs.get_column(c) for c in LAB_COLUMNS))
    shared = _shared_columns(lab_columns)
    iec_hs, car_hlh = frames(*(_screen(windows, screened, shared, name) for name in _CRITERIA))
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
    screened = _screened(values)
    shared = _shared_columns(_lab_columns(values, windows.at.size))
    return [_screen(windows.columns, screened, shared, name) for name in names]


def _inputs(
    events: pl.DataFrame, patients: pl.DataFrame, config: ScoresConfig, at: float | pl.DataFrame | None
) -> tuple[LabRows, PatientTable, Windows, ScoresConfig]:
    labs = lab_rows(events, {*WINDOW_LABS, *INFUSION_LABS})
    table = patient_rows(patients)
    return labs, table, evaluation_windows(events, patients, at, table=table), config
