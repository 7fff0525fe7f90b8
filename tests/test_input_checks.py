"""The statistics modules share one input-error base class and one missing-column message."""

from __future__ import annotations

import polars as pl
import pytest

from tocsin.stats.input_checks import StatsInputError, require_columns, rows_text
from tocsin.stats.logistic import SeparationError
from tocsin.stats.survival.competing_events import CompetingRisksInputError
from tocsin.stats.survival.cox import CoxInputError
from tocsin.stats.survival.inputs import SurvivalInputError
from tocsin.stats.table1 import Table1Error


@pytest.mark.parametrize("error", [SurvivalInputError, CompetingRisksInputError, CoxInputError, Table1Error,
                                   SeparationError])
def test_every_input_error_is_a_stats_input_error(error: type[Exception]) -> None:
    assert issubclass(error, StatsInputError) and issubclass(error, ValueError)


def test_require_columns_raises_the_callers_class_and_lists_the_columns() -> None:
    with pytest.raises(CoxInputError, match=r"no column\(s\) 'x', 'y'; the table has a, b"):
        require_columns(pl.DataFrame({"a": [1], "b": [2]}), ["a", "x", "y", "x"], CoxInputError)


def test_rows_text_names_five_rows_and_counts_the_rest() -> None:
    assert rows_text(range(7)) == "row(s) 0, 1, 2, 3, 4 and 2 more"
    assert rows_text([1], ["patient A", "patient B"]) == "patient B"
