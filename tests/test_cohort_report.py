"""``tocsin cohort report``: sections present iff their columns are, numbers checked by hand and against the
other cohort commands, bad input refused with exit 2, an existing report kept when a run fails."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import polars as pl
import pytest
from scipy.stats import beta
from typer.testing import CliRunner

from tocsin.adapters.competing_output import format_p as logrank_p
from tocsin.cli import app
from tocsin.stats.table1 import format_p as table1_p

WIDE = {"COLUMNS": "320", "NO_COLOR": "1"}
SVG = re.compile(r"<svg.*?</svg>", re.S)


def run(*args: object):
    return CliRunner().invoke(app, ["cohort", *[str(a) for a in args]], env=WIDE)


def report(patients: Path, out: Path, *args: object) -> str:
    result = run("report", patients, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def section(page: str, anchor: str) -> str:
    """The text of one section, figures left out."""
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return SVG.sub("", match.group(1))


def row(text: str, first_cell: str) -> str:
    match = re.search(rf"<tr[^>]*><td[^>]*>{re.escape(first_cell)}</td>(.*?)</tr>", text, re.S)
    assert match, f"no row {first_cell}"
    return match.group(1)


# Eight patients, times in days. OS (events at 10, 30, 50, 70; censored at 20, 40, 60, 80):
#   S(35) = 7/8 * 5/6 = 0.72917, Greenwood SE = S * sqrt(1/(8*7) + 1/(6*5)) = 0.16497; median = 70.
# Relapse (1) / NRM (2) / censored (0) at 10..80 = 1, 0, 2, 0, 1, 0, 2, 0:
#   relapse F(55) = 1/8 + (7/8 * 5/6) / 4 = 0.30729; NRM F(55) = 7/8 / 6 = 0.14583.
# CRS grades 0, 1, 2, 3, 1, 1, 0, 2: any grade 6/8; resolved durations 2, 4, 3, 5, 8 (the grade-3 one ongoing).
TINY = {
    "patient_id": [f"P{k}" for k in range(1, 9)],
    "arm": ["A", "A", "A", "A", "B", "B", "B", "B"],
    "age_years": [61.0, 55.0, 70.0, 48.0, 66.0, 59.0, 72.0, 44.0],
    "sex": ["male", "female", "male", "male", "female", "female", "male", "female"],
    "crs_max_grade": [0, 1, 2, 3, 1, 1, 0, 2],
    "crs_onset_day": [None, 1.0, 2.0, 1.5, 3.0, 2.5, None, 4.0],
    "crs_duration_days": [None, 2.0, 4.0, 6.0, 3.0, 5.0, None, 8.0],
    "crs_ongoing": [False, False, False, True, False, False, False, False],
    "os_days": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0],
    "os_event": [1, 0, 1, 0, 1, 0, 1, 0],
    "relapse_nrm_days": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0],
    "relapse_nrm_status": [1, 0, 2, 0, 1, 0, 2, 0],
}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    pl.DataFrame(TINY).write_csv(path)
    return path


def test_sections_follow_the_columns(tiny: Path, tmp_path: Path) -> None:
    page = report(tiny, tmp_path / "r.html")
    for anchor in ("incidence", "durations", "swimmer", "overall-survival", "competing-risks"):
        assert f'<section id="{anchor}">' in page
    assert '<section id="table1">' not in page and '<section id="progression-free-survival">' not in page
    left_out = re.search(r"<h2>Sections left out</h2>(.*?)</ul>", page, re.S).group(1)
    assert "Table 1" in left_out and "--by GROUP" in left_out
    assert "Progression-free survival" in left_out and "<code>pfs_days</code>" in left_out

    bare = tmp_path / "bare.csv"
    pl.DataFrame(TINY).drop("os_days", "relapse_nrm_status", "crs_ongoing").write_csv(bare)
    page = report(bare, tmp_path / "bare.html", "--by", "arm")
    assert '<section id="table1">' in page and '<section id="incidence">' in page
    for anchor in ("overall-survival", "competing-risks", "durations"):
        assert f'<section id="{anchor}">' not in page
    left_out = re.search(r"<h2>Sections left out</h2>(.*?)</ul>", page, re.S).group(1)
    for needed in ("os_days", "relapse_nrm_status", "crs_ongoing"):
        assert f"<code>{needed}</code>" in left_out


def test_numbers_computed_by_hand(tiny: Path, tmp_path: Path) -> None:
    page = report(tiny, tmp_path / "r.html", "--time-unit", "days", "--at", "35", "--at", "55")
    survival = row(section(page, "overall-survival"), "All patients")
    assert "72.9% ± 16.5%" in survival  # S(35) ± Greenwood SE
    assert "<td class=num>70.0 (" in survival  # median
    assert "54.7% ± " in survival  # S(55) = 0.72917 * 3/4
    competing = section(page, "competing-risks")
    assert "30.7% (" in row(competing, "All patients</td><td>Relapse")  # F(55) of relapse ...
    assert competing.count("14.6% (") == 2  # ... and of NRM, at both 35 and 55 days
    crs = row(section(page, "incidence"), "any grade")
    lower, upper = beta.ppf(0.025, 6, 3), beta.ppf(0.975, 7, 2)  # Clopper–Pearson for 6/8
    assert f"6/8 (75.0%; {100 * lower:.1f}%–{100 * upper:.1f}%)" in crs
    durations = section(page, "durations")
    all_grades = row(durations, "All patients")
    assert "<td class=num>6</td><td class=num>5</td><td class=num>1</td>" in all_grades  # episodes, resolved, ongoing
    assert "4.0 (3.0–5.0)" in all_grades and "2.0–8.0" in all_grades


def test_survival_numbers_equal_tocsin_cohort_survival(tiny: Path, tmp_path: Path) -> None:
    page = report(tiny, tmp_path / "r.html", "--by", "arm", "--at", "1")
    result = run("survival", tiny, "--time", "os_days", "--event", "os_event", "--by", "arm", "--at", "1",
                 "--time-unit", "months", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    text = section(page, "overall-survival")
    for group in document["groups"]:
        cells = row(text, group["group"])
        point = group["survival_at"][0]
        assert f"{100 * point['survival']:.1f}% ± {100 * point['std_err']:.1f}%" in cells
        assert f"<td class=num>{group['n']}</td><td class=num>{group['events']}</td>" in cells
        median = "NR" if group["median"] is None else f"{group['median']:.1f}"
        assert f"<td class=num>{median} (" in cells
    assert f"P = {logrank_p(document['test']['p'])}" in text


def test_cumulative_incidence_equals_tocsin_cohort_cuminc(tiny: Path, tmp_path: Path) -> None:
    # at day 35 group A has both causes, group B none yet (0 %, no log-log interval)
    page = report(tiny, tmp_path / "r.html", "--by", "arm", "--time-unit", "days", "--at", "35")
    result = run("cuminc", tiny, "--time", "relapse_nrm_days", "--status", "relapse_nrm_status", "--event-code", "1",
                 "--competing-code", "2", "--censor-code", "0", "--by", "arm", "--at", "35", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    text = section(page, "competing-risks")
    names = {1: "Relapse", 2: "Non-relapse mortality"}
    for point in document["at"]:
        cells = row(text, f"{point['group']}</td><td>{names[point['cause']]}")
        shown = f"{100 * point['cuminc']:.1f}%"
        if point["lower"] is not None:
            shown += f" ({100 * point['lower']:.1f}%–{100 * point['upper']:.1f}%)"
        assert f"{shown}; {point['n_risk']}" in cells
    for test in document["gray_tests"]:
        cause = names[test["cause"]].lower()
        assert f"{cause}: χ² = {test['statistic']:.3f} on 1 df, P = {logrank_p(test['p'])}" in text


def test_table1_equals_tocsin_cohort_table1(tiny: Path, tmp_path: Path) -> None:
    page = report(tiny, tmp_path / "r.html", "--by", "arm", "--table1-var", "age_years", "--table1-var", "sex")
    result = run("table1", tiny, "--by", "arm", "--var", "age_years", "--var", "sex", "--json")
    assert result.exit_code == 0, result.output
    text = section(page, "table1")
    for variable in json.loads(result.stdout)["variables"]:
        cells = re.search(rf'<tr class="variable"><td>{variable["variable"]}</td>(.*?)</tr>', text).group(1)
        assert variable["test_name"] in cells.replace("&#x27;", "'")
        assert f"<td>{html.escape(table1_p(variable['p']))}</td>" in cells
    standalone = tmp_path / "table1.html"
    assert run("table1", tiny, "--by", "arm", "--var", "age_years", "--var", "sex", "--out", standalone).exit_code == 0
    expected = re.search(r'<table class="table1">.*?</table>', standalone.read_text(encoding="utf-8"), re.S).group(0)
    assert expected in text


def test_self_contained_and_deterministic(tiny: Path, tmp_path: Path) -> None:
    first = report(tiny, tmp_path / "a.html", "--by", "arm")
    second = report(tiny, tmp_path / "b.html", "--by", "arm")
    assert first == second
    # nothing to fetch: no script, no linked resource (the SVG metadata's URLs are text)
    assert "<script" not in first and not re.search(r"""(src|href)=["']?(https?:|//)""", first)
    assert "<link" not in first and "url(http" not in first
    assert first.count("<svg") == 4  # swimmer, OS, relapse and NRM (one figure per cause with groups)
    ids = re.findall(r'\bid="([^"]+)"', first)
    assert len(ids) == len(set(ids))  # the figures' ids do not collide ...
    references = set(re.findall(r'href="#([^"]+)"', first)) | set(re.findall(r"url\(#([^)]+)\)", first))
    assert references and references <= set(ids)  # ... and every glyph, marker and clip path is found
    assert "no derive method file" in first


