"""Compiled pass of the score windows: the picked row of every (window, item), one scan per window.

A score window holds a handful of a patient's rows; finding its pick with Polars took two sorts of every
candidate row and a rolling maximum over the rows and the windows together (about 45 ms per score and
1,000-patient chunk, and some 20 operations for one course). Here each window scans its own patient's rows
once, in a loop compiled by Numba (imported on first use, compiled once and cached next to this module).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np


def _best_rows_loop(
    slot: np.ndarray,
    stamp: np.ndarray,
    key: np.ndarray,
    t: np.ndarray,
    segment_start: np.ndarray,
    segment_end: np.ndarray,
    window_segment: np.ndarray,
    window_stamp: np.ndarray,
    span: int,
    n_slots: int,
    open_below: bool,
    open_above: bool,
) -> np.ndarray:
    best = np.full((window_stamp.shape[0], n_slots), -1, dtype=np.int64)
    for w in range(window_stamp.shape[0]):
        segment = window_segment[w]
        if segment < 0:
            continue
        upper, lower = window_stamp[w], window_stamp[w] - span
        for row in range(segment_start[segment], segment_end[segment]):
            at = stamp[row]
            if at < lower or at > upper or (open_below and at == lower) or (open_above and at == upper):
                continue
            k = slot[row]
            b = best[w, k]
            # Highest key, then the latest time, then the later row: rows come in order, so >= on time.
            if b < 0 or key[row] > key[b] or (key[row] == key[b] and t[row] >= t[b]):
                best[w, k] = row
    return best


@cache
def _best_rows_kernel() -> Callable[..., np.ndarray]:
    import numba

    return numba.njit(cache=True, nogil=True)(_best_rows_loop)


def best_rows_in_windows(
    patient: np.ndarray,
    slot: np.ndarray,
    stamp: np.ndarray,
    key: np.ndarray,
    t: np.ndarray,
    window_patient: np.ndarray,
    window_stamp: np.ndarray,
    span: int,
    n_slots: int,
    closed: str,
) -> np.ndarray:
    """Per window (``window_patient``, ending at ``window_stamp``) and slot: the row with the highest ``key``
    (ties: the highest ``t``, then the last row) among the rows of that patient and slot whose ``stamp`` lies in
    the window of ``span`` before its end, closed as Polars' ``closed`` says; -1 where the window holds none.

    Rows are read patient by patient: canonical events hold each patient's rows together, other rows are put in
    that order first (stably, so "the last row" keeps its meaning). Returns (windows, slots) row numbers.
    """
    runs = _patient_runs(patient)
    if runs is None:
        regroup = np.argsort(patient, kind="stable")
        best = best_rows_in_windows(
            patient[regroup], slot[regroup], stamp[regroup], key[regroup], t[regroup],
            window_patient, window_stamp, span, n_slots, closed,
        )  # fmt: skip
        return np.where(best >= 0, regroup[best.clip(min=0)], -1)
    codes, starts, ends = runs
    order = np.argsort(codes)
    position = np.searchsorted(codes, window_patient, sorter=order).clip(max=max(codes.size - 1, 0))
    if codes.size:
        window_segment = np.where(codes[order[position]] == window_patient, order[position], -1)
    else:
        window_segment = np.full(window_patient.size, -1)
    return _best_rows_kernel()(
        # Typed as the compiled loop is (one signature, one cached compilation), copied only when they differ.
        slot.astype(np.int64, copy=False),
        stamp.astype(np.int64, copy=False),
        key.astype(np.float64, copy=False),
        t.astype(np.float64, copy=False),
        starts,
        ends,
        window_segment.astype(np.int64, copy=False),
        window_stamp.astype(np.int64, copy=False),
        int(span),
        int(n_slots),
        closed in ("right", "none"),
        closed in ("left", "none"),
    )


def _patient_runs(patient: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(code, first row, end row) of each run of equal patients; None when a patient has two runs."""
    if patient.size == 0:
        return np.empty(0, patient.dtype), np.empty(0, np.int64), np.empty(0, np.int64)
    change = np.flatnonzero(patient[1:] != patient[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ends = np.concatenate((change, [patient.size])).astype(np.int64)
    codes = patient[starts]
    if np.unique(codes).size < codes.size:
        return None
    return codes, starts, ends


def _last_kept_loop(patient: np.ndarray, keep: np.ndarray) -> np.ndarray:
    last = np.empty(patient.shape[0], dtype=np.int64)
    found, latest = 0, -1
    for row in range(patient.shape[0]):
        if keep[row]:
            if latest >= 0 and patient[row] != patient[latest]:
                last[found] = latest
                found += 1
            latest = row
    if latest >= 0:
        last[found] = latest
        found += 1
    return last[:found]


@cache
def _last_kept_kernel() -> Callable[..., np.ndarray]:
    import numba

    return numba.njit(cache=True, nogil=True)(_last_kept_loop)


def last_kept_rows(patient: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row numbers of the last row where ``keep`` holds in each run of equal ``patient`` codes (runs with no such
    row give none), in row order: one pass instead of filtering every row and then comparing neighbours."""
    return _last_kept_kernel()(patient, keep)
