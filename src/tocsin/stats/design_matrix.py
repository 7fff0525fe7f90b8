"""Categorical covariates as 0/1 indicator columns against a reference level, shared by Cox and logistic models.

Each level other than the reference becomes one column named ``COLUMN=LEVEL``; the reference is the one
declared, otherwise the first level in sorted order (R's default factor order: numbers sort numerically,
text by code point, booleans false before true). Levels are written as text: whole-number floats without
``.0`` (a rank read as 2.0 is level ``2``, as R prints it).

Example:
    >>> import polars as pl
    >>> factor = indicators(pl.Series([2.0, 1.0, 3.0, 2.0]), "rank", None, what="predictor", error=ValueError)
    >>> factor.reference, factor.levels, factor.terms
    ('1', ('2', '3'), ('rank=2', 'rank=3'))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl


def level_text(value: object) -> str:
    """How a level is named: whole-number floats without '.0', anything else as ``str``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def category_text(series: pl.Series, bool_labels: tuple[str, str] = ("false", "true")) -> pl.Series:
    """Each value as its level name (see :func:`level_text`); booleans as ``bool_labels`` (false, true)."""
    if series.dtype == pl.Boolean:
        return series.replace_strict({False: bool_labels[0], True: bool_labels[1]}, return_dtype=pl.String)
    if series.dtype.is_float():
        return series.map_elements(level_text, return_dtype=pl.String)
    return series.cast(pl.String)


def sorted_levels(series: pl.Series, bool_labels: tuple[str, str] = ("false", "true")) -> list[str]:
    """The distinct levels present, in sorted order of their values, as level names."""
    return category_text(series.drop_nulls().unique().sort(), bool_labels).to_list()


@dataclass(frozen=True)
class Indicators:
    """One categorical covariate in the model matrix: the reference and one 0/1 column per other level."""

    name: str
    reference: str
    levels: tuple[str, ...]
    columns: tuple[np.ndarray, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """The term of each column, ``NAME=LEVEL``."""
        return tuple(f"{self.name}={level}" for level in self.levels)


def indicators(
    series: pl.Series,
    name: str,
    reference: str | None,
    *,
    what: str,
    error: type[Exception],
    bool_labels: tuple[str, str] = ("false", "true"),
    max_levels: int | None = None,
) -> Indicators:
    """Indicator columns of ``series`` (the rows used, no missing values) against ``reference``.

    ``what`` names the covariate in messages (``"covariate"``, ``"predictor"``); a refusal raises ``error``
    naming the column, its levels and the fix: a reference level that does not occur, a single level, or
    (with ``max_levels``) so many levels that the column looks like an identifier.
    """
    levels = sorted_levels(series, bool_labels)
    if max_levels is not None and len(levels) > max_levels:
        raise error(
            f"{what} {name!r} has {len(levels)} levels in the rows used; that looks like an identifier "
            "or a number stored as text, not a category"
        )
    chosen = levels[0] if reference is None and levels else reference or ""
    if chosen not in levels:
        raise error(
            f"reference level {chosen!r} of {name!r} does not occur; its levels are {', '.join(levels)} "
            f"(in the rows used); declare one of them (--reference {name}=LEVEL)"
        )
    if len(levels) < 2:
        raise error(f"{what} {name!r} has a single level ({chosen}) in the rows used; drop it from the model")
    text = category_text(series, bool_labels)
    others = tuple(level for level in levels if level != chosen)
    return Indicators(name, chosen, others, tuple((text == level).cast(pl.Float64).to_numpy() for level in others))


@dataclass
class DesignColumns:
    """The model matrix being built: its columns, and for each the term, its covariate and its level."""

    columns: list[np.ndarray] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    levels: list[str | None] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)

    def add_numeric(self, name: str, values: np.ndarray) -> None:
        """One column for a numeric covariate (a linear term) or the intercept."""
        self.columns.append(values)
        self.terms.append(name)
        self.variables.append(name)
        self.levels.append(None)

    def add_factor(self, factor: Indicators) -> None:
        """The indicator columns of a categorical covariate, and its reference level."""
        self.references[factor.name] = factor.reference
        self.columns.extend(factor.columns)
        self.terms.extend(factor.terms)
        self.variables.extend([factor.name] * len(factor.levels))
        self.levels.extend(factor.levels)

    @property
    def matrix(self) -> np.ndarray:
        """The columns side by side, one row per observation."""
        return np.column_stack(self.columns)
