"""Cox regression and its proportional-hazards test against R's printed output on the lung data.

Expected values come from ``tests/fixtures/survival/cox_lung.yaml`` (each case cites the R output it
copies); the data are lifelines' copy of R's ``survival::lung``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.datasets import load_lung

from cli_helpers import run
from tocsin.stats.survival.cox import CoxInputError, cox_regression
from tocsin.stats.survival.proportional_hazards import proportional_hazards_test

FIXTURES = Path(__file__).parent / "fixtures" / "survival"
REFERENCE = yaml.safe_load((FIXTURES / "cox_lung.yaml").read_text())


@pytest.fixture(scope="module")
def lung() -> pl.DataFrame:
    return pl.from_pandas(load_lung())


def _printed_digits(expected: float) -> float:
    """Half a unit in the last digit R printed."""
    text = f"{expected}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0**-decimals + 1e-12


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: c["id"])
def test_cox_matches_r_coxph(lung: pl.DataFrame, case: dict) -> None:
    fit = cox_regression(lung, "time", "status", case["covariates"], case["references"])
    assert (fit.n, fit.n_events) == (case["n"], case["n_events"])
    terms = {row["term"]: row for row in fit.summary.iter_rows(named=True)}
    assert set(terms) == set(case["terms"])
    for term, expected in case["terms"].items():
        for key, value in expected.items():
            assert terms[term][key] == pytest.approx(value, abs=_printed_digits(value)), (term, key)
    for name, expected in case["tests"].items():
        test = fit.test(name)
        assert test.df == expected["df"]
        assert test.statistic == pytest.approx(expected["statistic"], abs=_printed_digits(expected["statistic"]))
        assert test.p == pytest.approx(expected["p"], abs=_printed_digits(expected["p"]))


@pytest.mark.parametrize("case", REFERENCE["proportional_hazards"], ids=lambda c: c["id"])
def test_proportional_hazards_matches_r_cox_zph(lung: pl.DataFrame, case: dict) -> None:
    fit = cox_regression(lung, "time", "status", case["covariates"])
    assert fit.n_dropped == case.get("n_dropped", 0)
    rows = {row["term"]: row for row in proportional_hazards_test(fit).summary.iter_rows(named=True)}
    assert list(rows) == list(case["rows"])
    for term, expected in case["rows"].items():
        assert rows[term]["df"] == expected["df"]
        assert rows[term]["chisq"] == pytest.approx(expected["chisq"], abs=case["tolerance"]["chisq"])
        assert rows[term]["p"] == pytest.approx(expected["p"], abs=case["tolerance"]["p"])


def test_reference_level_flips_the_hazard_ratio(lung: pl.DataFrame) -> None:
    one = cox_regression(lung, "time", "status", ["sex"], {"sex": "1"}).summary.row(0, named=True)
    two = cox_regression(lung, "time", "status", ["sex"], {"sex": "2"}).summary.row(0, named=True)
    assert (one["term"], one["reference"], two["term"], two["reference"]) == ("sex=2", "1", "sex=1", "2")
    assert one["coef"] == pytest.approx(-two["coef"], rel=1e-6)
    assert one["p"] == pytest.approx(two["p"], rel=1e-6)


def test_text_covariate_defaults_to_the_first_sorted_level(lung: pl.DataFrame) -> None:
    table = lung.with_columns(pl.when(pl.col("sex") == 1).then(pl.lit("male")).otherwise(pl.lit("female")).alias("sx"))
    row = cox_regression(table, "time", "status", ["sx"]).summary.row(0, named=True)
    assert (row["term"], row["reference"]) == ("sx=male", "female")
    assert row["coef"] == pytest.approx(0.5310, abs=5e-5)  # the sign of R's -0.531 for female vs male


def test_three_level_factor_is_one_term_in_the_ph_test(lung: pl.DataFrame) -> None:
    table = lung.with_columns(pl.col("ph.ecog").clip(0, 2).cast(pl.Int64))
    fit = cox_regression(table, "time", "status", ["ph.ecog"], {"ph.ecog": "0"})
    assert fit.summary.get_column("term").to_list() == ["ph.ecog=1", "ph.ecog=2"]
    assert fit.test("wald").df == 2
    zph = proportional_hazards_test(fit).summary
    assert zph.filter(pl.col("term") == "ph.ecog").get_column("df").item() == 2


@settings(max_examples=15, deadline=None)
@given(st.permutations(list(range(60))))
def test_row_order_never_changes_the_fit(order: list[int]) -> None:
    table = pl.from_pandas(load_lung()).head(60).select("time", "status", "age", "sex")
    expected = cox_regression(table, "time", "status", ["age", "sex"])
    shuffled = cox_regression(table[order], "time", "status", ["age", "sex"])
    np.testing.assert_allclose(shuffled.coefficients, expected.coefficients, rtol=1e-6)
    for a, b in zip(shuffled.tests, expected.tests, strict=True):
        assert a.statistic == pytest.approx(b.statistic, rel=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.with_columns(pl.col("status") + 1), r"must be 0 \(censored\) or 1 \(event\)"),
        (lambda t: t.with_columns(pl.lit(1).alias("status")).with_columns(pl.lit(0).alias("status")), "no events"),
        (lambda t: t.with_columns(pl.col("time") * -1), "negative"),
    ],
)
def test_bad_outcome_columns_are_refused(lung: pl.DataFrame, change, message: str) -> None:
    with pytest.raises(CoxInputError, match=message):
        cox_regression(change(lung), "time", "status", ["sex"])


def test_bad_covariates_are_refused(lung: pl.DataFrame) -> None:
    with pytest.raises(CoxInputError, match="does not occur; its levels are 1, 2"):
        cox_regression(lung, "time", "status", ["sex"], {"sex": "3"})
    with pytest.raises(CoxInputError, match="single level"):
        cox_regression(lung.with_columns(pl.lit("a").alias("k")), "time", "status", ["k"])
    with pytest.raises(CoxInputError, match=r"no column\(s\) 'nope'; the table has"):
        cox_regression(lung, "time", "status", ["nope"])


@pytest.fixture
def lung_csv(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    pl.from_pandas(load_lung()).with_row_index("patient_id", offset=1).with_columns(
        pl.format("L{}", "patient_id").alias("patient_id")
    ).write_csv(path)
    return path



def test_cli_cox_json_document(lung_csv: Path) -> None:
    result = run("cohort", "cox", lung_csv, "--time", "time", "--event", "status", "--covariate", "sex",
                 "--covariate", "age", "--reference", "sex=1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) >= {"analysis", "terms", "tests", "proportional_hazards", "references", "ties", "n"}
    assert document["references"] == {"sex": "1"}
    assert [t["term"] for t in document["terms"]] == ["sex=2", "age"]
    assert set(document["terms"][0]) == {
        "term", "variable", "level", "reference", "coef", "hazard_ratio", "std_err", "z", "p", "lower", "upper"
    }
    assert [t["name"] for t in document["tests"]] == ["likelihood_ratio", "wald", "score"]


def test_cli_cox_table_and_out_file(lung_csv: Path, tmp_path: Path) -> None:
    result = run("cohort", "cox", lung_csv, "--time", "time", "--event", "status", "--covariate", "sex")
    assert result.exit_code == 0, result.output
    assert "Likelihood ratio" in result.stdout and "GLOBAL" in result.stdout
    out = tmp_path / "cox.csv"
    result = run("cohort", "cox", lung_csv, "--time", "time", "--event", "status", "--covariate", "sex", "--out", out)
    assert result.exit_code == 0, result.output
    assert pl.read_csv(out).columns[:5] == ["term", "variable", "level", "reference", "coef"]


def test_cli_cox_bad_input_exits_2_with_the_fix(lung_csv: Path, tmp_path: Path) -> None:
    result = run("cohort", "cox", lung_csv, "--time", "time", "--event", "status", "--covariate", "sex",
                 "--reference", "sex")
    assert result.exit_code == 2 and "COLUMN=LEVEL" in result.output
    result = run("cohort", "cox", lung_csv, "--time", "time", "--event", "nope", "--covariate", "sex")
    assert result.exit_code == 2 and "no column(s) 'nope'" in result.output
    recoded = tmp_path / "recoded.csv"
    pl.read_csv(lung_csv).with_columns(pl.col("status") + 1).write_csv(recoded)
    result = run("cohort", "cox", recoded, "--time", "time", "--event", "status", "--covariate", "sex")
    assert result.exit_code == 2
    assert "patient L1" in result.output and "cuminc" in result.output


def test_perfect_separation_is_reported_as_a_warning_naming_the_term() -> None:
    table = pl.DataFrame({"t": [1, 2, 3, 4, 5, 6, 7, 8], "e": [1, 1, 1, 1, 0, 0, 0, 0], "arm": ["a"] * 4 + ["b"] * 4})
    fit = cox_regression(table, "t", "e", ["arm"])
    assert any("'arm=b'" in w for w in fit.warnings)
    assert abs(fit.summary.row(0, named=True)["coef"]) > 5  # drifting to infinity, as R's "may be infinite"


def test_clean_fit_has_no_warnings(lung: pl.DataFrame) -> None:
    assert cox_regression(lung, "time", "status", ["sex", "age"]).warnings == ()


def test_boolean_covariate_is_a_factor_with_false_as_reference(lung: pl.DataFrame) -> None:
    table = lung.with_columns((pl.col("sex") == 2).alias("female"))
    row = cox_regression(table, "time", "status", ["female"]).summary.row(0, named=True)
    assert (row["term"], row["reference"]) == ("female=True", "False")
    assert row["coef"] == pytest.approx(-0.5310, abs=5e-5)
