"""Toxicity incidence (``tocsin.stats.incidence``) and ``tocsin cohort incidence``.

Counts are checked on tables small enough to count by hand; intervals through cohorts built to reproduce a
published R case (682 of 925 with any grade -> binom.test limits, tests/fixtures/stats/binom_*.yaml).
Properties: relabelling groups never changes any group's figures; row order never matters; every interval
contains its estimate; "any grade" equals the sum of the single grades.
"""

from __future__ import annotations

import doctest
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import run
from tocsin.stats import incidence as incidence_module
from tocsin.stats.incidence import incidence
from tocsin.stats.input_checks import StatsInputError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stats"
ROW_KEYS = {"toxicity", "group", "category", "kind", "grade", "events", "n_known", "n_unknown", "estimate", "lower",
            "upper"}



def _row(result, toxicity: str, kind: str, grade: int, group: str | None = None) -> dict:
    frame = result.summary.filter(
        (pl.col("toxicity") == toxicity) & (pl.col("kind") == kind) & (pl.col("grade") == grade)
        & pl.col("group").eq_missing(group)
    )
    assert frame.height == 1
    return frame.row(0, named=True)


def _cohort(grades: list[int | None], products: list[str | None] | None = None) -> pl.DataFrame:
    table = pl.DataFrame({"patient_id": [f"P{i}" for i in range(len(grades))], "crs_max_grade": grades},
                         schema_overrides={"crs_max_grade": pl.Int64})
    if products is not None:
        table = table.with_columns(pl.Series("product", products, dtype=pl.String))
    return table


def test_counts_by_hand_with_unknown_grades_apart() -> None:
    table = _cohort([0, 1, 1, 2, 3, 4, None, None, 0, 3],
                    ["a", "a", "b", "b", "a", "b", "a", "b", None, "a"])
    result = incidence(table, ["crs_max_grade"], by="product")
    overall_any = _row(result, "crs_max_grade", "at_least", 1)
    assert (overall_any["events"], overall_any["n_known"], overall_any["n_unknown"]) == (6, 8, 2)
    assert _row(result, "crs_max_grade", "at_least", 3)["events"] == 3
    assert [_row(result, "crs_max_grade", "exactly", g)["events"] for g in (1, 2, 3, 4)] == [2, 1, 2, 1]
    group_a = _row(result, "crs_max_grade", "at_least", 3, "a")
    assert (group_a["events"], group_a["n_known"], group_a["n_unknown"]) == (2, 4, 1)
    group_b = _row(result, "crs_max_grade", "at_least", 1, "b")
    assert (group_b["events"], group_b["n_known"], group_b["n_unknown"]) == (3, 3, 1)
    # the patient without a product counts in the whole cohort only
    assert result.summary.get_column("group").drop_nulls().unique().sort().to_list() == ["a", "b"]


def test_rows_are_ordered_overall_first_then_groups_then_categories() -> None:
    result = incidence(_cohort([0, 1, 3], ["b", "a", "b"]), ["crs_max_grade"], by="product")
    groups = result.summary.get_column("group").to_list()
    assert groups[:6] == [None] * 6 and groups[6] == "a" and groups[-1] == "b"
    first = result.summary.head(6)
    assert list(zip(first["kind"], first["grade"], strict=True)) == [
        ("at_least", 1), ("at_least", 3), ("exactly", 1), ("exactly", 2), ("exactly", 3), ("exactly", 4)]


def test_grade_five_extends_the_single_grade_rows() -> None:
    result = incidence(_cohort([0, 5, 2]), ["crs_max_grade"])
    assert result.summary.filter(kind="exactly").get_column("grade").to_list() == [1, 2, 3, 4, 5]


def test_interval_reproduces_r_binom_test_on_a_cohort() -> None:
    case = next(c for c in yaml.safe_load((FIXTURES / "binom_clopper_pearson.yaml").read_text())["cases"]
                if c["n"] == 925)
    table = _cohort([0] * 243 + [1] * 400 + [3] * 282 + [None] * 17)
    row = _row(incidence(table, ["crs_max_grade"]), "crs_max_grade", "at_least", 1)
    assert (row["events"], row["n_known"], row["n_unknown"]) == (682, 925, 17)
    assert row["lower"] == pytest.approx(case["lower"], abs=5e-8)
    assert row["upper"] == pytest.approx(case["upper"], abs=5e-8)


