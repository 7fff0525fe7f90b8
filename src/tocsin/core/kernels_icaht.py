"""The compiled pass of ICAHT and T-ICAHT: each patient's daily values, its daily grid (days 0 to the end of
observation), its stretches below each threshold and its grades, one lineage at a time.

As Polars expressions a grade took some 160 operations for one course: forward and backward fills for the
interpolation, run bounds for the bridging and for every stretch, a group-by per reading of the unknown days,
each at its fixed cost of 20-500 µs; as NumPy steps around smaller passes, some 450 calls a lineage. Here one
loop reads each patient's rows once, compiled by Numba (imported on first use, compiled once and cached next to
this module, see :func:`tocsin.core.segments.compiled`), into one integer matrix of every per-patient output;
:mod:`tocsin.core.icaht` holds the criteria tables it reads and builds the columns.
"""

from __future__ import annotations

import numpy as np

from tocsin.core.segments import compiled

#: A day's state against a threshold: above it, below it, or unknown (no count, not interpolated).
ABOVE, BELOW, UNKNOWN = 0, 1, -1


#: Per patient, the rows of :func:`lineage_summary`'s integer output (-1 = null where a column can be null).
(
    EARLY_GRADE,
    EARLY_GRADE_MIN,
    EARLY_GRADE_MAX,
    EARLY_RULE,
    EARLY_EVALUABLE,
    EARLY_FIRST_DAY,
    EARLY_LAST_DAY,
    EARLY_DAYS_UNKNOWN,
    EARLY_UNKNOWN_FIRST,
    EARLY_UNKNOWN_LAST,
    EARLY_DAYS_KNOWN,
    EARLY_WINDOW_END,
    LATE_GRADE,
    LATE_GRADE_MIN,
    LATE_GRADE_MAX,
    LATE_RULE,
    LATE_EVALUABLE,
    LATE_OPEN,
    LATE_N_VALUES,
    LATE_NADIR_DAY,
    LATE_FIRST_DAY,
    LATE_LAST_DAY,
    LATE_WINDOW_END,
    LATE_DAYS_UNKNOWN,
    LATE_UNKNOWN_FIRST,
    LATE_UNKNOWN_LAST,
    SUPPORT_EARLY,
    SUPPORT_LATE,
    SUPPORT_FIRST_DAY,
    END_SLOT,
    END_DAY,
) = range(31)
#: The fixed rows; then per counted threshold its longest and cumulative days of days 0-30 (best case), then per
#: late duration band the same in the late window.
FIXED_ROWS = 31
#: Rows of :func:`lineage_summary`'s float output.
LATE_NADIR, LATE_SECOND_LOWEST, END_T = range(3)
#: Columns of a band table (``early_bands`` / ``late_bands`` of :func:`lineage_summary`).
BAND_THRESHOLD, BAND_MIN_DAYS, BAND_GRADE, BAND_RULE = range(4)
#: Entries of ``settings`` of :func:`lineage_summary`.
(
    NEVER_THRESHOLD,
    NEVER_GRADE,
    NEVER_RULE,
    NEVER_ONSET_MAX_DAY,
    STABLE_DAYS,
    LONGEST,
    EARLY_END,
    LATE_START,
    LATE_END_DAY,
    LATE_MIN_VALUES,
    EARLY_GRADE0_RULE,
    LATE_CONFIRM_RULE,
    LATE_GRADE0_RULE,
    LEAD,
    MAX_GAP,
    MASKING_DAYS,
    DECIMALS,
) = range(17)
N_SETTINGS = 17
# Readings of the unknown days (best, worst, observed), windows (early, late) and fields of a day summary.
_BEST, _WORST, _OBSERVED = 0, 1, 2
_EARLY, _LATE = 0, 1
_COUNT, _FIRST, _LAST, _LONGEST, _LONGEST_START, _LAST_START = range(6)


