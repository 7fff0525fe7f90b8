"""Compiled passes of the scores: the picked row of every (window, item) and the fields of those rows, each
patient's runs of rows, first time of an item and last kept row, the points of threshold ladders, and screens of
criteria in three-valued truth.

A score window holds a handful of a patient's rows; finding its pick with Polars took sorts, joins and explodes
of every candidate row (some 60 operations for one course). Here each window scans its own patient's rows once,
in a loop compiled by Numba (:func:`tocsin.core.segments.compiled`: imported on first use, cached on disk). The
other passes replace NumPy steps by the dozen, each ~1-2 µs for the one row of a course: a ladder's steps per
input, a criterion's comparisons, "and" and "or" per criterion of the HLH screens, a gather per picked field.
"""

from __future__ import annotations

import numpy as np

from tocsin.core.segments import compiled, read_only

#: How a slot ranks its rows: the latest (``last``), the highest value (``max``) or the lowest (``min``).
DIRECTION = {"last": 0, "max": 1, "min": -1}


def _best_rows_loop(
    item: np.ndarray,
    stamp: np.ndarray,
    num: np.ndarray,
    t: np.ndarray,
    run_code: np.ndarray,
    run_first: np.ndarray,
    run_end: np.ndarray,
    in_time: bool,
    pick_item: np.ndarray,
    n_items: int,
    direction: np.ndarray,
    window_code: np.ndarray,
    window_stamp: np.ndarray,
    span: int,
    open_below: bool,
    open_above: bool,
) -> np.ndarray:
    n_slots = pick_item.shape[0]
    slot_of_item = np.full(n_items, -1)
    for k in range(n_slots):
        slot_of_item[pick_item[k]] = k
    best = np.full((window_stamp.shape[0], n_slots), -1, dtype=np.int64)
    best_key = np.empty(n_slots, dtype=np.float64)

    def first_at_least(first: int, end: int, bound: int) -> int:
        """The first row of ``first:end`` (stamps ascending there) whose stamp is at least ``bound`` (none: end)."""
        while first < end:
            middle = (first + end) // 2
            if stamp[middle] < bound:
                first = middle + 1
            else:
                end = middle
        return first

    for w in range(window_stamp.shape[0]):
        run = np.searchsorted(run_code, window_code[w])
        if run == run_code.shape[0] or run_code[run] != window_code[w]:  # a patient without rows
            continue
        upper, lower = window_stamp[w], window_stamp[w] - span
        first, end = run_first[run], run_end[run]
        if in_time:  # only the rows from the window's start to its end: a window is a few days of a course
            first, end = first_at_least(first, end, lower), first_at_least(first, end, upper + 1)
        for row in range(first, end):
            k = slot_of_item[item[row]]
            value = num[row]
            if k < 0 or np.isnan(value):  # another item, or below quantification (no number)
                continue
            at = stamp[row]
            if at < lower or at > upper or (open_below and at == lower) or (open_above and at == upper):
                continue
            d = direction[k]
            key = t[row] if d == 0 else (value if d > 0 else -value)
            b = best[w, k]
            # Highest key, then the latest time, then the later row: rows come in order, so >= on time.
            if b < 0 or key > best_key[k] or (key == best_key[k] and t[row] >= t[b]):
                best[w, k] = row
                best_key[k] = key
    return best


def best_rows_in_windows(
    item: np.ndarray,
    stamp: np.ndarray,
    num: np.ndarray,
    t: np.ndarray,
    run_code: np.ndarray,
    run_first: np.ndarray,
    run_end: np.ndarray,
    in_time: bool,
    pick_item: np.ndarray,
    n_items: int,
    direction: np.ndarray,
    window_code: np.ndarray,
    window_stamp: np.ndarray,
    span: int,
    closed: str,
) -> np.ndarray:
    """Per window (of the patient ``window_code``, ending at ``window_stamp``) and slot: the row with the highest key
    among its patient's rows (the run ``run_first:run_end`` of its code in ``run_code``, ascending; none when
    absent) whose item is the slot's (``pick_item``; item codes are below ``n_items``), with a number (``num`` not
    NaN) and a ``stamp`` in the window of ``span`` before its end, closed as Polars' ``closed`` says. The key of a
    slot is ``t`` (direction 0), ``num`` (1) or ``-num`` (-1); ties go to the highest ``t``, then the last row. -1
    where the window holds none. ``in_time``: every run's stamps are ascending, so that a window's rows are found
    by a binary search (else every row of the run is looked at). Returns (windows, slots) row numbers."""
    return compiled(_best_rows_loop)(
        # Typed as the compiled loop is (one signature, one cached compilation), copied only when they differ.
        item.astype(np.int64, copy=False),
        stamp.astype(np.int64, copy=False),
        num.astype(np.float64, copy=False),
        t.astype(np.float64, copy=False),
        run_code.astype(np.int64, copy=False),
        run_first.astype(np.int64, copy=False),
        run_end.astype(np.int64, copy=False),
        bool(in_time),
        pick_item.astype(np.int64, copy=False),
        int(n_items),
        direction.astype(np.int64, copy=False),
        window_code.astype(np.int64, copy=False),
        window_stamp.astype(np.int64, copy=False),
        int(span),
        closed in ("right", "none"),
        closed in ("left", "none"),
    )