def test_wilson_on_a_cohort_reproduces_r_prop_test() -> None:
    case = next(c for c in yaml.safe_load((FIXTURES / "binom_wilson.yaml").read_text())["cases"]
                if c["method"] == "wilson" and c["n"] == 52)
    row = _row(incidence(_cohort([4] * 6 + [0] * 46), ["crs_max_grade"], method="wilson"),
               "crs_max_grade", "at_least", 3)
    assert row["lower"] == pytest.approx(case["lower"], abs=5e-9)
    assert row["upper"] == pytest.approx(case["upper"], abs=5e-9)


def test_several_columns_and_float_grades() -> None:
    table = pl.DataFrame({"patient_id": ["a", "b", "c", "d"], "crs_max_grade": [1.0, 0.0, None, float("nan")],
                          "icans_max_grade": [0, 3, 2, 0]})
    result = incidence(table, ["crs_max_grade", "icans_max_grade"])
    assert _row(result, "crs_max_grade", "at_least", 1)["n_unknown"] == 2  # NaN (Parquet) counts as unknown
    assert result.summary.get_column("toxicity").unique(maintain_order=True).to_list() == [
        "crs_max_grade", "icans_max_grade"]
    assert _row(result, "icans_max_grade", "at_least", 3)["events"] == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [([0, 7], "patient 'P1' .* grade 7"), ([0.0, 1.5], "patient 'P1' .* grade 1.5"), ([-1, 0], "patient 'P0'"),
     (["1", "high"], "patient 'P1' .* 'high', which is not a number")],
)
def test_bad_grades_name_the_patient_and_the_fix(values: list, message: str) -> None:
    table = pl.DataFrame({"patient_id": ["P0", "P1"], "crs_max_grade": values})
    with pytest.raises(StatsInputError, match=message) as error:
        incidence(table, ["crs_max_grade"])
    assert "whole number from 0 to 5" in str(error.value)


def test_missing_columns_and_bad_options() -> None:
    table = _cohort([0, 1])
    with pytest.raises(StatsInputError, match="no column.*'icans_max_grade'"):
        incidence(table, ["icans_max_grade"])
    with pytest.raises(StatsInputError, match="no grade column"):
        incidence(table, [])
    with pytest.raises(StatsInputError, match="thresholds"):
        incidence(table, ["crs_max_grade"], at_least=(0,))
    with pytest.raises(StatsInputError, match="both a grade column and the group"):
        incidence(table, ["crs_max_grade"], by="crs_max_grade")


grades = st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=4)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(grades, st.data())
def test_relabelling_groups_never_changes_a_groups_figures(values: list, data: st.DataObject) -> None:
    labels = data.draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=len(values), max_size=len(values)))
    renamed = {"x": "zeta", "y": "alpha", "z": "mid"}
    before = incidence(_cohort(values, labels), ["crs_max_grade"], by="product").summary
    after = incidence(_cohort(values, [renamed[v] for v in labels]), ["crs_max_grade"], by="product").summary
    mapped = before.with_columns(pl.col("group").replace(renamed))
    key = ["group", "kind", "grade"]
    assert mapped.sort(key, nulls_last=False).equals(after.sort(key, nulls_last=False))


@settings(max_examples=60, deadline=None)
@given(grades, st.randoms(use_true_random=False))
def test_row_order_never_matters(values: list, random) -> None:
    labels = [("a", "b")[i % 2] for i in range(len(values))]
    table = _cohort(values, labels)
    order = list(range(table.height))
    random.shuffle(order)
    shuffled = table[order]
    assert incidence(table, ["crs_max_grade"], by="product").summary.equals(
        incidence(shuffled, ["crs_max_grade"], by="product").summary)


@settings(max_examples=60, deadline=None)
@given(grades, st.sampled_from(["clopper-pearson", "wilson", "wilson-cc"]))
def test_intervals_contain_estimates_and_any_grade_is_the_sum_of_grades(values: list, method: str) -> None:
    summary = incidence(_cohort(values), ["crs_max_grade"], method=method).summary
    known = summary.filter(pl.col("n_known") > 0)
    assert (known["lower"] <= known["estimate"]).all() and (known["estimate"] <= known["upper"]).all()
    any_grade = summary.filter(kind="at_least", grade=1)["events"][0]
    assert any_grade == summary.filter(kind="exactly")["events"].sum()


