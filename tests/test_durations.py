"""Episode durations (``tocsin.stats.durations``) and ``tocsin cohort durations``.

Reference: the product-limit curves and medians of R ``survival::survfit`` on the Gehan 6-MP leukemia data
(tests/fixtures/stats/durations_gehan_leukemia.yaml), with relapse = episode resolved and still in remission =
ongoing. Property (R's documented median rule, and a theorem for uncensored data): with no ongoing episode
the product-limit median equals the ordinary sample median.
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli_helpers import WIDE
from tocsin.cli import app
from tocsin.stats import durations as durations_module
from tocsin.stats.durations import duration_summary, km_median
from tocsin.stats.survival.kaplan_meier import kaplan_meier
from tocsin.stats.input_checks import StatsInputError

GEHAN = yaml.safe_load(
    (Path(__file__).resolve().parent / "fixtures" / "stats" / "durations_gehan_leukemia.yaml").read_text()
)
ROW_KEYS = {"group", "grade", "n_episodes", "n_resolved", "n_ongoing", "n_unknown", "resolved_median", "resolved_q1",
            "resolved_q3", "resolved_min", "resolved_max", "km_median"}


@pytest.mark.parametrize("arm", sorted(GEHAN["groups"]))
def test_product_limit_curve_and_median_match_r_survfit(arm: str) -> None:
    data = GEHAN["groups"][arm]
    fit = kaplan_meier(np.asarray(data["weeks"], dtype=float), np.asarray(data["relapsed"], dtype=bool)).summary
    curve = dict(zip(fit["time"].to_list(), fit["survival"].to_list(), strict=True))
    for week, expected in data["curve"].items():
        assert curve[float(week)] == pytest.approx(expected, abs=5e-9)
    assert km_median(data["weeks"], data["relapsed"]) == data["median"]


def test_gehan_through_the_table_summary() -> None:
    rows = [(arm, w, r == 0) for arm, d in GEHAN["groups"].items() for w, r in zip(d["weeks"], d["relapsed"],
                                                                                  strict=True)]
    table = pl.DataFrame(rows, schema=["arm", "weeks", "in_remission"], orient="row")
    summary = duration_summary(table, "weeks", "in_remission", by="arm").summary
    medians = dict(zip(summary["group"].to_list(), summary["km_median"].to_list(), strict=True))
    assert medians["6-MP"] == 23 and medians["placebo"] == 8
    six_mp = summary.filter(group="6-MP").row(0, named=True)
    assert (six_mp["n_episodes"], six_mp["n_resolved"], six_mp["n_ongoing"]) == (21, 9, 12)
    # resolved only: 6, 6, 6, 7, 10, 13, 16, 22, 23 -> median 10, type-7 quartiles 6 and 16
    assert (six_mp["resolved_median"], six_mp["resolved_q1"], six_mp["resolved_q3"]) == (10, 6, 16)
    assert (six_mp["resolved_min"], six_mp["resolved_max"]) == (6, 23)


def test_median_rules_at_the_edges() -> None:
    assert km_median([1, 2, 3, 4], [1, 1, 1, 1]) == 2.5  # flat at exactly 0.5 between 2 and 3: midpoint
    assert km_median([1, 2, 3, 4], [1, 1, 0, 0]) == 3.0  # flat at 0.5 to the last follow-up (4): midpoint
    assert km_median([1, 2, 3], [1, 0, 0]) is None  # the curve never falls to 0.5
    assert km_median([], []) is None


durations = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=40)


@given(durations)
def test_without_ongoing_episodes_km_median_is_the_sample_median(values: list[int]) -> None:
    assert km_median(values, [1] * len(values)) == pytest.approx(float(np.median(values)))


def _course_table() -> pl.DataFrame:
    return pl.DataFrame({
        "patient_id": ["a", "b", "c", "d", "e", "f", "g"],
        "crs_duration_days": [3, 5, None, 2, 8, None, 4],
        "crs_ongoing": [False, True, None, False, False, None, None],
        "crs_max_grade": [1, 2, 0, 1, 3, 2, 1],
        "product": ["x", "y", "x", "x", "y", "x", None],
    })


def test_strata_counts_by_grade_and_group() -> None:
    result = duration_summary(_course_table(), "crs_duration_days", "crs_ongoing", grade="crs_max_grade", by="product")
    summary = result.summary
    cohort = summary.filter(pl.col("group").is_null() & pl.col("grade").is_null()).row(0, named=True)
    # grade 0 (c) is no episode; f has grade 2 but no duration; g has a duration but no ongoing flag
    assert (cohort["n_episodes"], cohort["n_resolved"], cohort["n_ongoing"], cohort["n_unknown"]) == (4, 3, 1, 2)
    assert cohort["resolved_median"] == 3 and cohort["km_median"] == 5.5
    grade_2_y = summary.filter((pl.col("group") == "y") & (pl.col("grade") == 2)).row(0, named=True)
    assert (grade_2_y["n_ongoing"], grade_2_y["resolved_median"], grade_2_y["km_median"]) == (1, None, None)
    assert summary.filter(pl.col("group") == "x").get_column("grade").to_list() == [None, 1, 2]


def test_without_grade_column_every_row_with_a_duration_is_an_episode() -> None:
    summary = duration_summary(_course_table(), "crs_duration_days", "crs_ongoing").summary
    assert summary.height == 1
    assert summary.row(0, named=True)["n_episodes"] == 4 and summary.row(0, named=True)["n_unknown"] == 1


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [("crs_duration_days", [3, -1, None, 2, 8, None, 4], "'b' has a negative duration -1"),
     ("crs_ongoing", ["no", "maybe", None, "no", "yes", None, None], "'b' .* 'maybe'; use true/false or 1/0"),
     ("crs_duration_days", ["3", "two", None, "2", "8", None, "4"], "'two', which is not a number")],
)
def test_bad_values_name_the_patient_and_the_fix(column: str, values: list, message: str) -> None:
    table = _course_table().with_columns(pl.Series(column, values))
    with pytest.raises(StatsInputError, match=message):
        duration_summary(table, "crs_duration_days", "crs_ongoing")


def test_docstring_example() -> None:
    failures, _ = doctest.testmod(durations_module)
    assert failures == 0


def test_cli_durations_json(tmp_path: Path) -> None:
    path = tmp_path / "patients.parquet"
    _course_table().write_parquet(path)
    result = CliRunner().invoke(app, ["cohort", "durations", str(path), "--duration", "crs_duration_days",
                                      "--ongoing", "crs_ongoing", "--grade-column", "crs_max_grade", "--by",
                                      "product", "--json"], env=WIDE)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["analysis"] == "durations" and document["grade_column"] == "crs_max_grade"
    assert all(set(row) == ROW_KEYS for row in document["rows"])
    assert "censored" in document["km_method"]


def test_cli_durations_table_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    _course_table().write_csv(path)
    shown = CliRunner().invoke(app, ["cohort", "durations", str(path), "--duration", "crs_duration_days",
                                     "--ongoing", "crs_ongoing"], env=WIDE)
    assert shown.exit_code == 0 and "KM median" in shown.stdout
    missing = CliRunner().invoke(app, ["cohort", "durations", str(path), "--duration", "icans_duration_days",
                                       "--ongoing", "crs_ongoing"], env=WIDE)
    assert missing.exit_code == 2 and "'icans_duration_days'" in missing.stderr
