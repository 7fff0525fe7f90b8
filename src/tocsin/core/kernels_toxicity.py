"""Compiled passes of the CRS and ICANS states: every state column at every assessment, in one walk over the rows.

A state column is "the value of the latest row of a signal at or before the assessment, within the patient". The
state was a pass finding those latest rows, then some forty gathers and forty NumPy steps over them (validity
windows, the latest blood pressure, the support): each a few µs of interpreter for a handful of rows. Here one
loop compiled by Numba (:func:`tocsin.core.segments.compiled`: imported on first use, cached on disk) keeps the
latest row of each signal as it walks the rows (a patient's rows adjacent, in time order) and writes the columns
at the last row of each (patient, time). The outputs are a few two-dimensional arrays, one row per column, named
by the tuples below; a column that is a latest row's own value or time is output as that row's number, and read
from the row when the column is (:class:`tocsin.core.timeline.Taken`). Smaller passes read the toxicity's rows
out of the events: their row numbers (one pass over the item codes), their item, time and patient runs, and a
number column at them (its nulls read off the Arrow validity bits).

Floating point follows the NumPy code this replaced: the same operations in the same order (``(t - then) * 24``
compared with the window, ``fmax`` of two times), so every value is bit for bit the same.
"""

from __future__ import annotations

import numpy as np

from tocsin.core.segments import compiled, read_only

HOURS_PER_DAY = 24.0

#: Signals of an item code in the CRS pass (bits of ``role``; a vasopressor is its own signal, ``pressor_of``).
(
    CRS_TEMPERATURE,
    CRS_SBP,
    CRS_MAP,
    CRS_OXYGEN,
    CRS_FLOW,
    CRS_FIO2,
    CRS_DEATH,
    CRS_ALTERNATIVE,
    CRS_IL6,
    CRS_CRP,
    CRS_WAIVER,
    CRS_ANTIPYRETIC,
) = (1 << bit for bit in range(12))

#: Rows of the CRS pass's float output (NaN = null): the values it derives. A value or time that is a row's own is
#: given as that row's number instead (:data:`CRS_NUMBERS`): 4 bytes where the value and its time were 16, and a
#: chunk's pass spent half its time writing its floats out (a batch reads most of them never).
CRS_FLOATS = ("t", "bp_t", "bp_value", "o2_flow_current")
#: Rows of the CRS pass's boolean output.
CRS_FLAGS = (
    "first",
    "temp_is_fever",
    "death_due",
    "fever_attributed",
    "hypotension_attributed",
    "hypoxia_attributed",
    "bp_low",
    "on_oxygen",
    "any_vasopressor",
    "febrile",
    "temp_known",
    "bp_known",
    "active",
)
#: Rows of the CRS pass's small-integer output (-1 = unknown for the cytokines' ``falling``).
CRS_SMALL = ("il6_falling", "crp_falling", "o2_device_tier", "n_vasopressors")
#: Rows of the CRS pass's row-number and code output (-1 = none): event rows of the assessment and of the
#: texts shown, the patient's position, the device's code, the attributions' rows and the blood pressure shown,
#: then the rows (among the pass's rows) of the latest fever, temperature, O2 flow, FiO2, antipyretic and
#: attribution; the latest row of each vasopressor follows. As 32 bits: a chunk's state is some 150,000
#: assessments, and writing the outputs is most of the pass.
CRS_NUMBERS = (
    "row",
    "patient",
    "o2_device_row",
    "o2_device_code",
    "waiver_drug_row",
    "death_row",
    "alt_fever",
    "alt_hypotension",
    "alt_hypoxia",
    "bp_item",
    "fever_at",
    "temp_at",
    "o2_flow_at",
    "fio2_at",
    "antipyretic_at",
    "alt_at",
)
#: Rows of the CRS pass's ``limits`` input.
CRS_LIMITS = (
    "fever_celsius",
    "pediatric_max_age_years",
    "pediatric_sbp_base_mm_hg",
    "pediatric_sbp_per_year_mm_hg",
    "hypotension_sbp_mm_hg",
    "hypotension_map_mm_hg",  # NaN: no MAP rule
    "fever_window_hours",
    "bp_validity_hours",
)
_N_FINDINGS = 3  # fever, hypotension, hypoxia: the findings a CRS attribution can name
_N_CRS_FLOATS, _N_CRS_FLAGS, _N_CRS_SMALL, _N_CRS_NUMBERS = len(CRS_FLOATS), len(CRS_FLAGS), len(CRS_SMALL), len(
    CRS_NUMBERS
)