def _lineage_loop(
    patient: np.ndarray,
    t: np.ndarray,
    num: np.ndarray,
    slot: np.ndarray,
    n_patients: int,
    ends: np.ndarray,
    count_slot: int,
    support_slot: int,
    limits: np.ndarray,
    inclusive: np.ndarray,
    in_late: np.ndarray,
    early_bands: np.ndarray,
    late_bands: np.ndarray,
    nadir_limits: np.ndarray,
    nadir_inclusive: np.ndarray,
    nadir_bands: np.ndarray,
    confirm_limit: float,
    confirm_inclusive: bool,
    settings: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n_thresholds = patient.shape[0], limits.shape[0]
    never, longest = settings[NEVER_THRESHOLD], settings[LONGEST] != 0
    stable_days, late_start, early_end_day = settings[STABLE_DAYS], settings[LATE_START], settings[EARLY_END]
    lead, max_gap, masking_days = settings[LEAD], settings[MAX_GAP], settings[MASKING_DAYS]
    scale = 10.0 ** settings[DECIMALS]
    ints = np.full((FIXED_ROWS + 2 * n_thresholds + 2 * late_bands.shape[0], n_patients), -1, dtype=np.int64)
    floats = np.full((3, n_patients), np.nan)
    # Each patient's rows (adjacent, in time order) and the end of its observation: its first row of an item
    # that ends it, at the latest the late window's end.
    first_row = np.full(n_patients + 1, n_rows, dtype=np.int64)
    for row in range(n_rows - 1, -1, -1):
        first_row[patient[row]] = row
    end_day = np.full(n_patients, settings[LATE_END_DAY], dtype=np.int64)
    most_days, most_rows = 0, 0
    for p in range(n_patients - 1, -1, -1):
        first_row[p] = min(first_row[p], first_row[p + 1])
        for row in range(first_row[p], first_row[p + 1]):
            if ends[slot[row]]:
                floats[END_T, p], ints[END_SLOT, p] = t[row], slot[row]
                if np.floor(t[row]) < end_day[p]:  # not at NaN: the observation does not end
                    end_day[p] = int(np.floor(t[row]))
                break
        ints[END_DAY, p] = end_day[p]
        most_days, most_rows = max(most_days, end_day[p] + 1), max(most_rows, first_row[p + 1] - first_row[p])
    value_day, value, support_day = np.empty(most_rows, np.int64), np.empty(most_rows), np.empty(most_rows, np.int64)
    level = np.empty(most_days)
    observed = np.empty(most_days, np.bool_)
    bracketed, masked = np.empty(most_days, np.bool_), np.empty(most_days, np.bool_)
    unknown, undetermined = np.empty(most_days, np.bool_), np.empty(most_days, np.bool_)
    early, late = np.empty(most_days, np.bool_), np.empty(most_days, np.bool_)
    state = np.empty(most_days, dtype=np.int8)
    below = np.empty(most_days, dtype=np.bool_)
    known = np.empty(most_days, dtype=np.bool_)
    # Per threshold, reading and window: the summary of the days below (after bridging) in the window.
    days = np.empty((n_thresholds, 3, 2, 6), dtype=np.int64)
    extra = np.empty((4, 6), dtype=np.int64)  # unknown days early, late; known days early; known observed days

    def summarise(flags: np.ndarray, window: np.ndarray, out: np.ndarray) -> None:
        out[_COUNT], out[_LONGEST] = 0, 0
        out[_FIRST], out[_LAST], out[_LONGEST_START], out[_LAST_START] = -1, -1, -1, -1
        run_start = -1
        for day in range(flags.shape[0]):
            if not (flags[day] and window[day]):
                run_start = -1
                continue
            if run_start < 0:
                run_start = day
            out[_COUNT] += 1
            if out[_FIRST] < 0:
                out[_FIRST] = day
            out[_LAST], out[_LAST_START] = day, run_start
            if day - run_start + 1 > out[_LONGEST]:
                out[_LONGEST], out[_LONGEST_START] = day - run_start + 1, run_start

    def band(bands: np.ndarray, window: int, reading: int, graded: bool) -> int:
        """The first band whose threshold was met for its minimum days (-1: none)."""
        for b in range(bands.shape[0]):
            met = days[bands[b, BAND_THRESHOLD], reading, window, _LONGEST if longest else _COUNT]
            if graded and met >= bands[b, BAND_MIN_DAYS]:
                return b
        return -1

    for p in range(n_patients):
        # The lowest count of each day from day -lead to the end of observation (counts after its end are not
        # used), and the days a support was given, once each.
        n_values, n_support = 0, 0
        for row in range(first_row[p], first_row[p + 1]):
            when = np.floor(t[row])
            if slot[row] == count_slot:
                if np.isnan(num[row]) or t[row] > floats[END_T, p] or not -lead <= when <= end_day[p]:
                    continue
                if n_values > 0 and value_day[n_values - 1] == when:
                    value[n_values - 1] = min(value[n_values - 1], num[row])
                else:
                    value_day[n_values], value[n_values] = int(when), num[row]
                    n_values += 1
            elif slot[row] == support_slot and not np.isnan(when):
                if n_support == 0 or support_day[n_support - 1] != when:
                    support_day[n_support] = int(when)
                    n_support += 1
        # The grid, days 0 to the end of observation, from day -lead: values before the infusion anchor the
        # interpolation, supports before it mask day 0 on. A day without a value is interpolated linearly when
        # its gap has at most max_gap missing days; before the first value or after the last, the nearest one is
        # carried for max_gap days (Liang's na.approx(rule = 2), bounded).
        n_days = max(end_day[p] + 1, 0)
        following, preceding = 0, -1  # the next daily value on or after the day, the latest before it
        support, last_support, has_support = 0, -1, False
        for day in range(-lead, n_days):
            while following < n_values and value_day[following] < day:
                preceding = following
                following += 1
            while support < n_support and support_day[support] <= day:
                if support_day[support] >= -lead:
                    last_support, has_support = support_day[support], True
                support += 1
            if day < 0:
                continue
            masked[day] = masking_days >= 0 and has_support and day - last_support <= masking_days
            level[day], observed[day], bracketed[day] = np.nan, False, False
            has_next, has_previous = following < n_values, preceding >= 0
            if has_next and value_day[following] == day:
                level[day], observed[day], bracketed[day] = value[following], True, True
            elif has_next and has_previous:
                bracketed[day] = True
                d0, d1 = value_day[preceding], value_day[following]
                if d1 - d0 - 1 <= max_gap:
                    v0 = value[preceding]
                    # Rounded as the canonical values are (np.round's scale, rint, unscale): a threshold is met
                    # exactly by its equivalent in another unit.
                    level[day] = np.rint((v0 + (value[following] - v0) / (d1 - d0) * (day - d0)) * scale) / scale
            elif has_next and value_day[following] - day <= max_gap:
                level[day] = value[following]
            elif has_previous and day - value_day[preceding] <= max_gap:
                level[day] = value[preceding]
            # A late day counts when counts were measured before and after it (Liang carries the end values
            # outward on the day 0-30 grid only); only unknown days inside the measured course (or early) could
            # change a grade.
            early[day], late[day] = day <= early_end_day, day >= late_start
            if late[day] and not bracketed[day] and not observed[day]:
                level[day] = np.nan
            undetermined[day] = np.isnan(level[day]) and not masked[day]
            unknown[day] = undetermined[day] and (early[day] or bracketed[day])
        in_early, in_late_window = early[:n_days], late[:n_days]
        for k in range(n_thresholds):
            for reading in range(3 if k == never else 2):
                for day in range(n_days):
                    x = level[day]
                    is_below = masked[day] or (x <= limits[k] if inclusive[k] else x < limits[k])  # NaN: not below
                    if is_below or (reading == _WORST and unknown[day]):
                        state[day] = BELOW
                    elif reading == _OBSERVED and undetermined[day]:
                        state[day] = UNKNOWN
                    else:
                        state[day] = ABOVE
                    if reading == _OBSERVED:
                        known[day] = state[day] != UNKNOWN
                # Bridging: a run above shorter than stable_days between days below counts as below; an unknown
                # day is on neither side.
                first = 0
                while first < n_days:
                    end = first + 1
                    while end < n_days and state[end] == state[first]:
                        end += 1
                    flag = state[first] == BELOW or (
                        state[first] == ABOVE
                        and end - first < stable_days
                        and first > 0
                        and end < n_days
                        and state[first - 1] == BELOW
                        and state[end] == BELOW
                    )
                    below[first:end] = flag
                    first = end
                summarise(below[:n_days], in_early, days[k, reading, _EARLY])
                if in_late[k] and reading != _OBSERVED:
                    summarise(below[:n_days], in_late_window, days[k, reading, _LATE])
        summarise(unknown[:n_days], in_early, extra[0])
        summarise(unknown[:n_days], in_late_window, extra[1])
        for day in range(n_days):
            below[day] = not np.isnan(level[day])
        summarise(below[:n_days], in_early, extra[2])
        if never >= 0:
            summarise(known[:n_days], in_early, extra[3])

        # Early grade: the first band met in the best and in the worst case.
        graded = n_days > 0
        best, worst = band(early_bands, _EARLY, _BEST, graded), band(early_bands, _EARLY, _WORST, graded)
        low = early_bands[best, BAND_GRADE] if best >= 0 else 0
        high = early_bands[worst, BAND_GRADE] if worst >= 0 else 0
        rule = early_bands[best, BAND_RULE] if best >= 0 else settings[EARLY_GRADE0_RULE]
        early_end = min(settings[EARLY_END], end_day[p])
        if never >= 0:
            # The stretch below the threshold that holds on the last known day of the early window starts by the
            # onset day (best case: every day known; else the observed reading, where unknown days break it).
            last_b, last_o = days[never, _BEST, _EARLY, _LAST], days[never, _OBSERVED, _EARLY, _LAST]
            start_b = days[never, _BEST, _EARLY, _LAST_START] if last_b == early_end else -1
            known_o = last_o >= 0 and last_o == extra[3, _LAST]
            start_o = days[never, _OBSERVED, _EARLY, _LAST_START] if known_o else -1
            onset = start_o if extra[0, _COUNT] + extra[1, _COUNT] > 0 else start_b
            if 0 <= onset <= settings[NEVER_ONSET_MAX_DAY]:
                low, high, rule = settings[NEVER_GRADE], settings[NEVER_GRADE], settings[NEVER_RULE]
        early_ok = low == high
        recovery = days[0, _BEST, _EARLY]  # the recovery threshold is the first
        if longest:
            first_day, last_day = recovery[_LONGEST_START], recovery[_LONGEST_START] + recovery[_LONGEST] - 1
        else:
            first_day, last_day = recovery[_FIRST], recovery[_LAST]
        ints[EARLY_GRADE, p] = low if early_ok else -1
        ints[EARLY_GRADE_MIN, p], ints[EARLY_GRADE_MAX, p] = low, high
        ints[EARLY_RULE, p] = rule if early_ok else -1
        ints[EARLY_EVALUABLE, p] = early_ok
        if first_day >= 0:
            ints[EARLY_FIRST_DAY, p], ints[EARLY_LAST_DAY, p] = first_day, last_day
        ints[EARLY_DAYS_UNKNOWN, p] = extra[0, _COUNT]
        ints[EARLY_UNKNOWN_FIRST, p], ints[EARLY_UNKNOWN_LAST, p] = extra[0, _FIRST], extra[0, _LAST]
        ints[EARLY_DAYS_KNOWN, p] = extra[2, _COUNT]
        ints[EARLY_WINDOW_END, p] = early_end
        row = FIXED_ROWS
        for k in range(n_thresholds):
            if graded:
                ints[row, p], ints[row + 1, p] = days[k, _BEST, _EARLY, _LONGEST], days[k, _BEST, _EARLY, _COUNT]
            row += 2
        for b in range(late_bands.shape[0]):
            if graded:
                k = late_bands[b, BAND_THRESHOLD]
                ints[row, p], ints[row + 1, p] = days[k, _BEST, _LATE, _LONGEST], days[k, _BEST, _LATE, _COUNT]
            row += 2

        # Late values: the lowest and second-lowest daily values from the late window's first day on (strictly
        # lower only: among equal values the earlier day ranks first).
        n_late, lowest, next_lowest = 0, -1, -1
        for v in range(n_values):
            if value_day[v] < late_start:
                continue
            n_late += 1
            if ints[LATE_FIRST_DAY, p] < 0:
                ints[LATE_FIRST_DAY, p] = value_day[v]
            ints[LATE_LAST_DAY, p] = value_day[v]
            if lowest < 0 or value[v] < value[lowest]:
                lowest, next_lowest = v, lowest
            elif next_lowest < 0 or value[v] < value[next_lowest]:
                next_lowest = v
        if lowest >= 0:
            floats[LATE_NADIR, p], ints[LATE_NADIR_DAY, p] = value[lowest], value_day[lowest]
        if next_lowest >= 0:
            floats[LATE_SECOND_LOWEST, p] = value[next_lowest]
        # Late grade: band of the nadir confirmed by the second-lowest (not transient), or a duration band.
        nadir_band = -1
        if n_late >= 1:
            for b in range(nadir_limits.shape[0]):
                limit = nadir_limits[b]
                nadir = floats[LATE_NADIR, p]
                if nadir <= limit if nadir_inclusive[b] else nadir < limit:
                    nadir_band = b
                    break
        second = floats[LATE_SECOND_LOWEST, p]
        confirmed = n_late == 1 or (
            n_late >= 2 and (second <= confirm_limit if confirm_inclusive else second < confirm_limit)
        )
        nadir_grade = nadir_bands[nadir_band, 0] if confirmed and nadir_band >= 0 else 0
        best, worst = band(late_bands, _LATE, _BEST, graded), band(late_bands, _LATE, _WORST, graded)
        duration_low = late_bands[best, BAND_GRADE] if best >= 0 else 0
        duration_high = late_bands[worst, BAND_GRADE] if worst >= 0 else 0
        if duration_low > 0 and duration_low >= nadir_grade:
            rule = late_bands[best, BAND_RULE]
        elif nadir_grade > 0:
            rule = nadir_bands[nadir_band, 1]
        else:
            rule = settings[LATE_CONFIRM_RULE] if nadir_band >= 0 else settings[LATE_GRADE0_RULE]
        low, high = max(nadir_grade, duration_low), max(nadir_grade, duration_high)
        late_end = min(settings[LATE_END_DAY], end_day[p])
        late_open = late_end >= late_start
        late_graded = late_open and n_late >= settings[LATE_MIN_VALUES]
        late_ok = late_graded and low == high
        ints[LATE_GRADE, p] = low if late_ok else -1
        if late_graded:
            ints[LATE_GRADE_MIN, p], ints[LATE_GRADE_MAX, p] = low, high
        ints[LATE_RULE, p] = rule if late_ok else -1
        ints[LATE_EVALUABLE, p], ints[LATE_OPEN, p], ints[LATE_N_VALUES, p] = late_ok, late_open, n_late
        ints[LATE_WINDOW_END, p] = late_end
        ints[LATE_DAYS_UNKNOWN, p] = extra[1, _COUNT]
        ints[LATE_UNKNOWN_FIRST, p], ints[LATE_UNKNOWN_LAST, p] = extra[1, _FIRST], extra[1, _LAST]

        # Support days (one per day given) in each window, and the first from day 0.
        ints[SUPPORT_EARLY, p], ints[SUPPORT_LATE, p] = 0, 0
        for s in range(n_support):
            given = support_day[s]
            if given < 0:
                continue
            if ints[SUPPORT_FIRST_DAY, p] < 0:
                ints[SUPPORT_FIRST_DAY, p] = given
            if given <= early_end:
                ints[SUPPORT_EARLY, p] += 1
            if late_start <= given <= late_end:
                ints[SUPPORT_LATE, p] += 1
    return ints, floats


def lineage_summary(
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_patients: int,
    ends: np.ndarray,
    slots: tuple[int, int],
    thresholds: tuple[np.ndarray, np.ndarray, np.ndarray],
    early_bands: np.ndarray,
    late_bands: np.ndarray,
    nadir: tuple[np.ndarray, np.ndarray, np.ndarray],
    confirm: tuple[float, bool],
    settings: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every per-patient number of one lineage's early and late grades, in one pass over the rows read.

    ``rows``: ``(patient, t, num, slot)`` of the rows read (:class:`tocsin.core.arrays.ItemRows`: a patient's
    rows adjacent, in time order, patients ``0..n_patients - 1``); ``ends``: per slot, whether its item ends the
    observation (a patient's first such row ends it, at ``end_t``; its ``end_day`` is ``floor(end_t)``, at most
    ``LATE_END_DAY``); ``slots``: the slot of the lineage's count and of its support item. A patient's day is
    ``floor(t)``, its value the day's lowest count from day ``-LEAD`` to ``end_day`` taken at or before
    ``end_t``. Its grid, days 0 to ``end_day``: a day
    without a value is interpolated linearly (rounded to ``DECIMALS``) when its gap has at most ``MAX_GAP``
    missing days, the first and last values are carried for ``MAX_GAP`` days, and a support masks (counts as
    below every threshold) its day and the ``MASKING_DAYS`` after it (-1: never); a late day without a count
    of its own and not bracketed by counts has no value, and a day without a value that is not masked is
    unknown if it is early or bracketed. ``thresholds``: ``(limits, inclusive, in_late)`` of the counted
    thresholds, the recovery threshold first (``in_late``: its days are counted in the late window too).
    ``early_bands`` / ``late_bands`` (int64, one row per band, columns ``BAND_*``: threshold index, minimum
    days, grade, rule code); ``nadir``: the late nadir bands' ``(limits, inclusive, [[grade, rule code],
    ...])``; ``confirm``: the second-lowest value's limit; ``settings``: the entries ``NEVER_THRESHOLD``...
    (int64; ``NEVER_THRESHOLD`` -1: no never-recovered grade 4).

    Each threshold's days are read three ways: below in the best case (a masked day is below, an unknown one
    above), in the worst case (an unknown day below too) and, for the never-recovered threshold, observed (an
    undetermined day stays unknown); a run above it shorter than the stable recovery between days below is
    bridged (an unknown day is on neither side). The early grade is the first band met (longest stretch or
    cumulative days, by ``LONGEST``) in the best and the worst case; the late grade the band of the lowest
    daily value from the late window on, confirmed by the second-lowest, or a duration band if higher.

    Returns ``ints`` (int64, rows ``EARLY_GRADE``... then the days of each threshold, see
    :data:`FIXED_ROWS`; -1 = null; ``END_SLOT``: the slot of the row that ends the observation) and ``floats``
    (rows ``LATE_NADIR``, ``LATE_SECOND_LOWEST``, ``END_T``; NaN = none). As NumPy this was some 480 calls a
    lineage for one course.
    """
    # Passed as they are (the rows' and the tables' types are the loop's): a cast per array was 24 calls a lineage.
    return compiled(_lineage_loop)(
        *rows, n_patients, ends, *slots, *thresholds, early_bands, late_bands, *nadir, *confirm, settings
    )
