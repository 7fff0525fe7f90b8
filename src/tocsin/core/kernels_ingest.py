"""Compiled passes of ingest: each row's rank among the distinct labels or (item, unit) pairs, its day since
infusion, a number row's conversion to its canonical unit, and the plausibility check.

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
    fraction: np.ndarray,
    patient: np.ndarray,
    weight_kg: np.ndarray,
) -> np.ndarray:
    out = np.empty(raw.shape[0], dtype=np.float64)
    for row in range(raw.shape[0]):
        p, value = pair[row], raw[row]
        if fraction[p] and value <= 1.0:
            value = value * 100
        else:
            factor = weight_kg[patient[row]] if per_kg[p] else 1.0
            value = (value * scale[p] + offset[p]) * factor
        # Rounded as in :func:`rounded` (written out: a loop compiled by :func:`compiled` can call only compiled
        # functions, and these are compiled on first use).
        scaled = np.rint(value * ROUNDING_SCALE) / ROUNDING_SCALE
        out[row] = scaled if np.isfinite(scaled) else value
    return out


def converted(
    raw: np.ndarray,
    pair: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    per_kg: np.ndarray,
    fraction: np.ndarray,
    patient: np.ndarray,
    weight_kg: np.ndarray,
) -> np.ndarray:
    """Per row, ``(raw * scale + offset) * factor`` with the conversion of its (item, unit) ``pair``; the factor
    is the patient's weight (``weight_kg`` by patient position, NaN: none) for a per-kg unit, else 1. A value up
    to 1 of a ``fraction`` pair (a bare number of an item such as FiO2) is a fraction: times 100. The same
    operations in the same order as NumPy's element-wise expressions, so the same numbers; then rounded
    (:func:`rounded`)."""
    return compiled(_converted_loop)(raw, pair, scale, offset, per_kg, fraction, patient, weight_kg)


#: Canonical values keep 6 decimals (10 ** 6 is the multiplier of :func:`rounded`), so that a threshold stated in
#: one unit is met exactly by its equivalent in another (100.4 °F is 38.0 °C, not 37.99999999).
ROUNDING_SCALE = 1e6


def _rounded_loop(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for row in range(values.shape[0]):
        value = values[row]
        scaled = np.rint(value * ROUNDING_SCALE) / ROUNDING_SCALE
        out[row] = scaled if np.isfinite(scaled) else value
    return out


def rounded(values: np.ndarray) -> np.ndarray:
    """Each value rounded to 6 decimals, half to even, exactly as Polars' ``Series.round(6)`` (the rule every
    earlier release used): the value times 10^6, rounded to an integer (ties to even: ``rint`` in the default
    rounding mode), divided by 10^6; a value whose product is not finite (beyond ~1.8e302, or NaN) is kept as it
    is. One pass, where Polars' round cost a Series built, rounded and read back (~0.2 ms of a course's ingest in
    cold caches). ``tests/test_kernels_ingest.py`` compares the two on millions of values."""
    return compiled(_rounded_loop)(np.ascontiguousarray(values, dtype=np.float64))


def _outside_loop(values: np.ndarray, code: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape[0], dtype=np.bool_)
    for row in range(values.shape[0]):
        value = values[row]
        out[row] = value < low[code[row]] or value > high[code[row]]  # NaN: neither
    return out


def outside(values: np.ndarray, code: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per row, whether the value lies outside ``[low, high]`` of its item (``code``); NaN is not outside."""
    return compiled(_outside_loop)(values, code, low, high)