def _crs_state_loop(
    item: np.ndarray,
    t: np.ndarray,
    num: np.ndarray,
    start: np.ndarray,
    patient: np.ndarray,
    event_row: np.ndarray,
    role: np.ndarray,
    pressor_of: np.ndarray,
    counted: np.ndarray,
    age: np.ndarray,
    device: np.ndarray,
    alt_position: np.ndarray,
    alt_finding: np.ndarray,
    alt_attributes: np.ndarray,
    tiers: np.ndarray,
    limits: np.ndarray,
    room_air: int,
    device_none: int,
    cytokines_resolve: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CRS state at every assessment (the last row of each patient and time) of the rows (a patient's rows
    adjacent, in time order; ``start``: the row of the patient's first row). Per row: its item code (``role[code]``
    its signals, ``pressor_of[code]`` its vasopressor or -1), the patient's position (``age`` per position, NaN
    unknown), its event row, its oxygen device code, and of an attribution its row in ``alt_attributes`` and
    finding (-1 for other rows). A temperature is a fever at or above the threshold unless a fever attribution is
    in force; SBP is low below the threshold of the patient's age, MAP below its own (NaN: never).

    ``active``: CRS is not (yet) resolved by the configured rule (``cytokines_resolve``: fever gone and
    cytokines falling; else afebrile off support). Being afebrile must be observed: the quiet period starts at the
    first documented temperature below the fever threshold; a row whose latest temperature is still a (CRS)
    fever, or with no temperature in the fever window, is not quiet, so sparse charting never resolves an episode
    by silence."""

    def at(values: np.ndarray, row: int) -> float:
        return values[row] if row >= 0 else np.nan

    n = item.shape[0]
    pressors = counted.shape[0]
    assessments = 0
    for row in range(n):
        if row == n - 1 or t[row + 1] != t[row] or start[row + 1] != start[row]:
            assessments += 1
    floats = np.empty((_N_CRS_FLOATS, assessments))
    flags = np.empty((_N_CRS_FLAGS, assessments), dtype=np.bool_)
    small = np.empty((_N_CRS_SMALL, assessments), dtype=np.int8)
    numbers = np.empty((_N_CRS_NUMBERS + pressors, assessments), dtype=np.int32)
    fever_c, pediatric_age, pediatric_base, pediatric_per_year = limits[0], limits[1], limits[2], limits[3]
    sbp_limit, map_limit, fever_window, bp_validity = limits[4], limits[5], limits[6], limits[7]
    latest_finding = np.full(_N_FINDINGS, -1, dtype=np.int64)
    latest_pressor = np.full(pressors, -1, dtype=np.int64)
    fever = temp = sbp = map_row = oxygen = flow = fio2 = waiver = antipyretic = death = alt = il6 = crp = -1
    sbp_low = map_low = False
    il6_falling = crp_falling = -1
    il6_before = crp_before = np.nan
    k, previous_start = 0, -1
    for row in range(n):
        if row == start[row]:
            latest_finding[:] = -1
            latest_pressor[:] = -1
            fever = temp = sbp = map_row = oxygen = flow = fio2 = waiver = antipyretic = death = alt = il6 = crp = -1
        bits = role[item[row]]
        value = num[row]
        if bits & CRS_TEMPERATURE:
            temp = row
            attribution = latest_finding[0]
            if value >= fever_c and not (attribution >= 0 and alt_attributes[alt_position[attribution]]):
                fever = row
        if bits & CRS_SBP:
            sbp = row
            years = age[patient[row]] if patient[row] >= 0 else np.nan
            if not np.isnan(years) and years <= pediatric_age:
                sbp_low = value < pediatric_base + pediatric_per_year * np.floor(years)
            else:
                sbp_low = value < sbp_limit
        if bits & CRS_MAP:
            map_row, map_low = row, value < map_limit
        if bits & CRS_OXYGEN:
            oxygen = row
        if bits & CRS_FLOW:
            flow = row
        if bits & CRS_FIO2:
            fio2 = row
        if bits & CRS_DEATH:
            death = row
        if bits & CRS_ALTERNATIVE:
            alt = row
            if alt_finding[row] >= 0:
                latest_finding[alt_finding[row]] = row
        if bits & CRS_IL6:
            # Falling: below the patient's previous value (-1 = unknown: the first value, or either missing).
            il6_falling = -1 if il6 < 0 or np.isnan(value) or np.isnan(il6_before) else int(value < il6_before)
            il6, il6_before = row, value
        if bits & CRS_CRP:
            crp_falling = -1 if crp < 0 or np.isnan(value) or np.isnan(crp_before) else int(value < crp_before)
            crp, crp_before = row, value
        if bits & CRS_WAIVER:
            waiver = row
        if bits & CRS_ANTIPYRETIC:
            antipyretic = row
        if pressor_of[item[row]] >= 0:
            latest_pressor[pressor_of[item[row]]] = row
        if row < n - 1 and t[row + 1] == t[row] and start[row + 1] == start[row]:
            continue  # not the last row of its time: the state at this time is not complete yet
        now = t[row]
        sbp_t, sbp_value, map_t, map_value = at(t, sbp), at(num, sbp), at(t, map_row), at(num, map_row)
        device_t, flow_value, flow_t = at(t, oxygen), at(num, flow), at(t, flow)
        fever_t, temp_t = at(t, fever), at(t, temp)
        # The latest blood pressure (SBP and/or MAP at one time): low if either is; the low one (else SBP) shown.
        bp_t = map_t if np.isnan(sbp_t) else sbp_t if np.isnan(map_t) or sbp_t >= map_t else map_t  # np.fmax
        sbp_now, map_now = sbp_t == bp_t, map_t == bp_t
        sbp_low_now, map_low_now = sbp_now and sbp_low, map_now and map_low
        show_sbp = sbp_now and (sbp_low_now or not map_low_now)
        # A flow belongs to the current device only if it was recorded with it or later.
        current_flow = flow_value if np.isnan(device_t) or flow_t >= device_t else np.nan
        code = device[oxygen] if oxygen >= 0 else device_none
        floats[0, k], floats[1, k], floats[2, k], floats[3, k] = now, bp_t, (
            sbp_value if show_sbp else map_value if map_now else np.nan
        ), current_flow
        numbers[10, k], numbers[11, k], numbers[12, k] = fever, temp, flow
        numbers[13, k], numbers[14, k], numbers[15, k] = fio2, antipyretic, alt
        running, n_counted = False, 0
        for p in range(pressors):
            numbers[_N_CRS_NUMBERS + p, k] = latest_pressor[p]
            if at(num, latest_pressor[p]) > 0:  # running (an unknown rate, NaN, is none)
                running = True
                n_counted += counted[p]
        for f in range(_N_FINDINGS):
            position = alt_position[latest_finding[f]] if latest_finding[f] >= 0 else -1
            numbers[6 + f, k] = position
            flags[3 + f, k] = position >= 0 and alt_attributes[position]
        flags[0, k] = start[row] != previous_start
        previous_start = start[row]
        flags[1, k] = temp >= 0 and temp == fever
        flags[2, k] = death >= 0
        flags[6, k] = sbp_low_now or map_low_now
        flags[7, k] = code != room_air if code != device_none else current_flow > 0
        flags[8, k] = running
        flags[9, k] = (now - fever_t) * HOURS_PER_DAY <= fever_window
        temp_known = (now - temp_t) * HOURS_PER_DAY <= fever_window
        flags[10, k] = temp_known
        flags[11, k] = (now - bp_t) * HOURS_PER_DAY <= bp_validity
        il6_now, crp_now = il6_falling if il6 >= 0 else -1, crp_falling if crp >= 0 else -1
        small[0, k], small[1, k] = il6_now, crp_now
        unsettled = fever_t == now or not temp_known or flags[1, k]
        if cytokines_resolve:
            # Falling must be observed too (EPI-030): the latest IL-6 lower than the one before (CRP when IL-6
            # gives no comparison). An unmeasured or once-measured cytokine is not falling: it counted as falling,
            # so a course without cytokine labs "resolved" at its first afebrile assessment, while on vasopressors
            # with the fever masked by an antipyretic, and lost its fever waiver (a grade 4 graded 0; found by the
            # property that a worse observation never lowers a grade).
            flags[12, k] = unsettled or not (il6_now == 1 if il6_now >= 0 else crp_now == 1)
        else:
            oxygen_on = flags[7, k] and not flags[5, k]  # supplemental O2 for a hypoxia not attributed elsewhere
            pressor_on = running and not flags[4, k]
            flags[12, k] = unsettled or at(t, antipyretic) == now or oxygen_on or pressor_on
        small[2, k] = tiers[code]
        small[3, k] = n_counted
        numbers[0, k] = event_row[row]
        numbers[1, k] = patient[row]
        numbers[2, k] = event_row[oxygen] if oxygen >= 0 else -1
        numbers[3, k] = code
        numbers[4, k] = event_row[waiver] if waiver >= 0 else -1
        numbers[5, k] = event_row[death] if death >= 0 else -1
        numbers[9, k] = 0 if show_sbp else 1 if map_now else -1
        k += 1
    return floats, flags, small, numbers


def crs_state_pass(*columns: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_crs_state_loop`, compiled: its float, boolean, small-integer and number outputs (rows named by
    :data:`CRS_FLOATS`, :data:`CRS_FLAGS`, :data:`CRS_SMALL`, :data:`CRS_NUMBERS` with the vasopressors' latest
    rows after them)."""
    return compiled(_crs_state_loop)(*columns)


