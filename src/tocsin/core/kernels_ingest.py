"""Compiled passes of ingest: a number row's conversion to its canonical unit, and the plausibility check.

Every row of a batch goes through these. Written as NumPy expressions, each step (a gather of the row's
conversion, a ``where`` for per-kg units, the products, a gather of each bound) made a new column of the batch's
height; on this VM fresh memory is slow to fault in, and in a line profile those lines were a sixth of ingest
(a 500-patient chunk's ingest went from ~320 to ~300 ms with these passes). Here each pass
reads the per-(item, unit) and per-item tables through the row's codes and writes one column
(:func:`tocsin.core.segments.compiled`: Numba imported on first use, cached on disk).
"""

from __future__ import annotations

import numpy as np

from tocsin.core.segments import compiled


def _marked_loop(positions: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    marked = np.zeros(size, dtype=np.bool_)
    for row in range(positions.shape[0]):
        if where[row]:
            marked[positions[row]] = True
    return marked


def marked(positions: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    """A mask of ``size`` entries, true at the ``positions`` of the rows ``where`` holds."""
    return compiled(_marked_loop)(positions, where, size)


def _converted_loop(
    raw: np.ndarray,
    pair: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    per_kg: np.ndarray,
    patient: np.ndarray,
    weight_kg: np.ndarray,
) -> np.ndarray:
    out = np.empty(raw.shape[0], dtype=np.float64)
    for row in range(raw.shape[0]):
        p = pair[row]
        factor = weight_kg[patient[row]] if per_kg[p] else 1.0
        out[row] = (raw[row] * scale[p] + offset[p]) * factor
    return out


def converted(
    raw: np.ndarray,
    pair: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    per_kg: np.ndarray,
    patient: np.ndarray,
    weight_kg: np.ndarray,
) -> np.ndarray:
    """Per row, ``(raw * scale + offset) * factor`` with the conversion of its (item, unit) ``pair``; the factor
    is the patient's weight (``weight_kg`` by patient position, NaN: none) for a per-kg unit, else 1. The same
    operations in the same order as NumPy's element-wise expression, so the same numbers."""
    return compiled(_converted_loop)(raw, pair, scale, offset, per_kg, patient, weight_kg)


def _outside_loop(values: np.ndarray, code: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape[0], dtype=np.bool_)
    for row in range(values.shape[0]):
        value = values[row]
        out[row] = value < low[code[row]] or value > high[code[row]]  # NaN: neither
    return out


def outside(values: np.ndarray, code: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per row, whether the value lies outside ``[low, high]`` of its item (``code``); NaN is not outside."""
    return compiled(_outside_loop)(values, code, low, high)