def _ranked_loop(
    first: np.ndarray, second: np.ndarray, width: int, span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first_row = np.full(span, -1, dtype=np.int64)  # per key: its first row (-1: absent), then its rank
    for row in range(first.shape[0]):
        key = first[row] * width + (second[row] if second.shape[0] else 0)
        if first_row[key] < 0:
            first_row[key] = row
    count = 0
    for key in range(span):
        if first_row[key] >= 0:
            count += 1
    distinct = np.empty(count, dtype=np.int64)
    holder = np.empty(count, dtype=np.int64)
    rank = 0
    for key in range(span):
        if first_row[key] >= 0:
            distinct[rank], holder[rank] = key, first_row[key]
            first_row[key] = rank
            rank += 1
    position = np.empty(first.shape[0], dtype=np.int64)
    for row in range(first.shape[0]):
        position[row] = first_row[first[row] * width + (second[row] if second.shape[0] else 0)]
    return distinct, position, holder


def ranked(
    first: np.ndarray, second: np.ndarray, width: int, span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct keys ``first * width + second`` (``second`` empty: ``first`` alone) of the rows, ascending,
    each row's position (rank) among them and each key's first row, by counting over ``range(span)`` (every key
    must be below ``span``). In one pass over the rows and the table: the keys, their ranks and a row number per
    row are never whole columns of their own (each such column of a batch's height cost ~10 ms in fresh pages)."""
    return compiled(_ranked_loop)(first, second, width, span)


def _days_loop(day: np.ndarray, patient: np.ndarray, infusion_day: np.ndarray, from_time: np.ndarray) -> np.ndarray:
    out = np.empty(day.shape[0], dtype=np.float64)
    for row in range(day.shape[0]):
        d = day[row]
        if d != d:  # no day: the clock time's, if any
            out[row] = from_time[row] if from_time.shape[0] else np.nan
        else:
            out[row] = d - infusion_day[patient[row]]
    return out


def days_since_infusion(
    day: np.ndarray, patient: np.ndarray, infusion_day: np.ndarray, from_time: np.ndarray
) -> np.ndarray:
    """Per row, ``day`` less its patient's infusion day (``infusion_day`` by patient position, 0 where unknown),
    or where the row has no day (NaN), ``from_time`` (empty: no clock times, NaN)."""
    return compiled(_days_loop)(day, patient, infusion_day, from_time)


def _short_text_codes_loop(views: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    # A view of at most 12 bytes holds its text inline (length, then the bytes, zero-padded, as Arrow's format and
    # Polars' views are): two equal views are two equal texts. Open addressing over the views, resized at half full.
    # A longer text stops the pass: no codes and one first row of -1.
    codes = np.empty(n, np.uint32)
    first = np.empty(n, np.int64)
    size = 64
    slots = np.full(size, -1, np.int64)
    low_of, high_of = np.empty(n, np.uint64), np.empty(n, np.uint64)
    count = 0
    previous_low, previous_high, previous = np.uint64(0), np.uint64(0), -1
    for row in range(n):
        low, high = views[2 * row], views[2 * row + 1]
        if (low & np.uint64(0xFFFFFFFF)) > 12:
            return np.full(0, -1, np.uint32), np.full(1, -1, np.int64)
        if previous >= 0 and low == previous_low and high == previous_high:  # runs (a patient's rows) skip the table
            codes[row] = previous
            continue
        mixed = (low * np.uint64(0x9E3779B97F4A7C15)) ^ (high * np.uint64(0xC2B2AE3D27D4EB4F))
        slot = np.int64(mixed >> np.uint64(33)) & (size - 1)
        while slots[slot] >= 0 and (low_of[slots[slot]] != low or high_of[slots[slot]] != high):
            slot = (slot + 1) & (size - 1)
        code = slots[slot]
        if code < 0:
            code = count
            slots[slot], low_of[code], high_of[code], first[code] = code, low, high, row
            count += 1
            if 2 * count > size:  # grow: every code again into a table twice the size
                size *= 2
                slots = np.full(size, -1, np.int64)
                for known in range(count):
                    mixed = (low_of[known] * np.uint64(0x9E3779B97F4A7C15)) ^ (
                        high_of[known] * np.uint64(0xC2B2AE3D27D4EB4F)
                    )
                    slot = np.int64(mixed >> np.uint64(33)) & (size - 1)
                    while slots[slot] >= 0:
                        slot = (slot + 1) & (size - 1)
                    slots[slot] = known
        codes[row] = code
        previous_low, previous_high, previous = low, high, code
    return codes, first[:count]


def short_text_codes(views: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's code among the distinct texts of an Arrow string-view column (``views``: its views buffer as
    ``uint64``, two per row), in order of first appearance, and each code's first row; None when some text is longer
    than 12 bytes (not inline in its view: such columns are left to Polars' cast)."""
    codes, first = compiled(_short_text_codes_loop)(views, views.shape[0] // 2)
    return None if first.shape[0] == 1 and first[0] == -1 else (codes, first)