def test_100000_patients_well_under_a_second() -> None:
    rng = np.random.default_rng(5)
    n = 100_000
    table = pl.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "crs_max_grade": pl.Series(rng.integers(0, 5, n)).set(pl.Series(rng.random(n) < 0.05), None),
        "icans_max_grade": rng.integers(0, 5, n),
        "icaht_early_grade": rng.integers(0, 5, n),
        "product": rng.choice(["axi-cel", "tisa-cel", "liso-cel", "brexu-cel"], n),
    })
    start = time.perf_counter()
    result = incidence(table, ["crs_max_grade", "icans_max_grade", "icaht_early_grade"], by="product")
    elapsed = time.perf_counter() - start
    assert result.summary.height == 3 * 5 * 6
    assert elapsed < 1.0, f"incidence of 100,000 patients took {elapsed:.2f} s"


def test_docstring_example() -> None:
    failures, _ = doctest.testmod(incidence_module)
    assert failures == 0


# ---- CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def patients(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    pl.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"],
        "product": ["axi-cel", "axi-cel", "tisa-cel", "tisa-cel", "tisa-cel", "axi-cel"],
        "crs_max_grade": [0, 1, 3, None, 2, 4],
        "icans_max_grade": [0, 0, 1, 3, None, 2],
        "age_years": [55, 61, 70, 48, 66, 59],
    }).write_csv(path)
    return path


def test_cli_incidence_json_defaults_to_the_grade_columns_present(patients: Path) -> None:
    result = run("cohort", "incidence", patients, "--by", "product", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["analysis"] == "incidence" and document["ci_method"] == "clopper-pearson"
    assert document["group_column"] == "product"
    assert {row["toxicity"] for row in document["rows"]} == {"crs_max_grade", "icans_max_grade"}
    assert all(set(row) == ROW_KEYS for row in document["rows"])
    overall = next(r for r in document["rows"] if r["toxicity"] == "crs_max_grade" and r["group"] is None
                   and r["category"] == "grade >= 3")
    assert (overall["events"], overall["n_known"], overall["n_unknown"]) == (2, 5, 1)


def test_cli_incidence_table_and_csv_out(patients: Path, tmp_path: Path) -> None:
    out = tmp_path / "incidence.csv"
    result = run("cohort", "incidence", patients, "--grade-column", "crs_max_grade", "--ci", "wilson", "--out", out)
    assert result.exit_code == 0, result.output
    assert "crs_max_grade" in result.stdout and "Wilson" in result.stdout and "any grade" in result.stdout
    written = pl.read_csv(out)
    assert set(written.columns) == ROW_KEYS and written.height == 6


def test_cli_incidence_unknown_out_format_exits_2_and_writes_nothing(patients: Path, tmp_path: Path) -> None:
    out = tmp_path / "incidence.xlsx"
    result = run("cohort", "incidence", patients, "--out", out)
    assert result.exit_code == 2 and ".csv or .parquet" in result.stderr
    assert list(tmp_path.iterdir()) == [patients]


def test_cli_incidence_at_least_thresholds(patients: Path) -> None:
    result = run("cohort", "incidence", patients, "--grade-column", "icans_max_grade", "--at-least", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["category"] for r in rows if r["kind"] == "at_least"] == ["grade >= 2"]
    assert next(r for r in rows if r["category"] == "grade >= 2")["events"] == 2


def test_cli_incidence_bad_grade_exits_2_naming_file_patient_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("patient_id,crs_max_grade\nP1,1\nP2,grade 3\n")
    result = run("cohort", "incidence", path)
    assert result.exit_code == 2 and result.stdout == ""
    assert "bad.csv" in result.stderr and "'P2'" in result.stderr and "whole number from 0 to 5" in result.stderr


def test_cli_incidence_without_grade_columns_says_how_to_name_one(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("patient_id,age_years\nP1,50\n")
    result = run("cohort", "incidence", path)
    assert result.exit_code == 2 and "--grade-column" in result.stderr


def test_cli_incidence_unknown_group_column_lists_the_columns(patients: Path) -> None:
    result = run("cohort", "incidence", patients, "--by", "arm")
    assert result.exit_code == 2 and "'arm'" in result.stderr and "product" in result.stderr
