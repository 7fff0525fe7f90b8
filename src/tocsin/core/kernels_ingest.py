"""Compiled passes of ingest: each row's rank among the distinct labels or (item, unit) pairs, its day since
infusion, a number row's conversion to its canonical unit with its plausibility checks.

Every row of a batch goes through these. Written as NumPy expressions, each step (a gather of the row's
conversion, a ``where`` for per-kg units, the products, a gather of each bound) made a new column of the batch's
height; on this VM fresh memory is slow to fault in, and in a line profile those lines were a sixth of ingest
(a 500-patient chunk's ingest went from ~320 to ~300 ms with these passes). Here each pass
reads the per-(item, unit) and per-item tables through the row's codes and writes one column
(:func:`tocsin.core.segments.compiled`: Numba imported on first use, cached on disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tocsin.core.segments import compiled, read_only


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
    code: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    whole: np.ndarray,
    convert: bool,
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(raw.shape[0], dtype=np.float64)
    for row in range(raw.shape[0]):
        value = raw[row]
        if convert:
            p = pair[row]
            if fraction[p] and value <= 1.0:
                value = value * 100
            else:
                factor = weight_kg[patient[row]] if per_kg[p] else 1.0
                value = (value * scale[p] + offset[p]) * factor
            # Rounded as in :func:`rounded` (written out: a loop compiled by :func:`compiled` can call only compiled
            # functions, and these are compiled on first use).
            scaled = np.rint(value * ROUNDING_SCALE) / ROUNDING_SCALE
            value = scaled if np.isfinite(scaled) else value
        out[row] = value
    # The checks in a loop of their own, without branches but the last: in the loop above they cost it its
    # vectorisation (~1 ms more a batch chunk).
    failure = np.zeros(raw.shape[0], dtype=np.int8)
    for row in range(raw.shape[0]):
        value, c = out[row], code[row]
        out_of_range = (value < low[c]) | (value > high[c])  # NaN: neither
        fractional = whole[c] & (value != np.rint(value)) & (value == value)  # (an infinity is whole: rint keeps it)
        failure[row] = OUTSIDE_RANGE if out_of_range else (NOT_WHOLE if fractional else 0)
    return out, failure


#: :func:`converted`'s failure codes of a value: outside its item's plausible range (checked first), or not a whole
#: number where its item takes only whole numbers (a score).
OUTSIDE_RANGE, NOT_WHOLE = 1, 2


def converted(
    raw: np.ndarray,
    pair: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    per_kg: np.ndarray,
    fraction: np.ndarray,
    patient: np.ndarray,
    weight_kg: np.ndarray,
    code: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    whole: np.ndarray,
    convert: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``(raw * scale + offset) * factor`` with the conversion of its (item, unit) ``pair``; the factor
    is the patient's weight (``weight_kg`` by patient position, NaN: none) for a per-kg unit, else 1. A value up
    to 1 of a ``fraction`` pair (a bare number of an item such as FiO2) is a fraction: times 100. The same
    operations in the same order as NumPy's element-wise expressions, so the same numbers; then rounded
    (:func:`rounded`). With ``convert`` False the values are ``raw`` as they are (already converted).

    And per row, the value's failure code (0: none): :data:`OUTSIDE_RANGE` where it lies outside ``[low, high]`` of
    its item (``code``; NaN is never outside), else :data:`NOT_WHOLE` where the item is ``whole`` and the value a
    finite non-integer. In the same pass: as their own passes, the range check and the whole-number check (its
    rows, their values, their rounding) were ~2.5 ms of a batch chunk's ingest."""
    return compiled(_converted_loop)(
        raw, pair, scale, offset, per_kg, fraction, patient, weight_kg, code, low, high, whole, convert
    )


def value_failures(
    values: np.ndarray, code: np.ndarray, low: np.ndarray, high: np.ndarray, whole: np.ndarray
) -> np.ndarray:
    """:func:`converted`'s failure codes of values already converted (a count derived from a % of another)."""
    none, no_rows = np.zeros(0), np.zeros(0, dtype=np.int64)
    flags = np.zeros(0, dtype=np.bool_)
    return converted(values, no_rows, none, none, flags, flags, no_rows, none, code, low, high, whole, convert=False)[1]


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


