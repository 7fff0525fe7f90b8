"""``tocsin cohort derive``: one row per patient, checked against values worked out outside the code.

Sources of the expected values: the hand-built courses of ``tests/fixtures/cohort_derive`` (each value with its
arithmetic in ``expected.yaml``), the paper-stated facts of ``examples/*.paper.yaml`` and the documented grades
of docs/examples.md, and the ground-truth labels of the synthetic generator (``tocsin.synth``). Batch-directory
input must give the same table as the raw files; bad input exits 2 with a message that names the fix.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from cli_helpers import ROOT, run
from tocsin.adapters.batch import grade_parquet_to_directory
from tocsin.adapters.files import read_event_file, read_event_files
from tocsin.adapters.patient_table import read_patient_table
from tocsin.cohort.columns import columns_markdown, conform, load_columns
from tocsin.cohort.derive import DeriveInputError, derive_from_events, derive_patients
from tocsin.config import CohortConfig, GradingConfig
from tocsin.core.events import normalise_events
from tocsin.synth import OUTCOME_LABELS, generate_cohort
from tocsin.vocabulary import load_vocabulary

FIXTURE = ROOT / "tests/fixtures/cohort_derive"
EXAMPLES = ROOT / "examples"



def derive_files(files: list[Path], config: GradingConfig | None = None) -> pl.DataFrame:
    normalised = normalise_events(read_event_files(files), load_vocabulary())
    return derive_from_events(normalised, config).table


def row_of(table: pl.DataFrame, patient: str) -> dict:
    rows = table.filter(pl.col("patient_id") == patient).to_dicts()
    assert len(rows) == 1, f"{patient}: {len(rows)} rows"
    return rows[0]


@pytest.fixture(scope="module")
def hand_built() -> pl.DataFrame:
    return derive_files([FIXTURE / "courses.csv"])


# ---------------------------------------------------------------- hand-built courses


def _expected_cases() -> list[tuple[str, str, object]]:
    expected = yaml.safe_load((FIXTURE / "expected.yaml").read_text())["patients"]
    return [(pid, column, value) for pid, columns in expected.items() for column, value in columns.items()]


@pytest.mark.parametrize(("patient", "column", "value"), _expected_cases())
def test_hand_built_course_gives_the_hand_computed_value(hand_built, patient: str, column: str, value) -> None:
    got = row_of(hand_built, patient)[column]
    if isinstance(value, float) and got is not None:
        assert got == pytest.approx(value, rel=1e-9, abs=1e-6), f"{patient}.{column}"
    else:
        assert got == value, f"{patient}.{column}"


def test_one_row_per_patient_with_exactly_the_documented_columns_and_types(hand_built) -> None:
    dictionary = load_columns()
    assert hand_built.columns == dictionary.names
    assert dict(hand_built.schema) == dictionary.schema
    assert hand_built.get_column("patient_id").to_list() == ["H1", "H2", "H3", "H4"]


def test_agreed_column_names_of_issue_5_are_all_present(hand_built) -> None:
    agreed = (
        "patient_id product age_years sex disease weight_kg crs_max_grade crs_max_grade_lee2014 crs_onset_day "
        "crs_duration_days crs_ongoing crs_n_episodes icans_max_grade icans_onset_day icans_duration_days "
        "icans_ongoing icans_n_episodes tocilizumab_doses tocilizumab_total_mg tocilizumab_first_hours_from_crs_onset "
        "steroid_mp_equivalent_mg icaht_early_grade icaht_late_grade pht_day28 anc_recovery_day plt_recovery_day "
        "g_csf_days car_hematotox_score car_hematotox_risk easix m_easix cmax tmax_day auc_0_28 infection_any "
        "response_day28 os_days os_event pfs_days pfs_event relapse_nrm_days relapse_nrm_status"
    ).split()
    assert [c for c in agreed if c not in hand_built.columns] == []


def test_column_page_is_generated_from_the_dictionary() -> None:
    assert (ROOT / "docs/cohort_columns.md").read_text(encoding="utf-8") == columns_markdown(), (
        "run `python -m tocsin.cohort.columns` to refresh docs/cohort_columns.md"
    )


def test_cohort_config_changes_the_response_window_and_the_kinetics_assay() -> None:
    config = GradingConfig(cohort=CohortConfig(response_window_days=1.0, kinetics_assays=["car_t_cells"]))
    h1 = row_of(derive_files([FIXTURE / "courses.csv"], config), "H1")
    assert h1["response_day28"] is None  # the day-30 CR is 2 days from day 28
    assert (h1["kinetics_assay"], h1["cmax"], h1["tmax_day"]) == ("car_t_cells", 300.0, 7.0)


def test_infection_window_leaves_out_later_results() -> None:
    config = GradingConfig(cohort=CohortConfig(infection_until_day=5.0))
    table = derive_files([FIXTURE / "courses.csv"], config)
    assert row_of(table, "H1")["infection_any"] is None  # the culture of day 6 is outside days 0-5
    assert row_of(table, "H2")["infection_any"] is None  # the PCR of day 10 and the death of day 40 too


def test_an_undocumented_or_missing_column_is_refused(hand_built) -> None:
    with pytest.raises(RuntimeError, match=r"undocumented \['extra'\]"):
        conform(hand_built.with_columns(pl.lit(1).alias("extra")))
    with pytest.raises(RuntimeError, match=r"not derived \['os_days'\]"):
        conform(hand_built.drop("os_days"))


def test_missing_tables_are_named() -> None:
    with pytest.raises(DeriveInputError, match="cohort_events"):
        derive_patients({"cohort_patients": pl.DataFrame({"patient_id": ["A"]})})


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000))
def test_row_order_of_the_events_never_changes_the_table(hand_built, seed: int) -> None:
    raw = read_event_file(FIXTURE / "courses.csv")
    order = list(range(raw.height))
    random.Random(seed).shuffle(order)
    shuffled = normalise_events(raw[order], load_vocabulary())
    assert_frame_equal(derive_from_events(shuffled).table, hand_built)


# ---------------------------------------------------------------- example courses (source papers)


@pytest.fixture(scope="module")
def examples() -> pl.DataFrame:
    return derive_files(sorted(EXAMPLES.glob("*.csv")))


def test_seed003_table3_baseline_and_day28_response_match_the_paper(examples) -> None:
    table3 = yaml.safe_load((EXAMPLES / "seed003_table3.paper.yaml").read_text())["table3"]
    assert len(table3) == 17
    for entry in table3:
        row = row_of(examples, entry["patient_id"])
        assert row["age_years"] == entry["age"]
        assert row["sex"] == {"M": "male", "F": "female"}[entry["sex"]]
        assert row["response_day28"] == entry["response"]
        assert row["response_day28_day"] == pytest.approx(28.33)  # "CR at D28", 08:00 assumed (paper.yaml)
        assert row["baseline_hgb"] == pytest.approx(entry["hgb_g_per_l"] / 10)  # Table 3 g/L -> g/dL
        assert row["baseline_plt"] == pytest.approx(entry["plt_10e9_per_l"])
        assert row["baseline_anc"] == pytest.approx(entry["ne_10e9_per_l"])
        assert row["car_t_dose_per_kg"] == entry["car_t_dose_10e6_per_kg"]  # Table 3 "CAR-T dose (x 10^6/kg)"
        assert row["car_t_dose_total"] is None  # Table 3 gives no weight


def test_case_reports_max_grades_match_docs_examples(examples) -> None:
    # docs/examples.md ("Tocsin ASTCT grade"): seed000 CRS 1; seed002 CRS 4 and ICANS 1; seed004 CRS 1
    assert row_of(examples, "seed000")["crs_max_grade"] == 1
    assert (row_of(examples, "seed002")["crs_max_grade"], row_of(examples, "seed002")["icans_max_grade"]) == (4, 1)
    assert row_of(examples, "seed004")["crs_max_grade"] == 1


def test_seed002_drugs_counted_from_the_course_file(examples) -> None:
    # examples/seed002_hu2024.csv: 6 tocilizumab rows (4-8 mg/kg, no weight: mg unknown); steroid rows: 3
    # methylprednisolone (days 5, 6, 6) + 3 dexamethasone (day 7). The file has no route column, so the 2 mg
    # "sheath injection" counts as systemic (docs/dosing.md: a row without a route is systemic).
    row = row_of(examples, "seed002")
    assert (row["tocilizumab_doses"], row["tocilizumab_total_mg"]) == (6, None)
    assert (row["steroid_doses"], row["steroid_days"], row["steroid_mp_equivalent_mg"]) == (6, 3, None)
    assert row["tocilizumab_first_hours_from_crs_onset"] == pytest.approx((4.42 - 4.33) * 24)


# ---------------------------------------------------------------- synthetic cohort (ground-truth labels)


# ---------------------------------------------------------------- CAR-T dose


def _dose_table(rows: list[tuple[str, str, str, str, str]]) -> pl.DataFrame:
    """Derive from (patient, day, item, value, unit) rows."""
    raw = pl.DataFrame(
        rows, orient="row", schema={"patient_id": pl.Utf8, "day": pl.Utf8, "item": pl.Utf8, "value": pl.Utf8,
                                    "unit": pl.Utf8}
    ).with_columns(pl.lit("doses.csv").alias("file"), pl.int_range(2, pl.len() + 2).alias("line"))
    normalised = normalise_events(raw, load_vocabulary())
    assert normalised.errors.height == 0, normalised.errors.to_dicts()
    return derive_from_events(normalised).table.select("patient_id", "weight_kg", "car_t_dose_per_kg",
                                                       "car_t_dose_total")


def test_car_t_dose_columns_from_whichever_was_recorded_and_the_weight() -> None:
    infusion = [(p, "0", "infusion", "x", "") for p in "ABCDEFG"]
    table = _dose_table(
        [
            *infusion,
            ("A", "0", "weight", "70", "kg"),
            ("A", "0", "cell_dose", "2", "10*6/kg"),  # per kg recorded: total = 2 x 70
            ("B", "0", "weight", "80", "kg"),
            ("B", "0", "car_t_dose_total", "3", "10*8"),  # total recorded: per kg = 300 / 80
            ("C", "0", "car_t_dose_per_kg", "1.5", "10*6/kg"),  # no weight: the total is unknown
            ("D", "0", "car_t_dose_total", "450", "10*6"),  # no weight: the per-kg dose is unknown
            ("E", "0", "weight", "20", "kg"),
            ("E", "0", "car_t_dose_per_kg", "0.3", "10*6/kg"),  # fractionated over days 0-2: the fractions add up
            ("E", "1", "car_t_dose_per_kg", "0.9", "10*6/kg"),
            ("E", "2", "car_t_dose_per_kg", "1.8", "10*6/kg"),
            ("E", "60", "car_t_dose_per_kg", "1", "10*6/kg"),  # a re-infusion at day 60 is not the first dose
            ("F", "0", "weight", "110", "kg"),
            ("F", "0", "car_t_dose_per_kg", "1.82", "10*6/kg"),  # both recorded: each kept as recorded
            ("F", "0", "car_t_dose_total", "200", "10*6"),
            ("G", "0", "weight", "60", "kg"),  # no dose recorded: both null
        ]
    )
    assert table.sort("patient_id").rows() == [
        ("A", 70.0, 2.0, 140.0),
        ("B", 80.0, 3.75, 300.0),
        ("C", None, 1.5, None),
        ("D", None, None, 450.0),
        ("E", 20.0, 3.0, 60.0),
        ("F", 110.0, 1.82, 200.0),
        ("G", 60.0, None, None),
    ]


def test_car_t_dose_per_kg_from_a_total_is_rounded_to_6_decimals() -> None:
    table = _dose_table(
        [("A", "0", "infusion", "liso-cel", ""), ("A", "0", "weight", "70", "kg"),
         ("A", "0", "car_t_dose_total", "100", "10*6")]
    )
    assert table.row(0) == ("A", 70.0, 1.428571, 100.0)


@pytest.fixture(scope="module")
def synthetic() -> tuple[pl.DataFrame, pl.DataFrame]:
    cohort = generate_cohort(120, seed=515)
    raw = cohort.events.with_columns(pl.lit("synthetic").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
    table = derive_from_events(normalise_events(raw, load_vocabulary())).table
    return cohort.labels.join(table, on="patient_id", how="left", suffix="_derived"), cohort.events


def test_synthetic_crs_and_icans_match_the_labels(synthetic) -> None:
    joined, _ = synthetic
    assert joined.height == 120
    assert (joined["crs_max_grade_derived"].fill_null(0) == joined["crs_max_grade"]).all()
    assert (joined["crs_n_episodes"] == joined["crs_episodes"]).all()
    assert (joined["icans_max_grade_derived"].fill_null(0) == joined["icans_max_grade"]).all()
    onset = joined.filter(pl.col("crs_onset_day").is_not_null())
    assert ((onset["crs_onset_day_derived"] - onset["crs_onset_day"]).abs() < 1e-6).all()
    icans = joined.filter(pl.col("icans_onset_day").is_not_null())
    assert ((icans["icans_onset_day_derived"] - icans["icans_onset_day"]).abs() < 1e-6).all()
    no_crs = joined.filter(pl.col("crs_max_grade") == 0)
    assert no_crs["crs_duration_days"].is_null().all() and (~no_crs["crs_ongoing"]).all()


def test_synthetic_baseline_hematology_and_kinetics_match_the_labels(synthetic) -> None:
    joined, _ = synthetic
    assert (joined["age_years"] == joined["age"]).all()
    assert (joined["product_derived"] == joined["product"]).all()
    assert (joined["car_hematotox_score"] == joined["car_hematotox"]).all()
    evaluable = joined.filter(pl.col("icaht_early_grade").is_not_null())
    assert (evaluable["icaht_early_grade_derived"] == evaluable["icaht_early_grade"]).all()
    landmark = joined.filter(pl.col("pht").is_not_null())
    assert (landmark["pht_day28"] == landmark["pht"]).all()
    assert (landmark["pht_lineage_count_derived"] == landmark["pht_lineage_count"]).all()
    levels = joined.filter(pl.col("car_t_cmax").is_not_nan())
    assert (levels["kinetics_assay"] == "car_t_copies").all()
    assert ((levels["cmax"] - levels["car_t_cmax"]).abs() <= 1e-9 * levels["car_t_cmax"]).all()
    assert (levels["tmax_day"] == levels["car_t_tmax_day"]).all()


def test_synthetic_tocilizumab_matches_the_event_rows(synthetic) -> None:
    joined, events = synthetic
    doses = events.filter(pl.col("item") == "tocilizumab").group_by("patient_id").agg(pl.len().alias("rows"))
    checked = joined.join(doses, on="patient_id", how="left").with_columns(pl.col("rows").fill_null(0))
    assert (checked["tocilizumab_doses"] == checked["rows"]).all()
    treated = checked.filter(pl.col("rows") > 0)
    # tocilizumab is given 0.5-3 h after grade 2 is reached, so after CRS onset (tocsin.synth)
    assert (treated["tocilizumab_first_hours_from_crs_onset"] > 0).all()


def test_synthetic_outcomes_match_the_labels(synthetic) -> None:
    """OS, PFS, relapse/NRM and the day-28 response are recovered exactly from the synthetic follow-up rows."""
    joined, events = synthetic
    for column in OUTCOME_LABELS:
        assert (joined[f"{column}_derived"] == joined[column]).all(), column
    # the cohort has every kind of course: censored, relapsed, died of progression, died without progression
    assert set(joined["relapse_nrm_status"]) == {0, 1, 2}
    assert events.filter(pl.col("item") == "next_therapy").height > 0


def test_synthetic_car_t_dose_matches_the_label(synthetic) -> None:
    """The per-kg dose label is recovered, from a per-kg row or from a total row and the weight."""
    joined, events = synthetic
    assert joined["car_t_dose_per_kg"].null_count() == 0
    assert joined.select((pl.col("car_t_dose_per_kg_derived") - pl.col("car_t_dose_per_kg")).abs().max()).item() < 1e-9
    assert joined["car_t_dose_total"].null_count() == 0  # every synthetic patient has a weight
    recorded = set(events.filter(pl.col("item").str.starts_with("car_t_dose"))["item"])
    assert recorded == {"car_t_dose_per_kg", "car_t_dose_total"}  # both kinds are exercised


@pytest.mark.parametrize("days", [14, 45])
def test_synthetic_outcomes_match_the_labels_for_other_course_lengths(days: int) -> None:
    """A course shorter than the day-28 assessment or longer than day 30 moves no outcome label off derive's."""
    cohort = generate_cohort(25, seed=days, days=days)
    raw = cohort.events.with_columns(pl.lit("synthetic").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
    table = derive_from_events(normalise_events(raw, load_vocabulary())).table
    derived, labels = table.select("patient_id", *OUTCOME_LABELS), cohort.labels.select("patient_id", *OUTCOME_LABELS)
    assert_frame_equal(derived, labels, check_dtypes=False)  # derive's integer columns are Int64, the labels Int8


# ---------------------------------------------------------------- batch directory = raw files; CLI


def test_batch_directory_gives_the_same_table_as_the_raw_files(tmp_path: Path) -> None:
    cohort = generate_cohort(60, seed=99)
    events = tmp_path / "events.parquet"
    cohort.events.write_parquet(events)
    grade_parquet_to_directory(events, tmp_path / "graded", GradingConfig(), chunk_patients=25, cohort=True)
    from_batch, from_files = tmp_path / "b.parquet", tmp_path / "f.parquet"
    assert run("cohort", "derive", tmp_path / "graded", "--out", from_batch).exit_code == 0
    assert run("cohort", "derive", events, "--out", from_files, "--chunk-patients", "17").exit_code == 0
    batch_table = read_patient_table(from_batch)
    assert batch_table.height == 60
    assert_frame_equal(batch_table, read_patient_table(from_files))


def test_cli_writes_a_csv_patient_table_that_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "patients.csv"
    result = run("cohort", "derive", *sorted(EXAMPLES.glob("*.csv")), "--out", out)
    assert result.exit_code == 0, result.output
    assert "20 patients" in result.output
    table = read_patient_table(out, required=["patient_id", "crs_max_grade", "os_days"])
    assert table.height == 20 and table.columns == load_columns().names
    method = json.loads((tmp_path / "patients.csv.method.json").read_text())
    assert method["columns_version"] == load_columns().version
    assert method["config"]["fingerprint"] == GradingConfig().fingerprint()
    assert len(method["inputs"]) == len(list(EXAMPLES.glob("*.csv")))


def test_cli_refuses_bad_rows_and_keeps_the_previous_table(tmp_path: Path) -> None:
    events = tmp_path / "bad.csv"
    events.write_text("patient_id,day,item,value,unit\nB1,0,infusion,axi-cel,\nB1,1,temprature,38.5,Cel\n")
    out = tmp_path / "patients.csv"
    out.write_text("previous\n")
    result = run("cohort", "derive", events, "--out", out)
    assert result.exit_code == 2
    assert "--lenient" in result.output and "temperature" in result.output  # names the fix
    assert out.read_text() == "previous\n"
    lenient = run("cohort", "derive", events, "--out", out, "--lenient")
    assert lenient.exit_code == 0 and read_patient_table(out).height == 1
    assert "unknown item 'temprature'" in lenient.output  # the refused row is still reported


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "patients.xlsx"], ".csv or .parquet"),
        (["--out", "p.csv", "--config", "missing.toml"], "missing.toml"),
    ],
)
def test_cli_bad_options_exit_2_with_the_fix(tmp_path: Path, args: list[str], message: str) -> None:
    events = tmp_path / "e.csv"
    events.write_text("patient_id,day,item,value,unit\nA,0,infusion,axi-cel,\n")
    result = run("cohort", "derive", events, *[str(tmp_path / a) if "." in a else a for a in args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_missing_file_and_mixed_inputs_exit_2(tmp_path: Path) -> None:
    missing = run("cohort", "derive", tmp_path / "nope.csv", "--out", tmp_path / "p.csv")
    assert missing.exit_code == 2 and "no such file" in missing.output
    events = tmp_path / "e.csv"
    events.write_text("patient_id,day,item,value,unit\nA,0,infusion,axi-cel,\n")
    mixed = run("cohort", "derive", events, tmp_path, "--out", tmp_path / "p.csv")
    assert mixed.exit_code == 2 and "not both" in mixed.output


def test_batch_directory_without_cohort_tables_names_the_fix(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    generate_cohort(5, seed=2).events.write_parquet(events)
    grade_parquet_to_directory(events, tmp_path / "graded", GradingConfig())
    result = run("cohort", "derive", tmp_path / "graded", "--out", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert "--cohort" in result.output


def test_cli_bad_cohort_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "centre.toml"
    config.write_text('[cohort]\nkinetics_assays = ["car_t_copy"]\n')
    result = run("cohort", "derive", FIXTURE / "courses.csv", "--out", tmp_path / "p.csv", "--config", config)
    assert result.exit_code == 2
    assert "cohort.kinetics_assays" in result.output and "car_t_copies" in result.output


def test_a_patient_in_two_batch_directories_is_refused(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    generate_cohort(3, seed=5).events.write_parquet(events)
    for name in ("a", "b"):
        grade_parquet_to_directory(events, tmp_path / name, GradingConfig(), cohort=True)
    result = run("cohort", "derive", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert "SYN00001" in result.output and "more than once" in result.output
