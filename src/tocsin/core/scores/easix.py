"""EASIX and m-EASIX from the baseline labs (before lymphodepletion: m-EASIX is then "P-m-EASIX").

EASIX = LDH (U/L) x creatinine (mg/dL) / platelets (10^9/L); m-EASIX = LDH x CRP (mg/dL) / platelets
(Pennisi M et al. Blood Adv 2021;5:3397-3406, doi:10.1182/bloodadvances.2020003885; criteria.md §4.3).
Both are reported as the value and its log2, which analyses use. No consensus cut-off exists, so a risk
group is given only when the configuration names a published cut-off from
``tocsin/data/criteria/easix.yaml`` (``scores.easix_cutoff``, ``scores.m_easix_cutoff``), and the row then
carries that cut-off's citation.

Example
-------
>>> from tocsin.core.events import normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> import polars as pl
>>> rows = [("0", "infusion", "axi-cel", ""), ("-5", "ldh", "250", "U/L"), ("-5", "creatinine", "1.0", "mg/dL"),
...         ("-5", "plt", "125000", "/uL"), ("-5", "crp", "20", "mg/L")]
>>> raw = pl.DataFrame({"patient_id": ["P"] * 5, "day": [r[0] for r in rows], "item": [r[1] for r in rows],
...     "value": [r[2] for r in rows], "unit": [r[3] for r in rows], "file": ["f"] * 5, "line": list(range(5))})
>>> n = normalise_events(raw, load_vocabulary())
>>> easix(n.events, n.patients).select("easix", "easix_log2", "m_easix").row(0)
(2.0, 1.0, 4.0)
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import polars as pl

from tocsin.config import ScoresConfig
from tocsin.core.scores.baseline import (
    INFUSION_ANCHOR_CAVEAT,
    Baseline,
    Input,
    FrameColumns,
    Layout,
    read_baseline,
    identity_columns,
    TableUnits,
    in_table_units,
    inputs_layout,
    round_to,
    table_units,
)
from tocsin.criteria import load_scale

SCALE = load_scale("easix")
INPUTS = {name: Input(name, spec["item"], spec["unit"]) for name, spec in SCALE.table("inputs").items()}
# The scale's tables a score reads, looked up once (each lookup of an extra field of the model costs ~1 µs).
_CUTOFFS, _FORMULAS, _CAVEATS = SCALE.table("cutoffs"), SCALE.table("formulas"), SCALE.table("caveats")
_ROUND = 6
_LN2 = math.log(2.0)


@cache
def _inputs_layout() -> Layout:
    """Per input: its value (in the formula's unit), unit and day (the baseline's column)."""
    return inputs_layout(INPUTS)


@cache
def _units() -> TableUnits:
    """The conversions of the inputs to the table's units, looked up once."""
    return table_units(list(INPUTS.values()))


def _log2(value: float) -> float:
    """log2 as Polars' ``log(2)`` takes it, ln(x) / ln(2) by the C library: NumPy's vectorised log differs in the
    last bit for some values, and rounding to 6 decimals can show it (the published outputs came from Polars)."""
    return math.log(value) / _LN2


def _cutoff(name: str | None, score: str) -> dict | None:
    if name is None:
        return None
    cutoffs = _CUTOFFS
    if name not in cutoffs or cutoffs[name]["score"] != score:
        known = sorted(k for k, c in cutoffs.items() if c["score"] == score)
        raise ValueError(f"unknown {score} cut-off {name!r}; criteria/easix.yaml has: {', '.join(known) or 'none'}")
    return cutoffs[name]


@cache
def _terms() -> tuple[np.ndarray, np.ndarray]:
    """Per formula, the rows (among the inputs, then a row of ones) of its numerator's terms, padded with the ones,
    and of its denominator."""
    formulas, names = _FORMULAS.values(), list(INPUTS)
    width = max(len(spec["numerator"]) for spec in formulas)
    numerators = [[names.index(t) for t in spec["numerator"]] for spec in formulas]
    padded = [terms + [len(names)] * (width - len(terms)) for terms in numerators]
    return np.array(padded), np.array([names.index(spec["denominator"]) for spec in formulas])