def _picked_loop(
    rows: np.ndarray, first: np.ndarray, second: np.ndarray, third: np.ndarray, fourth: np.ndarray, n_fields: int
) -> np.ndarray:
    n_windows, n_slots = rows.shape
    picked = np.empty((n_slots, n_fields, n_windows), dtype=np.float64)
    for k in range(n_slots):
        for w in range(n_windows):
            row = rows[w, k]
            for f in range(n_fields):
                if row < 0:
                    picked[k, f, w] = np.nan
                else:  # scalars, not arrays, chosen: the fields may differ in type (read-only or not)
                    picked[k, f, w] = (
                        first[row] if f == 0 else second[row] if f == 1 else third[row] if f == 2 else fourth[row]
                    )
    return picked


#: The most fields :func:`picked_fields` reads at once (a pick reports value, day, lln and uln).
MAX_FIELDS = 4


def picked_fields(rows: np.ndarray, *fields: np.ndarray) -> np.ndarray:
    """The ``fields`` (float64 per row, up to :data:`MAX_FIELDS`) of the picked ``rows`` (windows x slots, -1:
    none), NaN where none was picked: slots x fields x windows, each slot's fields the rows of a matrix as the
    score columns list them."""
    if not 0 < len(fields) <= MAX_FIELDS:
        raise ValueError(f"picked_fields reads 1 to {MAX_FIELDS} fields, not {len(fields)}")
    # Unused arguments repeat the first field: one signature for any number of fields.
    arrays = [field.astype(np.float64, copy=False) for field in fields]
    arrays += [arrays[0]] * (MAX_FIELDS - len(arrays))
    # C order, whatever the caller's selection of slots gave (a copy of windows x slots at most): the layout is
    # part of the compiled signature, and an F-order matrix compiled and loaded the pass a second time.
    return compiled(_picked_loop)(np.ascontiguousarray(rows, dtype=np.int64), *arrays, len(fields))


#: Three-valued truth as ordered codes: "or" is the highest of its terms, "and" the lowest.
KLEENE_NOT_MET, KLEENE_MISSING, KLEENE_MET = 0, 1, 2


