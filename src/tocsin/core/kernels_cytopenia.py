"""Compiled passes of the cytopenia graders: the CTCAE grade of every count and its per-lineage summary.

Grading one course took 23 eager Polars operations (two as-of joins for the transfusion window, a column of
cut-offs per grade, a group-by for the summary): about 4 ms for 150 values. These loops read the sorted
columns once, patient by patient (rows of a patient are adjacent and in time order, as canonical events hold
them), and are the same code for a batch of one and of ten thousand. They are plain Python functions
compiled by :func:`tocsin.core.segments.compiled` (Numba imported on first use);
:mod:`tocsin.core.cytopenia_ctcae` holds the clinical tables they read.

Conventions: a missing integer is -1, a missing float NaN; lineages and grades are small integer codes whose
meaning the caller gives.
"""

from __future__ import annotations

import numpy as np

from tocsin.core.segments import compiled

#: ``state`` of a graded value besides its grade 0-4 (the rule table of cytopenia_ctcae is indexed by it).
STATE_RAISED, STATE_NEEDS_LLN, STATE_NOT_GRADED = 5, 6, 7


def _ctcae_rows_loop(
    order: np.ndarray,
    patient: np.ndarray,
    t: np.ndarray,
    item: np.ndarray,
    num: np.ndarray,
    blq_flag: np.ndarray,
    lloq: np.ndarray,
    own_lln: np.ndarray,
    reference_lln: np.ndarray,
    lineage_of_item: np.ndarray,
    supported_of_item: np.ndarray,
    cut: np.ndarray,
    cut_at_lln: np.ndarray,
    transfusion_grade: np.ndarray,
    supported: np.ndarray,
    not_graded: np.ndarray,
    raises: bool,
    hours_before: float,
    hours_after: float,
    hours_per_day: float,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray,
]:  # fmt: skip
    """Per graded value (a count with a value or a quantification limit; rows in order): its row, lineage,
    value (the limit when below it), blq, LLN (its own, else ``reference_lln``), LLN source (0 own, 1 reference,
    -1 none), grade (-1 = null), state, missing code and transfused (-1 = not looked for). A row's lineage is
    ``lineage_of_item[item]`` (-1: not a count); a row with a positive ``num`` of an item of
    ``supported_of_item`` >= 0 is a transfusion for that lineage. Rows are visited in ``order``, patient by
    patient. A value's cut-offs are ``cut[lineage, g]`` (at least grade g below it; NaN: no such band) or its
    LLN where ``cut_at_lln``; -1 = grade 1 has no known cut-off. A transfusion is near when (t - its t) x
    hours_per_day <= hours_before, or (its t - t) x hours_per_day <= hours_after: only the nearest one on
    either side can be."""
    n, n_lineages = order.shape[0], cut.shape[0]
    lineage = np.empty(n, dtype=np.int64)
    transfusion = np.empty(n, dtype=np.int64)
    value, lln = np.empty(n), np.empty(n)
    blq = np.empty(n, dtype=np.bool_)
    for row in range(n):
        blq[row] = blq_flag[row] == 1  # a null blq is False
        # A count without a value (nor a quantification limit) is not graded.
        lineage[row] = -1 if np.isnan(num[row]) and not blq[row] else lineage_of_item[item[row]]
        transfusion[row] = supported_of_item[item[row]] if num[row] > 0 else -1
        value[row] = lloq[row] if np.isnan(num[row]) else num[row]
        lln[row] = reference_lln[row] if np.isnan(own_lln[row]) else own_lln[row]
    grade = np.full(n, -1, dtype=np.int8)
    state = np.zeros(n, dtype=np.int8)
    missing = np.zeros(n, dtype=np.int8)
    transfused = np.full(n, -1, dtype=np.int8)
    near_before = np.full(n, np.nan)
    last = np.empty(n_lineages)
    start = 0
    while start < n:
        end = start + 1
        while end < n and patient[order[end]] == patient[order[start]]:
            end += 1
        # The nearest transfusion at or before each value, then at or after it (rows are in time order).
        last[:] = np.nan
        for k in range(start, end):
            row = order[k]
            if transfusion[row] >= 0:
                last[transfusion[row]] = t[row]
            elif lineage[row] >= 0:
                near_before[row] = last[lineage[row]]
        last[:] = np.nan
        for k in range(end - 1, start - 1, -1):
            row = order[k]
            if transfusion[row] >= 0:
                last[transfusion[row]] = t[row]
            elif lineage[row] >= 0 and supported[lineage[row]]:
                before = (t[row] - near_before[row]) * hours_per_day <= hours_before
                after = (last[lineage[row]] - t[row]) * hours_per_day <= hours_after
                transfused[row] = 1 if before or after else 0
        start = end
    for row in range(n):
        ln = lineage[row]
        if ln < 0:
            continue
        # The grade of the value, and of 0: the most severe a value below its quantification limit could have.
        numeric, worst = -1, -1
        for probe in range(2):
            x = value[row] if probe == 0 else 0.0
            found = -1
            for g in range(4, 0, -1):
                below = lln[row] if cut_at_lln[ln, g] else cut[ln, g]
                # A '<limit' value lies just below its limit: in a band whose cut-off equals the limit.
                if x < below or (blq[row] and x == below):
                    found = g
                    break
            if found < 0 and not np.isnan(lln[row] if cut_at_lln[ln, 1] else cut[ln, 1]):
                found = 0
            if probe == 0:
                numeric = found
            else:
                worst = found
        tx = transfusion_grade[ln]
        raised = raises and transfused[row] == 1 and tx >= 0 and (numeric < 0 or numeric < tx)
        g = tx if raised else numeric
        grade[row] = g
        if not_graded[ln]:
            state[row], missing[row] = STATE_NOT_GRADED, 4
            continue
        state[row] = STATE_RAISED if raised else (g if g >= 0 else STATE_NEEDS_LLN)
        unresolved_blq = blq[row] and (g < 0 or (worst >= 0 and g < worst))
        missing[row] = (1 if state[row] == STATE_NEEDS_LLN else 0) + (2 if unresolved_blq else 0)
    labs = np.flatnonzero(lineage >= 0)
    lln_source = np.empty(labs.shape[0], dtype=np.int64)
    for k in range(labs.shape[0]):
        row = labs[k]
        lln_source[k] = 0 if not np.isnan(own_lln[row]) else (-1 if np.isnan(lln[row]) else 1)
    return (
        labs, lineage[labs], value[labs], blq[labs], lln[labs], lln_source, grade[labs], state[labs], missing[labs],
        transfused[labs],
    )  # fmt: skip