def _grouped_in_order_loop(
    patient: np.ndarray, t: np.ndarray, file: np.ndarray, line: np.ndarray, patients: int
) -> bool:
    seen = np.zeros(patients, dtype=np.bool_)
    for row in range(patient.shape[0]):
        p = patient[row]
        if row == 0 or p != patient[row - 1]:  # a patient's first row: its only run, or not grouped
            if seen[p]:
                return False
            seen[p] = True
            continue
        now, before = t[row], t[row - 1]
        if now > before or now != now or before != before:  # (an unknown order is not a disorder)
            continue
        if now == before and file[row] == file[row - 1] and line[row] > line[row - 1]:
            continue
        return False
    return True


def grouped_in_order(patient: np.ndarray, t: np.ndarray, file: np.ndarray, line: np.ndarray, patients: int) -> bool:
    """Whether the rows are in canonical order: each patient's rows together (``patient``: positions below
    ``patients``), in time order, rows at the same time in line order of one file; a row without a time (NaN) is in
    order with its neighbours. One pass that stops at the first row out of order, where NumPy's comparisons of every
    row with the one before were some ten passes (~3 ms of a batch chunk's ingest)."""
    columns = (read_only(column) for column in (patient, t, file, line))
    return compiled(_grouped_in_order_loop)(*columns, patients)


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


def _short_text_codes_loop(
    views: np.ndarray,
    codes: np.ndarray,
    row0: int,
    row: int,
    slots: np.ndarray,
    low_of: np.ndarray,
    high_of: np.ndarray,
    first: np.ndarray,
    count: int,
) -> tuple[int, int]:
    # A view of at most 12 bytes holds its text inline (length, then the bytes, zero-padded, as Arrow's format and
    # Polars' views are): two equal views are two equal texts. Open addressing over the views, from ``row`` on, until
    # the table is half full (it is grown outside: arrays replaced inside the loop cost it half its speed); returns
    # the count of codes and the next row, a count of -1 at a longer text.
    size = slots.shape[0]
    previous_low, previous_high, previous = np.uint64(0), np.uint64(0), -1
    while row < codes.shape[0]:
        low, high = views[2 * row], views[2 * row + 1]
        if (low & np.uint64(0xFFFFFFFF)) > 12:
            return -1, row
        if previous >= 0 and low == previous_low and high == previous_high:  # runs (a patient's rows) skip the table
            codes[row] = previous
            row += 1
            continue
        mixed = (low * np.uint64(0x9E3779B97F4A7C15)) ^ (high * np.uint64(0xC2B2AE3D27D4EB4F))
        slot = np.int64(mixed >> np.uint64(33)) & (size - 1)
        while slots[slot] >= 0 and (low_of[slots[slot]] != low or high_of[slots[slot]] != high):
            slot = (slot + 1) & (size - 1)
        code = slots[slot]
        new = code < 0
        if new:
            code = count
            slots[slot], low_of[code], high_of[code], first[code] = code, low, high, row0 + row
            count += 1
        codes[row] = code
        row += 1
        if new and 2 * count > size:
            return count, row
        previous_low, previous_high, previous = low, high, code
    return count, row


