"""The source-paper courses in examples/ grade as docs/examples.md says (daily highest grade, episodes).

Expected values are the "Tocsin ASTCT grade" column of docs/examples.md; a change in grading that moves
them must update that page too.
"""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tocsin.adapters.files import read_event_files
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_events
from tocsin.core.episodes import daily_max

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# study day -> highest CRS grade of the day (None = cannot grade: something needed is missing)
EXPECTED_CRS = {
    "seed000_lu2025.csv": {-4: 0, 3: 1, 5: 1, 9: None, 10: None, 11: None, 12: None, 13: None},
    "seed002_hu2024.csv": {1: 0, 4: 1, 5: 1, 6: 1, 7: None, 10: 4, 25: None},
    "seed004_xiao.csv": {3: 1, 5: None, 6: None, 7: None},
}
EXPECTED_ICANS = {"seed000_lu2025.csv": {}, "seed002_hu2024.csv": {7: 1}, "seed004_xiao.csv": {}}


def _grade(name: str):
    result = grade_events(read_event_files([EXAMPLES / name]), GradingConfig())
    assert result.errors.filter(pl.col("severity") == "error").height == 0
    return result


@pytest.mark.parametrize("name", sorted(EXPECTED_CRS))
def test_daily_grades_match_the_documented_table(name: str) -> None:
    result = _grade(name)
    for toxicity, expected in ((result.crs, EXPECTED_CRS[name]), (result.icans, EXPECTED_ICANS[name])):
        daily = {day: grade for day, grade in daily_max(toxicity.timeline).select("study_day", "grade").rows()}
        assert daily == expected


def test_seed002_grade_4_comes_from_mechanical_ventilation_under_a_steroid_waiver() -> None:
    result = _grade("seed002_hu2024.csv")
    day10 = result.crs.explained().filter(pl.col("t").floor() == 10).row(0, named=True)
    assert day10["grade"] == 4
    assert day10["rule"] == "CRS-ASTCT19-G4-HYPOXIA-POSITIVE-PRESSURE"
    items = {e["item"] for e in day10["evidence"]}
    assert "oxygen" in items and day10["waived"]
    assert result.crs.episodes.select("peak_grade", "ongoing").row(0) == (4, True)


def test_the_papers_unsupported_grades_stay_lower_bounds() -> None:
    """Seed 000 states grade 3 on days 3-5 without any support charted: Tocsin says 1 and what is missing."""
    result = _grade("seed000_lu2025.csv")
    day3 = result.crs.explained().filter(pl.col("t").floor() == 3, pl.col("grade").is_not_null()).row(0, named=True)
    assert day3["grade"] == 1 and day3["missing"] == ["sbp or map"]


def test_the_readme_example_grades_as_the_readme_shows(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("```csv\n", 1)[1].split("```", 1)[0]
    course = tmp_path / "readme.csv"
    course.write_text(block)
    result = grade_events(read_event_files([course]), GradingConfig())
    assert result.errors.height == 0
    row = result.crs.explained().filter(pl.col("t") == 3.0).row(0, named=True)
    assert (row["grade"], row["rule"]) == (3, "CRS-ASTCT19-G3-HYPOTENSION-ONE-VASOPRESSOR")
    assert {"item": "norepinephrine", "day": 3.0, "value": "4.0 ug/min"} in row["evidence"]
    assert result.crs.episodes.select("onset_day", "peak_grade", "duration_days").row(0) == (2.25, 3, 0.85)


def test_a_rule_id_missing_from_the_criteria_data_is_refused() -> None:
    """The engine refuses to emit a rule id that its criteria file does not define."""
    from tocsin.core.engine import _toxicity_result
    from tocsin.criteria import load_scale

    from tocsin.core.timeline import Assessments, NullableInt, Text, labels

    graded = Assessments(Text(pl.Series(["P"]), np.array([0])), np.array([0]), np.array([True]), np.array([1.0]))
    graded.add(
        grade=NullableInt(np.array([1], dtype=np.int8)),
        domain=labels(["fever"], np.array([0])),
        rule=labels(["CRS-ASTCT19-G1-FEVER", "CRS-ASTCT19-G1-FEVRE"], np.array([1])),
        missing=labels([""], np.array([0])),
        stretch=np.array([1], dtype=np.int32),
        quiet_since=np.array([np.nan]),
        resolved_row=np.array([False]),
    )
    with pytest.raises(RuntimeError, match="CRS-ASTCT19-G1-FEVRE"):
        _toxicity_result(load_scale("crs_astct2019"), graded, [], [])