def _screens_loop(
    labs: np.ndarray,
    value: np.ndarray,
    of: np.ndarray,
    limit: np.ndarray,
    above: np.ndarray,
    missing: np.ndarray,
    terms: np.ndarray,
    first: np.ndarray,
    core: np.ndarray,
    needed: np.ndarray,
    bit: np.ndarray,
    supporting: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_labs, height = labs.shape
    n_criteria, depth, width = terms.shape
    n_screens = first.shape[0]
    states = np.empty((n_criteria, height), dtype=np.int64)
    status = np.empty((n_screens, height), dtype=np.int64)
    met = np.zeros((n_screens, height), dtype=np.int64)
    not_met = np.zeros((n_screens, height), dtype=np.int64)
    unknown = np.zeros((n_screens, height), dtype=np.int64)
    compared = np.empty(value.shape[0], dtype=np.int64)
    for w in range(height):
        for c in range(value.shape[0]):
            # A row past the labs: n_labs reads 1.0 (a fixed limit), n_labs + 1 NaN (nothing observed).
            v = labs[value[c], w] if value[c] < n_labs else (1.0 if value[c] == n_labs else np.nan)
            base = labs[of[c], w] if of[c] < n_labs else (1.0 if of[c] == n_labs else np.nan)
            bound = limit[c] * base
            if np.isnan(v) or np.isnan(bound):
                compared[c] = missing[c]
            elif (v > bound) if above[c] else (v < bound):
                compared[c] = KLEENE_MET
            else:
                compared[c] = KLEENE_NOT_MET
        for k in range(n_criteria):
            any_of = KLEENE_NOT_MET
            for d in range(depth):
                all_of = KLEENE_MET
                for f in range(width):
                    all_of = min(all_of, compared[terms[k, d, f]])
                any_of = max(any_of, all_of)
            states[k, w] = any_of
        for s in range(n_screens):
            end = first[s + 1] if s + 1 < n_screens else n_criteria
            count, reachable = 0, 0
            for k in range(first[s], end):
                state = states[k, w]
                if state == KLEENE_MET:
                    met[s, w] |= bit[k]
                elif state == KLEENE_NOT_MET:
                    not_met[s, w] |= bit[k]
                else:
                    unknown[s, w] |= bit[k]
                if supporting[k]:
                    count += state == KLEENE_MET
                    reachable += state != KLEENE_NOT_MET
            key = states[core[s], w]
            if key == KLEENE_MET and count >= needed[s]:
                status[s, w] = 0
            elif key == KLEENE_NOT_MET or reachable < needed[s]:
                status[s, w] = 1
            else:
                status[s, w] = 2
    return states, status, met, not_met, unknown


def kleene_screens(
    labs: np.ndarray,
    value: np.ndarray,
    of: np.ndarray,
    limit: np.ndarray,
    above: np.ndarray,
    missing: np.ndarray,
    terms: np.ndarray,
    first: np.ndarray,
    core: np.ndarray,
    needed: np.ndarray,
    bit: np.ndarray,
    supporting: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Screens of criteria in three-valued truth (:data:`KLEENE_MET` ...) at every window (a column of ``labs``,
    labs x windows), in one pass.

    Comparison c holds when ``labs[value[c]]`` is above (``above[c]``) or below ``limit[c] * labs[of[c]]`` (a row
    past the labs: the first reads 1.0, the next NaN), and is ``missing[c]`` where either side is NaN. Criterion k
    is the highest, over ``terms[k]`` (criteria x alternatives x factors of comparison numbers), of the lowest of
    its factors. Screen s holds the criteria ``first[s]`` to the next screen's first: ``status`` 0 (possible) when
    its criterion ``core[s]`` is met and at least ``needed[s]`` of its ``supporting`` criteria are, 1 (not met) when
    the core is not met or fewer than ``needed[s]`` can be, else 2 (incomplete). Returns the criteria's states
    (criteria x windows), the status and the bits (``bit[k]``) of the criteria met, not met and missing (screens x
    windows)."""
    return compiled(_screens_loop)(
        np.ascontiguousarray(labs, dtype=np.float64),
        value.astype(np.int64, copy=False),
        of.astype(np.int64, copy=False),
        limit.astype(np.float64, copy=False),
        above.astype(np.bool_, copy=False),
        missing.astype(np.int64, copy=False),
        terms.astype(np.int64, copy=False),
        first.astype(np.int64, copy=False),
        core.astype(np.int64, copy=False),
        needed.astype(np.int64, copy=False),
        bit.astype(np.int64, copy=False),
        supporting.astype(np.bool_, copy=False),
    )


def _first_times_loop(
    item: np.ndarray,
    t: np.ndarray,
    run_code: np.ndarray,
    run_first: np.ndarray,
    run_end: np.ndarray,
    code: int,
    patient_code: np.ndarray,
) -> np.ndarray:
    first = np.full(patient_code.shape[0], np.nan)
    for p in range(patient_code.shape[0]):
        run = np.searchsorted(run_code, patient_code[p])
        if run == run_code.shape[0] or run_code[run] != patient_code[p]:
            continue
        least = np.inf
        for row in range(run_first[run], run_end[run]):
            if item[row] == code and (np.isnan(t[row]) or t[row] < least):  # NaN stays, as in np.minimum
                least = t[row]
        if np.isfinite(least):
            first[p] = least
    return first


def first_times(
    item: np.ndarray,
    t: np.ndarray,
    run_code: np.ndarray,
    run_first: np.ndarray,
    run_end: np.ndarray,
    code: int,
    patient_code: np.ndarray,
) -> np.ndarray:
    """Per patient code: the least ``t`` of its rows (runs as for :func:`best_rows_in_windows`) of item ``code``;
    NaN when it has none, or when that least time is not finite (NaN among them, or infinite)."""
    return compiled(_first_times_loop)(
        item.astype(np.int64, copy=False),
        t.astype(np.float64, copy=False),
        run_code.astype(np.int64, copy=False),
        run_first.astype(np.int64, copy=False),
        run_end.astype(np.int64, copy=False),
        int(code),
        patient_code.astype(np.int64, copy=False),
    )


def _runs_loop(patient: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    n = patient.shape[0]
    first = np.empty(n, dtype=np.int64)
    runs = 0
    for row in range(n):
        if row == 0 or patient[row] != patient[row - 1]:
            first[runs] = row
            runs += 1
    first = first[:runs]
    end = np.empty(runs, dtype=np.int64)
    code = np.empty(runs, dtype=np.int64)
    for run in range(runs):
        end[run] = first[run + 1] if run + 1 < runs else n
        code[run] = patient[first[run]]
    order = np.argsort(code)
    grouped = True
    for k in range(1, runs):
        if code[order[k]] == code[order[k - 1]]:
            grouped = False
    return code[order], first[order], end[order], grouped


def patient_runs(patient: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The runs of equal ``patient`` codes (int64): their codes ascending, and each one's first and end row; and
    whether each patient is one run (rows grouped by patient). One pass where NumPy took a dozen steps."""
    return compiled(_runs_loop)(patient.astype(np.int64, copy=False))


def _ascending_in_runs_loop(patient: np.ndarray, stamp: np.ndarray) -> bool:
    for row in range(1, patient.shape[0]):
        if stamp[row] < stamp[row - 1] and patient[row] == patient[row - 1]:
            return False
    return True


def ascending_in_runs(patient: np.ndarray, stamp: np.ndarray) -> bool:
    """Whether ``stamp`` is ascending (not decreasing) within each run of equal ``patient`` codes: one pass, ended at
    the first row out of order."""
    return bool(compiled(_ascending_in_runs_loop)(patient, stamp))


def _last_kept_loop(patient: np.ndarray, item: np.ndarray, kept: np.ndarray) -> np.ndarray:
    last = np.empty(patient.shape[0], dtype=np.int64)
    found, latest = 0, -1
    for row in range(patient.shape[0]):
        if kept[item[row]]:
            if latest >= 0 and patient[row] != patient[latest]:
                last[found] = latest
                found += 1
            latest = row
    if latest >= 0:
        last[found] = latest
        found += 1
    return last[:found]


def last_kept_rows(patient: np.ndarray, item: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Row numbers of the last row whose item code is ``kept`` (bool, by code) in each run of equal ``patient``
    codes (runs with no such row give none), in row order: one pass instead of filtering every row and then
    comparing neighbours (and reading the item's table in the pass, not a mask of every row gathered before it)."""
    return compiled(_last_kept_loop)(read_only(patient), read_only(item), kept)


#: The comparison of a ladder step, as the compiled pass reads it.
COMPARISON = {"<": 0, "<=": 1, ">": 2, ">=": 3}


def _ladder_points_loop(
    values: np.ndarray,
    step_first: np.ndarray,
    op: np.ndarray,
    threshold: np.ndarray,
    points: np.ndarray,
    otherwise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_inputs, height = values.shape
    scored = np.empty((n_inputs, height), dtype=np.float64)
    least = np.zeros(height, dtype=np.float64)
    most = np.zeros(height, dtype=np.float64)
    for i in range(n_inputs):
        low = high = otherwise[i]
        for s in range(step_first[i], step_first[i + 1]):
            low, high = min(low, points[s]), max(high, points[s])
        for w in range(height):
            value = values[i, w]
            if np.isnan(value):  # missing: no points, and the input may still give any of its ladder's
                scored[i, w] = np.nan
                least[w] += low
                most[w] += high
                continue
            given = otherwise[i]
            for s in range(step_first[i], step_first[i + 1]):
                c, t = op[s], threshold[s]
                if (
                    (c == 0 and value < t)
                    or (c == 1 and value <= t)
                    or (c == 2 and value > t)
                    or (c == 3 and value >= t)
                ):
                    given = points[s]
                    break
            scored[i, w] = given
            least[w] += given
            most[w] += given
    return scored, least, most


def ladder_points(
    values: np.ndarray,
    step_first: np.ndarray,
    op: np.ndarray,
    threshold: np.ndarray,
    points: np.ndarray,
    otherwise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per input (a row of ``values``, inputs x rows) and row: the points of the first step of the input's ladder
    (steps ``step_first[i]:step_first[i + 1]``: ``value op threshold`` gives ``points``, ``op`` a
    :data:`COMPARISON`) that holds, ``otherwise[i]`` when none does, NaN where the value is NaN (missing). Returns
    those points and, per row, the least and most total of all inputs (a missing input adds the lowest or the
    highest points its ladder can give)."""
    return compiled(_ladder_points_loop)(
        np.ascontiguousarray(values, dtype=np.float64),
        step_first.astype(np.int64, copy=False),
        op.astype(np.int64, copy=False),
        threshold.astype(np.float64, copy=False),
        points.astype(np.float64, copy=False),
        otherwise.astype(np.float64, copy=False),
    )