#: The ICANS domains recorded as a value (text), in the order of the pass's signals and outputs.
ICANS_DOMAINS = ("consciousness", "global_aphasia", "seizure", "motor_weakness", "cerebral_edema", "icp_sign")
#: Rows of the ICANS pass's float output (NaN = null): the assessment's time, each tool's latest score and its
#: time, each domain's and the death's latest time, the patient's age.
ICANS_FLOATS = (
    "t",
    "ice_value",
    "ice_t",
    "capd_value",
    "capd_t",
    *(f"{d}_t" for d in ICANS_DOMAINS),
    "death_t",
    "age_years",
)
#: The findings an ICANS attribution can name (``timeline.NEURO_FINDINGS``).
ICANS_FINDINGS = ("ice", "capd", "consciousness", "seizure", "motor_weakness", "cerebral_edema", "icp_sign")
#: Rows of the ICANS pass's boolean output.
ICANS_FLAGS = (
    "first",
    *(f"{name}_fresh" for name in ("ice", "capd", "consciousness", "global_aphasia", "seizure")),
    "death_due",
    *(f"{f}_attributed" for f in ICANS_FINDINGS),
)
#: Rows of the ICANS pass's number output (-1 = none): event rows (of the assessment, of each domain's and the
#: death's latest value), the patient's position, the mask of the items an incomplete tool lacked, each domain's
#: value code (its position among the domain's graded values) and each attribution's row; 32 bits, as for CRS.
ICANS_NUMBERS = (
    "row",
    "patient",
    "ice_incomplete_last",
    "capd_incomplete_last",
    *(f"{d}_row" for d in ICANS_DOMAINS),
    "death_row",
    *(f"{d}_code" for d in ICANS_DOMAINS),
    *(f"alt_{f}" for f in ICANS_FINDINGS),
)
#: ``signal_of`` of an attribution's item code: its signal is that of the finding it names.
ICANS_ATTRIBUTION = -2
#: ``value_code`` of a domain row without a value (-1: a value the scale does not grade).
ICANS_NO_VALUE = -2
_N_DOMAINS, _N_ICANS_FINDINGS = len(ICANS_DOMAINS), len(ICANS_FINDINGS)
_N_ICANS_FLOATS, _N_ICANS_FLAGS, _N_ICANS_NUMBERS = len(ICANS_FLOATS), len(ICANS_FLAGS), len(ICANS_NUMBERS)


