"""A kernel fed both Arrow buffers (read-only) and NumPy results, or a whole-number setting where another lineage
has a fraction, is compiled, cached and loaded once per argument type: each needless specialisation cost a
compile on a fresh cache and 3-10 ms of every batch worker's start. Grading a batch-sized chunk and one
course in a fresh process compiles each of these kernels for one signature."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import polars as pl
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_events
from tocsin.core.segments import jit_dispatcher
from tocsin.core import kernels_icaht, kernels_scores, kernels_toxicity
from tocsin.synth import generate_cohort

events = generate_cohort(30, seed=4).events  # above the height from which ingest codes the texts itself
events = events.with_columns(pl.lit("f").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
grade_events(events, GradingConfig())
first = events.get_column("patient_id")[0]
grade_events(events.filter(pl.col("patient_id") == first), GradingConfig())
for loop in (kernels_icaht._lineage_loop, kernels_toxicity._taken_loop, kernels_toxicity._float_rows_loop,
             kernels_scores._picked_loop):
    print(loop.__name__, len(jit_dispatcher(loop).signatures))
"""


def test_the_kernels_fed_from_several_sources_are_compiled_for_one_signature() -> None:
    environment = dict(os.environ, TOCSIN_KERNELS="jit")  # every loop through Numba, whose signatures are counted
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr
    counts = dict(line.split() for line in done.stdout.split("\n") if line)
    assert counts == {"_lineage_loop": "1", "_taken_loop": "1", "_float_rows_loop": "1", "_picked_loop": "1"}
