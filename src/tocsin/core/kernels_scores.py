"""Compiled passes of the scores: the picked row of every (window, item), and each patient's last kept row.

A score window holds a handful of a patient's rows; finding its pick with Polars took sorts, joins and explodes
of every candidate row (some 60 operations for one course). Here each window scans its own patient's rows once,
in a loop compiled by Numba (:func:`tocsin.core.segments.compiled`: imported on first use, cached on disk).
"""

from __future__ import annotations

import numpy as np

from tocsin.core.segments import compiled

#: How a slot ranks its rows: the latest (``last``), the highest value (``max``) or the lowest (``min``).
DIRECTION = {"last": 0, "max": 1, "min": -1}


def _best_rows_loop(
    item: np.ndarray,
    stamp: np.ndarray,
    num: np.ndarray,
    t: np.ndarray,
    slot_of_item: np.ndarray,
    direction: np.ndarray,
    window_first: np.ndarray,
    window_end: np.ndarray,
    window_stamp: np.ndarray,
    span: int,
    n_slots: int,
    open_below: bool,
    open_above: bool,
) -> np.ndarray:
    best = np.full((window_stamp.shape[0], n_slots), -1, dtype=np.int64)
    best_key = np.empty(n_slots, dtype=np.float64)
    for w in range(window_stamp.shape[0]):
        upper, lower = window_stamp[w], window_stamp[w] - span
        for row in range(window_first[w], window_end[w]):
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
    slot_of_item: np.ndarray,
    direction: np.ndarray,
    window_first: np.ndarray,
    window_end: np.ndarray,
    window_stamp: np.ndarray,
    span: int,
    closed: str,
) -> np.ndarray:
    """Per window (rows ``window_first:window_end``, ending at ``window_stamp``) and slot: the row with the highest
    key among the rows whose item has that slot (``slot_of_item[item]``, -1: none), a number (``num`` not NaN) and
    a ``stamp`` in the window of ``span`` before its end, closed as Polars' ``closed`` says. The key of a slot is
    ``t`` (direction 0), ``num`` (1) or ``-num`` (-1); ties go to the highest ``t``, then the last row. -1 where the
    window holds none. Returns (windows, slots) row numbers."""
    return compiled(_best_rows_loop)(
        # Typed as the compiled loop is (one signature, one cached compilation), copied only when they differ.
        item.astype(np.int64, copy=False),
        stamp.astype(np.int64, copy=False),
        num.astype(np.float64, copy=False),
        t.astype(np.float64, copy=False),
        slot_of_item.astype(np.int64, copy=False),
        direction.astype(np.int64, copy=False),
        window_first.astype(np.int64, copy=False),
        window_end.astype(np.int64, copy=False),
        window_stamp.astype(np.int64, copy=False),
        int(span),
        int(direction.size),
        closed in ("right", "none"),
        closed in ("left", "none"),
    )


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


def last_kept_rows(patient: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row numbers of the last row where ``keep`` holds in each run of equal ``patient`` codes (runs with no such
    row give none), in row order: one pass instead of filtering every row and then comparing neighbours."""
    return compiled(_last_kept_loop)(patient, keep)