def _rehashed_loop(low_of: np.ndarray, high_of: np.ndarray, count: int, size: int) -> np.ndarray:
    slots = np.full(size, -1, np.int64)
    for code in range(count):  # (the hash of _short_text_codes_loop)
        mixed = (low_of[code] * np.uint64(0x9E3779B97F4A7C15)) ^ (high_of[code] * np.uint64(0xC2B2AE3D27D4EB4F))
        slot = np.int64(mixed >> np.uint64(33)) & (size - 1)
        while slots[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        slots[slot] = code
    return slots


def short_text_codes(chunks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's code among the distinct texts of an Arrow string-view column, in order of first appearance, and
    each code's first row; None when some text is longer than 12 bytes (not inline in its view: such columns are
    left to Polars' cast). ``chunks``: the views buffer of each of the column's chunks as ``uint64``, two per row
    (a read column comes in chunks: copied into one, each string column cost a batch chunk ~4 ms)."""
    loop, rehashed = compiled(_short_text_codes_loop), compiled(_rehashed_loop)
    codes = np.empty(sum(views.shape[0] for views in chunks) // 2, np.uint32)
    size = 4_096  # (room for a batch chunk's patients without growing: each growth rehashes every code so far)
    slots, low_of, high_of = np.full(size, -1, np.int64), np.empty(size, np.uint64), np.empty(size, np.uint64)
    first, count, start = np.empty(size, np.int64), 0, 0
    for views in chunks:
        end, row = start + views.shape[0] // 2, 0
        while row < end - start:
            count, row = loop(views, codes[start:end], start, row, slots, low_of, high_of, first, count)
            if count < 0:
                return None
            if 2 * count > size:  # grown: every code again into a table twice the size
                size *= 2
                low_of, high_of, first = (np.resize(a, size) for a in (low_of, high_of, first))
                slots = rehashed(low_of, high_of, count, size)
        start = end
    return codes, first[:count]


# 10^k for the digits after a decimal point (exact in float64 up to 10^22; a fast-path text has at most 7).
_POWERS_OF_TEN = np.array([10.0**k for k in range(8)])
# First bytes of a text that Polars may read as a number: a digit, a sign, a point, or the i/n of inf and nan
# (any case). A text starting otherwise (or empty) is no number: NaN without asking Polars.
_MAY_START_A_NUMBER = np.zeros(256, dtype=np.bool_)
_MAY_START_A_NUMBER[[*b"0123456789+-.iInN"]] = True


def _decimals_loop(views: np.ndarray, valid: np.ndarray, bit: int, out: np.ndarray) -> np.ndarray:
    # A text of the form -?[0-9]+(\.[0-9]+)? of at most 8 bytes after its sign, inline in its view, is read word-wise
    # (SWAR): its digits, the point taken out, are an integer below 10^8, divided by an exact power of ten: IEEE
    # division rounds correctly, as Polars' parser does. Every other text that may be a number is left to Polars
    # (its row returned).
    n = out.shape[0]
    other = np.empty(n, np.int64)
    count = 0
    ones, sevens = np.uint64(0x0101010101010101), np.uint64(0x7F7F7F7F7F7F7F7F)
    zeros, nibbles = np.uint64(0x3030303030303030), np.uint64(0xF0F0F0F0F0F0F0F0)
    for row in range(n):
        if valid.shape[0]:
            b = bit + row
            if not (valid[b >> 3] >> (b & 7)) & 1:  # null: no number
                out[row] = np.nan
                continue
        low, high = views[2 * row], views[2 * row + 1]
        length = np.int64(low & np.uint64(0xFFFFFFFF))
        x = (low >> np.uint64(32)) | (high << np.uint64(32))  # the first 8 bytes, the first the lowest
        if length == 0 or not _MAY_START_A_NUMBER[x & np.uint64(0xFF)]:
            out[row] = np.nan
            continue
        negative = (x & np.uint64(0xFF)) == np.uint64(45)
        if negative:
            x = (x >> np.uint64(8)) | ((high >> np.uint64(32)) << np.uint64(56))
            length -= 1
        if length < 1 or length > 8:
            other[count] = row
            count += 1
            continue
        keep = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64((64 - 8 * length) & 63)  # the text's bytes
        x &= keep
        z = x ^ np.uint64(0x2E2E2E2E2E2E2E2E)
        dots = ~(((z & sevens) + sevens) | z | sevens) & keep  # the high bit of each '.' byte
        unit = dots >> np.uint64(7)
        x ^= unit * np.uint64(0x1E)  # '.' -> '0'
        x |= ~keep & zeros  # the bytes after the text -> '0'
        below = unit - np.uint64(1)  # the bytes before the first point (all: no point)
        point = np.int64(((below & ones) * ones) >> np.uint64(56))
        dotted = unit != np.uint64(0)
        if not (
            (x & nibbles) == zeros
            and ((x + np.uint64(0x0606060606060606)) & nibbles) == zeros  # every byte a digit
            and (unit & below) == np.uint64(0)  # at most one point
            and (not dotted or (point >= 1 and point <= length - 2))  # with digits on both sides
        ):
            other[count] = row
            count += 1
            continue
        d = (x - zeros) & keep
        if dotted:  # the point out: the bytes after it one down
            d = (d & below) | ((d >> np.uint64(8)) & ~below)
            length -= 1
        d <<= np.uint64(8 * (8 - length))  # leading zeros: eight digits, the first the lowest byte
        d = d * np.uint64(10) + (d >> np.uint64(8))
        d = (
            (d & np.uint64(0x000000FF000000FF)) * np.uint64(0x000F424000000064)
            + ((d >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(0x0000271000000001)
        ) >> np.uint64(32)
        value = np.float64(np.int64(d & np.uint64(0xFFFFFFFF)))
        if dotted:
            value /= _POWERS_OF_TEN[length - point]
        out[row] = -value if negative else value
    return other[:count]


def decimals(views: np.ndarray, valid: np.ndarray, bit: int, out: np.ndarray) -> np.ndarray:
    """The texts of a String column's chunk read as numbers into ``out`` (NaN: null, or no number), as Polars'
    ``cast(pl.Float64, strict=False)`` reads them, bit for bit, for plain decimals (``-?[0-9]+(\\.[0-9]+)?``, at
    most 8 bytes after the sign: almost every value of a file); returns the rows of the other texts that may be
    numbers (``1e3``, ``+1``, ``.5``, ``inf``, longer ones), whose ``out`` is undefined: for Polars' own cast.
    ``views``: the chunk's Arrow views as ``uint64`` (two per row); ``valid``: its validity bitmap (empty: no
    nulls), of which ``bit`` is row 0's. Polars' cast reads each text in ~20 ns; this pass ~8."""
    return compiled(_decimals_loop)(views, valid, bit, out)


@dataclass(frozen=True)
class TextTable:
    """Texts (a vocabulary's item names) laid out for :func:`text_codes`: an open-addressing table over the first
    view word (length and first four bytes) of each text; a text's code is its position in ``texts``."""

    texts: tuple[str, ...]
    slots: np.ndarray  # int64, a power of two of them: a text's position (-1: empty)
    low: np.ndarray  # per text: its view's first word
    high: np.ndarray  # per text of at most 12 bytes: its view's second word (bytes 4 to 11)
    data: np.ndarray  # every text's bytes, end to end (uint8)
    start: np.ndarray  # where each text starts in ``data``


_GOLDEN = 0x9E3779B97F4A7C15


def text_table(texts: Sequence[str]) -> TextTable:
    """The :class:`TextTable` of distinct ``texts``."""
    encoded = [text.encode() for text in texts]
    low = np.array(
        [len(b) | int.from_bytes(b[:4].ljust(4, b"\0"), "little") << 32 for b in encoded], dtype=np.uint64
    )
    high = np.array(
        [int.from_bytes(b[4:12].ljust(8, b"\0"), "little") if len(b) <= 12 else 0 for b in encoded], dtype=np.uint64
    )
    bits = max(4, (4 * len(encoded)).bit_length())
    slots = np.full(1 << bits, -1, dtype=np.int64)
    for code, word in enumerate(low.tolist()):
        slot = ((word * _GOLDEN) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)
        while slots[slot] >= 0:
            slot = (slot + 1) & (slots.size - 1)
        slots[slot] = code
    start = np.cumsum([0, *map(len, encoded)], dtype=np.int64)
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
    return TextTable(tuple(texts), slots, low, high, np.ascontiguousarray(data), start)


def _text_codes_loop(
    views: np.ndarray,
    valid: np.ndarray,
    bit: int,
    buffers: np.ndarray,
    buffer_start: np.ndarray,
    slots: np.ndarray,
    low_of: np.ndarray,
    high_of: np.ndarray,
    data: np.ndarray,
    start: np.ndarray,
    out: np.ndarray,
) -> None:
    mask = slots.shape[0] - 1
    bits = 0
    while (1 << bits) < slots.shape[0]:
        bits += 1
    shift = np.uint64(64 - bits)
    none = low_of.shape[0]
    for row in range(out.shape[0]):
        out[row] = none
        if valid.shape[0]:
            b = bit + row
            if not (valid[b >> 3] >> (b & 7)) & 1:
                continue
        low, high = views[2 * row], views[2 * row + 1]
        length = np.int64(low & np.uint64(0xFFFFFFFF))
        slot = np.int64((low * np.uint64(_GOLDEN)) >> shift)
        while slots[slot] >= 0:
            code = slots[slot]
            if low_of[code] == low:
                if length <= 12:
                    same = high_of[code] == high
                else:  # the rest of a longer text is in a data buffer: (buffer, offset) in the view's second word
                    at = buffer_start[np.int64(high & np.uint64(0xFFFFFFFF))] + np.int64(high >> np.uint64(32))
                    same = True
                    for k in range(4, length):
                        if buffers[at + k] != data[start[code] + k]:
                            same = False
                            break
                if same:
                    out[row] = code
                    break
            slot = (slot + 1) & mask


def text_codes(
    views: np.ndarray, valid: np.ndarray, bit: int, buffers: np.ndarray, buffer_start: np.ndarray, table: TextTable,
    out: np.ndarray,
) -> None:
    """Each text of a String column's chunk coded into ``out`` (an integer array): its position in ``table.texts``,
    or ``len(table.texts)`` for a null or any other text, as Polars' cast to an Enum of those texts matches them
    (byte for byte). ``views``, ``valid``, ``bit`` as for :func:`decimals`; ``buffers``: the chunk's data buffers
    end to end (uint8), ``buffer_start``: where each starts in it (texts longer than 12 bytes are there)."""
    compiled(_text_codes_loop)(
        views, valid, bit, buffers, buffer_start, table.slots, table.low, table.high, table.data, table.start, out
    )
