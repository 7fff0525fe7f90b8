"""Multiple-comparison adjustment of a family of P values (Bonferroni, Holm), as R ``p.adjust``.

statsmodels' ``multipletests`` does the arithmetic; this wrapper keeps the positions of tests that were not
computed (``None``) so adjusted values line up with their variables, and the family is the computed ones.

References:
    Holm S (1979). A simple sequentially rejective multiple test procedure. Scand J Stat 6:65-70.
    Dunn OJ (1961). Multiple comparisons among means. JASA 56:52-64. doi:10.1080/01621459.1961.10482090.

Example:
    >>> adjust_p_values([0.01, None, 0.04, 0.03], "holm")
    [0.03, None, 0.06, 0.06]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Adjustment = Literal["none", "bonferroni", "holm"]
ADJUSTMENTS: tuple[Adjustment, ...] = ("none", "bonferroni", "holm")


def adjust_p_values(p_values: Sequence[float | None], method: Adjustment) -> list[float | None]:
    """Adjusted P values in the same order; ``None`` stays ``None``; ``"none"`` returns the input unchanged."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment '{method}'; use one of {', '.join(ADJUSTMENTS)}")
    computed = [p for p in p_values if p is not None]
    if method == "none" or not computed:
        return list(p_values)
    from statsmodels.stats.multitest import multipletests  # ~0.5 s to import: only when adjusting

    adjusted = iter(float(p) for p in multipletests(computed, method=method)[1])
    return [None if p is None else next(adjusted) for p in p_values]
