"""The HLH screens' criteria, all evaluated by one compiled pass, agree with the criteria stated one by one in
three-valued (Kleene) truth on floats (1 met, 0 not met, NaN missing), on random labs; and so do the screens'
status and labels."""

from __future__ import annotations

import numpy as np
import pytest

from tocsin.core.scores.iec_hs import (
    _CRITERIA,
    _PLAN,
    LAB_COLUMNS,
    LIMITS,
    MET,
    MISSING,
    NOT_MET,
    SCALE,
    _screened,
)


def _or(*states: np.ndarray) -> np.ndarray:
    out = states[0]
    for state in states[1:]:
        out = np.where((out == 1) | (state == 1), 1.0, np.where(np.isnan(out) | np.isnan(state), np.nan, 0.0))
    return out


def _and(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where((a == 0) | (b == 0), 0.0, np.where(np.isnan(a) | np.isnan(b), np.nan, 1.0))


def _above(value: np.ndarray, limit: np.ndarray | float) -> np.ndarray:
    return np.where(np.isnan(value) | np.isnan(limit), np.nan, value > limit)


def _below(value: np.ndarray, limit: np.ndarray | float) -> np.ndarray:
    return np.where(np.isnan(value) | np.isnan(limit), np.nan, value < limit)


def _reference(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = np.full(c["ferritin_value"].shape, np.nan)
    lineages = [
        _and(_below(c[f"{lab}_value"], limit), np.nan_to_num(_below(c[f"{lab}_value"], c[f"{lab}_at_infusion"]), nan=1))
        for lab, limit in LIMITS["iec_hs_cytopenia"].items()
    ]
    times = LIMITS["iec_hs_transaminase_x_uln"]
    transaminases = [_above(c[f"{lab}_value"], times * c[f"{lab}_uln"]) for lab in ("ast", "alt")]
    liver = [_above(c[f"{lab}_value"], times * c[f"{lab}_uln"]) for lab, times in LIMITS["car_hlh_liver_x_uln"].items()]
    renal = LIMITS["car_hlh_creatinine_x"]
    return {
        "IECHS-FERRITIN": _or(
            _above(c["ferritin_value"], LIMITS["iec_hs_ferritin_x_uln"] * c["ferritin_uln"]),
            _above(c["ferritin_value"], LIMITS["iec_hs_ferritin_x_baseline"] * c["ferritin_at_infusion"]),
        ),
        "IECHS-CYTOPENIA": _or(*lineages),
        "IECHS-TRANSAMINASES": _or(*transaminases),
        "IECHS-FIBRINOGEN": _below(c["fibrinogen_value"], LIMITS["iec_hs_fibrinogen_mg_dl"]),
        "IECHS-LDH": _above(c["ldh_value"], LIMITS["iec_hs_ldh_x_uln"] * c["ldh_uln"]),
        "IECHS-HEMOPHAGOCYTOSIS": missing,
        "CARHLH-FERRITIN": _above(c["ferritin_value"], LIMITS["car_hlh_ferritin_ng_ml"]),
        "CARHLH-LIVER": _or(*liver),
        "CARHLH-RENAL": _or(
            _above(c["creatinine_value"], renal * c["creatinine_at_infusion"]),
            _above(c["creatinine_value"], renal * c["creatinine_uln"]),
        ),
        "CARHLH-PULMONARY-EDEMA": missing,
        "CARHLH-HEMOPHAGOCYTOSIS": missing,
    }


def _random_labs(rng: np.random.Generator, windows: int) -> np.ndarray:
    # Values around every limit (ties included), and NaN for a missing value, ULN or value at infusion.
    choices = np.array([0.5, 1.0, 2.0, 3.0, 9.0, 30.0, 100.0, 150.0, 300.0, 2000.0, 10000.0, 20000.0, np.nan])
    return rng.choice(choices, size=(len(LAB_COLUMNS), windows))


@pytest.mark.parametrize("windows", [0, 1, 7, 500])
def test_criteria_states_match_the_criteria_one_by_one(windows: int) -> None:
    labs = _random_labs(np.random.default_rng(windows), windows)
    expected = _reference(dict(zip(LAB_COLUMNS, labs)))
    states = _screened(labs).states
    codes = {1.0: MET, 0.0: NOT_MET}
    rules = [rule for criteria in _CRITERIA.values() for rule in criteria]
    assert rules == list(expected) and states.shape == (len(rules), windows)
    for k, rule in enumerate(rules):
        want = [MISSING if np.isnan(v) else codes[v] for v in expected[rule].tolist()]
        assert states[k].tolist() == want, rule


def test_each_screen_reads_its_own_criteria() -> None:
    rules = [rule for criteria in _CRITERIA.values() for rule in criteria]
    for screen, criteria in _CRITERIA.items():
        assert rules[_PLAN.rows[screen]] == list(criteria)


def test_screened_status_and_labels_match_each_screen_counted_on_its_own() -> None:
    labs = _random_labs(np.random.default_rng(5), 3000)
    screened = _screened(labs)
    states = screened.states
    for k, (screen, criteria) in enumerate(_CRITERIA.items()):
        spec = SCALE.table("screens")[screen]
        rules = list(criteria)
        state = states[_PLAN.rows[screen]]
        supporting = state[[rules.index(rule) for rule in spec["supporting"]]]
        met, reachable = (supporting == MET).sum(axis=0), (supporting != NOT_MET).sum(axis=0)
        core, needed = state[rules.index(spec["core"])], spec["supporting_needed"]
        possible, not_met = (core == MET) & (met >= needed), (core == NOT_MET) | (reachable < needed)
        assert screened.status[k].tolist() == np.where(possible, 0, np.where(not_met, 1, 2)).tolist()
        assert set(screened.status[k].tolist()) == {0, 1, 2}  # the random labs reach every status
        for bits, code in ((screened.met, MET), (screened.not_met, NOT_MET), (screened.missing, MISSING)):
            expected = [sum(1 << j for j in range(len(rules)) if state[j, w] == code) for w in range(state.shape[1])]
            assert bits[k].tolist() == expected
