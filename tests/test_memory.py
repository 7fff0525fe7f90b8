"""Grading leaves no reference cycles: what it allocates is freed as soon as its result is dropped.

A cycle through a chunk's arrays (a closure that refers to the object holding it) keeps them until the garbage
collector's next full pass, which a batch worker, allocating few Python objects, reaches rarely: every chunk then
faulted in hundreds of MB of fresh pages, and a worker's memory grew with each chunk (eighth session,
docs/benchmarks.md).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator

import polars as pl
import pytest

from tocsin.adapters.batch import result_tables
from tocsin.cohort.sources import cohort_tables
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import IngestLimits, normalise_events
from tocsin.synth import generate_cohort
from tocsin.vocabulary import load_vocabulary


@pytest.fixture()
def collector_off() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def _cycles_left_by(work: Callable[[], object]) -> Counter[str]:
    """The types of the objects that only a cycle collection frees after ``work`` (run once before, to warm the
    libraries' own caches)."""
    work()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    work()
    gc.collect()
    left = Counter(type(o).__qualname__ for o in gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    return left


def _raw(bad_rows: bool) -> pl.DataFrame:
    events = generate_cohort(8, seed=11).events
    raw = events.with_columns(pl.lit("course.csv").alias("file"), pl.int_range(2, pl.len() + 2).alias("line"))
    blq = raw.filter(pl.col("item") == "car_t_copies").head(2).with_columns(pl.lit("<5").alias("value"))
    raw = pl.concat([raw, blq])
    if bad_rows:  # an unknown item, a unit of the wrong kind, an implausible value, a value that is not a number
        wrong = raw.filter(pl.col("item") == "temperature").head(4).with_columns(
            pl.Series("item", ["temprature", "temperature", "temperature", "temperature"]),
            pl.Series("unit", ["Cel", "mg", "Cel", "Cel"]),
            pl.Series("value", ["38.2", "38.2", "400", "high"]),
        )
        raw = pl.concat([raw, wrong])
    return raw


@pytest.mark.parametrize("bad_rows", [False, True], ids=["clean", "with-refused-rows"])
def test_ingest_and_grading_leave_no_reference_cycles(collector_off: None, bad_rows: bool) -> None:
    raw, config, vocabulary = _raw(bad_rows), GradingConfig(), load_vocabulary()
    assert raw.filter(pl.col("value").str.starts_with("<")).height > 0  # the below-quantification path is taken

    def grade() -> None:
        normalised = normalise_events(raw, vocabulary, IngestLimits(earliest_day=config.earliest_day))
        assert normalised.errors.height == (4 if bad_rows else 0)
        result = grade_normalised(normalised, config, vocabulary)
        result_tables(result, evidence=True)
        cohort_tables(normalised, result, vocabulary)

    assert _cycles_left_by(grade) == Counter()
