"""The ``tocsin`` command's process: before Polars is imported, ``tocsin batch --workers N`` (N > 1) gives its own
process the workers' thread counts and jemalloc options, since it grades chunks beside them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin.adapters.worker_environment import JEMALLOC, WORKER_ENVIRONMENT, calling_process_environment
from tocsin.synth import generate_cohort

OURS = WORKER_ENVIRONMENT[JEMALLOC]
THREADS = {"POLARS_MAX_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.mark.parametrize(
    "argv",
    [
        ["batch", "events.parquet", "--out", "graded", "--workers", "2"],
        ["batch", "events.parquet", "--workers=3", "--out", "graded", "--evidence"],
    ],
)
def test_a_batch_with_workers_gets_the_workers_settings(argv: list[str]) -> None:
    assert calling_process_environment(argv, {}) == {**THREADS, JEMALLOC: OURS}


@pytest.mark.parametrize(
    "argv",
    [
        ["batch", "events.parquet", "--out", "graded"],
        ["batch", "events.parquet", "--out", "graded", "--workers", "1"],
        ["batch", "events.parquet", "--out", "graded", "--workers", "two"],
        ["batch", "events.parquet", "--out", "graded", "--workers"],
        ["grade", "course.csv", "--workers", "2"],
        [],
    ],
)
def test_other_commands_and_one_process_keep_polars_defaults(argv: list[str]) -> None:
    assert calling_process_environment(argv, {}) == {}


def test_the_users_variables_are_kept_and_their_jemalloc_options_win() -> None:
    user = {"POLARS_MAX_THREADS": "4", JEMALLOC: "narenas:2"}
    changes = calling_process_environment(["batch", "e.parquet", "--out", "o", "--workers", "2"], user)
    assert changes == {"OPENBLAS_NUM_THREADS": "1", JEMALLOC: OURS + ",narenas:2"}


def _command_process(tmp_path: Path, *options: str) -> list[str]:
    """Run the ``tocsin`` entry point on a batch; at its exit the process prints its Polars thread count and its
    jemalloc options (``main`` ends by ``sys.exit``)."""
    events = tmp_path / "events.parquet"
    if not events.exists():
        generate_cohort(4, 3).events.write_parquet(events)
    code = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: print(sys.modules['polars'].thread_pool_size(), os.environ['_RJEM_MALLOC_CONF']))\n"
        f"sys.argv = ['tocsin', 'batch', {str(events)!r}, '--out', {str(tmp_path / 'out')!r}, *{list(options)!r}]\n"
        "from tocsin.cli_process import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*THREADS, JEMALLOC, "POLARS_THP")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()


def test_the_tocsin_command_sets_them_before_polars_is_imported(tmp_path: Path) -> None:
    """The settings take effect: with ``--workers 2`` the command's own Polars has one thread and the workers'
    jemalloc options (after Polars' defaults, which its import puts first); without, Polars' defaults."""
    default_threads = subprocess.run(
        [sys.executable, "-c", "import polars; print(polars.thread_pool_size())"],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"},
    ).stdout.strip()
    threads, options = _command_process(tmp_path, "--workers", "2")
    assert threads == "1" and options.endswith("," + OURS)
    threads, options = _command_process(tmp_path)
    assert threads == default_threads and OURS not in options
