"""The compiled CRS and ICANS state passes (``tocsin.core.kernels_toxicity``) against plain Python references that
look back from every assessment for each signal's latest row, on random rows (ties in time, NaN values, patients
without a signal, attributions) and at the edges (no row, one row); the episodes-and-summary pass
(``tocsin.core.episodes``) against one that groups the rows; the CRS grades pass (``tocsin.core.crs_course``) against
the NumPy steps it replaced, the scales' rule tables against their cases row by row and the ASTCT tiers pass against
its NumPy steps, the CRS course pass (first fever, waiver) against a reference; the ICANS grades pass
(``tocsin.core.icans_astct2019``) against the NumPy steps it replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tocsin.core import kernels_toxicity as K
from tocsin.core.crs_astct2019 import _rule_cases as astct_rules
from tocsin.core.crs_astct2019 import _tiers_loop as astct_tiers_loop
from tocsin.core.crs_course import DOMAIN_CASES, _course_loop, _grades_loop, rule_table
from tocsin.core.crs_lee2014 import _rule_cases as lee_rules
from tocsin.core.episodes import _episodes_loop
from tocsin.core.icans_astct2019 import _grade_loop as icans_grade_loop
from tocsin.core.icans_astct2019 import _tables as icans_tables
from tocsin.core.evidence import first_label
from tocsin.core.segments import compiled
from tocsin.core.timeline import Taken, labels

_CODES = {
    "temperature": K.CRS_TEMPERATURE,
    "sbp": K.CRS_SBP,
    "map": K.CRS_MAP,
    "oxygen": K.CRS_OXYGEN,
    "flow": K.CRS_FLOW,
    "fio2": K.CRS_FIO2,
    "death": K.CRS_DEATH,
    "alt": K.CRS_ALTERNATIVE,
    "il6": K.CRS_IL6,
    "crp": K.CRS_CRP,
    "drug": K.CRS_WAIVER,
    "antipyretic": K.CRS_WAIVER | K.CRS_ANTIPYRETIC,
    "bolus": 0,
    "pressor_a": 0,
    "pressor_b": 0,
    "pressor_c": 0,
}
ROLE = np.array([*_CODES.values(), 0], dtype=np.int64)
PRESSOR_OF = np.array([-1] * 13 + [0, 1, 2, -1], dtype=np.int64)
COUNTED = np.array([True, True, False])
TIERS = np.array([2, 3, 4, 0, -1, -1], dtype=np.int8)  # four devices (the last room air), unknown, none
ROOM_AIR, DEVICE_NONE = 3, 5
LIMITS = np.array([38.0, 10.0, 70.0, 2.0, 90.0, 65.0, 24.0, 12.0])


def _random_rows(seed: int, n: int) -> tuple:
    rng = np.random.default_rng(seed)
    patient = np.sort(rng.integers(0, 4, n))
    item = rng.integers(0, len(_CODES), n)
    t = np.round(rng.uniform(-1, 6, n) * 4) / 4  # ties within a patient
    order = np.lexsort((t, patient))
    patient, item, t = patient[order], item[order], t[order]
    t[rng.random(n) < 0.03] = np.nan
    num = np.where(item == 0, rng.uniform(36, 40, n), rng.uniform(-5, 150, n))
    num[rng.random(n) < 0.15] = np.nan
    num[(item >= 13) & (item <= 15) & (rng.random(n) < 0.3)] = 0.0
    num[(item == 13) & (rng.random(n) < 0.05)] = np.inf
    start = np.zeros(n, dtype=np.int64)
    for row in range(1, n):
        start[row] = row if patient[row] != patient[row - 1] else start[row - 1]
    device = np.where(item == 3, rng.integers(0, 6, n), DEVICE_NONE)
    alts = np.flatnonzero(item == 7)
    alt_position = np.full(n, -1, dtype=np.int64)
    alt_position[alts] = np.arange(alts.size)
    alt_finding = np.full(n, -1, dtype=np.int64)
    alt_finding[alts] = rng.integers(-1, 3, alts.size)
    alt_attributes = rng.random(alts.size) < 0.7
    age = np.array([5.5, np.nan, 40.0, 9.0])
    position = np.where(patient == 1, -1, patient)  # a patient the table does not hold
    event_row = np.arange(n, dtype=np.int64) * 3 + 1
    return (item, t, num, start, position, event_row, ROLE, PRESSOR_OF, COUNTED, age, device, alt_position,
            alt_finding, alt_attributes, TIERS, LIMITS, ROOM_AIR, DEVICE_NONE, seed % 2 == 1)


def _crs_reference(columns: tuple) -> dict[str, list]:
    (item, t, num, start, patient, event_row, role, pressor_of, counted, age, device, alt_position, alt_finding,
     alt_attributes, tiers, limits, room_air, device_none, cytokines_resolve) = columns
    n = item.shape[0]

    def latest(row: int, holds) -> int:
        return next((q for q in range(row, start[row] - 1, -1) if holds(q)), -1)

    def has(bit: int):
        return lambda q: bool(role[item[q]] & bit)

    def at(values, row: int) -> float:
        return float(values[row]) if row >= 0 else math.nan

    def fever(q: int) -> bool:
        if not role[item[q]] & K.CRS_TEMPERATURE:
            return False
        attribution = latest(q, lambda x: bool(role[item[x]] & K.CRS_ALTERNATIVE) and alt_finding[x] == 0)
        return num[q] >= limits[0] and not (attribution >= 0 and alt_attributes[alt_position[attribution]])

    def low_sbp(q: int) -> bool:
        years = age[patient[q]] if patient[q] >= 0 else math.nan
        pediatric = not math.isnan(years) and years <= limits[1]
        return bool(num[q] < (limits[2] + limits[3] * math.floor(years) if pediatric else limits[4]))

    def falling(q: int, bit: int) -> int:
        if q < 0:
            return -1
        before = latest(q - 1, has(bit)) if q > start[q] else -1
        if before < 0 or math.isnan(num[q]) or math.isnan(num[before]):
            return -1
        return int(num[q] < num[before])

    out: dict[str, list] = {}

    def put(name: str, value) -> None:
        out.setdefault(name, []).append(value)

    previous_start = -1
    for row in range(n):
        if row < n - 1 and t[row + 1] == t[row] and start[row + 1] == start[row]:
            continue
        now = t[row]
        rows = {name: latest(row, has(bit)) for name, bit in [
            ("temp", K.CRS_TEMPERATURE), ("sbp", K.CRS_SBP), ("map", K.CRS_MAP), ("o2", K.CRS_OXYGEN),
            ("flow", K.CRS_FLOW), ("fio2", K.CRS_FIO2), ("death", K.CRS_DEATH), ("alt", K.CRS_ALTERNATIVE),
            ("il6", K.CRS_IL6), ("crp", K.CRS_CRP), ("waiver", K.CRS_WAIVER), ("antipyretic", K.CRS_ANTIPYRETIC)]}
        rows["fever"] = latest(row, fever)
        pressor_rows = [latest(row, lambda q, p=p: pressor_of[item[q]] == p) for p in range(counted.shape[0])]
        sbp_t, map_t = at(t, rows["sbp"]), at(t, rows["map"])
        bp_t = float(np.fmax(sbp_t, map_t))
        sbp_low = rows["sbp"] >= 0 and low_sbp(rows["sbp"])
        map_low = rows["map"] >= 0 and bool(num[rows["map"]] < limits[5])
        sbp_now, map_now = sbp_t == bp_t, map_t == bp_t
        show_sbp = sbp_now and (sbp_now and sbp_low or not (map_now and map_low))
        device_t, flow_t = at(t, rows["o2"]), at(t, rows["flow"])
        flow = at(num, rows["flow"]) if math.isnan(device_t) or flow_t >= device_t else math.nan
        code = int(device[rows["o2"]]) if rows["o2"] >= 0 else device_none
        rates = [float(np.nan_to_num(at(num, r), nan=0.0)) for r in pressor_rows]
        positions = [alt_position[latest(row, lambda q, f=f: bool(role[item[q]] & K.CRS_ALTERNATIVE)
                                         and alt_finding[q] == f)] if latest(row, lambda q, f=f: bool(
                                             role[item[q]] & K.CRS_ALTERNATIVE) and alt_finding[q] == f) >= 0
                     else -1 for f in range(3)]
        floats = {
            "t": now, "fever_t": at(t, rows["fever"]), "fever_value": at(num, rows["fever"]),
            "temp_t": at(t, rows["temp"]), "temp_value": at(num, rows["temp"]),
            "o2_device_t": device_t, "o2_flow_t": flow_t,
            "fio2": at(num, rows["fio2"]), "fio2_t": at(t, rows["fio2"]), "waiver_drug_t": at(t, rows["waiver"]),
            "antipyretic_t": at(t, rows["antipyretic"]), "death_t": at(t, rows["death"]),
            "alt_t": at(t, rows["alt"]), "bp_t": bp_t,
            "bp_value": at(num, rows["sbp"]) if show_sbp else at(num, rows["map"]) if map_now else math.nan,
            "o2_flow_current": flow,
        }
        for name, value in floats.items():
            put(name, value)
        for p, rate in enumerate(rates):
            put(f"rate_{p}", rate)
            put(f"rate_{p}_t", at(t, pressor_rows[p]))
            put(f"pressor_{p}_at", pressor_rows[p])
        for name, latest_row in (("fever", "fever"), ("temp", "temp"), ("o2_flow", "flow"), ("fio2", "fio2"),
                                 ("antipyretic", "antipyretic"), ("alt", "alt")):
            put(f"{name}_at", rows[latest_row])
        flags = {
            "first": bool(start[row] != previous_start), "temp_is_fever": rows["temp"] >= 0
            and rows["temp"] == rows["fever"], "death_due": rows["death"] >= 0,
            **{f"{f}_attributed": positions[k] >= 0 and bool(alt_attributes[positions[k]])
               for k, f in enumerate(("fever", "hypotension", "hypoxia"))},
            "bp_low": sbp_now and sbp_low or map_now and map_low,
            "on_oxygen": code != room_air if code != device_none else float(np.nan_to_num(flow, nan=0.0)) > 0,
            "any_vasopressor": any(r > 0 for r in rates),
            "febrile": (now - floats["fever_t"]) * 24.0 <= limits[6],
            "temp_known": (now - floats["temp_t"]) * 24.0 <= limits[6],
            "bp_known": (now - bp_t) * 24.0 <= limits[7],
        }
        unsettled = floats["fever_t"] == now or not flags["temp_known"] or flags["temp_is_fever"]
        il6_now, crp_now = falling(rows["il6"], K.CRS_IL6), falling(rows["crp"], K.CRS_CRP)
        if cytokines_resolve:
            flags["active"] = unsettled or not (il6_now == 1 if il6_now >= 0 else crp_now == 1)
        else:
            flags["active"] = (unsettled or floats["antipyretic_t"] == now
                               or flags["on_oxygen"] and not flags["hypoxia_attributed"]
                               or flags["any_vasopressor"] and not flags["hypotension_attributed"])
        previous_start = start[row]
        for name, value in flags.items():
            put(name, bool(value))
        small = {"il6_falling": falling(rows["il6"], K.CRS_IL6), "crp_falling": falling(rows["crp"], K.CRS_CRP),
                 "o2_device_tier": int(tiers[code]),
                 "n_vasopressors": sum(r > 0 for r, c in zip(rates, counted, strict=True) if c)}
        for name, value in small.items():
            put(name, value)
        numbers = {
            "row": int(event_row[row]), "patient": int(patient[row]),
            "o2_device_row": int(event_row[rows["o2"]]) if rows["o2"] >= 0 else -1, "o2_device_code": code,
            "waiver_drug_row": int(event_row[rows["waiver"]]) if rows["waiver"] >= 0 else -1,
            "death_row": int(event_row[rows["death"]]) if rows["death"] >= 0 else -1,
            **{f"alt_{f}": int(positions[k]) for k, f in enumerate(("fever", "hypotension", "hypoxia"))},
            "bp_item": 0 if show_sbp else 1 if map_now else -1,
        }
        for name, value in numbers.items():
            put(name, value)
    return out


def _crs_kernel(columns: tuple) -> dict[str, list]:
    """The pass's outputs by name, with the columns it gives as latest rows read from those rows (as the state
    does: :class:`tocsin.core.timeline.Taken`)."""
    t, num, event_row = columns[1], columns[2], columns[5]
    floats, flags, small, numbers = K.crs_state_pass(*columns)
    pressors = columns[8].shape[0]
    out = {}
    for table, table_names in ((floats, K.CRS_FLOATS), (flags, K.CRS_FLAGS), (small, K.CRS_SMALL),
                               (numbers, [*K.CRS_NUMBERS, *(f"pressor_{p}_at" for p in range(pressors))])):
        assert table.shape == (len(table_names), table.shape[1])
        out.update({name: values for name, values in zip(table_names, table, strict=True)})
    assert flags.dtype == np.bool_ and small.dtype == np.int8 and numbers.dtype == np.int32
    event_t = np.full(3 * t.shape[0] + 2, np.nan)  # the events' times at their rows (event_row: 3 k + 1)
    event_t[event_row] = t
    out.update({f"{name}_t": Taken(t, out[f"{name}_at"]).values()
                for name in ("fever", "temp", "o2_flow", "fio2", "antipyretic", "alt")})
    out.update({f"{name}_value": Taken(num, out[f"{name}_at"]).values() for name in ("fever", "temp")})
    out["fio2"] = Taken(num, out["fio2_at"]).values()
    out.update({f"{name}_t": Taken(event_t, out[f"{name}_row"]).values()
                for name in ("o2_device", "waiver_drug", "death")})
    for p in range(pressors):
        out[f"rate_{p}"] = Taken(num, out[f"pressor_{p}_at"], finite=True).values()
        out[f"rate_{p}_t"] = Taken(t, out[f"pressor_{p}_at"]).values()
    return {name: values.tolist() for name, values in out.items()}


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                                    for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_crs_state_pass_matches_the_reference_on_random_rows(seed: int) -> None:
    columns = _random_rows(seed, 150)
    expected, found = _crs_reference(columns), _crs_kernel(columns)
    for name, values in expected.items():
        assert _same(found[name], values), name
    assert sorted(found) == sorted(expected)


@pytest.mark.parametrize("n", [0, 1])
def test_crs_state_pass_of_no_row_and_one_row(n: int) -> None:
    columns = _random_rows(7, max(n, 1))
    columns = tuple(c[:n] if isinstance(c, np.ndarray) and i in range(6) or i in (10, 11, 12) else c
                    for i, c in enumerate(columns))
    found, expected = _crs_kernel(columns), _crs_reference(columns)
    assert all(len(v) == n for v in found.values())
    for name, values in expected.items():
        assert _same(found[name], values), name


def test_crs_state_pass_without_a_map_rule_or_vasopressors() -> None:
    columns = list(_random_rows(3, 80))
    columns[15] = LIMITS.copy()
    columns[15][5] = np.nan  # no MAP rule: a MAP is never low
    found, expected = _crs_kernel(tuple(columns)), _crs_reference(tuple(columns))
    for name in ("bp_t", "bp_value", "bp_low", "bp_item"):
        assert _same(found[name], expected[name]), name
    columns[8] = np.zeros(0, dtype=np.bool_)
    columns[7] = np.full(PRESSOR_OF.shape, -1, dtype=np.int64)
    found = _crs_kernel(tuple(columns))
    assert not any(found["any_vasopressor"]) and not any(found["n_vasopressors"])


N_ICE, N_CAPD = 2, 3
# Codes: 0 ICE, 1 CAPD total, 2-3 ICE items, 4-6 CAPD items, 7-12 the domains, 13 death, 14 attribution, 15 other.
ICANS_SIGNAL_OF = np.array([*range(14), K.ICANS_ATTRIBUTION, -1, -1], dtype=np.int64)
N_UNION = 4
OWN_CODE = np.array([[0, 1, -1, 2, -1]] * 6, dtype=np.int64)


def _random_icans_rows(seed: int, n: int) -> tuple:
    rng = np.random.default_rng(seed)
    patient = np.sort(rng.integers(0, 3, n))
    item = rng.integers(0, 16, n)
    t = np.round(rng.uniform(0, 4, n) * 4) / 4
    order = np.lexsort((t, patient))
    patient, item, t = patient[order], item[order], t[order]
    t[rng.random(n) < 0.03] = np.nan
    num = np.round(rng.uniform(0, 4, n))
    num[rng.random(n) < 0.1] = np.nan
    start = np.zeros(n, dtype=np.int64)
    for row in range(1, n):
        start[row] = row if patient[row] != patient[row - 1] else start[row - 1]
    alts = np.flatnonzero(item == 14)
    keep = np.ones(n, dtype=np.bool_)
    keep[alts] = rng.random(alts.size) < 0.7  # an attribution of another finding: no row at all
    alt_position = np.full(n, -1, dtype=np.int64)
    alt_position[alts] = np.arange(alts.size)
    finding = np.full(n, -1, dtype=np.int64)
    finding[alts] = rng.integers(0, 7, alts.size)
    domain = (item >= 7) & (item <= 12)
    value_code = np.where(domain, rng.integers(-1, N_UNION, n), -1)
    value_code[domain & (rng.random(n) < 0.2)] = K.ICANS_NO_VALUE
    age = np.array([30.0, np.nan, 8.0])
    position = np.where(patient == 2, -1, patient)
    event_row = np.arange(n, dtype=np.int64) + 10
    return (item, t, num, start, position, event_row, keep, ICANS_SIGNAL_OF, N_ICE, N_CAPD, finding, value_code,
            OWN_CODE, alt_position, rng.random(alts.size) < 0.6, age, 24.0, 12.0)


def _icans_reference(columns: tuple) -> dict[str, list]:
    (item, t, num, start, patient, event_row, keep, signal_of, n_ice, n_capd, finding, value_code, own_code,
     alt_position, alt_attributes, age, neuro_hours, seizure_hours) = columns
    kept = [row for row in range(item.shape[0]) if keep[row]]

    def signal(row: int) -> int:
        s = signal_of[item[row]]
        if s == K.ICANS_ATTRIBUTION:
            return 14 + finding[row] if finding[row] >= 0 else -1
        return int(s)

    assessments = [row for k, row in enumerate(kept) if k == len(kept) - 1 or t[kept[k + 1]] != t[row]
                   or start[kept[k + 1]] != start[row]]
    observed = []  # per assessment: {stamp: (value...)} of what was observed at it
    for row in assessments:
        here = {}
        for s in range(21):
            latest = next((q for q in reversed(kept) if start[row] == start[q] and q <= row and signal(q) == s), -1)
            here[s] = latest if latest >= 0 and t[latest] == t[row] else -1
        seen = {}
        first_item = 2
        for tool, items in ((0, n_ice), (1, n_capd)):
            values = [num[here[first_item + i]] if here[first_item + i] >= 0 else math.nan for i in range(items)]
            first_item += items
            score = num[here[tool]] if here[tool] >= 0 else math.nan
            absent = sum(1 << i for i, v in enumerate(values) if math.isnan(v))
            value = score if not math.isnan(score) else sum(values[1:], values[0]) if absent == 0 else math.nan
            if not math.isnan(value):
                seen[("tool", tool)] = value
            if math.isnan(score) and absent != (1 << items) - 1 and absent:
                seen[("incomplete", tool)] = absent
        for d in range(7):
            source = here[7 + d]
            if source >= 0 and value_code[source] != K.ICANS_NO_VALUE:
                seen[("domain", d)] = source
        for f in range(7):
            if here[14 + f] >= 0:
                seen[("finding", f)] = here[14 + f]
        observed.append(seen)
    out: dict[str, list] = {}

    def put(name: str, value) -> None:
        out.setdefault(name, []).append(value)

    for k, row in enumerate(assessments):
        now = t[row]

        def last(key):
            for j in range(k, -1, -1):
                if start[assessments[j]] != start[row]:
                    return None, math.nan
                if key in observed[j]:
                    return observed[j][key], t[assessments[j]]
            return None, math.nan

        put("t", now)
        tools = [last(("tool", tool)) for tool in range(2)]
        for tool, name in enumerate(("ice", "capd")):
            value, at_t = tools[tool]
            put(f"{name}_value", math.nan if value is None else value)
            put(f"{name}_t", at_t)
        domains = [last(("domain", d)) for d in range(7)]
        for d, name in enumerate((*K.ICANS_DOMAINS, "death")):
            put(f"{name}_t", domains[d][1])
            put(f"{name}_row", -1 if domains[d][0] is None else int(event_row[domains[d][0]]))
        put("age_years", age[patient[row]] if patient[row] >= 0 else math.nan)
        put("first", k == 0 or start[assessments[k - 1]] != start[row])
        for name, at_t, hours in (("ice", tools[0][1], neuro_hours), ("capd", tools[1][1], neuro_hours),
                                  ("consciousness", domains[0][1], neuro_hours),
                                  ("global_aphasia", domains[1][1], neuro_hours),
                                  ("seizure", domains[2][1], seizure_hours)):
            put(f"{name}_fresh", bool((now - at_t) * 24.0 <= hours))
        put("death_due", not math.isnan(domains[6][1]))
        for f, name in enumerate(K.ICANS_FINDINGS):
            source = last(("finding", f))[0]
            position = -1 if source is None else int(alt_position[source])
            put(f"alt_{name}", position)
            put(f"{name}_attributed", position >= 0 and bool(alt_attributes[position]))
        put("row", int(event_row[row]))
        put("patient", int(patient[row]))
        for tool, name in enumerate(("ice", "capd")):
            mask = last(("incomplete", tool))[0]
            put(f"{name}_incomplete_last", -1 if mask is None else mask)
        for d, name in enumerate(K.ICANS_DOMAINS):
            source = domains[d][0]
            put(f"{name}_code", int(own_code[d][value_code[source]]) if source is not None else -1)
    return out


def _icans_kernel(columns: tuple) -> dict[str, list]:
    floats, flags, numbers = K.icans_state_pass(*columns)
    out = {}
    for table, names in ((floats, K.ICANS_FLOATS), (flags, K.ICANS_FLAGS), (numbers, K.ICANS_NUMBERS)):
        assert table.shape == (len(names), table.shape[1])
        out.update({name: values.tolist() for name, values in zip(names, table, strict=True)})
    assert flags.dtype == np.bool_ and numbers.dtype == np.int32
    return out


@pytest.mark.parametrize("seed", range(6))
def test_icans_state_pass_matches_the_reference_on_random_rows(seed: int) -> None:
    columns = _random_icans_rows(seed, 160)
    expected, found = _icans_reference(columns), _icans_kernel(columns)
    assert sorted(found) == sorted(expected)
    for name, values in expected.items():
        assert _same(found[name], values), name


@pytest.mark.parametrize("n", [0, 1])
def test_icans_state_pass_of_no_row_and_one_row(n: int) -> None:
    columns = _random_icans_rows(2, 1)
    columns = tuple(c[:n] if i in (0, 1, 2, 3, 4, 5, 6, 10, 11, 13) else c for i, c in enumerate(columns))
    found, expected = _icans_kernel(columns), _icans_reference(columns)
    assert all(len(v) == n for v in found.values())
    for name, values in expected.items():
        assert _same(found[name], values), name


def test_icans_state_pass_when_every_row_is_an_attribution_of_another_finding() -> None:
    columns = list(_random_icans_rows(4, 30))
    columns[6] = np.zeros(30, dtype=np.bool_)
    assert all(len(v) == 0 for v in _icans_kernel(tuple(columns)).values())


def _random_timeline(seed: int, n: int) -> tuple:
    rng = np.random.default_rng(seed)
    patient = np.sort(rng.integers(0, 5, n))
    t = np.sort(rng.uniform(0, 6, n))
    t = t[np.lexsort((t, patient))]
    first = np.ones(n, dtype=np.bool_)
    first[1:] = patient[1:] != patient[:-1]
    grade = rng.choice(np.array([-1, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5], dtype=np.int8), n)
    grade[patient == 4] = -1  # a patient without a graded row
    stretch = np.zeros(n, dtype=np.int32)
    for row in range(n):
        previous = 0 if first[row] else stretch[row - 1]
        stretch[row] = previous + 1 if rng.random() < 0.15 else previous if rng.random() < 0.8 else 0
    stretch[stretch < 0] = 0
    quiet_since = np.where(rng.random(n) < 0.5, np.round(t, 1), np.nan)
    resolved = rng.random(n) < 0.2
    return first, t, np.floor(t).astype(np.int32), grade, stretch, quiet_since, resolved, 6


def _episodes_reference(columns: tuple) -> tuple:
    first, t, day, grade, stretch, quiet_since, resolved, n_grades = columns
    patient = np.cumsum(first) - 1
    patients = int(first.sum())
    episodes = []  # per stretch run: [start, patient, onset, peak, peak_day, resolved_day]
    for row in range(t.shape[0]):
        if stretch[row] > 0:
            if first[row] or stretch[row] != stretch[row - 1]:
                episodes.append([row, patient[row], math.nan, -1, math.nan, math.nan])
            e = episodes[-1]
            if grade[row] >= 1 and math.isnan(e[2]):
                e[2] = t[row]
            if grade[row] > e[3]:
                e[3], e[4] = int(grade[row]), t[row]
            if resolved[row] and math.isnan(e[5]):
                e[5] = quiet_since[row]
    last_t = [t[np.flatnonzero(patient == p)[-1]] for p in range(patients)]
    kept = [e for e in episodes if e[3] >= 1]
    number = [sum(1 for f in kept[: k + 1] if f[1] == e[1]) for k, e in enumerate(kept)]
    days = np.zeros((n_grades, patients), dtype=np.int32)
    highest = np.full(patients, -1, dtype=np.int8)
    for p in range(patients):
        rows = [r for r in np.flatnonzero(patient == p) if grade[r] >= 0]
        for d in dict.fromkeys(day[r] for r in rows):
            days[max(grade[r] for r in rows if day[r] == d), p] += 1
        highest[p] = max((grade[r] for r in rows), default=-1)
        if highest[p] < 0:
            days[:, p] = -1
    onsets = [[e[2] for e in kept if e[1] == p and not math.isnan(e[2])] for p in range(patients)]
    return (
        np.flatnonzero(first), days, highest, np.array([min(o) if o else math.nan for o in onsets]),
        np.array([sum(1 for e in kept if e[1] == p) for p in range(patients)]),
        np.array([e[0] for e in kept]), np.array(number), np.array([e[2] for e in kept]),
        np.array([e[3] for e in kept]), np.array([e[4] for e in kept]), np.array([e[5] for e in kept]),
        np.array([last_t[e[1]] for e in kept]),
    )


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 1), (2, 40), (3, 120), (4, 120), (5, 300)])
def test_episodes_pass_matches_the_reference(seed: int, n: int) -> None:
    columns = _random_timeline(seed, n)
    found, expected = compiled(_episodes_loop)(*columns), _episodes_reference(columns)
    names = ("heads", "days", "highest", "first_onset", "n_episodes", "start", "number", "onset", "peak",
             "peak_day", "resolved_day", "last_t")
    for name, a, b in zip(names, found, expected, strict=True):
        assert np.array_equal(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel(),
                              equal_nan=True), name
    assert found[1].dtype == np.int32 and found[2].dtype == found[8].dtype == np.int8


def _grades_columns(seed: int, n: int) -> tuple:
    rng = np.random.default_rng(seed)
    flags = [rng.random(n) < share for share in (0.5, 0.7, 0.05, 0.6, 0.3, 0.4, 0.1, 0.3)]
    return (rng.integers(0, 5, n).astype(np.int8), rng.integers(-1, 5, n).astype(np.int8), *flags, 3)


def _grades_reference(columns: tuple) -> tuple:
    """The NumPy steps the compiled pass replaced."""
    (g_hypotension, g_hypoxia, fever_now, eligible, death, temp_known, any_vasopressor, bp_known,
     hypotension_attributed, scale_needs, below) = columns
    support = np.maximum(g_hypotension, g_hypoxia)
    g = np.where(death, 5, np.where(eligible, np.maximum(fever_now.astype(np.int8), support), 0)).astype(np.int8)
    needs = [
        ~eligible & ~temp_known & ~death,
        eligible & ~any_vasopressor & ~bp_known & ~hypotension_attributed & (g < 2),
        scale_needs & (g < below),
    ]
    mask = sum(need.astype(np.int64) << bit for bit, need in enumerate(needs))
    hypotension, hypoxia = g_hypotension == g, g_hypoxia == g
    domain = first_label([
        (g == 5, "death"), ((g == 0) & (support > 0), "fever"), (g == 0, "none"), (g == 1, "fever"),
        (hypotension & hypoxia, "hypotension+hypoxia"), (hypotension, "hypotension"),
        (np.ones(g.shape, bool), "hypoxia"),
    ])
    return g, support, mask, np.where((g == 0) & (mask != 0), -1, g).astype(np.int8), domain.index


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 1), (2, 500), (3, 500)])
def test_grades_pass_matches_the_numpy_steps(seed: int, n: int) -> None:
    columns = _grades_columns(seed, n)
    found, expected = compiled(_grades_loop)(*columns), _grades_reference(columns)
    for name, a, b in zip(("raw", "support", "missing", "grade", "domain"), found, expected, strict=True):
        assert np.array_equal(a, b), name
        assert a.dtype == (np.int64 if name in ("missing", "domain") else np.int8), name


@pytest.mark.parametrize("rule_cases", [astct_rules, lee_rules])
def test_a_rule_table_gives_the_rule_of_the_cases_row_by_row(rule_cases) -> None:
    rng = np.random.default_rng(0)
    g, domain = rng.integers(0, 6, 300), rng.integers(0, len(DOMAIN_CASES), 300)
    by_row = first_label(rule_cases(g, labels(DOMAIN_CASES, domain)))
    source, codes = rule_table(rule_cases)
    assert source.to_list() == by_row.source.to_list() and codes.dtype == np.int8
    assert np.array_equal(codes[domain, g], by_row.index)


def _icans_grade_columns(seed: int, n: int) -> tuple:
    bands, grade_of_code = icans_tables()
    rng = np.random.default_rng(seed)
    age = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(2, 30, n))
    fresh = rng.random((4, n)) < 0.6
    attributed = rng.random((7, n)) < 0.1
    tool_value = np.where(rng.random((2, n)) < 0.2, np.nan, rng.integers(0, 14, (2, n)).astype(np.float64))
    codes = np.stack([rng.integers(-1, grade_of_code.shape[1], n) for _ in range(grade_of_code.shape[0])])
    codes[1:][codes[1:] >= 2] = -1  # the other domains' few values
    incomplete = np.where(rng.random((2, n)) < 0.5, -1, rng.integers(1, 31, (2, n)))
    return (age, 12.0, fresh, attributed, tool_value, codes, incomplete, rng.random(n) < 0.05, bands, grade_of_code,
            4, 32)


def _icans_grade_reference(columns: tuple) -> tuple:
    """The NumPy steps the compiled pass replaced."""
    (age, min_age, fresh, attributed, tool_value, codes, incomplete, death, bands, grade_of_code, unarousable,
     offset) = columns

    def band(values: np.ndarray, tool: int) -> np.ndarray:
        grade = np.full(values.shape, -1, dtype=np.int64)
        for b in reversed([b for b in bands.T if b[3] == tool]):
            grade = np.where((values >= b[0]) & (values <= b[1]), int(b[2]), grade)
        return grade

    use_ice = np.where(np.isnan(age), fresh[0] | ~fresh[1], age >= min_age)
    ok = ~attributed
    table = np.concatenate([grade_of_code, np.full((grade_of_code.shape[0], 1), -1)], axis=1)
    mapped = [table[k][codes[k]] for k in range(codes.shape[0])]
    grades = [
        np.where(use_ice & fresh[0] & ok[0], band(tool_value[0], 0), -1),
        np.where(~use_ice & fresh[1] & ok[1], band(tool_value[1], 1), -1),
        np.where(fresh[2] & ok[2], mapped[0], -1),
        np.where(fresh[3] & ok[3], mapped[1], -1),
        *[np.where(ok[4 + k], mapped[2 + k], -1) for k in range(3)],
    ]
    raw = np.where(death, 5, np.maximum(np.maximum.reduce(grades), 0)).astype(np.int8)
    tool_missing = ~(fresh[2] & (codes[0] == unarousable)) & ~death & np.where(use_ice, ~fresh[0], ~fresh[1])
    code = 1 + np.where(use_ice, 0, offset) + np.maximum(np.where(use_ice, incomplete[0], incomplete[1]), 0)
    missing = np.where(tool_missing, code, 0)
    at_max = [g == raw for g in grades]
    mask = sum(held.astype(np.int64) << bit for bit, held in enumerate(at_max))
    domain = np.where(death, 128, np.where(raw == 0, 129, mask))
    rule = first_label([(death, "d"), (raw == 0, "0"), *[(held, str(k)) for k, held in enumerate(at_max)]]).index
    return (use_ice, np.stack(grades).astype(np.int8), raw, missing,
            np.where((raw == 0) & (missing != 0), -1, raw).astype(np.int8), domain, rule)


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 1), (2, 400), (3, 400)])
def test_icans_grade_pass_matches_the_numpy_steps(seed: int, n: int) -> None:
    columns = _icans_grade_columns(seed, n)
    found, expected = compiled(icans_grade_loop)(*columns), _icans_grade_reference(columns)
    names = ("uses_ice", "g", "raw", "missing", "grade", "domain", "rule")
    for name, a, b in zip(names, found, expected, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b), name
    assert found[1].dtype == found[2].dtype == found[4].dtype == found[6].dtype == np.int8


def test_astct_tiers_pass_matches_the_numpy_steps() -> None:
    rng = np.random.default_rng(5)
    n = 400
    attributed = rng.random((2, n)) < 0.1
    bp_known, bp_low, any_vasopressor = rng.random(n) < 0.7, rng.random(n) < 0.4, rng.random(n) < 0.3
    n_vasopressors = np.where(any_vasopressor, rng.integers(0, 3, n), 0).astype(np.int8)
    flow = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 12, n))
    device = rng.integers(0, 7, n)  # five devices (0: nasal cannula), unknown (5), none (6)
    tier = np.array([2, 3, 4, 0, 2, -1, -1], dtype=np.int8)[device]
    found = compiled(astct_tiers_loop)(attributed, bp_known, bp_low, n_vasopressors, any_vasopressor, flow, device,
                                       tier, 6.0, 0, 6)
    low_bp = np.where(bp_known & bp_low, 2, 0)
    hypotension = np.where(attributed[0], 0, np.where(n_vasopressors >= 2, 4, np.where(any_vasopressor, 3, low_bp)))
    high_flow = flow > 6.0
    by_flow = np.where(high_flow, 3, np.where(flow > 0, 2, 0))
    by_device = np.where((device == 0) & high_flow, 3, tier)
    hypoxia = np.where(attributed[1], 0, np.where(device != 6, by_device, by_flow))
    assert np.array_equal(found[0], hypotension) and np.array_equal(found[1], hypoxia)
    assert found[0].dtype == found[1].dtype == np.int8
    assert all(a.shape == (0,) for a in compiled(astct_tiers_loop)(
        attributed[:, :0], bp_known[:0], bp_low[:0], n_vasopressors[:0], any_vasopressor[:0], flow[:0], device[:0],
        tier[:0], 6.0, 0, 6))


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 1), (2, 300)])
def test_course_pass_matches_the_reference(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    first = np.ones(n, dtype=np.bool_)
    first[1:] = rng.random(max(n - 1, 0)) < 0.05
    stretch = np.zeros(n, dtype=np.int32)
    for row in range(n):
        stretch[row] = (0 if first[row] else stretch[row - 1]) + (rng.random() < 0.1)
    t = np.round(np.cumsum(rng.uniform(0, 0.3, n)), 2)
    fever_t = np.where(rng.random(n) < 0.3, t, np.where(rng.random(n) < 0.5, t - 0.5, np.nan))
    drug_t = np.where(rng.random(n) < 0.2, t, np.nan)
    drug = rng.integers(0, 50, n).astype(np.int32)
    flags = [rng.random(n) < share for share in (0.7, 0.4, 0.2)]
    found = compiled(_course_loop)(first, stretch, t, fever_t, drug_t, drug, *flags)
    expected: list[list] = [[] for _ in range(6)]
    for row in range(n):
        episode = range(max(q for q in range(row + 1) if first[q] or stretch[q] != stretch[q - 1]), row + 1)
        fevers = [t[q] for q in episode if stretch[q] > 0 and fever_t[q] == t[q]]
        fever = fevers[0] if fevers else math.nan
        # The first fever as it stood at each row: a waiver counts from it on.
        waivers = [q for q in episode if drug_t[q] == t[q]
                   and t[q] >= next((t[p] for p in episode if p <= q and stretch[p] > 0 and fever_t[p] == t[p]),
                                    math.nan)]
        started = bool(flags[0][row]) and not math.isnan(fever)
        waiver_t = t[waivers[-1]] if waivers else math.nan
        for column, value in zip(expected, (fever, waiver_t, int(drug[waivers[-1]]) if waivers else -1, started,
                                            bool(flags[1][row] and not flags[2][row]),
                                            started and not math.isnan(waiver_t)), strict=True):
            column.append(value)
    for a, b in zip(found, expected, strict=True):
        assert _same(a.tolist(), b)
    assert found[2].dtype == np.int32


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 1), (2, 500), (3, 500)])
def test_toxicity_rows_and_their_columns_match_numpy(seed: int, n: int) -> None:
    import polars as pl

    from tocsin.core.arrays import float_buffers

    rng = np.random.default_rng(seed)
    item = rng.integers(0, 9, n).astype(np.uint8)  # code 8: a null item
    patient = np.sort(rng.integers(0, 6, n)).astype(np.uint32)
    t = rng.uniform(0, 5, n)
    values = rng.normal(size=n)
    values[rng.random(n) < 0.1] = np.nan
    num = pl.Series([None if rng.random() < 0.2 * (seed % 2) else v for v in values.tolist()], dtype=pl.Float64)
    wanted = np.array([True, False, True, True, False, False, True, False, rng.random() < 0.5])
    rows = np.flatnonzero(wanted[item])
    count, deaths = K.counted_rows(item, wanted, 3)
    assert count == rows.size and np.array_equal(deaths, np.flatnonzero(wanted[item] & (item == 3)))
    assert K.counted_rows(item, wanted & (np.arange(9) != 3), 3)[1].size == 0  # deaths not wanted: none
    dropped = deaths[::2]
    kept = np.setdiff1d(rows, dropped)
    found = K.toxicity_rows_pass(item, wanted, kept.size, dropped, patient, t, *float_buffers(num))
    kept_rows, items, times, numbers, start, run, heads = found
    first = np.ones(kept.size, dtype=np.bool_)
    first[1:] = patient[kept][1:] != patient[kept][:-1]
    assert np.array_equal(kept_rows, kept) and kept_rows.dtype == np.int64
    assert np.array_equal(items, item[kept]) and items.dtype == np.uint8
    assert np.array_equal(times, t[kept])
    assert np.array_equal(numbers, num.gather(kept).to_numpy().astype(np.float64), equal_nan=True)
    assert np.array_equal(start, np.flatnonzero(first)[np.cumsum(first) - 1] if kept.size else kept)
    assert np.array_equal(run, np.cumsum(first) - 1)
    assert np.array_equal(heads, patient[kept][first]) and heads.dtype == np.uint32
    shifted = pl.concat([pl.Series([None, 1.0, None], dtype=pl.Float64), num]).rechunk().slice(3)  # bits from 3 on
    assert float_buffers(shifted)[2] == (3 if n else 0)
    again = K.toxicity_rows_pass(item, wanted, kept.size, dropped, patient, t, *float_buffers(shifted))
    assert np.array_equal(again[3], numbers, equal_nan=True)


@pytest.mark.parametrize(("seed", "n", "null_share"), [(0, 0, 0.0), (1, 1, 1.0), (2, 1, 0.0), (3, 700, 0.3),
                                                        (4, 700, 0.0)])
def test_float_rows_is_the_polars_gather_with_nulls_as_nan(seed: int, n: int, null_share: float) -> None:
    """``float_rows`` reads the values and validity bits off the Arrow buffers: the same as a Polars gather and its
    NumPy conversion, for a column with and without nulls, with NaN values, sliced (an offset into the buffers that
    is not a whole byte), in several chunks, and of another number type."""
    import polars as pl

    from tocsin.core.arrays import float_rows

    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    values[rng.random(n) < 0.1] = np.nan
    column = pl.Series([None if rng.random() < null_share else v for v in values.tolist()], dtype=pl.Float64)
    rows = np.sort(rng.integers(0, n, n // 2 + 1)) if n else np.zeros(0, np.int64)

    def expected(source: pl.Series, at: np.ndarray) -> np.ndarray:
        return source.gather(at).cast(pl.Float64).to_numpy()

    assert np.array_equal(float_rows(column, rows), expected(column, rows), equal_nan=True)
    assert float_rows(column, rows).dtype == np.float64
    if n > 10:
        sliced = column.slice(3, n - 5)
        at = rows[rows < n - 5]
        assert np.array_equal(float_rows(sliced, at), expected(sliced, at), equal_nan=True)
        chunks = pl.concat([column.slice(0, 7), column.slice(7)], rechunk=False)
        assert chunks.n_chunks() == 2
        assert np.array_equal(float_rows(chunks, rows), expected(column, rows), equal_nan=True)
        integers = pl.Series([None if v != v else int(v * 100) for v in values.tolist()], dtype=pl.Int32)
        assert np.array_equal(float_rows(integers, rows), expected(integers, rows), equal_nan=True)
