"""The options the ``tocsin cohort`` commands share (``tocsin.cli_cohort.options``): one name, one rule each."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from cli_helpers import run


@pytest.fixture
def patients(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    pl.DataFrame({
        "patient_id": [f"P{i}" for i in range(12)],
        "product": ["a", "b", "c"] * 4,
        "crs_max_grade": [0, 1, 2, 3, 0, 1, 3, 4, 0, 2, 1, 3],
        "os_days": [float(10 * i + 5) for i in range(12)],
        "os_event": [1, 0] * 6,
    }).write_csv(path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["cohort", "incidence"],
        ["cohort", "survival", "--time", "os_days", "--event", "os_event"],
        ["cohort", "cox", "--time", "os_days", "--event", "os_event", "--covariate", "product"],
        ["cohort", "cuminc", "--time", "os_days", "--status", "os_event", "--event-code", "1"],
        ["cohort", "logistic", "--outcome", "crs_max_grade", "--threshold", "3", "--predictor", "product"],
    ],
    ids=lambda c: c[1],
)
@pytest.mark.parametrize("level", ["95", "0", "1"])
def test_every_command_takes_conf_level_between_0_and_1(patients: Path, command: list[str], level: str) -> None:
    result = run(*command[:2], patients, *command[2:], "--conf-level", level)
    assert result.exit_code == 2
    assert "give a confidence level between 0 and 1" in result.stderr


@pytest.mark.parametrize("command", [
    ["cohort", "cox", "--time", "os_days", "--event", "os_event", "--covariate", "product"],
    ["cohort", "logistic", "--outcome", "crs_max_grade", "--threshold", "3", "--predictor", "product"],
], ids=lambda c: c[1])
def test_reference_is_column_equals_level_once_per_column(patients: Path, command: list[str]) -> None:
    malformed = run(*command[:2], patients, *command[2:], "--reference", "product")
    assert malformed.exit_code == 2 and "COLUMN=LEVEL" in malformed.stderr
    twice = run(*command[:2], patients, *command[2:], "--reference", "product=a", "--reference", "product=b")
    assert twice.exit_code == 2 and "names 'product' twice (a, b)" in twice.stderr
    spaced = run(*command[:2], patients, *command[2:], "--reference", " product = b ", "--json")
    assert spaced.exit_code == 0, spaced.stderr
    assert '"product": "b"' in spaced.stdout or '"reference": "b"' in spaced.stdout