def _icans_state_loop(
    item: np.ndarray,
    t: np.ndarray,
    num: np.ndarray,
    start: np.ndarray,
    patient: np.ndarray,
    event_row: np.ndarray,
    keep: np.ndarray,
    signal_of: np.ndarray,
    n_ice: int,
    n_capd: int,
    finding: np.ndarray,
    value_code: np.ndarray,
    own_code: np.ndarray,
    alt_position: np.ndarray,
    alt_attributes: np.ndarray,
    age: np.ndarray,
    neuro_hours: float,
    seizure_hours: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ICANS state at every assessment (the last kept row of each patient and time; ``keep``: not an
    attribution of another finding) of the rows (a patient's rows adjacent, in time order, ``start`` the same
    for a patient's rows). Signals, by ``signal_of[code]``: 0 ICE and 1 CAPD total, then the ``n_ice`` ICE and
    ``n_capd`` CAPD items, the domains (:data:`ICANS_DOMAINS`), the death, and an attribution that of its
    ``finding``. A signal is observed at an assessment when its latest row is at the assessment's time (and, for a
    domain, gives a value); a tool's score is its total, else the sum of its items when all are given (an
    incomplete one: the mask of the items it lacked). Each column is then its latest observation in the
    patient, with ``value_code`` (per row, among every graded value; ICANS_NO_VALUE: none) read through
    ``own_code[domain]``."""
    n = item.shape[0]
    assessments, next_kept = 0, -1
    last = np.zeros(n, dtype=np.bool_)
    for row in range(n - 1, -1, -1):  # backwards: a kept row is the last of its time if the next kept row is not
        if keep[row]:
            last[row] = next_kept < 0 or t[next_kept] != t[row] or start[next_kept] != start[row]
            assessments += last[row]
            next_kept = row
    floats = np.empty((_N_ICANS_FLOATS, assessments))
    flags = np.empty((_N_ICANS_FLAGS, assessments), dtype=np.bool_)
    numbers = np.empty((_N_ICANS_NUMBERS, assessments), dtype=np.int32)
    death_signal = 2 + n_ice + n_capd + _N_DOMAINS
    n_signals = death_signal + 1 + _N_ICANS_FINDINGS
    latest = np.full(n_signals, -1, dtype=np.int64)
    # The latest observation of each tool (score, time, mask of an incomplete one), domain and the death (row and
    # time) and attribution (row), in the patient.
    tool_value, tool_t, tool_incomplete = np.full(2, np.nan), np.full(2, np.nan), np.full(2, -1, dtype=np.int64)
    domain_row, domain_t = np.full(_N_DOMAINS + 1, -1, dtype=np.int64), np.full(_N_DOMAINS + 1, np.nan)
    finding_row = np.full(_N_ICANS_FINDINGS, -1, dtype=np.int64)
    unknown = own_code.shape[1] - 1  # the code of another value, or none
    k, current, new_patient = 0, -1, False
    for row in range(n):
        if not keep[row]:
            continue
        if start[row] != current:
            current, new_patient = start[row], True
            latest[:] = -1
            tool_value[:], tool_t[:], tool_incomplete[:] = np.nan, np.nan, -1
            domain_row[:], domain_t[:], finding_row[:] = -1, np.nan, -1
        signal = signal_of[item[row]]
        if signal == ICANS_ATTRIBUTION:
            signal = death_signal + 1 + finding[row] if finding[row] >= 0 else -1
        if signal >= 0:
            latest[signal] = row
        if not last[row]:
            continue
        now = t[row]
        first_item = 2
        for tool, items in ((0, n_ice), (1, n_capd)):
            # The values recorded at this time: the latest rows, if at this time.
            score_row = latest[tool]
            score = num[score_row] if score_row >= 0 and t[score_row] == now else np.nan
            total, absent, present = np.nan, 0, False
            for i in range(items):
                item_row = latest[first_item + i]
                value = num[item_row] if item_row >= 0 and t[item_row] == now else np.nan
                total = value if i == 0 else total + value
                if np.isnan(value):
                    absent |= 1 << i
                else:
                    present = True
            first_item += items
            here = score if not np.isnan(score) else total if absent == 0 else np.nan
            if not np.isnan(here):
                tool_value[tool], tool_t[tool] = here, now
            if np.isnan(score) and present and absent != 0:
                tool_incomplete[tool] = absent
        for d in range(_N_DOMAINS + 1):  # the domains, then the death
            source = latest[2 + n_ice + n_capd + d]
            if source >= 0 and t[source] == now and value_code[source] != ICANS_NO_VALUE:
                domain_row[d], domain_t[d] = source, now
        for f in range(_N_ICANS_FINDINGS):
            source = latest[death_signal + 1 + f]
            if source >= 0 and t[source] == now:
                finding_row[f] = source
        floats[0, k] = now
        floats[1, k], floats[2, k], floats[3, k], floats[4, k] = tool_value[0], tool_t[0], tool_value[1], tool_t[1]
        for d in range(_N_DOMAINS + 1):
            floats[5 + d, k] = domain_t[d]
            numbers[4 + d, k] = event_row[domain_row[d]] if domain_row[d] >= 0 else -1
        for d in range(_N_DOMAINS):
            code = value_code[domain_row[d]] if domain_row[d] >= 0 else -1
            numbers[5 + _N_DOMAINS + d, k] = own_code[d, code if code >= 0 else unknown]
        floats[6 + _N_DOMAINS, k] = age[patient[row]] if patient[row] >= 0 else np.nan
        flags[1, k] = (now - tool_t[0]) * HOURS_PER_DAY <= neuro_hours
        flags[2, k] = (now - tool_t[1]) * HOURS_PER_DAY <= neuro_hours
        flags[3, k] = (now - domain_t[0]) * HOURS_PER_DAY <= neuro_hours
        flags[4, k] = (now - domain_t[1]) * HOURS_PER_DAY <= neuro_hours
        flags[5, k] = (now - domain_t[2]) * HOURS_PER_DAY <= seizure_hours
        flags[6, k] = not np.isnan(domain_t[_N_DOMAINS])
        for f in range(_N_ICANS_FINDINGS):
            position = alt_position[finding_row[f]] if finding_row[f] >= 0 else -1
            numbers[5 + 2 * _N_DOMAINS + f, k] = position
            flags[7 + f, k] = position >= 0 and alt_attributes[position]
        flags[0, k], new_patient = new_patient, False
        numbers[0, k], numbers[1, k] = event_row[row], patient[row]
        numbers[2, k], numbers[3, k] = tool_incomplete[0], tool_incomplete[1]
        k += 1
    return floats, flags, numbers


def icans_state_pass(*columns: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_icans_state_loop`, compiled: its float, boolean and number outputs (rows named by
    :data:`ICANS_FLOATS`, :data:`ICANS_FLAGS`, :data:`ICANS_NUMBERS`)."""
    return compiled(_icans_state_loop)(*columns)