def test_provenance_names_the_derive_method(tiny: Path, tmp_path: Path) -> None:
    method = {"columns_version": "2026.12.1", "config": {"name": "centre", "fingerprint": "abc123def456"},
              "inputs": ["raw/events.csv"]}
    Path(f"{tiny}.method.json").write_text(json.dumps(method), encoding="utf-8")
    page = report(tiny, tmp_path / "r.html")
    header = page[: page.index("<ol>")]
    assert "Tocsin " in header and "8 patients" in header and str(tiny) in header
    assert "abc123def456" in header and "2026.12.1" in header and "centre" in header


def test_a_corrupt_method_file_exits_2(tiny: Path, tmp_path: Path) -> None:
    Path(f"{tiny}.method.json").write_text("{not json", encoding="utf-8")
    result = run("report", tiny, "--out", tmp_path / "r.html")
    assert result.exit_code == 2 and "method.json" in result.output
    assert not (tmp_path / "r.html").exists()


def test_swimmer_from_episode_tables(tiny: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    episode = {"patient_id": ["P2", "P2"], "episode": [1, 2], "onset_day": [1.0, 9.0], "peak_grade": [1, 2],
               "duration_days": [2.0, 1.5], "ongoing": [False, True]}
    for name, frame in (("crs_episodes", pl.DataFrame(episode)), ("icans_episodes", pl.DataFrame(episode).clear())):
        (batch / name).mkdir(parents=True)
        frame.write_parquet(batch / name / "part-00000.parquet")
    text = section(report(tiny, tmp_path / "r.html", "--episodes", batch), "swimmer")
    assert "1 patient(s)" in text and "episode tables" in text
    text = section(report(tiny, tmp_path / "s.html"), "swimmer")
    assert "6 patient(s)" in text and "Built from the patient table" in text
    sampled = report(tiny, tmp_path / "t.html", "--swimmer-max", "3")
    assert "random sample (seed 0) of 3 of the 6 patients" in section(sampled, "swimmer")
    assert sampled == report(tiny, tmp_path / "u.html", "--swimmer-max", "3")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "nowhere"], "nowhere"),
        (["--os-time", "os_months"], "--os-time os_months"),
        (["--table1-var", "height", "--by", "arm"], "height"),
        (["--out-of-place"], "No such option"),
    ],
)
def test_unknown_columns_exit_2(tiny: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run("report", tiny, "--out", tmp_path / "r.html", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "r.html").exists()


def test_bad_input_exits_2(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    missing = run("report", tmp_path / "none.csv", "--out", out)
    assert missing.exit_code == 2 and "no such file" in missing.output
    one_level = tmp_path / "one.csv"
    pl.DataFrame(TINY).with_columns(pl.lit("A").alias("arm")).write_csv(one_level)
    result = run("report", one_level, "--out", out, "--by", "arm")
    assert result.exit_code == 2 and "at least 2" in result.output
    no_group = tmp_path / "no_group.csv"
    pl.DataFrame(TINY).with_columns(pl.Series("arm", ["A", "A", None, "A", "B", "B", "B", "B"])).write_csv(no_group)
    result = run("report", no_group, "--out", out, "--by", "arm")
    assert result.exit_code == 2 and "P3" in result.output and "arm" in result.output
    text_onset = tmp_path / "text_onset.csv"
    pl.DataFrame(TINY).with_columns(pl.Series("crs_onset_day", ["", "1", "day 2", "1.5", "3", "2.5", "", "4"])) \
        .write_csv(text_onset)
    result = run("report", text_onset, "--out", out)
    assert result.exit_code == 2 and "crs_onset_day" in result.output and "P3" in result.output
    assert run("report", tiny, "--out", tmp_path / "r.pdf").exit_code == 2
    assert run("report", tiny, "--out", out, "--table1-var", "sex").exit_code == 2  # Table 1 needs --by
    assert run("report", tiny, "--out", out, "--episodes", tmp_path / "nowhere").exit_code == 2
    (tmp_path / "empty").mkdir()
    assert run("report", tiny, "--out", out, "--episodes", tmp_path / "empty").exit_code == 2
    assert not out.exists()


def test_failed_run_keeps_the_existing_report(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("the previous report", encoding="utf-8")
    broken = tmp_path / "broken.csv"
    pl.DataFrame(TINY).with_columns(pl.Series("relapse_nrm_status", [1, 0, 2, 0, 7, 0, 2, 0])).write_csv(broken)
    result = run("report", broken, "--out", out)
    assert result.exit_code == 2
    assert "relapse_nrm_status" in result.output and "P5" in result.output
    assert out.read_text(encoding="utf-8") == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv", "patients.csv", "r.html"]


def test_synthetic_cohort_end_to_end(tmp_path: Path) -> None:
    """synth -> batch --cohort -> derive -> report, with the batch's episode tables."""
    synth = CliRunner().invoke(app, ["synth", "--patients", "12", "--seed", "3", "--out", str(tmp_path / "syn")])
    assert synth.exit_code == 0, synth.output
    batch = CliRunner().invoke(app, ["batch", str(tmp_path / "syn" / "events.parquet"), "--out",
                                     str(tmp_path / "graded"), "--cohort"])
    assert batch.exit_code == 0, batch.output
    patients = tmp_path / "patients.parquet"
    assert run("derive", tmp_path / "graded", "--out", patients).exit_code == 0
    page = report(patients, tmp_path / "cohort.html", "--by", "sex", "--episodes", tmp_path / "graded")
    for anchor in ("table1", "incidence", "durations", "swimmer", "overall-survival", "progression-free-survival",
                   "competing-risks"):
        assert f'<section id="{anchor}">' in page
    assert "fingerprint" in page[: page.index("<ol>")]
    assert "Sections left out" not in page
