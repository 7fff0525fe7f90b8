"""Compiled passes of the CAR-T kinetics (NCA): replicates collapsed, then every series' parameters in one scan.

With Polars, one course's NCA took about 56 operations (group-bys, joins, window expressions) for a handful of
samples: 8-11 ms of fixed costs. A series (one patient's levels of one assay) is a run of the sorted samples,
so each parameter is one walk over its run, here in loops compiled by Numba (imported on first use through
``segments.compiled``, compiled once and cached next to this module).

Floating point follows the Polars code this replaced, bit for bit: a group's sum or mean is Kahan-compensated
(Polars' grouped ``sum``/``mean``), the half-life's running sums add from the last point backwards (its
reversed ``cum_sum``), every formula keeps its order of operations, and comparisons treat NaN as larger than
any number (Polars' total order).
"""

from __future__ import annotations

import math

import numpy as np

#: Codes of ``KineticsConfig.blq_rule`` for the kernel (the value a BLQ sample after Tmax contributes).
BLQ_RULES = ("pre_peak_zero_post_peak_excluded", "pre_peak_zero_post_peak_half_lloq", "all_zero")

#: Rows of the float output of :func:`_nca_loop` (NaN = null).
FLOAT_OUTPUTS = (
    "day0_value",
    "cmax",
    "tmax_day",
    "clast",
    "tlast_day",
    "last_sample_day",
    "last_used_day",
    "auc_end",
    "auc_0_tlast",
    "lambda_z",
    "half_life_r2_adj",
    "half_life_from_day",
    "half_life_to_day",
)
#: Rows of the integer output (-1 = null where a count can be null).
INT_OUTPUTS = (
    "n_samples",
    "n_quantifiable",
    "post_peak_points",
    "half_life_points",
    "day0_from_sample",
    "peak_confirmed",
)
(
    _DAY0,
    _CMAX,
    _TMAX,
    _CLAST,
    _TLAST,
    _LAST_SAMPLE,
    _LAST_USED,
    _AUC_END,
    _AUC_TLAST,
    _LAMBDA_Z,
    _R2_ADJ,
    _FROM,
    _TO,
) = range(len(FLOAT_OUTPUTS))
(_N_SAMPLES, _N_QUANTIFIABLE, _POST_PEAK, _HL_POINTS, _DAY0_FROM_SAMPLE, _PEAK_CONFIRMED) = range(len(INT_OUTPUTS))