def _counted_rows_loop(item: np.ndarray, wanted: np.ndarray) -> int:
    """The number of rows whose item code is ``wanted``."""
    n = 0
    for row in range(item.shape[0]):
        n += wanted[item[row]]
    return n


def counted_rows(item: np.ndarray, wanted: np.ndarray, death: int) -> tuple[int, np.ndarray]:
    """The number of rows whose item code is ``wanted`` (one compiled pass, vectorised: ~0.2 ms over a chunk's
    million codes), and the rows among them whose item is ``death``. The deaths are found by NumPy's vectorised
    comparison (~0.25 ms): a compiled loop collecting them, or counting them along, took ~0.8 ms more."""
    deaths = np.flatnonzero(item == death) if wanted[death] else np.zeros(0, dtype=np.int64)
    return compiled(_counted_rows_loop)(item, wanted), deaths


def _toxicity_rows_loop(
    item: np.ndarray,
    wanted: np.ndarray,
    n: int,
    dropped: np.ndarray,
    patient: np.ndarray,
    t: np.ndarray,
    num: np.ndarray,
    valid: np.ndarray,
    offset: int,
) -> tuple[np.ndarray, ...]:
    """The ``n`` rows whose item code is ``wanted`` but for the rows ``dropped`` (ascending), and of each (a
    patient's rows adjacent): its item code, time, number (NaN where null: ``valid`` is the Arrow validity bitmap
    of ``num``, bit ``offset + row``; empty: no null), the row (among these) of its patient's first and its
    patient's number among the patients of the rows; and each patient's code."""
    rows, items = np.empty(n, dtype=np.int64), np.empty(n, dtype=item.dtype)
    times, numbers = np.empty(n), np.empty(n)
    start, run = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    heads = np.empty(n, dtype=patient.dtype)
    nulls = valid.shape[0] > 0
    k = skipped = first = 0
    current = -1
    for row in range(item.shape[0]):
        if not wanted[item[row]]:
            continue
        if skipped < dropped.shape[0] and dropped[skipped] == row:
            skipped += 1
            continue
        if k == 0 or patient[row] != heads[current]:
            current += 1
            heads[current] = patient[row]
            first = k
        bit = offset + row
        rows[k], items[k], times[k] = row, item[row], t[row]
        numbers[k] = np.nan if nulls and not (valid[bit >> 3] >> (bit & 7)) & 1 else num[row]
        start[k], run[k] = first, current
        k += 1
    return rows, items, times, numbers, start, run, heads[: current + 1].copy()


