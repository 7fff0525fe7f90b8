"""``tocsin cohort survival`` through typer's CliRunner: the JSON keys, R's numbers, files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from survival_references import FIXTURES, dataset
from cli_helpers import run as run_cli

AML = FIXTURES / "aml.csv"
GROUP_KEYS = {"group", "n", "events", "median", "median_lower", "median_upper", "survival_at", "follow_up", "rmst"}
POINT_KEYS = {"time", "survival", "std_err", "lower", "upper", "n_risk"}


def run(*args: object):
    return run_cli("cohort", "survival", *args)


def document(*args: object) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def lung_csv(tmp_path: Path) -> Path:
    # written with R's own coding (2 = dead, 1 = censored) to exercise --event-code / --censor-code
    path = tmp_path / "lung.csv"
    dataset("lung").with_columns(
        status=pl.col("status") + 1, age_band=pl.when(pl.col("age") >= 65).then(pl.lit("65+")).otherwise(pl.lit("<65"))
    ).select("patient_id", "time", "status", "sex", "age_band").write_csv(path)
    return path


def test_json_has_the_stable_keys_and_r_medians_with_ci_log():
    doc = document(AML, "--time", "time", "--event", "status", "--by", "x", "--ci", "log", "--at", "12")
    assert set(doc) == {"time", "event", "by", "strata", "time_unit", "conf_type", "conf_level", "groups", "test"}
    maintained, nonmaintained = doc["groups"]
    assert set(maintained) == GROUP_KEYS
    assert set(maintained["survival_at"][0]) == POINT_KEYS
    # R: survfit(Surv(time, status) ~ x, data = aml) (tests/fixtures/survival/references.yaml)
    assert (maintained["median"], maintained["median_lower"], maintained["median_upper"]) == (31, 18, None)
    assert (nonmaintained["median"], nonmaintained["median_lower"], nonmaintained["median_upper"]) == (23, 8, None)
    assert set(doc["test"]) == {"name", "statistic", "df", "p"}
    assert doc["test"]["p"] == pytest.approx(0.0653, abs=5e-5)


def test_default_band_is_log_log_as_the_issue_asks():
    assert document(AML, "--time", "time", "--event", "status")["conf_type"] == "log-log"


def test_r_lung_coding_with_explicit_codes_and_one_year_in_months(lung_csv):
    doc = document(
        lung_csv, "--time", "time", "--event", "status", "--event-code", "2", "--censor-code", "1",
        "--ci", "log", "--time-unit", "months", "--at", "12",
    )
    overall = doc["groups"][0]
    assert (overall["n"], overall["events"]) == (228, 165)
    # R: median 310 days [285, 363] (references.yaml), reported in months of 30.4375 days
    assert overall["median"] == pytest.approx(310 / 30.4375)
    assert overall["median_upper"] == pytest.approx(363 / 30.4375)
    assert doc["time_unit"] == "months"


def test_stratified_test_and_rmst(lung_csv):
    doc = document(
        lung_csv, "--time", "time", "--event", "status", "--event-code", "2", "--censor-code", "1",
        "--by", "sex", "--strata", "age_band", "--rmst-horizon", "1022",
    )
    assert doc["test"]["name"] == "stratified log-rank" and doc["test"]["df"] == 1
    # R print(fit, rmean = "common"): sex=1 326.0841 (22.91156) (references.yaml)
    assert doc["groups"][0]["rmst"]["estimate"] == pytest.approx(326.0841, abs=1e-4)


def test_terminal_tables_name_the_test(lung_csv):
    result = run(lung_csv, "--time", "time", "--event", "status", "--event-code", "2", "--censor-code", "1",
                 "--by", "sex", "--at", "365")
    assert result.exit_code == 0, result.output
    assert "log-rank: chi-square 10.33 on 1 df, P = 0.00131" in result.stdout
    assert "Survival at chosen times" in result.stdout


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_out_writes_curves_or_report(tmp_path, suffix):
    out = tmp_path / f"km{suffix}"
    result = run(AML, "--time", "time", "--event", "status", "--by", "x", "--out", out)
    assert result.exit_code == 0, result.output
    if suffix == ".json":
        assert json.loads(out.read_text())["groups"][0]["group"] == "Maintained"
    else:
        frame = pl.read_csv(out) if suffix == ".csv" else pl.read_parquet(out)
        assert frame.columns[:3] == ["group", "time", "n_risk"]
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["--time", "time", "--event", "x"], ["row 1 (patient aml01)", "--event-code"]),
        (["--time", "os_days", "--event", "status"], ["no column(s) 'os_days'"]),
        (["--time", "time", "--event", "status", "--strata", "x"], ["--by"]),
        (["--time", "time", "--event", "status", "--conf-level", "95"], ["between 0 and 1"]),
        (["--time", "time", "--event", "status", "--rmst-horizon", "0"], ["after day 0"]),
        (["--time", "time", "--event", "status", "--out", "km.xlsx"], [".json", ".parquet"]),
    ],
    ids=["ambiguous-event", "no-column", "strata-without-by", "conf", "horizon", "out-format"],
)
def test_bad_input_exits_2_and_names_the_fix(args, phrases):
    result = run(AML, *args)
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    for phrase in phrases:
        assert phrase in message


def test_groups_that_cannot_be_compared_exit_2(lung_csv):
    result = run(lung_csv, "--time", "time", "--event", "status", "--event-code", "2", "--censor-code", "1",
                 "--by", "sex", "--strata", "sex")
    assert result.exit_code == 2
    assert "cannot be compared" in " ".join(result.stderr.split())


def test_a_failed_run_leaves_an_existing_output_untouched(tmp_path):
    out = tmp_path / "km.json"
    out.write_text("previous")
    result = run(AML, "--time", "time", "--event", "x", "--out", out)
    assert result.exit_code == 2
    assert out.read_text() == "previous"


def test_negative_time_is_refused_with_the_patient(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("patient_id,pfs_days,pfs_event\nA,10,1\nB,-3,0\n")
    result = run(path, "--time", "pfs_days", "--event", "pfs_event")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"{path}" in message and "row 2 (patient B)" in message and "cannot be negative" in message