def _collapse_replicates_loop(
    sample_start: np.ndarray, num: np.ndarray, lloq: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (rows ``sample_start[k]:sample_start[k + 1]``, replicates at one time): the Kahan-summed mean
    of the quantifiable levels (NaN when none is) and the highest limit of quantification (NaN when none)."""
    n = sample_start.shape[0] - 1
    mean = np.full(n, np.nan)
    limit = np.full(n, np.nan)
    for k in range(n):
        total, compensation, count = 0.0, 0.0, 0
        for row in range(sample_start[k], sample_start[k + 1]):
            value = num[row]
            if not np.isnan(value):
                y = value - compensation
                s = total + y
                compensation = (s - total) - y
                total = s
                count += 1
            if not np.isnan(lloq[row]) and (np.isnan(limit[k]) or lloq[row] > limit[k]):
                limit[k] = lloq[row]
        if count:
            mean[k] = total / count
    return mean, limit


def _nca_loop(
    start: np.ndarray,
    stop: np.ndarray,
    t: np.ndarray,
    num: np.ndarray,
    lloq: np.ndarray,
    blq_rule: int,
    end: float,
    persistence_days: np.ndarray,
    window: float,
    min_points: int,
    tolerance: float,
    floats: np.ndarray,
    ints: np.ndarray,
    persistent: np.ndarray,
    persistence_day: np.ndarray,
) -> None:
    """Fill the outputs of series ``s`` (samples ``start[s]:stop[s]``, time order, at least one at t > 0)."""

    def area(t1: float, c1: float, t2: float, c2: float) -> float:
        # Linear-up/log-down: the log rule is undefined at 0 and for equal ends.
        dt = t2 - t1
        if c2 < c1 and c2 > 0:
            return (c1 - c2) * dt / math.log(c1 / c2)
        return (c1 + c2) / 2 * dt

    def level_at(t1: float, c1: float, t2: float, c2: float, at: float) -> float:
        fraction = (at - t1) / (t2 - t1)
        if c2 < c1 and c2 > 0:
            return c1 * math.exp(math.log(c2 / c1) * fraction)
        return c1 + (c2 - c1) * fraction

    def fit_terminal_phase(s: int, first_post: int, stop: int, tmax: float) -> None:
        """Terminal phase of series ``s``: log-linear least squares on the last n quantifiable points after Tmax."""
        floats[_LAMBDA_Z, s], floats[_R2_ADJ, s], floats[_FROM, s], floats[_TO, s] = np.nan, np.nan, np.nan, np.nan
        ints[_HL_POINTS, s] = -1
        points = 0
        last = -1
        for k in range(first_post, stop):
            if not np.isnan(num[k]) and t[k] > tmax:
                points += 1
                last = k
        ints[_POST_PEAK, s] = points
        if points == 0:
            return
        floats[_TO, s] = t[last]
        # Centred on the last point so the running sums stay small (no cancellation on long courses).
        log_last = math.log(num[last])
        n, sx, sy, sxx, sxy, syy = 0, 0.0, 0.0, 0.0, 0.0, 0.0
        fits_n = np.empty(points, dtype=np.int64)
        fits_lambda = np.empty(points)
        fits_r2 = np.empty(points)
        fits_scored = np.empty(points, dtype=np.bool_)  # equal levels (syy <= 0) give no R²
        fits_from = np.empty(points)
        n_fits = 0
        best = np.nan
        for k in range(stop - 1, first_post - 1, -1):
            if np.isnan(num[k]) or not t[k] > tmax:
                continue
            x = t[k] - t[last]
            y = math.log(num[k]) - log_last
            n += 1
            sx += x
            sy += y
            sxx += x**2
            sxy += x * y
            syy += y**2
            if n < min_points:
                continue
            count = float(n)
            centred_xx = sxx - sx**2 / count
            centred_xy = sxy - sx * sy / count
            centred_yy = syy - sy**2 / count
            lambda_z = -centred_xy / centred_xx
            if not (lambda_z > 0 or np.isnan(lambda_z)):
                continue
            r2_adj = np.nan
            scored = centred_yy > 0 or np.isnan(centred_yy)
            if scored:
                r2 = centred_xy**2 / (centred_xx * centred_yy)
                if r2 > 1.0:
                    r2 = 1.0
                r2_adj = 1 - (1 - r2) * (count - 1) / (count - 2)
                if not np.isnan(r2_adj) and (np.isnan(best) or r2_adj > best):
                    best = r2_adj
            fits_n[n_fits], fits_lambda[n_fits], fits_from[n_fits] = n, lambda_z, t[k]
            fits_r2[n_fits], fits_scored[n_fits] = r2_adj, scored
            n_fits += 1
        # Best adjusted R² wins, and within the tolerance of it the fit with most points (WinNonlin/PKNCA best-fit).
        # Fits without an R² never qualify; a NaN R² (larger than any number) always does.
        chosen = -1
        for f in range(n_fits):
            r2_adj = fits_r2[f]
            if not fits_scored[f]:
                continue
            if np.isnan(r2_adj) or (not np.isnan(best) and r2_adj >= best - tolerance):
                chosen = f  # fits come by increasing n
        if chosen >= 0:
            floats[_LAMBDA_Z, s], floats[_R2_ADJ, s] = fits_lambda[chosen], fits_r2[chosen]
            floats[_FROM, s] = fits_from[chosen]
            ints[_HL_POINTS, s] = fits_n[chosen]

    used = np.empty(t.shape[0])
    for s in range(start.shape[0]):
        first_post = start[s]
        while t[first_post] <= 0:
            first_post += 1
        # Day 0: the latest pre-infusion sample (BLQ = 0), or 0 without one.
        ints[_DAY0_FROM_SAMPLE, s] = first_post > start[s]
        day0 = num[first_post - 1] if first_post > start[s] else 0.0
        floats[_DAY0, s] = 0.0 if np.isnan(day0) else day0

        cmax, tmax, clast, tlast, quantifiable = np.nan, np.nan, np.nan, np.nan, 0
        for k in range(first_post, stop[s]):
            if not np.isnan(num[k]):
                quantifiable += 1
                if np.isnan(cmax) or num[k] > cmax:
                    cmax, tmax = num[k], t[k]
                clast, tlast = num[k], t[k]
        confirmed = False
        last_used = np.nan
        for k in range(first_post, stop[s]):
            if not np.isnan(tmax) and t[k] > tmax and (np.isnan(num[k]) or num[k] < cmax):
                confirmed = True
            if not np.isnan(num[k]):
                used[k] = num[k]
            elif np.isnan(tmax) or t[k] < tmax or blq_rule == 2:
                used[k] = 0.0
            elif blq_rule == 1:
                used[k] = 0.0 if np.isnan(lloq[k]) else lloq[k] / 2
            else:
                used[k] = np.nan
            if not np.isnan(used[k]):
                last_used = t[k]
        ints[_N_SAMPLES, s] = stop[s] - first_post
        ints[_N_QUANTIFIABLE, s] = quantifiable
        ints[_PEAK_CONFIRMED, s] = confirmed
        floats[_CMAX, s], floats[_TMAX, s] = cmax, tmax
        floats[_CLAST, s], floats[_TLAST, s] = clast, tlast
        floats[_LAST_SAMPLE, s] = t[stop[s] - 1]
        floats[_LAST_USED, s] = last_used

        # AUC over the curve (day 0, then the used samples), Kahan-summed in time order.
        t1, c1 = 0.0, floats[_DAY0, s]
        to_end, to_end_c, to_tlast, to_tlast_c = 0.0, 0.0, 0.0, 0.0
        for k in range(first_post, stop[s]):
            if np.isnan(used[k]):
                continue
            t2, c2 = t[k], used[k]
            segment = area(t1, c1, t2, c2)
            if t1 < end:
                part = segment if t2 <= end else area(t1, c1, end, level_at(t1, c1, t2, c2, end))
                y = part - to_end_c
                total = to_end + y
                to_end_c = (total - to_end) - y
                to_end = total
            if t2 <= tlast:
                y = segment - to_tlast_c
                total = to_tlast + y
                to_tlast_c = (total - to_tlast) - y
                to_tlast = total
            t1, c1 = t2, c2
        floats[_AUC_END, s] = to_end if t1 >= end else np.nan
        floats[_AUC_TLAST, s] = np.nan if np.isnan(tlast) else to_tlast

        fit_terminal_phase(s, first_post, stop[s], tmax)

        for d in range(persistence_days.shape[0]):
            day = persistence_days[d]
            nearest, distance, flag = np.nan, np.inf, -1
            for k in range(first_post, stop[s]):
                gap = abs(t[k] - day)
                # The nearest inside the window; the later on a tie (samples come in time order).
                if gap <= window and gap <= distance:
                    nearest, distance, flag = t[k], gap, 0 if np.isnan(num[k]) else 1
            persistence_day[d, s] = nearest
            persistent[d, s] = flag
