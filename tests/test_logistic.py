"""Logistic regression (``tocsin.stats.logistic``) against published R ``glm`` output, and ``tocsin cohort
logistic``.

References (tests/fixtures/stats/logit_*.yaml): the UCLA OARC admissions example (summary, confint.default =
Wald, confint = profile likelihood) and two mtcars models. Estimates, SEs, z and P are compared at the printed
precision; Wald limits to 1e-8; profile limits within 1e-3 SE, because R's MASS interpolates a spline through
profile points while Tocsin solves for them exactly (measured gap on the UCLA model: <= 8e-5 on the log-odds
scale). Properties: swapping the reference level of a binary predictor inverts its OR and CI, and rescaling a
predictor rescales only its coefficient (the MLE and the likelihood-ratio limits do not depend on the
parametrisation); row order never changes a fit.
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from cli_helpers import run
from tocsin.stats import logistic as logistic_module
from tocsin.stats.input_checks import StatsInputError
from tocsin.stats.logistic import SeparationError, logistic_regression

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stats"
UCLA = yaml.safe_load((FIXTURES / "logit_ucla_admissions.yaml").read_text())
MTCARS = yaml.safe_load((FIXTURES / "logit_mtcars.yaml").read_text())
TERM_KEYS = {"term", "variable", "level", "reference_level", "estimate", "std_error", "z", "p", "odds_ratio",
             "wald_lower", "wald_upper", "profile_lower", "profile_upper"}


def _printed(expected: float) -> float:
    """Half a unit of the last significant digit R printed (summary() prints 4 to 7 significant digits)."""
    mantissa = str(expected).split("e")[0]
    digits = len(mantissa.replace("-", "").replace(".", "").lstrip("0"))
    return 0.5 * 10 ** (np.floor(np.log10(abs(expected))) - digits + 1) + 1e-12


@pytest.fixture(scope="module")
def ucla() -> object:
    table = pl.read_csv(FIXTURES / UCLA["data"])
    return logistic_regression(table, UCLA["outcome"], UCLA["predictors"], categorical=UCLA["categorical"])


def test_ucla_counts_and_deviances(ucla) -> None:
    assert (ucla.n_used, ucla.n_events, ucla.n_dropped) == (UCLA["n_used"], UCLA["n_events"], 0)
    assert ucla.null_deviance == pytest.approx(UCLA["null_deviance"], abs=0.005)
    assert ucla.deviance == pytest.approx(UCLA["residual_deviance"], abs=0.005)
    assert ucla.aic == pytest.approx(UCLA["aic"], abs=0.005)
    assert ucla.reference_levels == {"rank": "1"}


@pytest.mark.parametrize("expected", UCLA["terms"], ids=lambda t: t["term"])
def test_ucla_terms_match_r_glm(ucla, expected: dict) -> None:
    row = ucla.summary.filter(pl.col("term") == expected["term"]).row(0, named=True)
    for key in ("estimate", "std_error", "p"):
        assert row[key] == pytest.approx(expected[key], abs=_printed(expected[key])), key
    assert row["z"] == pytest.approx(expected["z"], abs=0.0005)
    assert np.log(row["wald_lower"]) == pytest.approx(expected["wald_lower"], abs=1e-8)
    assert np.log(row["wald_upper"]) == pytest.approx(expected["wald_upper"], abs=1e-8)
    tolerance = 1e-3 * row["std_error"]
    assert np.log(row["profile_lower"]) == pytest.approx(expected["profile_lower"], abs=tolerance)
    assert np.log(row["profile_upper"]) == pytest.approx(expected["profile_upper"], abs=tolerance)
    assert row["odds_ratio"] == pytest.approx(UCLA["odds_ratios"][expected["term"]], abs=5e-8)


@pytest.mark.parametrize("model", MTCARS["models"], ids=lambda m: f"{m['outcome']}~{'+'.join(m['predictors'])}")
def test_mtcars_models_match_r_glm(model: dict) -> None:
    table = pl.read_csv(FIXTURES / "logit_mtcars.csv")
    fit = logistic_regression(table, model["outcome"], model["predictors"], profile=False)
    printed = 10.0 ** -(len(str(model["aic"]).split(".")[1]))
    assert fit.aic == pytest.approx(model["aic"], abs=printed / 2)
    assert fit.deviance == pytest.approx(model["residual_deviance"], abs=printed / 2)
    assert fit.null_deviance == pytest.approx(model["null_deviance"], abs=printed / 2)
    for expected in model["terms"]:
        row = fit.summary.filter(pl.col("term") == expected["term"]).row(0, named=True)
        for key in ("estimate", "std_error", "z", "p"):
            if key in expected:
                assert row[key] == pytest.approx(expected[key], abs=_printed(expected[key])), (expected["term"], key)


def _toxicity_table() -> pl.DataFrame:
    return pl.DataFrame({
        "patient_id": [f"P{i}" for i in range(12)],
        "crs_max_grade": [0, 3, 1, 4, 3, 0, 3, 1, 2, None, 4, 0],
        "easix": [1.0, 2.0, 4.0, 8.0, 1.5, 0.5, 6.0, 3.0, None, 2.2, 0.8, 5.0],
        "product": ["axi-cel", "axi-cel", "tisa-cel", "axi-cel", "tisa-cel", "tisa-cel", "axi-cel", "tisa-cel",
                    "axi-cel", "axi-cel", "tisa-cel", "axi-cel"],
    })


def test_threshold_outcome_and_dropped_rows_are_reported() -> None:
    fit = logistic_regression(_toxicity_table(), "crs_max_grade", ["easix", "product"], threshold=3)
    assert fit.outcome_definition == "crs_max_grade >= 3"
    assert (fit.n_used, fit.n_events, fit.n_dropped) == (10, 5, 2)
    assert fit.dropped_ids == ("P8", "P9")
    assert fit.missing_by_column == {"crs_max_grade": 1, "easix": 1, "product": 0}
    assert fit.summary["term"].to_list() == ["(Intercept)", "easix", "product=tisa-cel"]
    assert fit.reference_levels == {"product": "axi-cel"}
    assert set(fit.summary.columns) == TERM_KEYS


def test_swapping_the_reference_level_inverts_the_odds_ratio() -> None:
    table = _toxicity_table()
    first = logistic_regression(table, "crs_max_grade", ["easix", "product"], threshold=3)
    swapped = logistic_regression(table, "crs_max_grade", ["easix", "product"], threshold=3,
                                  reference={"product": "tisa-cel"})
    a = first.summary.filter(pl.col("variable") == "product").row(0, named=True)
    b = swapped.summary.filter(pl.col("variable") == "product").row(0, named=True)
    assert b["term"] == "product=axi-cel" and b["reference_level"] == "tisa-cel"
    assert b["odds_ratio"] == pytest.approx(1 / a["odds_ratio"], rel=1e-6)
    assert b["wald_lower"] == pytest.approx(1 / a["wald_upper"], rel=1e-6)
    assert b["profile_lower"] == pytest.approx(1 / a["profile_upper"], rel=1e-5)
    assert b["p"] == pytest.approx(a["p"], rel=1e-6)
    easix = [f.summary.filter(pl.col("term") == "easix")["odds_ratio"][0] for f in (first, swapped)]
    assert easix[0] == pytest.approx(easix[1], rel=1e-6)


def test_row_order_does_not_change_the_fit() -> None:
    table = pl.read_csv(FIXTURES / UCLA["data"])
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=11)
    a = logistic_regression(table, "admit", ["gre", "gpa"], profile=False).summary
    b = logistic_regression(shuffled, "admit", ["gre", "gpa"], profile=False).summary
    assert np.allclose(a["estimate"].to_numpy(), b["estimate"].to_numpy(), rtol=1e-9, atol=0)


def test_rescaling_a_predictor_rescales_only_its_coefficient() -> None:
    table = pl.read_csv(FIXTURES / UCLA["data"])
    grams = logistic_regression(table, "admit", ["gre", "gpa"]).summary
    hundreds = logistic_regression(table.with_columns(pl.col("gre") / 100), "admit", ["gre", "gpa"]).summary
    gre = [f.filter(pl.col("term") == "gre").row(0, named=True) for f in (grams, hundreds)]
    assert gre[1]["estimate"] == pytest.approx(100 * gre[0]["estimate"], rel=1e-7)
    assert gre[1]["p"] == pytest.approx(gre[0]["p"], rel=1e-7)
    assert np.log(gre[1]["profile_lower"]) == pytest.approx(100 * np.log(gre[0]["profile_lower"]), rel=1e-6)
    assert hundreds.filter(pl.col("term") == "gpa")["estimate"][0] == pytest.approx(
        grams.filter(pl.col("term") == "gpa")["estimate"][0], rel=1e-7)


def test_complete_separation_is_an_error_naming_the_predictor() -> None:
    table = pl.DataFrame({"patient_id": [str(i) for i in range(8)], "event": [0, 0, 0, 0, 1, 1, 1, 1],
                          "ferritin": [1.0, 2, 3, 4, 5, 6, 7, 8], "age": [50.0, 60, 55, 65, 52, 61, 58, 70]})
    with pytest.raises(SeparationError, match="separated by ferritin") as error:
        logistic_regression(table, "event", ["ferritin", "age"])
    assert "Firth" in str(error.value)


def test_quasi_complete_separation_by_a_category_is_an_error() -> None:
    table = pl.DataFrame({"event": [1, 1, 1, 0, 1, 0, 0, 1], "product": ["a", "a", "a", "b", "b", "b", "b", "b"],
                          "age": [50.0, 60, 55, 65, 52, 61, 58, 70]})
    with pytest.raises(SeparationError, match="product=b"):
        logistic_regression(table, "event", ["product", "age"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"outcome": "crs_max_grade", "predictors": ["easix"]}, "values other than 0 and 1 .* --threshold 3"),
     ({"outcome": "crs_max_grade", "predictors": ["easix"], "threshold": 5}, "needs both outcomes"),
     ({"outcome": "crs_max_grade", "predictors": [], "threshold": 3}, "no predictor"),
     ({"outcome": "crs_max_grade", "predictors": ["product"], "threshold": 3, "reference": {"product": "liso-cel"}},
      "reference level 'liso-cel' .* levels are axi-cel, tisa-cel"),
     ({"outcome": "crs_max_grade", "predictors": ["easix"], "threshold": 3, "reference": {"age": "1"}},
      "not a predictor"),
     ({"outcome": "crs_max_grade", "predictors": ["weight"], "threshold": 3}, "no column.*'weight'"),
     ({"outcome": "crs_max_grade", "predictors": ["crs_max_grade"], "threshold": 3}, "both the outcome and")],
)
def test_bad_requests_say_what_to_change(kwargs: dict, message: str) -> None:
    with pytest.raises(StatsInputError, match=message):
        logistic_regression(_toxicity_table(), **kwargs)


def test_collinear_and_single_level_predictors_are_refused() -> None:
    table = _toxicity_table().with_columns((pl.col("easix") * 2).alias("easix_twice"), pl.lit("x").alias("site"))
    with pytest.raises(StatsInputError, match="collinear"):
        logistic_regression(table, "crs_max_grade", ["easix", "easix_twice"], threshold=3)
    with pytest.raises(StatsInputError, match="single level"):
        logistic_regression(table, "crs_max_grade", ["easix", "site"], threshold=3)


def test_boolean_predictor_text_outcome_and_float_categories() -> None:
    table = pl.DataFrame({
        "patient_id": [f"P{i}" for i in range(10)],
        "severe": ["yes", "no", "no", "yes", "no", "yes", "no", "no", "yes", "no"],
        "infection_any": [True, False, True, True, False, False, False, True, True, False],
        "rank": [1.0, 2.0, 1.0, 2.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0],
    })
    fit = logistic_regression(table, "severe", ["infection_any", "rank"], categorical=["rank"], profile=False)
    assert fit.outcome_definition == "severe is true (1)" and fit.n_events == 4
    assert fit.summary["term"].to_list() == ["(Intercept)", "infection_any=true", "rank=2"]
    assert fit.reference_levels == {"infection_any": "false", "rank": "1"}


def test_text_predictors_that_are_numbers_or_identifiers_are_refused() -> None:
    table = _toxicity_table().with_columns(
        pl.Series("age", ["50", "61", "unknown", "70", "44", "58", "66", "39", "52", "47", "63", "71"]),
        pl.Series("code", [f"C{i}" for i in range(12)]),
    )
    with pytest.raises(StatsInputError, match="'age' is mostly numbers but patient 'P2' has 'unknown'"):
        logistic_regression(table, "crs_max_grade", ["age"], threshold=3)
    wide = pl.concat([table] * 5).with_columns(pl.Series("code", [f"C{i}" for i in range(60)]),
                                               pl.Series("patient_id", [f"Q{i}" for i in range(60)]))
    with pytest.raises(StatsInputError, match="'code' has 5\\d levels .* identifier"):
        logistic_regression(wide, "crs_max_grade", ["code"], threshold=3)


def test_docstring_example() -> None:
    failures, _ = doctest.testmod(logistic_module)
    assert failures == 0


# ---- CLI ---------------------------------------------------------------------------------------------------



def test_cli_logistic_json_on_ucla(tmp_path: Path) -> None:
    result = run("cohort", "logistic", FIXTURES / UCLA["data"], "--outcome", "admit", "--predictor", "gre",
                 "--predictor", "gpa", "--predictor", "rank", "--categorical", "rank", "--reference", "rank=1",
                 "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["analysis"] == "logistic" and document["n_used"] == 400 and document["n_events"] == 127
    assert document["ci_labels"]["wald"].startswith("Wald") and "profile" in document["ci_labels"]["profile"]
    assert [t["term"] for t in document["terms"]] == ["(Intercept)", "gre", "gpa", "rank=2", "rank=3", "rank=4"]
    assert all(set(t) == TERM_KEYS for t in document["terms"])


def test_cli_logistic_table_threshold_and_no_profile(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    _toxicity_table().write_csv(path)
    result = run("cohort", "logistic", path, "--outcome", "crs_max_grade", "--threshold", "3", "--predictor",
                 "easix", "--predictor", "product", "--no-profile")
    assert result.exit_code == 0, result.output
    assert "crs_max_grade >= 3" in result.stdout and "product tisa-cel vs axi-cel" in result.stdout
    assert "dropped" in result.stdout and "P8" in result.stdout


def test_cli_logistic_separation_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "separated.csv"
    path.write_text("patient_id,event,ferritin\n" + "".join(f"P{i},{int(i >= 4)},{i}\n" for i in range(8)))
    result = run("cohort", "logistic", path, "--outcome", "event", "--predictor", "ferritin")
    assert result.exit_code == 2 and result.stdout == ""
    assert "separated.csv" in result.stderr and "separated by ferritin" in result.stderr


def test_cli_logistic_reference_syntax_error_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    _toxicity_table().write_csv(path)
    result = run("cohort", "logistic", path, "--outcome", "crs_max_grade", "--threshold", "3", "--predictor",
                 "product", "--reference", "product")
    assert result.exit_code == 2 and "COLUMN=LEVEL" in result.stderr