def _formulas(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every formula's score (NaN with a missing input or platelets <= 0), its log2 (NaN unless positive) and its
    denominator, a row each (formulas x patients), from the inputs' ``values`` in the formulas' units."""
    numerators, denominators = _terms()
    terms = np.concatenate((values, np.ones((1, values.shape[1]))))
    numerator = np.ones((numerators.shape[0], values.shape[1]))
    for k in range(numerators.shape[1]):  # term by term, as the formula multiplies
        numerator = numerator * terms[numerators[:, k]]
    denominator = values[denominators]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = round_to(np.where(denominator > 0, numerator / denominator, np.nan), _ROUND)
    log2 = np.full(value.shape, np.nan)
    positive = value > 0
    log2[positive] = [_log2(v) for v in value[positive].tolist()]
    return value, round_to(log2, _ROUND), denominator


def _formula(
    score: str, cutoff: dict | None, formulas: tuple[np.ndarray, ...], missing: np.ndarray, columns: FrameColumns
) -> None:
    """The score (its row of the :func:`_formulas`), its log2, rule, missing inputs (``missing``: per input) and,
    with a cut-off, its category and citation."""
    spec = _FORMULAS[score]
    terms = [*spec["numerator"], spec["denominator"]]
    k = list(_FORMULAS).index(score)
    value, log2, denominator = (rows[k] for rows in formulas)
    columns.numbers_rows([score, f"{score}_log2"], np.array((value, log2)))
    columns.text(f"{score}_rule", [spec["rule"], "EASIX-ZERO-PLATELETS"], (denominator == 0).astype(np.int64))
    columns.labels_held(f"{score}_missing", terms, missing[[list(INPUTS).index(term) for term in terms]])
    if cutoff is None:
        columns.text(f"{score}_category", [None])
        columns.text(f"{score}_cutoff", [None])
        return
    cited = f"{cutoff['rule']}: > {cutoff['value']} ({cutoff['citation']}, doi:{cutoff['doi']})"
    category = np.where(value > cutoff["value"], 0, np.where(np.isnan(value), 2, 1))
    columns.text(f"{score}_category", ["high", "low", None], category)
    columns.text(f"{score}_cutoff", [cited])


def easix(
    events: pl.DataFrame,
    patients: pl.DataFrame,
    config: ScoresConfig = ScoresConfig(),
    *,
    baseline: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """EASIX and m-EASIX per patient from the baseline labs (Pennisi 2021, doi:10.1182/bloodadvances.2020003885).

    One row per patient: ``patient_id, easix, easix_log2, easix_rule, easix_missing, easix_category,
    easix_cutoff``, the same six for ``m_easix``, ``anchor, anchor_day``, per input (ldh, creatinine, plt,
    crp) ``<input>_value`` in the formula's unit (CRP mg/dL, creatinine mg/dL), ``<input>_unit`` and
    ``<input>_day``, then ``caveats, scale, version, citation, doi``. A score with a missing input, or with
    platelets 0, is null; its log2 is null unless the score is positive. ``baseline`` as for
    :func:`tocsin.core.scores.car_hematotox.car_hematotox`.
    """
    cutoffs = {"easix": _cutoff(config.easix_cutoff, "easix"), "m_easix": _cutoff(config.m_easix_cutoff, "m_easix")}
    inputs = {name: source.item for name, source in INPUTS.items()}
    base = read_baseline(events, patients, inputs, config.baseline_lookback_days, baseline)
    return _easix_columns(base, cutoffs).frame()


def easix_columns(base: Baseline, config: ScoresConfig = ScoresConfig()) -> FrameColumns:
    """The columns of :func:`easix` from a :class:`Baseline` of (at least) its inputs, to build with other frames
    (:func:`tocsin.core.scores.baseline.frames`)."""
    cutoffs = {"easix": _cutoff(config.easix_cutoff, "easix"), "m_easix": _cutoff(config.m_easix_cutoff, "m_easix")}
    return _easix_columns(base, cutoffs)


def _easix_columns(base: Baseline, cutoffs: dict[str, dict | None]) -> FrameColumns:
    shown = in_table_units(_units(), np.array([base.values[f"{name}_value"] for name in INPUTS]))
    formulas, missing = _formulas(shown), np.isnan(shown)
    caveats = dict.fromkeys(_CAVEATS, True)
    caveats[INFUSION_ANCHOR_CAVEAT] = base.infusion_anchored
    columns = FrameColumns(base.columns.height)
    columns.include(base.columns, "patient_id")
    for score, cutoff in cutoffs.items():
        _formula(score, cutoff, formulas, missing, columns)
    columns.include(base.columns, "anchor")
    columns.include(base.columns, "anchor_day")
    columns.add_layout(_inputs_layout(), shown, source=base.columns)
    columns.labels("caveats", caveats)
    identity_columns(SCALE, columns)
    return columns
