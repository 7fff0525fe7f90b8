"""End to end: the engine recovers the synthetic generator's ground truth for a whole cohort.

The generator plans each course (CRS onset, grades, episodes; ICANS) and writes the observations that
make its labels unambiguous under ASTCT 2019 — in mixed units (°F, CRP mg/dL, µg/kg/min, FiO2 fraction).
"""

import polars as pl
import pytest

from tocsin.config import GradingConfig
from tocsin.core.engine import grade_events
from tocsin.synth import generate_cohort


@pytest.fixture(scope="module")
def graded():
    cohort = generate_cohort(150, seed=4242)
    raw = cohort.events.with_columns(pl.lit("synthetic").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
    result = grade_events(raw, GradingConfig())
    assert result.errors.height == 0
    return cohort.labels, result


def _summary(result_part) -> pl.DataFrame:
    return result_part.summary.with_columns(pl.col("patient_id").cast(pl.Utf8))


def test_crs_max_grade_onset_and_episodes_match_the_labels(graded) -> None:
    labels, result = graded
    joined = _summary(result.crs).join(labels, on="patient_id", how="inner")
    assert joined.height == labels.height
    assert (joined["max_grade"].fill_null(0) == joined["crs_max_grade"]).all()
    assert (joined["n_episodes"] == joined["crs_episodes"]).all()
    with_crs = joined.filter(pl.col("crs_onset_day").is_not_null())
    assert ((with_crs["onset_day"] - with_crs["crs_onset_day"]).abs() < 1e-6).all()


def test_icans_max_grade_and_onset_match_the_labels(graded) -> None:
    labels, result = graded
    joined = _summary(result.icans).join(labels, on="patient_id", how="inner")
    assert (joined["max_grade"].fill_null(0) == joined["icans_max_grade"]).all()
    with_icans = joined.filter(pl.col("icans_onset_day").is_not_null())
    assert with_icans.height > 10
    assert ((with_icans["onset_day"] - with_icans["icans_onset_day"]).abs() < 1e-6).all()