def _worst_grades_loop(
    patient: np.ndarray,
    lineage: np.ndarray,
    n_patients: int,
    n_lineages: int,
    grade: np.ndarray,
    t: np.ndarray,
    unresolved: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (patient, lineage) group, in order of first appearance: its first row, worst grade (-1: every grade
    null), the earliest t of that grade, and its numbers of rows and of ``unresolved`` rows."""
    n = patient.shape[0]
    group_of = np.full((n_patients, n_lineages), -1, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    worst = np.full(n, -1, dtype=np.int8)
    worst_t = np.full(n, np.nan)
    values = np.zeros(n, dtype=np.uint32)
    open_values = np.zeros(n, dtype=np.uint32)
    n_groups = 0
    for row in range(n):
        g = group_of[patient[row], lineage[row]]
        if g < 0:
            g = n_groups
            group_of[patient[row], lineage[row]] = g
            first[g] = row
            n_groups += 1
        values[g] += 1
        if unresolved[row]:
            open_values[g] += 1
        if grade[row] >= 0 and (grade[row] > worst[g] or (grade[row] == worst[g] and t[row] < worst_t[g])):
            worst[g], worst_t[g] = grade[row], t[row]
    return first[:n_groups], worst[:n_groups], worst_t[:n_groups], values[:n_groups], open_values[:n_groups]


def ctcae_rows(*columns: object) -> tuple[np.ndarray, ...]:
    """:func:`_ctcae_rows_loop`, compiled: the values read from the rows and graded in one pass (as NumPy before
    and after the grading, some 30 calls for one course and as many temporaries of a batch's rows)."""
    return compiled(_ctcae_rows_loop)(*columns)


def worst_grades(*columns: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_worst_grades_loop`, compiled."""
    return compiled(_worst_grades_loop)(*columns)
