"""Table 1 (tocsin.stats.table1, the renderers, and ``tocsin cohort table1``).

Reference values are the published R outputs of tests/fixtures/stats/r_reference.yaml, reached here through
the whole Table 1 path (patient rows → summaries → default or requested test). Properties: relabelling the
groups never changes a P value; permuting rows never changes anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from docx import Document
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import run
from tocsin.stats.hypothesis_tests import DEFAULT_EXACT_LIMIT, DEFAULT_RESAMPLES
from tocsin.stats.summaries import continuous_summary
from tocsin.stats.table1 import Table1Error, Table1Options, format_p, parse_assignments, table1

FIXTURES = Path(__file__).parent / "fixtures" / "stats"
REFERENCE = {
    section: {case["id"]: case for case in cases}
    for section, cases in yaml.safe_load((FIXTURES / "r_reference.yaml").read_text()).items()
}
JSON_KEYS = {"variable", "levels", "groups", "test", "statistic", "df", "p", "p_adjusted"}


def _rows_from_table(table: list[list[int]], variable: str = "level", by: str = "group") -> pl.DataFrame:
    """One patient row per count: level i (row of the table) in group j (column)."""
    levels, groups = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            levels += [f"L{i}"] * count
            groups += [f"G{j}"] * count
    return pl.DataFrame({"patient_id": range(len(levels)), variable: levels, by: groups})


def _sleep() -> pl.DataFrame:
    case = REFERENCE["wilcoxon"]["sleep_drugs"]
    return pl.DataFrame({"extra": case["x"] + case["y"], "drug": ["1"] * 10 + ["2"] * 10})


def _variable(result, name):
    return next(v for v in result.variables if v.variable == name)


def test_default_fisher_on_an_r_by_c_table_matches_r() -> None:
    case = REFERENCE["fisher"]["job_satisfaction_4x4"]
    comparison = table1(_rows_from_table(case["table"]), "group").variables[0]
    assert comparison.result.name == "Fisher–Freeman–Halton exact test"
    assert comparison.test_choice.startswith("default: an expected count < 5")
    assert comparison.result.p == pytest.approx(case["p"], abs=case["tolerance"])


def test_default_chi_square_when_every_expected_count_is_at_least_5() -> None:
    case = REFERENCE["chisq"]["party_identification_by_gender"]
    comparison = table1(_rows_from_table(case["table"]), "group").variables[0]
    assert comparison.result.test == "chisq"
    assert comparison.result.statistic == pytest.approx(case["statistic"], abs=case["statistic_tolerance"])
    assert comparison.result.p == pytest.approx(case["p"], rel=case["p_relative_tolerance"])


def test_continuous_defaults_and_requested_tests_match_r() -> None:
    sleep = _sleep()
    default = table1(sleep, "drug").variables[0]
    wilcoxon = REFERENCE["wilcoxon"]["sleep_drugs"]
    assert default.kind == "continuous" and default.result.test == "wilcoxon"
    assert default.result.p == pytest.approx(wilcoxon["p"], abs=wilcoxon["tolerance"])
    welch = REFERENCE["t_test"]["sleep_welch"]
    requested = table1(sleep, "drug", options=Table1Options(tests={"extra": "t-welch"})).variables[0]
    assert requested.test_choice == "requested (t-welch)"
    assert requested.result.p == pytest.approx(welch["p"], abs=welch["tolerance"])

    kruskal = REFERENCE["kruskal"]["airquality_ozone_by_month"]
    air = pl.read_csv(FIXTURES / "airquality.csv", null_values=[""]).select("Ozone", "Month")
    ozone = table1(air, "Month").variables[0]
    assert ozone.result.test == "kruskal"
    assert ozone.result.p == pytest.approx(kruskal["p"], rel=kruskal["p_relative_tolerance"])
    assert ozone.missing == {"5": 5, "6": 21, "7": 5, "8": 5, "9": 1, "Overall": 37}
    assert ozone.rows[-1].label == "Missing"


def test_type2_and_type7_quartiles_follow_their_definitions() -> None:
    # 120, 120, 140, 210: R quantile(type = 7) gives p75 = 157.5 and type = 2 gives 175 (Hyndman & Fan 1996);
    # figures from the gtsummary question at https://www.volcengine.com/article/1138956.
    frame = pl.DataFrame({"arm": ["a"] * 4, "x": [120.0, 120.0, 140.0, 210.0]})
    assert continuous_summary(frame, "x", "arm", "type7").get_column("q3").item() == 157.5
    assert continuous_summary(frame, "x", "arm", "type2").get_column("q3").item() == 175.0
    assert continuous_summary(frame, "x", "arm", "type2").get_column("q1").item() == 120.0


def test_summaries_counts_percentages_and_missing_group() -> None:
    frame = pl.DataFrame(
        {
            "arm": ["A", "A", "A", "B", "B", None],
            "sex": ["F", "M", None, "F", "F", "M"],
            "age": [50.0, 60.0, 70.0, 40.0, None, 30.0],
        }
    )
    result = table1(frame, "arm", options=Table1Options(kinds={"age": "continuous"}))
    assert result.excluded_missing_group == 1
    assert [(g.label, g.n) for g in result.groups] == [("A", 3), ("B", 2)]
    sex = _variable(result, "sex")
    assert sex.levels == ("F", "M")
    assert dict(sex.rows[0].cells) == {"A": "1 (50.0%)", "B": "2 (100.0%)", "Overall": "3 (75.0%)"}
    assert dict(sex.rows[-1].cells) == {"A": "1", "B": "0", "Overall": "1"}
    age = _variable(result, "age")
    assert age.rows[0].cells["A"] == "60.0 (50.0, 70.0)"  # type 2, n = 3: Q1 = x(⌈0.75⌉), Q3 = x(⌈2.25⌉)
    assert age.rows[0].cells["B"] == "40.0 (40.0, 40.0)"


def test_adjustment_and_display_of_p() -> None:
    sleep = _sleep().with_columns(noise=pl.Series([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2))
    result = table1(sleep, "drug", options=Table1Options(adjust="bonferroni"))
    raw = [v.result.p for v in result.variables]
    assert [v.p_adjusted for v in result.variables] == pytest.approx([min(1.0, 2 * p) for p in raw])
    assert "p_adjusted" in result.summary.columns


@pytest.mark.parametrize(
    ("p", "digits", "shown"),
    [
        (0.0000123, 3, "<0.001"),
        (0.0009999, 3, "<0.001"),
        (0.9996, 3, ">0.999"),
        (0.99949, 3, "0.999"),
        (1.0, 3, "1.000"),
        (0.04962, 2, "0.0496"),
        (0.0496, 3, "0.0496"),
        (0.0504, 2, "0.05"),
        (0.2544, 3, "0.254"),
        (0.00951, 2, "<0.01"),
        (0.0102, 2, "0.01"),
        (None, 3, "—"),
    ],
)
def test_p_is_never_rounded_into_another_meaning(p: float | None, digits: int, shown: str) -> None:
    assert format_p(p, digits) == shown


def test_bad_requests_name_the_fix() -> None:
    frame = pl.DataFrame({"arm": ["A", "A", "B", "B"], "age": [1.0, 2, 3, 4], "sex": ["F", "M", "F", "M"]})
    with pytest.raises(Table1Error, match="one value"):
        table1(frame.with_columns(pl.lit("A").alias("arm")), "arm")
    with pytest.raises(Table1Error, match="no column"):
        table1(frame, "arm", ["weight"])
    with pytest.raises(Table1Error, match="--type age=categorical"):
        table1(frame, "arm", options=Table1Options(tests={"age": "fisher"}, kinds={"age": "continuous"}))
    with pytest.raises(Table1Error, match="not numeric"):
        table1(frame, "arm", options=Table1Options(tests={"sex": "wilcoxon"}))
    with pytest.raises(Table1Error, match="not among the table's variables"):
        table1(frame, "arm", ["sex"], options=Table1Options(tests={"age": "kruskal"}))
    three = pl.DataFrame({"arm": ["A", "B", "C"] * 2, "age": [1.0, 2, 3, 4, 5, 6]})
    with pytest.raises(Table1Error, match="use kruskal"):
        table1(three, "arm", options=Table1Options(tests={"age": "t-welch"}, kinds={"age": "continuous"}))
    with pytest.raises(Table1Error, match="VARIABLE=VALUE"):
        parse_assignments(["age"], ("t-welch",), "--test")
    with pytest.raises(Table1Error, match="unknown 'anova'"):
        parse_assignments(["age=anova"], ("t-welch", "kruskal"), "--test")
    assert parse_assignments(["age=Mann-Whitney"], ("wilcoxon",), "--test") == {"age": "wilcoxon"}


def test_numbers_with_a_typo_name_the_row_and_patient() -> None:
    frame = pl.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(8)],
            "arm": ["A", "B"] * 4,
            "age_years": ["61", "58", "7O", "44", "52", "63", "", "49"],
        }
    ).with_columns(pl.col("age_years").replace("", None))
    with pytest.raises(Table1Error, match=r"'7O' \(data row 3, patient P2\).*--type age_years=categorical"):
        table1(frame, "arm")
    assert table1(frame, "arm", options=Table1Options(kinds={"age_years": "categorical"})).variables


def test_too_large_exact_test_offers_monte_carlo() -> None:
    frame = _rows_from_table(REFERENCE["fisher"]["job_satisfaction_4x4"]["table"])
    with pytest.raises(Table1Error, match="fisher-mc"):
        table1(frame, "group", options=Table1Options(exact_limit=100, tests={"level": "fisher"}))
    # the default choice falls back to the seeded Monte-Carlo P of the same test and names it
    by_default = table1(frame, "group", options=Table1Options(exact_limit=100, seed=3))
    fallback = by_default.variables[0]
    assert fallback.result.test == "fisher_mc" and "Monte-Carlo P (2,000 tables, seed 3)" in fallback.test_choice
    assert not by_default.warnings
    result = table1(frame, "group", options=Table1Options(exact_limit=100, tests={"level": "fisher-mc"}, seed=3))
    assert result.variables[0].result.test == "fisher_mc"
    assert result.variables[0].result.p == fallback.result.p


GROUPED = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", None]), st.integers(0, 40)),
    min_size=8,
    max_size=40,
).filter(lambda rows: len({r[0] for r in rows}) >= 2)


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "arm": [r[0] for r in rows],
            "sex": [r[1] for r in rows],
            "dose": [float(r[2]) for r in rows],
        },
        schema={"arm": pl.String, "sex": pl.String, "dose": pl.Float64},
    )


def _p_values(frame: pl.DataFrame) -> dict[str, float | None]:
    result = table1(frame, "arm", options=Table1Options(kinds={"dose": "continuous"}))
    return {v.variable: v.result.p if v.result else None for v in result.variables}


@settings(max_examples=40, deadline=None)
@given(GROUPED, st.permutations(["a", "b", "c"]).map(lambda p: dict(zip(["a", "b", "c"], [f"g{x}" for x in p]))))
def test_relabelling_groups_never_changes_a_p_value(rows: list[tuple], relabel: dict[str, str]) -> None:
    frame = _frame(rows)
    renamed = frame.with_columns(pl.col("arm").replace_strict(relabel))
    before, after = _p_values(frame), _p_values(renamed)
    assert before.keys() == after.keys()
    for name in before:
        if before[name] is None:
            assert after[name] is None
        else:
            assert after[name] == pytest.approx(before[name], rel=1e-9, abs=1e-15)


@settings(max_examples=30, deadline=None)
@given(GROUPED, st.randoms(use_true_random=False))
def test_permuting_rows_never_changes_anything(rows: list[tuple], random) -> None:
    shuffled = list(rows)
    random.shuffle(shuffled)
    options = Table1Options(kinds={"dose": "continuous"}, continuous_statistics=("median-iqr", "mean-sd"))
    first, second = table1(_frame(rows), "arm", options=options), table1(_frame(shuffled), "arm", options=options)
    assert first.summary.equals(second.summary)



@pytest.fixture
def patients(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    n = 120
    frame = pl.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "product": rng.choice(["axi-cel", "tisa-cel"], n),
            "age_years": rng.normal(60, 10, n).round(1),
            "sex": rng.choice(["F", "M"], n),
            "crs_max_grade": rng.choice([0, 1, 2, 3, 4], n, p=[0.3, 0.4, 0.2, 0.07, 0.03]),
            "crs_ongoing": rng.choice([True, False], n),
        }
    )
    path = tmp_path / "patients.csv"
    frame.write_csv(path)
    return path


def test_cli_terminal_table(patients: Path) -> None:
    result = run("cohort", "table1", patients, "--by", "product", "--stat", "median-iqr", "--stat", "mean-sd")
    assert result.exit_code == 0, result.output
    assert "Wilcoxon rank-sum test" in result.output and "Mean (SD)" in result.output
    assert "axi-cel (N =" in result.output


def test_cli_json_has_stable_keys(patients: Path) -> None:
    result = run("cohort", "table1", patients, "--by", "product", "--json", "--adjust", "holm")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [v["variable"] for v in document["variables"]] == ["age_years", "sex", "crs_max_grade", "crs_ongoing"]
    for variable in document["variables"]:
        assert JSON_KEYS <= variable.keys()
        assert variable["p_adjusted"] >= variable["p"]
    assert document["variables"][2]["levels"] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("suffix", ["csv", "docx", "html", "json"])
def test_cli_writes_each_format(patients: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / "nested" / f"table1.{suffix}"
    result = run("cohort", "table1", patients, "--by", "sex", "--var", "age_years", "--var", "product", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists() and not list(out.parent.glob(".*.partial"))
    if suffix == "csv":
        lines = out.read_text().splitlines()
        assert lines[0].startswith("Characteristic,F (N = ")
        assert lines[1].startswith("age_years,")
    elif suffix == "docx":
        table = Document(str(out)).tables[0]
        assert table.rows[0].cells[0].text == "Characteristic"
        assert any(row.cells[0].text == "product" for row in table.rows)
    elif suffix == "html":
        page = out.read_text()
        assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    else:
        assert json.loads(out.read_text())["by"] == "sex"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "nothing"], "no column(s) 'nothing'"),
        (["--by", "product", "--var", "weight"], "no column(s) 'weight'"),
        (["--by", "product", "--test", "age_years=fisher"], "--type age_years=categorical"),
        (["--by", "product", "--test", "age_years"], "VARIABLE=VALUE"),
        (["--by", "product", "--test", "age_years=anova"], "unknown 'anova'"),
        (["--by", "product", "--test", "sex=t-welch"], "not numeric"),
        (["--by", "product", "--stat", "mode"], "unknown statistic"),
        (["--by", "product", "--out", "table.pdf"], "unknown format '.pdf'"),
    ],
)
def test_cli_bad_input_exits_2_and_names_the_fix(patients: Path, args: list[str], message: str) -> None:
    result = run("cohort", "table1", patients, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_cli_help_states_the_real_defaults() -> None:
    result = run("cohort", "table1", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"{DEFAULT_EXACT_LIMIT:,}" in text and f"{DEFAULT_RESAMPLES}, as R" in text


def test_cli_wilcoxon_ties_exact_names_the_method(tmp_path: Path) -> None:
    path = tmp_path / "sleep.csv"
    _sleep().write_csv(path)
    result = run("cohort", "table1", path, "--by", "drug", "--json", "--wilcoxon-ties", "exact")
    assert result.exit_code == 0, result.output
    variable = json.loads(result.output)["variables"][0]
    assert variable["method"].startswith("exact permutation") and variable["statistic"] == 25.5


def test_cli_default_fisher_past_the_limit_gives_the_monte_carlo_p(tmp_path: Path) -> None:
    path = tmp_path / "job.csv"
    _rows_from_table(REFERENCE["fisher"]["job_satisfaction_4x4"]["table"]).write_csv(path)
    result = run("cohort", "table1", path, "--by", "group", "--exact-limit", "100")
    assert result.exit_code == 0, result.output
    assert "Monte-Carlo P (2,000 tables, seed 1)" in " ".join(result.output.split())
    refused = run("cohort", "table1", path, "--by", "group", "--exact-limit", "100", "--test", "level=fisher")
    assert refused.exit_code == 2 and "fisher-mc" in " ".join(refused.output.split())


def test_cli_group_with_one_level(patients: Path, tmp_path: Path) -> None:
    frame = pl.read_csv(patients).with_columns(pl.lit("axi-cel").alias("product"))
    single = tmp_path / "single.csv"
    frame.write_csv(single)
    result = run("cohort", "table1", single, "--by", "product")
    assert result.exit_code == 2
    assert "at least 2 groups" in " ".join(result.output.split())
