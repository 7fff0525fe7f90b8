"""The ``tocsin`` command line, driven through typer's CliRunner (``tocsin.cli.app``).

Exit code 0 on success, 2 on bad input (nothing graded unless ``--lenient``); ``grade --json`` prints the
stable document of ``tocsin.adapters.json_output``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import polars as pl
import pytest

from cli_helpers import ROOT, run

EXAMPLES = sorted((ROOT / "examples").glob("*.csv"))

TOXICITY_KEYS = {"scale", "max_grade", "episodes", "timeline"}
EPISODE_KEYS = {"onset_day", "peak_grade", "peak_day", "resolved_day", "duration_days"}
TIMELINE_KEYS = {"day", "time", "grade", "domain", "evidence", "rule", "missing"}

FEBRILE_ON_5_L = (
    "patient_id,day,item,value,unit\n"
    "W1,0,infusion,axi-cel,\n"
    "W1,1,temperature,38.6,Cel\n"
    "W1,1,sbp,118,mm[Hg]\n"
    "W1,1,oxygen,nasal_cannula,\n"
    "W1,1,oxygen_flow,5,L/min\n"
    "W1,1,fio2,45,%\n"
)



def grade_json(*args: str) -> dict:
    result = run("grade", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def example_patient_ids() -> list[str]:
    ids = pl.concat([pl.read_csv(p, infer_schema=False, comment_prefix="#").select("patient_id") for p in EXAMPLES])
    return sorted(ids["patient_id"].unique().to_list())


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def timeline_at(document: dict, patient_id: str, toxicity: str, day: float) -> dict:
    patient = next(p for p in document["patients"] if p["patient_id"] == patient_id)
    rows = [r for r in patient[toxicity]["timeline"] if r["day"] == day]
    assert len(rows) == 1, patient[toxicity]["timeline"]
    return rows[0]


# ------------------------------------------------------------------------------------------ grade
def test_grade_examples_json_has_the_stable_keys() -> None:
    assert EXAMPLES, "examples/*.csv missing"
    document = grade_json(*EXAMPLES)
    assert {"tocsin_version", "config", "patients"} <= set(document)
    assert isinstance(document["tocsin_version"], str) and document["tocsin_version"]
    assert document["config"]["crs"]["scale"] == "astct2019"
    assert document["config"]["fingerprint"]
    assert sorted(p["patient_id"] for p in document["patients"]) == example_patient_ids()
    for patient in document["patients"]:
        for toxicity in ("crs", "icans"):
            block = patient[toxicity]
            assert TOXICITY_KEYS <= set(block), (patient["patient_id"], toxicity, sorted(block))
            for episode in block["episodes"]:
                assert EPISODE_KEYS <= set(episode)
            for row in block["timeline"]:
                assert TIMELINE_KEYS <= set(row)
                assert row["grade"] is None or 0 <= row["grade"] <= 5
                assert isinstance(row["evidence"], list) and isinstance(row["missing"], list)
                for evidence in row["evidence"]:
                    assert {"item", "day", "value"} <= set(evidence)
        assert patient["crs"]["scale"] == "crs_astct2019"
        assert patient["icans"]["scale"] == "icans_astct2019"


def hematology_course() -> str:
    """Baseline labs before lymphodepletion, daily counts to day 35, CAR-T copies rising then falling."""
    rows = [
        "H1,-6,lymphodepletion,Flu/Cy,",
        "H1,-7,anc,1.0,10*9/L",
        "H1,-7,plt,60,10*9/L",
        "H1,-7,hgb,8.5,g/dL",
        "H1,-7,crp,40,mg/L",
        "H1,-7,ferritin,2500,ng/mL",
        "H1,-7,ldh,300,U/L",
        "H1,-7,creatinine,1.0,mg/dL",
        "H1,0,infusion,axi-cel,",
    ]
    for day in range(0, 36):
        rows.append(f"H1,{day},anc,{300 if day <= 15 else 1800},/uL")
        rows.append(f"H1,{day},plt,{40 if day <= 29 else 120},10*9/L")
    rows += [f"H1,{d},car_t_copies,{v},{{copies}}/ug" for d, v in ((1, 100), (7, 5000), (14, 1200), (21, 300))]
    return "patient_id,day,item,value,unit\n" + "\n".join(rows) + "\n"


def test_grade_json_has_the_hematology_blocks(tmp_path: Path) -> None:
    patient = grade_json(write(tmp_path / "h.csv", hematology_course()))["patients"][0]
    anc = patient["cytopenia"]["anc"]
    assert patient["cytopenia"]["scale"] == "ctcae5"
    assert {"day", "value", "grade"} <= set(anc[0])
    assert next(r for r in anc if r["day"] == 5.0)["grade"] == 4  # 0.3 x 10^9/L < 0.5
    early = patient["icaht"]["early"]
    # ANC <= 500/uL on days 0-15: 16 days -> early ICAHT grade 3 (14-30 days)
    assert (early["grade"], early["days_anc_le_500"], early["days_anc_le_100"]) == (3, 16, 0)
    assert {"grade", "nadir"} <= set(patient["icaht"]["late"])
    assert {"early", "late"} <= set(patient["icaht"]["thrombocytopenia"])
    assert patient["pht"]["pht"] is True and "thrombocytopenia" in patient["pht"]["pht_lineages"]
    hematotox = patient["scores"]["car_hematotox"]
    # PLT 60 (2) + ANC 1.0 (1) + Hb 8.5 (1) + CRP 4.0 mg/dL (1) + ferritin 2500 (2) = 7
    assert (hematotox["score"], hematotox["risk"]) == (7, "high")
    assert hematotox["inputs"]["crp"]["value"] == 4.0
    assert {"easix", "m_easix", "hscore", "iec_hs", "car_hlh"} <= set(patient["scores"])
    assert patient["scores"]["easix"]["easix"] == 5.0  # LDH 300 x creatinine 1.0 / PLT 60
    kinetics = patient["kinetics"]
    assert (kinetics["assay"], kinetics["cmax"], kinetics["tmax_day"]) == ("car_t_copies", 5000.0, 7.0)
    assert {"auc_0_28", "tlast_day"} <= set(kinetics)


def test_grade_examples_match_what_the_examples_say() -> None:
    """seed000 (documented in docs/examples.md): one CRS episode, grade 1, from day 3.33, still open."""
    document = grade_json(*EXAMPLES)
    seed000 = next(p for p in document["patients"] if p["patient_id"] == "seed000")
    assert seed000["crs"]["max_grade"] == 1
    assert [(e["onset_day"], e["peak_grade"], e["peak_day"]) for e in seed000["crs"]["episodes"]] == [(3.33, 1, 3.33)]
    row = timeline_at(document, "seed000", "crs", 3.33)
    assert (row["grade"], row["domain"], row["rule"]) == (1, "fever", "CRS-ASTCT19-G1-FEVER")
    assert {"item": "temperature", "day": 3.33, "value": "38.0 Cel"} in row["evidence"]


def test_crs_scale_option_switches_to_lee2014(tmp_path: Path) -> None:
    events = write(tmp_path / "w.csv", FEBRILE_ON_5_L)
    astct, lee = grade_json(events), grade_json(events, "--crs-scale", "lee2014")
    assert astct["config"]["crs"]["scale"] == "astct2019"
    assert lee["config"]["crs"]["scale"] == "lee2014"
    assert lee["patients"][0]["crs"]["scale"] == "crs_lee2014"
    assert lee["patients"][0]["crs"]["doi"] == "10.1182/blood-2014-05-552729"
    assert lee["config"]["fingerprint"] != astct["config"]["fingerprint"]
    # 5 L/min nasal cannula at FiO2 45 %: ASTCT grades the device (low flow = 2), Lee 2014 the FiO2 (>= 40 % = 3)
    assert timeline_at(astct, "W1", "crs", 1.0)["grade"] == 2
    assert timeline_at(lee, "W1", "crs", 1.0)["grade"] == 3


def test_config_file_overrides_a_threshold(tmp_path: Path) -> None:
    events = write(tmp_path / "w.csv", FEBRILE_ON_5_L)
    config = write(tmp_path / "centre.toml", "[crs]\nlow_flow_max_l_min = 4.0\n")
    default, centre = grade_json(events), grade_json(events, "--config", config)
    assert centre["config"]["crs"]["low_flow_max_l_min"] == 4.0
    assert centre["config"]["name"] == "centre"
    assert centre["config"]["fingerprint"] != default["config"]["fingerprint"]
    assert timeline_at(default, "W1", "crs", 1.0)["rule"] == "CRS-ASTCT19-G2-HYPOXIA-LOW-FLOW"
    row = timeline_at(centre, "W1", "crs", 1.0)
    assert (row["grade"], row["rule"]) == (3, "CRS-ASTCT19-G3-HYPOXIA-HIGH-FLOW")


def test_config_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    events = write(tmp_path / "w.csv", FEBRILE_ON_5_L)
    config = write(tmp_path / "typo.toml", "[crs]\nlow_flow_max = 4.0\n")
    result = run("grade", events, "--json", "--config", config)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "crs.low_flow_max" in result.stderr
    assert "typo.toml" in result.stderr


def test_config_file_with_a_bad_value_is_refused(tmp_path: Path) -> None:
    events = write(tmp_path / "w.csv", FEBRILE_ON_5_L)
    config = write(tmp_path / "bad.toml", '[crs]\nscale = "ctcae"\n')
    result = run("grade", events, "--config", config)
    assert result.exit_code == 2
    assert "crs.scale" in result.stderr


BAD_FILE = FEBRILE_ON_5_L + "W1,2,temperature,38.2,furlong\nW1,1.5,sbp,84,mm[Hg]\n"


def test_bad_file_exits_2_naming_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "ward.csv", BAD_FILE)
    result = run("grade", "ward.csv", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""  # nothing graded, no JSON
    row = [line for line in result.stderr.splitlines() if "ward.csv" in line]
    assert len(row) == 1, result.stderr
    cells = [c.strip() for c in row[0].split("│") if c.strip()]
    assert cells[:5] == ["error", "ward.csv", "8", "unit", "furlong"], cells
    assert "nothing was graded" in result.stderr
    assert "--lenient" in result.stderr


def test_lenient_grades_the_valid_rows_and_lists_the_bad_one(tmp_path: Path) -> None:
    path = write(tmp_path / "ward.csv", BAD_FILE)
    document = grade_json(path, "--lenient")
    problems = document["input_problems"]
    assert [(p["file"], p["line"], p["field"], p["value"], p["severity"]) for p in problems] == [
        (str(path), 8, "unit", "furlong", "error")
    ]
    assert problems[0]["fix"]
    days = [r["day"] for r in document["patients"][0]["crs"]["timeline"]]
    assert days == [1.0, 1.5]  # the refused day-2 row is not an assessment; the valid row after it is
    row = timeline_at(document, "W1", "crs", 1.5)
    assert (row["grade"], row["domain"]) == (2, "hypotension+hypoxia")


def test_missing_file_and_missing_column_exit_2(tmp_path: Path) -> None:
    result = run("grade", tmp_path / "absent.csv")
    assert result.exit_code == 2
    assert "absent.csv" in result.stderr and "no such file" in result.stderr
    no_item = write(tmp_path / "no_item.csv", "patient_id,day,value,unit\nP,0,axi-cel,\n")
    result = run("grade", no_item)
    assert result.exit_code == 2
    assert "missing column(s) item" in result.stderr


def test_out_writes_the_same_document(tmp_path: Path) -> None:
    events = write(tmp_path / "w.csv", FEBRILE_ON_5_L)
    out = tmp_path / "results" / "grades.json"
    printed = grade_json(events, "--out", out)
    assert json.loads(out.read_text(encoding="utf-8")) == printed


def test_iso_times_give_clock_times_in_the_timeline(tmp_path: Path) -> None:
    events = write(
        tmp_path / "t.csv",
        "patient_id,time,item,value,unit\n"
        "T1,2024-05-01T10:00,infusion,axi-cel,\n"
        "T1,2024-05-03T22:00,temperature,38.6,Cel\n",
    )
    document = grade_json(events)
    patient = document["patients"][0]
    assert patient["infusion_time"].startswith("2024-05-01T10:00")
    row = timeline_at(document, "T1", "crs", 2.5)
    assert row["time"] == "2024-05-03T22:00"
    assert row["grade"] == 1


# ------------------------------------------------------------------------------------------- demo
def test_demo_prints_every_example_patient() -> None:
    result = run("demo", "--no-cohort")
    assert result.exit_code == 0, result.stderr
    for patient_id in example_patient_ids():
        assert patient_id in result.stdout


def test_demo_cohort_walk_through_writes_the_table_and_reports(tmp_path: Path) -> None:
    result = run("demo", "--out", tmp_path, "--patients", 40)
    assert result.exit_code == 0, result.stderr
    for command in ("tocsin synth", "tocsin batch", "tocsin cohort derive", "tocsin cohort table1",
                    "tocsin cohort survival", "tocsin cohort report", "tocsin report"):
        assert f"$ {command}" in result.stdout
    patients = pl.read_parquet(tmp_path / "patients.parquet")
    assert patients.height == 40 and {"os_days", "os_event", "crs_max_grade"} <= set(patients.columns)
    assert "log-rank" in result.stdout and "Holm" in result.stdout
    for report in ("cohort_report.html", "seed002_report.html"):
        text = (tmp_path / report).read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text


def test_demo_json_lists_the_example_patients() -> None:
    result = run("demo", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert sorted(p["patient_id"] for p in document["patients"]) == example_patient_ids()


# ----------------------------------------------------------------------------------------- schema
def test_schema_validates_a_good_row_and_rejects_bad_ones(tmp_path: Path) -> None:
    out = tmp_path / "schema" / "event.schema.json"
    result = run("schema", "--out", out)
    assert result.exit_code == 0, result.stderr
    schema = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = [
        {"patient_id": "P", "day": 1.5, "item": "temperature", "value": 38.5, "unit": "Cel"},
        {"patient_id": "P", "time": "2024-05-01T08:00:00", "item": "oxygen", "value": "nasal_cannula"},
        {"patient_id": "P", "day": 0, "item": "infusion", "value": "axi-cel"},
        {"patient_id": "P", "day": 2, "item": "ice_score", "value": 7},
    ]
    for row in good:
        errors = list(validator.iter_errors(row))
        assert not errors, (row, [e.message for e in errors])
    bad = [
        {"patient_id": "P", "day": 1.5, "item": "tempp", "value": 38.5, "unit": "Cel"},  # unknown item
        {"patient_id": "P", "day": 1.5, "item": "oxygen", "value": "helmet"},  # not allowed
        {"patient_id": "P", "item": "temperature", "value": 38.5, "unit": "Cel"},  # no time or day
        {"patient_id": "", "day": 1, "item": "temperature", "value": 38.5, "unit": "Cel"},  # empty id
        {"day": 1, "item": "temperature", "value": 38.5},  # no patient
    ]
    for row in bad:
        assert not validator.is_valid(row), row


# ------------------------------------------------------------------------------------------ synth
def test_synth_writes_events_and_labels(tmp_path: Path) -> None:
    pytest.importorskip("tocsin.synth")
    out = tmp_path / "cohort"
    result = run("synth", "--patients", "3", "--seed", "1", "--out", out, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    events, labels = out / "events.csv", out / "labels.csv"
    assert events.exists() and labels.exists()
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    frame = pl.read_csv(events, infer_schema=False)
    assert frame["patient_id"].n_unique() == 3
    assert {"patient_id", "item", "value"} <= set(frame.columns)
    assert pl.read_csv(labels, infer_schema=False).height >= 3
    # the same seed gives the same cohort
    again = tmp_path / "again"
    assert run("synth", "--patients", "3", "--seed", "1", "--out", again, "--format", "csv").exit_code == 0
    assert (again / "events.csv").read_bytes() == events.read_bytes()
    assert (again / "labels.csv").read_bytes() == labels.read_bytes()
    # and a synthetic cohort is valid input for grade
    document = grade_json(events)
    assert len(document["patients"]) == 3
    assert [p for p in document["input_problems"] if p["severity"] == "error"] == []


def test_synth_default_format_is_parquet(tmp_path: Path) -> None:
    pytest.importorskip("tocsin.synth")
    result = run("synth", "--patients", "2", "--seed", "7", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "events.parquet").exists() and (tmp_path / "labels.parquet").exists()


def test_batch_grades_a_parquet_cohort_in_chunks_with_workers(tmp_path: Path) -> None:
    """`tocsin batch` (2 worker processes, chunks of 3 patients) gives the same summaries as `grade_events`
    on the whole file, and writes the evidence tables when asked."""
    from tocsin.config import GradingConfig
    from tocsin.core.engine import grade_events
    from tocsin.synth import generate_cohort

    cohort = generate_cohort(7, seed=11)
    events = tmp_path / "events.parquet"
    cohort.events.write_parquet(events)
    out = tmp_path / "graded"
    result = run("batch", events, "--out", out, "--chunk-patients", 3, "--workers", 2, "--evidence")
    assert result.exit_code == 0, result.output
    assert "7 patients" in result.output
    # A per-assessment table has a part per chunk; a per-patient one, a part per group of chunks (here chunk 0, and
    # the last two chunks apart: 1-2), its rows in chunk order.
    assert len(sorted((out / "crs_timeline").glob("part-*.parquet"))) == 3
    parts = sorted((out / "crs_summary").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    assert not list((out / "crs_summary").glob(".*tmp"))
    batch = pl.read_parquet(parts).with_columns(pl.col("patient_id").cast(pl.Utf8))
    assert batch.get_column("patient_id").to_list() == list(dict.fromkeys(cohort.events.get_column("patient_id")))
    batch = batch.sort("patient_id")
    direct = (
        grade_events(
            cohort.events.with_columns(pl.lit("f").alias("file"), pl.int_range(1, pl.len() + 1).alias("line")),
            GradingConfig(),
        )
        .crs.summary.with_columns(pl.col("patient_id").cast(pl.Utf8))
        .sort("patient_id")
    )
    assert batch.select("patient_id", "max_grade", "onset_day", "n_episodes").equals(
        direct.select("patient_id", "max_grade", "onset_day", "n_episodes")
    )
    evidence = pl.read_parquet(sorted((out / "crs_evidence").glob("part-*.parquet")))
    assert evidence.height > 0 and set(evidence.columns) == {"patient_id", "t", "item", "day", "value"}


def test_batch_worker_environment_is_set_for_the_workers_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers start with one Polars and one OpenBLAS thread and allocators that keep freed memory; a
    variable the user set is kept (but the Polars thread count), and this process's environment comes back."""
    import os

    from tocsin.adapters.batch import _worker_environment
    from tocsin.adapters.worker_environment import WORKER_ENVIRONMENT

    for name in WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setenv("POLARS_MAX_THREADS", "8")
    with _worker_environment():
        assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
        assert os.environ["POLARS_MAX_THREADS"] == "1"
        assert os.environ["_RJEM_MALLOC_CONF"] == WORKER_ENVIRONMENT["_RJEM_MALLOC_CONF"]
        assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(32 * 1024 * 1024)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3" and os.environ["POLARS_MAX_THREADS"] == "8"
    assert "_RJEM_MALLOC_CONF" not in os.environ and "MALLOC_TRIM_THRESHOLD_" not in os.environ


