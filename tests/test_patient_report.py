"""``tocsin report`` and the course figure: panels iff data, report contents from the engine, safe writes.

The expected grades are the engine's own (``grade_normalised`` on the same file): the report must show
them, not compute its own. The seed 002 expectations (CRS grade 4 by positive pressure, ICANS grade 1)
are those of ``examples/seed002_hu2024.paper.yaml`` as graded by ``tocsin grade``.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from figure_checks import overlapping_texts
from cli_helpers import ROOT, run
from tocsin.adapters import patient_report
from tocsin.adapters.files import read_event_files
from tocsin.adapters.patient_report import report_content, write_patient_report
from tocsin.adapters.plots.course_figure import PANELS, course_figure, patient_course, present_panels
from tocsin.config import GradingConfig
from tocsin.core.engine import GradingResult, grade_normalised
from tocsin.core.events import IngestLimits, NormalisedEvents, normalise_events
from tocsin.vocabulary import load_vocabulary

SEED002 = ROOT / "examples" / "seed002_hu2024.csv"
SEED000 = ROOT / "examples" / "seed000_lu2025.csv"

HEADER = "patient_id,day,item,value,unit\n"
#: A fever treated with tocilizumab: grades, temperature, inflammation and drugs, nothing else.
FEVER_ONLY = HEADER + (
    "A,0,infusion,axi-cel,\nA,0,weight,70,kg\nA,1.5,temperature,39.2,Cel\nA,1.5,il6,250,pg/mL\n"
    "A,1.6,tocilizumab,8,mg/kg\nA,3,temperature,37.0,Cel\n"
)
#: Every panel's data: oxygen, a vasopressor, counts with a transfusion and G-CSF, CAR-T levels, ICANS.
FULL = FEVER_ONLY.replace("A,", "B,") + (
    "B,2,oxygen,nasal_cannula,\nB,2,oxygen_flow,4,L/min\nB,2,sbp,82,mm[Hg]\nB,2.1,norepinephrine,5,ug/min\n"
    "B,2.5,ice_score,8,{score}\nB,2.6,dexamethasone,10,mg\nB,3,norepinephrine,0,ug/min\n"
    "B,3.5,oxygen,room_air,\nB,4,anc,0.3,10*9/L\nB,4,plt,40,10*9/L\nB,4,hgb,8.1,g/dL\n"
    "B,4.2,platelet_transfusion,1,{unit}\nB,5,g_csf,5,ug/kg\nB,7,anc,1.2,10*9/L\nB,7,plt,60,10*9/L\n"
    "B,2,car_t_copies,500,{copies}/ug\nB,7,car_t_copies,20000,{copies}/ug\nB,14,car_t_copies,3000,{copies}/ug\n"
)



def graded(path: Path) -> tuple[GradingResult, NormalisedEvents]:
    normalised = normalise_events(
        read_event_files([path]), load_vocabulary(), IngestLimits(earliest_day=-30, not_after=datetime(2100, 1, 1))
    )
    assert normalised.ok, normalised.errors
    return grade_normalised(normalised, GradingConfig()), normalised


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ panels iff data


def test_panels_present_only_for_the_data_recorded(tmp_path: Path) -> None:
    result, normalised = graded(write(tmp_path, "a.csv", FEVER_ONLY))
    course = patient_course(result, normalised.events, "A")
    assert present_panels(course) == ["grades", "temperature", "inflammation", "drugs"]
    figure = course_figure(course)
    assert len(figure.axes) == 4  # left-out panels are not drawn empty


def test_every_panel_drawn_when_every_kind_of_data_is_present(tmp_path: Path) -> None:
    result, normalised = graded(write(tmp_path, "b.csv", FULL))
    course = patient_course(result, normalised.events, "B")
    assert present_panels(course) == [panel.name for panel in PANELS]
    figure = course_figure(course)
    assert len(figure.axes) == len(PANELS) + 1  # + the Hb axis twinned on the count panel
    labels = " ".join(ax.get_ylabel() + " " + ax.get_title(loc="left") for ax in figure.axes)
    for expected in ("Temperature\n(°C)", "Oxygen", "Vasopressors", "Counts", "CAR-T", "Hb (g/dL)", "Drugs"):
        assert expected in labels
    assert overlapping_texts(figure) == []


def test_seed_examples_have_the_panels_their_data_support() -> None:
    result, normalised = graded(SEED002)
    course = patient_course(result, normalised.events, "seed002")
    assert overlapping_texts(course_figure(course)) == []  # six tocilizumab and six steroid doses in 3.5 days
    assert present_panels(course) == [
        "grades",
        "temperature",
        "inflammation",
        "oxygen",
        "drugs",
    ]
    result, normalised = graded(SEED000)
    course = patient_course(result, normalised.events, "seed000")
    assert present_panels(course) == ["grades", "temperature", "inflammation", "drugs", "counts"]
    assert overlapping_texts(course_figure(course)) == []


def test_grade_bands_are_the_engine_timeline(tmp_path: Path) -> None:
    result, normalised = graded(SEED002)
    course = patient_course(result, normalised.events, "seed002")
    engine = result.crs.timeline.filter(pl.col("patient_id").cast(pl.Utf8) == "seed002")
    assert course.crs["grade"].to_list() == engine["grade"].to_list()
    assert course.crs["t"].to_list() == engine["t"].to_list()


def test_car_t_peak_is_the_engine_cmax(tmp_path: Path) -> None:
    result, normalised = graded(write(tmp_path, "b.csv", FULL))
    figure = course_figure(patient_course(result, normalised.events, "B"))
    legend_texts = [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    cmax = result.kinetics.row(0, named=True)
    assert cmax["cmax"] == 20000 and cmax["tmax_day"] == 7
    assert "peak: Cmax 20,000 copies/µg\nTmax day 7.0" in legend_texts, legend_texts


# ------------------------------------------------------------------ report content


def test_html_report_embeds_the_figure_and_the_episode_table(tmp_path: Path) -> None:
    out = tmp_path / "seed002.html"
    outcome = run("report", SEED002, "--out", out)
    assert outcome.exit_code == 0, outcome.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<figure id="course-figure"><svg' in text
    svg = text[text.index("<svg") : text.index("</svg>") + len("</svg>")]
    assert ElementTree.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"  # well-formed, inline
    # Self-contained: nothing fetched (the SVG namespace URI is a name, not a request).
    assert not re.search(r"<script|<link|src=\"http|url\(http|@import", text)
    assert "CRS-ASTCT19-G4-HYPOXIA-POSITIVE-PRESSURE" in text and "mechanical_ventilation" in text
    assert "ICANS-ASTCT19-CONSCIOUSNESS" in text
    assert "Grade 4: fever with hypoxia requiring positive pressure" in text  # the rule's guideline sentence
    assert "fingerprint " + GradingConfig().fingerprint() in text


def test_report_episodes_are_the_engine_episodes(tmp_path: Path) -> None:
    result, normalised = graded(write(tmp_path, "b.csv", FULL))
    content = report_content(result, normalised.events, "B")
    engine = pl.concat([result.crs.episodes, result.icans.episodes])
    assert [(e.onset_day, e.peak_grade) for e in content.episodes] == list(
        zip(engine["onset_day"].to_list(), engine["peak_grade"].to_list())
    )
    assert {t.toxicity: t.max_grade for t in content.toxicities} == {
        "CRS": result.crs.summary["max_grade"][0],
        "ICANS": result.icans.summary["max_grade"][0],
    }
    assert all(e.rule in content.rules for e in content.episodes)
    assert [d.drug for d in content.drugs] == ["Tocilizumab", "Dexamethasone"]


def test_pdf_report_has_the_figure_and_table_pages(tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    outcome = run("report", SEED002, "--out", out)
    assert outcome.exit_code == 0, outcome.output
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) == 2


def test_report_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "1.html", tmp_path / "2.html"
    assert run("report", SEED000, "--out", first).exit_code == 0
    assert run("report", SEED000, "--out", second).exit_code == 0
    assert first.read_bytes() == second.read_bytes()


def test_patient_chosen_from_a_multi_patient_file(tmp_path: Path) -> None:
    course = write(tmp_path, "two.csv", FEVER_ONLY + FULL.removeprefix(HEADER))
    out = tmp_path / "b.html"
    outcome = run("report", course, "--patient", "B", "--out", out)
    assert outcome.exit_code == 0, outcome.output
    assert "patient B" in out.read_text(encoding="utf-8")


def test_config_file_is_named_in_the_report(tmp_path: Path) -> None:
    config = write(tmp_path, "centre.toml", 'name = "centre-x"\n[crs]\nfever_celsius = 38.3\n')
    out = tmp_path / "a.html"
    assert run("report", write(tmp_path, "a.csv", FEVER_ONLY), "--config", config, "--out", out).exit_code == 0
    assert "grading config &#x27;centre-x&#x27;" in out.read_text(encoding="utf-8")


# ------------------------------------------------------------------ bad input


def test_several_patients_without_patient_option_is_refused(tmp_path: Path) -> None:
    course = write(tmp_path, "two.csv", FEVER_ONLY + FULL.removeprefix(HEADER))
    outcome = run("report", course, "--out", tmp_path / "r.html")
    assert outcome.exit_code == 2
    assert "2 patients (A, B)" in outcome.output and "--patient ID" in outcome.output
    assert not (tmp_path / "r.html").exists()


def test_unknown_patient_is_refused_with_the_known_ids(tmp_path: Path) -> None:
    outcome = run("report", SEED002, "--patient", "seed999", "--out", tmp_path / "r.html")
    assert outcome.exit_code == 2
    assert "'seed999' is not in" in outcome.output and "seed002" in outcome.output


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    outcome = run("report", SEED002, "--out", tmp_path / "r.docx")
    assert outcome.exit_code == 2
    assert ".html or .pdf" in outcome.output


def test_missing_file_and_bad_config_are_refused(tmp_path: Path) -> None:
    outcome = run("report", tmp_path / "nope.csv", "--out", tmp_path / "r.html")
    assert outcome.exit_code == 2 and "nope.csv" in outcome.output
    bad = write(tmp_path, "bad.toml", "[crs]\nfever_celsius = 'hot'\n")
    outcome = run("report", SEED002, "--config", bad, "--out", tmp_path / "r.html")
    assert outcome.exit_code == 2 and "fever_celsius" in outcome.output


def test_refused_rows_leave_an_existing_report_untouched(tmp_path: Path) -> None:
    out = write(tmp_path, "r.html", "previous report")
    course = write(tmp_path, "bad.csv", FEVER_ONLY + "A,2,temprature,38.5,Cel\n")
    outcome = run("report", course, "--out", out)
    assert outcome.exit_code == 2
    assert "temprature" in outcome.output and "no report was written" in outcome.output
    assert out.read_text(encoding="utf-8") == "previous report"


def test_a_failure_while_writing_keeps_the_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = write(tmp_path, "r.html", "previous report")
    result, normalised = graded(SEED002)

    def broken(*_: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(patient_report, "render_html", broken)
    with pytest.raises(OSError, match="disk full"):
        write_patient_report(result, normalised.events, "seed002", out)
    assert out.read_text(encoding="utf-8") == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left behind


def test_unknown_patient_in_the_adapter_names_the_patients(tmp_path: Path) -> None:
    result, normalised = graded(SEED002)
    with pytest.raises(KeyError, match="patients: seed002"):
        write_patient_report(result, normalised.events, "X", tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_flow_holds_until_room_air_and_death_is_marked_on_every_panel(tmp_path: Path) -> None:
    result, normalised = graded(write(tmp_path, "b.csv", FULL + "B,10,death,infection,\n"))
    course = patient_course(result, normalised.events, "B")
    figure = course_figure(course)
    assert "died day 10.0 (cause: infection" in figure.get_suptitle()
    panels = [ax for ax in figure.axes if ax.get_ylabel() != "Hb (g/dL)"]  # the twinned Hb axis is no panel
    assert len(panels) == len(present_panels(course))
    for ax in panels:
        assert any(line.get_linestyle() == "-." and line.get_xdata()[0] == 10 for line in ax.lines)
    oxygen = next(ax for ax in figure.axes if ax.get_ylabel().startswith("Oxygen"))
    flow = next(line for line in oxygen.lines if line.get_drawstyle() == "steps-post")
    # 4 L/min from day 2, 0 once the device is room air (day 3.5), to the end of the course.
    assert list(zip(flow.get_xdata(), flow.get_ydata())) == [(2.0, 4.0), (3.5, 0.0), (14.0, 0.0)]


def test_reference_lines_follow_the_grading_config(tmp_path: Path) -> None:
    normalised = normalise_events(
        read_event_files([write(tmp_path, "b.csv", FULL)]), load_vocabulary(), IngestLimits(earliest_day=-30)
    )
    config = GradingConfig.model_validate({"crs": {"fever_celsius": 38.3, "low_flow_max_l_min": 4.0}})
    figure = course_figure(patient_course(grade_normalised(normalised, config), normalised.events, "B"))
    legends = [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "38.3 °C (fever, grading config)" in legends and "4 L/min (low/high flow)" in legends


def test_grade_bands_start_at_infusion() -> None:
    result, normalised = graded(SEED000)  # a graded fever on day -3.5 (pre-infusion infection)
    figure = course_figure(patient_course(result, normalised.events, "seed000"))
    grades = figure.axes[0]
    starts = [path.vertices[:, 0].min() for bar in grades.collections for path in bar.get_paths()]
    assert starts and min(starts) == 0.0