def toxicity_rows_pass(*columns: object) -> tuple[np.ndarray, ...]:
    """:func:`_toxicity_rows_loop`, compiled: one pass over the events' item codes, reading the other columns at
    the rows it keeps (where the rows, then their columns, then their numbers were five passes)."""
    return compiled(_toxicity_rows_loop)(*columns)


def _float_rows_loop(values: np.ndarray, valid: np.ndarray, offset: int, rows: np.ndarray) -> np.ndarray:
    """``values`` at these rows, NaN where the row is null: ``valid`` is the column's Arrow validity bitmap (bit
    ``offset + row``, least significant first; empty: no null)."""
    out = np.empty(rows.shape[0])
    nulls = valid.shape[0] > 0
    for k in range(rows.shape[0]):
        row = rows[k]
        bit = offset + row
        out[k] = np.nan if nulls and not (valid[bit >> 3] >> (bit & 7)) & 1 else values[row]
    return out


def float_rows_pass(values: np.ndarray, valid: np.ndarray, offset: int, rows: np.ndarray) -> np.ndarray:
    """:func:`_float_rows_loop`, compiled."""
    return compiled(_float_rows_loop)(values, valid, offset, rows)


def _taken_loop(source: np.ndarray, index: np.ndarray, finite: bool) -> np.ndarray:
    """``source`` at ``index`` (-1: NaN); ``finite``: ``np.nan_to_num`` of the values (NaN 0, an infinity the
    largest float of its sign)."""
    largest = np.finfo(np.float64).max
    out = np.empty(index.shape[0])
    for k in range(index.shape[0]):
        value = source[index[k]] if index[k] >= 0 else np.nan
        if finite:
            value = 0.0 if np.isnan(value) else largest if value == np.inf else -largest if value == -np.inf else value
        out[k] = value
    return out


def taken(source: np.ndarray, index: np.ndarray, finite: bool) -> np.ndarray:
    """:func:`_taken_loop`, compiled: one pass at the assessments' height (where a NumPy take, a mask and a
    ``where`` were three, ~0.8 ms for a chunk's CRS column)."""
    return compiled(_taken_loop)(read_only(source), index, finite)