def test_batch_workers_get_the_allocator_options_over_polars_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing Polars sets ``_RJEM_MALLOC_CONF`` to its own decay times: the workers still get the batch's options
    (after Polars' defaults, which a worker's own import puts first again), and a user's options last, so they win."""
    import os
    import subprocess
    import sys

    from tocsin.adapters.batch import _worker_environment
    from tocsin.adapters.worker_environment import POLARS_JEMALLOC_DEFAULTS, WORKER_ENVIRONMENT

    fresh = {k: v for k, v in os.environ.items() if k not in ("_RJEM_MALLOC_CONF", "POLARS_THP")}
    written = subprocess.run(
        [sys.executable, "-c", "import os, polars; print(os.environ['_RJEM_MALLOC_CONF'])"],
        env=fresh, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert written == POLARS_JEMALLOC_DEFAULTS[1]  # the pinned Polars writes what the batch strips
    ours = WORKER_ENVIRONMENT["_RJEM_MALLOC_CONF"]
    for set_before, workers_get in [
        (POLARS_JEMALLOC_DEFAULTS[1], ours),
        (POLARS_JEMALLOC_DEFAULTS[0], ours),
        (POLARS_JEMALLOC_DEFAULTS[1] + ",narenas:2", ours + ",narenas:2"),
        ("narenas:2", ours + ",narenas:2"),
    ]:
        monkeypatch.setenv("_RJEM_MALLOC_CONF", set_before)
        with _worker_environment():
            assert os.environ["_RJEM_MALLOC_CONF"] == workers_get
        assert os.environ["_RJEM_MALLOC_CONF"] == set_before


@pytest.mark.parametrize("grouped", [True, False], ids=["row-ranges", "by-patient-id"])
def test_batch_names_the_file_line_of_a_refused_row_in_a_later_chunk(tmp_path: Path, grouped: bool) -> None:
    """A refused row's line is its row in the file (1 = first data row), whether chunks are read as row
    ranges (rows grouped by patient) or selected by patient id (rows interleaved)."""
    from tocsin.synth import generate_cohort

    cohort = generate_cohort(4, seed=3).events
    ids = cohort.get_column("patient_id").unique(maintain_order=True).to_list()
    if not grouped:  # interleave the patients' rows: no longer one run per patient
        cohort = cohort.with_columns(pl.int_range(pl.len()).over("patient_id").alias("_k")).sort("_k").drop("_k")
    last = cohort.with_row_index("line", offset=1).filter(pl.col("patient_id") == ids[-1]).row(-1, named=True)
    bad = cohort.with_columns(
        pl.when(pl.int_range(pl.len()) == last["line"] - 1).then(pl.lit("temperatur")).otherwise("item").alias("item")
    )
    events = tmp_path / "events.parquet"
    bad.write_parquet(events)
    out = tmp_path / "graded"
    result = run("batch", events, "--out", out, "--chunk-patients", 1)
    assert result.exit_code == 0, result.output
    problems = pl.read_parquet(sorted((out / "input_problems").glob("part-*.parquet")))
    refused = problems.filter(pl.col("field") == "item")
    assert refused.get_column("line").to_list() == [last["line"]]


def test_config_command_writes_toml_that_reads_back_as_the_same_config(tmp_path: Path) -> None:
    """`tocsin config --config FILE` re-emits a centre's file, dict and list values included."""
    centre = write(
        tmp_path / "centre.toml",
        "[cytopenia]\nlln_reference = {hgb = 12.0, plt = 150.0}\nlln_reference_by_sex = {female = {hgb = 11.5}}\n"
        '[steroids]\nexcluded_routes = ["intrathecal"]\n',
    )
    emitted = run("config", "--config", centre)
    assert emitted.exit_code == 0, emitted.output
    again = write(tmp_path / "again.toml", emitted.output)
    first, second = run("config", "--config", centre), run("config", "--config", again)
    assert first.output.splitlines()[0] == second.output.splitlines()[0]  # same fingerprint line
    assert "lln_reference = {" in second.output and '"hgb" = 12.0' in second.output


def test_batch_refuses_a_missing_file_and_a_file_without_the_required_columns(tmp_path: Path) -> None:
    """Both are named before any chunk is graded (exit code 2, no traceback)."""
    missing = run("batch", tmp_path / "none.parquet", "--out", tmp_path / "out")
    assert missing.exit_code == 2 and "no such file" in missing.output.lower()
    pl.DataFrame({"patient_id": ["P"], "day": [0.0], "item": ["infusion"]}).write_parquet(tmp_path / "no_value.parquet")
    lacking = run("batch", tmp_path / "no_value.parquet", "--out", tmp_path / "out", "--workers", 2)
    assert lacking.exit_code == 2 and "missing column(s) value" in lacking.output
    assert not (tmp_path / "out").exists()
