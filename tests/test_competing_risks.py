"""Cumulative incidence (Aalen–Johansen, cmprsk variance) and Gray's test.

References: the six-patient case worked by hand in ``tests/fixtures/survival/cr_hand_worked.yaml``;
independent estimators where they coincide with ours (1 - Kaplan–Meier of lifelines without competing
events; lifelines' Aalen–Johansen on data without ties, where its jitter does nothing); and the properties
issue 5 names (relabelling groups, row order, all causes + overall survival = 1).
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
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from cli_helpers import run
from tocsin.stats.survival.aalen_johansen import SUMMARY_COLUMNS, cumulative_incidence
from tocsin.stats.survival.competing_events import CompetingRisksInputError
from tocsin.stats.survival.gray_test import gray_test

FIXTURES = Path(__file__).parent / "fixtures" / "survival"
HAND = yaml.safe_load((FIXTURES / "cr_hand_worked.yaml").read_text())
BMT = FIXTURES / "cr_bmt_scrucca2007.csv"


def test_hand_worked_estimates_and_variances() -> None:
    fit = cumulative_incidence(HAND["time"], HAND["status"], HAND["event_codes"], HAND["censor_codes"])
    steps = {(row["cause"], row["time"]): row for row in fit.summary.iter_rows(named=True)}
    assert {(c, t) for c, t in steps if t > 0} == {(s["cause"], s["time"]) for s in HAND["steps"]}
    for step in HAND["steps"]:
        row = steps[(step["cause"], step["time"])]
        assert row["n_risk"] == step["n_risk"]
        assert row["cuminc"] == pytest.approx(step["cuminc"], abs=1e-8)
        if "variance" in step:
            assert row["std_err"] ** 2 == pytest.approx(step["variance"], abs=1e-8)
        for limit in ("lower", "upper"):
            if limit in step:
                assert row[limit] == pytest.approx(step[limit], abs=1e-6)


def test_estimates_between_steps_are_the_last_step_and_null_after_follow_up() -> None:
    fit = cumulative_incidence(HAND["time"], HAND["status"], HAND["event_codes"], HAND["censor_codes"])
    at = fit.at([0.5, 3.5, 5.0, 6.0]).filter(pl.col("cause") == 1)
    assert at.get_column("cuminc").to_list()[:3] == pytest.approx([0.0, 1 / 3, 7 / 12])
    assert at.get_column("n_risk").to_list() == [6, 2, 1, None]
    assert at.row(3, named=True)["cuminc"] is None  # beyond the last follow-up (5), as cmprsk's timepoints


def test_without_competing_events_it_is_one_minus_kaplan_meier() -> None:
    rng = np.random.default_rng(7)
    time = np.round(rng.exponential(10, 80))  # rounded: many ties
    status = rng.integers(0, 2, 80)
    fit = cumulative_incidence(time, status, [1], [0])
    km = KaplanMeierFitter().fit(time, status)
    steps = fit.summary.filter(pl.col("time") > 0)
    expected = 1.0 - km.survival_function_at_times(steps.get_column("time").to_numpy()).to_numpy()
    np.testing.assert_allclose(steps.get_column("cuminc").to_numpy(), expected, atol=1e-12)


def test_point_estimates_match_lifelines_without_ties() -> None:
    rng = np.random.default_rng(11)
    time = rng.exponential(5, 120)
    status = rng.integers(0, 3, 120)
    fit = cumulative_incidence(time, status, [1, 2], [0])
    for cause in (1, 2):
        lifelines = AalenJohansenFitter().fit(time, status, event_of_interest=cause).cumulative_density_.iloc[:, 0]
        steps = fit.summary.filter((pl.col("cause") == cause) & (pl.col("time") > 0))
        times = steps.get_column("time").to_numpy()
        np.testing.assert_allclose(steps.get_column("cuminc").to_numpy(), lifelines.loc[times].to_numpy(), atol=1e-12)


competing_data = st.lists(
    st.tuples(st.integers(0, 12), st.sampled_from([0, 1, 2]), st.sampled_from(["a", "b", "c"])), min_size=6, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(competing_data)
def test_all_causes_plus_overall_survival_sum_to_one(rows: list[tuple[int, int, str]]) -> None:
    time = [float(r[0]) for r in rows]
    status = [r[1] for r in rows]
    fit = cumulative_incidence(time, status, [1, 2], [0])
    grid = sorted(set(time))
    at = fit.at(grid)
    total = at.group_by("time").agg(pl.col("cuminc").sum()).sort("time").get_column("cuminc").to_numpy()
    events = np.asarray(status) > 0
    survival = KaplanMeierFitter().fit(time, events).survival_function_at_times(grid).to_numpy()
    np.testing.assert_allclose(total + survival, 1.0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(competing_data, st.randoms(use_true_random=False))
def test_row_order_never_matters(rows: list[tuple[int, int, str]], random) -> None:
    shuffled = rows[:]
    random.shuffle(shuffled)
    fits = []
    for data in (rows, shuffled):
        time, status, group = ([r[k] for r in data] for k in range(3))
        fits.append(cumulative_incidence(time, status, [1, 2], [0], group=group).summary)
    assert fits[0].equals(fits[1])
    results = []
    for data in (rows, shuffled):
        time, status, group = ([r[k] for r in data] for k in range(3))
        if len(set(group)) > 1:
            results.append(gray_test(time, status, group, [1, 2], [0], cause=1).statistic)
    if results and results[0] is None:  # no event of the cause: no statistic, whatever the order
        assert results[1] is None
    elif results:
        assert results[0] == pytest.approx(results[1], rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(competing_data, st.permutations(["a", "b", "c"]), st.sampled_from([1, 2]))
def test_relabelling_groups_never_changes_grays_p(rows: list[tuple[int, int, str]], labels, cause: int) -> None:
    time, status, group = ([r[k] for r in rows] for k in range(3))
    if len(set(group)) < 2:
        return
    rename = dict(zip(["a", "b", "c"], labels, strict=True))
    original = gray_test(time, status, group, [1, 2], [0], cause=cause)
    relabelled = gray_test(time, status, [f"group {rename[g]}" for g in group], [1, 2], [0], cause=cause)
    if original.p is None:
        assert relabelled.p is None
    else:
        assert relabelled.p == pytest.approx(original.p, rel=1e-7, abs=1e-12)


def test_identical_groups_give_a_zero_statistic() -> None:
    table = pl.read_csv(BMT)
    time = table.get_column("ftime").to_list() * 2
    status = table.get_column("status").to_list() * 2
    group = ["copy 1"] * table.height + ["copy 2"] * table.height
    for cause in (1, 2):
        result = gray_test(time, status, group, [1, 2], [0], cause=cause)
        assert result.statistic == pytest.approx(0.0, abs=1e-12)
        assert result.p == pytest.approx(1.0)


def test_one_stratum_is_the_unstratified_test_and_strata_add_up() -> None:
    table = pl.read_csv(BMT)
    args = (table["ftime"].to_list(), table["status"].to_list(), table["dis"].to_list(), [1, 2], [0])
    plain = gray_test(*args, cause=2)
    one = gray_test(*args, cause=2, strata=["x"] * table.height)
    assert (one.statistic, one.n_strata) == (pytest.approx(plain.statistic), 1)
    halves = gray_test(*args, cause=2, strata=["early" if i < 18 else "late" for i in range(table.height)])
    assert halves.n_strata == 2 and halves.df == 1 and halves.statistic != pytest.approx(plain.statistic)


def test_estimates_are_deterministic_with_ties() -> None:
    table = pl.read_csv(BMT)
    first = cumulative_incidence(table["ftime"], table["status"].to_list(), [2, 1], [0], group=table["dis"].to_list())
    second = cumulative_incidence(table["ftime"], table["status"].to_list(), [2, 1], [0], group=table["dis"].to_list())
    assert first.summary.equals(second.summary)
    assert first.summary.columns == list(SUMMARY_COLUMNS)


@pytest.mark.parametrize(
    ("status", "codes", "message"),
    [
        ([1, 2, 9, 0, 9], ([1, 2], [0]), r"row\(s\) 2, 4: status 9 is none of the declared codes"),
        ([1, 2, None, 0, 1], ([1, 2], [0]), r"row\(s\) 2: status None is none of the declared codes"),
        ([1, 2, 0, 0, 1], ([1, 2], [0, 2]), "overlap or repeat"),
    ],
)
def test_undeclared_or_ambiguous_codes_are_refused(status: list, codes: tuple, message: str) -> None:
    with pytest.raises(CompetingRisksInputError, match=message):
        cumulative_incidence([1, 2, 3, 4, 5], status, *codes)


def test_negative_time_is_refused_naming_the_patient() -> None:
    with pytest.raises(CompetingRisksInputError, match="patient P2: time is missing or negative"):
        cumulative_incidence([1, -2, 3], [1, 0, 2], [1, 2], [0], row_names=["patient P1", "patient P2", "patient P3"])



CUMINC = ("cohort", "cuminc", BMT, "--time", "ftime", "--status", "status", "--event-code", "2",
          "--competing-code", "1", "--censor-code", "0")


def test_cli_cuminc_json_document() -> None:
    result = run(*CUMINC, "--by", "dis", "--at", "12", "--at", "24", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["analysis"] == "cumulative_incidence"
    assert document["event_codes"] == {"event": 2, "competing": [1]} and document["censor_codes"] == [0]
    assert set(document["curves"][0]) == set(SUMMARY_COLUMNS)
    assert {(row["group"], row["cause"], row["time"]) for row in document["at"]} == {
        (g, c, t) for g in (0, 1) for c in (2, 1) for t in (12.0, 24.0)
    }
    assert [t["cause"] for t in document["gray_tests"]] == [2, 1]
    assert all(t["df"] == 1 and 0 <= t["p"] <= 1 for t in document["gray_tests"])


def test_cli_cuminc_table_and_csv_out(tmp_path: Path) -> None:
    result = run(*CUMINC, "--by", "dis", "--at", "12")
    assert result.exit_code == 0, result.output
    assert "Gray's test" in result.stdout and "2 (event)" in result.stdout
    out = tmp_path / "cif.csv"
    result = run(*CUMINC, "--out", out)
    assert result.exit_code == 0, result.output
    assert pl.read_csv(out).columns == list(SUMMARY_COLUMNS)


def test_cli_undeclared_status_exits_2_naming_patients_and_the_fix(tmp_path: Path) -> None:
    recoded = tmp_path / "recoded.csv"
    pl.read_csv(BMT).with_columns(
        pl.when(pl.col("patient_id") == "B03").then(3).otherwise(pl.col("status")).alias("status")
    ).write_csv(recoded)
    result = run("cohort", "cuminc", recoded, "--time", "ftime", "--status", "status", "--event-code", "2",
                 "--competing-code", "1")
    assert result.exit_code == 2
    assert "patient B03" in result.output and "status 3" in result.output and "--censor-code" in result.output


def test_cli_bad_options_exit_2(tmp_path: Path) -> None:
    assert run(*CUMINC, "--out", tmp_path / "x.txt").exit_code == 2
    result = run(*CUMINC[:-2], "--censor-code", "none")
    assert result.exit_code == 2 and "is not a number" in result.output
    result = run(*CUMINC, "--by", "nope")
    assert result.exit_code == 2 and "no column(s) 'nope'" in result.output


def test_grays_test_hand_worked_through_the_reference_routine() -> None:
    case = yaml.safe_load((FIXTURES / "cr_gray_hand_worked.yaml").read_text())
    result = gray_test(
        case["time"], case["status"], case["group"], case["event_codes"], case["censor_codes"], cause=case["cause"]
    )
    assert result.df == case["df"]
    assert result.statistic == pytest.approx(case["statistic"], abs=1e-12)
    assert result.p == pytest.approx(case["p"], abs=1e-7)


def test_cli_strata_and_plain_intervals() -> None:
    result = run(*CUMINC, "--strata", "dis")
    assert result.exit_code == 2 and "give --by as well" in result.output
    result = run(*CUMINC, "--by", "dis", "--strata", "dis", "--conf-type", "plain", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["strata"] == "dis" and document["conf_type"] == "plain"
    # Stratifying by the compared groups leaves nothing to compare within a stratum: no statistic.
    assert all(t["statistic"] is None for t in document["gray_tests"])


CMPRSK = yaml.safe_load((FIXTURES / "cr_cmprsk_test_rout.yaml").read_text())


def _cmprsk_rows(selection: object) -> pl.DataFrame:
    data = pl.read_csv(FIXTURES / CMPRSK["data"])
    if selection == "all":
        return data
    if "group_not" in selection:
        return data.filter(pl.col("gg") != selection["group_not"])
    return data.filter((pl.col("row") <= selection["first"]) & ~pl.col("row").is_in(selection["drop"]))


@pytest.mark.parametrize("case", CMPRSK["cases"], ids=lambda c: c["id"])
def test_matches_cmprsk_own_regression_output(case: dict) -> None:
    data = _cmprsk_rows(case["rows"])
    codes = CMPRSK["status_codes"]
    args = (data["ss"].to_list(), data["cc"].to_list(), codes["events"], codes["censored"])
    group = data[case["group"]].to_list() if case["group"] else None
    strata = data[case["strata"]].to_list() if case["strata"] else None
    for cause, expected in case.get("tests", {}).items():
        result = gray_test(args[0], args[1], group, *args[2:], cause=cause, strata=strata)
        assert result.df == expected["df"]
        assert result.statistic == pytest.approx(expected["stat"], rel=5e-7)
        assert result.p == pytest.approx(expected["pv"], rel=5e-7)
    if "est" not in case:
        return
    at = cumulative_incidence(*args, group=group).at(case["times"])
    for name, estimates in case["est"].items():
        label, cause = name.split(" ")
        rows = at.filter((pl.col("cause") == int(cause)) & ((pl.col("group") == label) if group else pl.lit(True)))
        for got, want, got_se, want_var in zip(
            rows["cuminc"].to_list(), estimates, rows["std_err"].to_list(), case["var"][name], strict=True
        ):
            if want is None:
                assert got is None and got_se is None
            else:
                assert got == pytest.approx(want, rel=5e-7)
                assert got_se**2 == pytest.approx(want_var, rel=5e-6)


def test_cli_on_the_agreed_patient_table_columns(tmp_path: Path) -> None:
    """Relapse vs non-relapse mortality by product, and CRS onset with death competing, from derive's columns."""
    rng = np.random.default_rng(3)
    n = 60
    os_days = np.round(rng.uniform(20, 700, n))
    crs_onset = np.where(rng.random(n) < 0.6, np.round(rng.uniform(0, 10, n)), np.nan)
    patients = pl.DataFrame(
        {
            "patient_id": [f"P{k:03d}" for k in range(n)],
            "product": rng.choice(["axi-cel", "tisa-cel"], n).tolist(),
            "relapse_nrm_days": np.round(rng.uniform(10, 700, n)),
            "relapse_nrm_status": rng.integers(0, 3, n),
            "crs_onset_day": crs_onset,
            "os_days": os_days,
            "os_event": rng.integers(0, 2, n),
        }
    ).with_columns(pl.col("crs_onset_day").fill_nan(None))
    # The derivation docs/competing_risks.md gives for CRS onset with death as the competing event.
    patients = patients.with_columns(
        crs_time=pl.coalesce("crs_onset_day", "os_days"),
        crs_status=pl.when(pl.col("crs_onset_day").is_not_null()).then(1).when(pl.col("os_event") == 1).then(2)
        .otherwise(0),
    )
    path = tmp_path / "patients.parquet"
    patients.write_parquet(path)
    relapse = run("cohort", "cuminc", path, "--time", "relapse_nrm_days", "--status", "relapse_nrm_status",
                  "--event-code", "1", "--competing-code", "2", "--by", "product", "--at", "365", "--json")
    assert relapse.exit_code == 0, relapse.output
    assert {row["group"] for row in json.loads(relapse.stdout)["at"]} == {"axi-cel", "tisa-cel"}
    crs = run("cohort", "cuminc", path, "--time", "crs_time", "--status", "crs_status", "--event-code", "1",
              "--competing-code", "2", "--at", "14", "--json")
    assert crs.exit_code == 0, crs.output
    at14 = {row["cause"]: row["cuminc"] for row in json.loads(crs.stdout)["at"]}
    assert at14[1] == pytest.approx(patients["crs_onset_day"].is_not_null().mean())
