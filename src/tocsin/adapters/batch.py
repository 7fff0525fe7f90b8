"""Registry-scale grading: Parquet in, Parquet out, in chunks of patients so memory stays bounded.

The core grades whatever batch it is given; this adapter only decides how many patients go into one
batch. A file grouped by patient (each patient's rows together) is read chunk by chunk as row ranges;
any other file is read chunk by chunk with a predicate on ``patient_id``. The tables are folders of numbered
part files under the output directory. Each chunk writes its part of the tables with rows per assessment or per
value (timelines, cytopenia grades, evidence, cohort events) and of the refused rows; the tables of a row or a
few per patient (episodes, summaries, scores, ICAHT, PHT, kinetics) are written once per group of consecutive
chunks (:func:`per_patient_groups`: 64 at a time), by the process that started the run. A part
is first written under a temporary name and renamed when complete, so an interrupted run never leaves a
half-written part (and the per-patient parts of the chunks graded before the interruption are still written).
A completed run into a directory an earlier run wrote removes the earlier run's parts it did not replace.
With ``cohort`` the chunk also writes the tables ``tocsin cohort derive`` reads
(:func:`tocsin.cohort.sources.cohort_tables`: patients, the events of treatments and outcomes, CRS under both
scales), so the patient table of a registry derives without grading again.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from tocsin.adapters.calling_process_memory import glibc_keeps_freed_memory, polars_keeps_freed_memory
from tocsin.adapters.files import InputFileError, REQUIRED
from tocsin.adapters.worker_environment import JEMALLOC, WORKER_ENVIRONMENT, user_jemalloc_options
from tocsin.cohort.sources import CRS_SCALES, cohort_tables
from tocsin.config import GradingConfig
from tocsin.core.engine import GradingResult, grade_normalised
from tocsin.core.events import IngestLimits, normalise_events
from tocsin.vocabulary import load_vocabulary


@dataclass(frozen=True)
class BatchStats:
    patients: int
    events: int
    refused_rows: int


@dataclass(frozen=True)
class _Chunk:
    """A set of patients; ``rows`` = (offset, length) when their rows are contiguous in the file."""

    patients: list[str]
    rows: tuple[int, int] | None


def _scan(path: Path) -> pl.LazyFrame:
    """The file's scan, once its columns are known to include the required ones (else the error names them). One
    scan a process for the file as it is (its size and modification time): a scan keeps the footer it read, and a
    chunk read through a new one read the footer again (~2 ms of a chunk's ~20 ms read of the benchmark's file, 113
    row groups; docs/benchmarks.md, eighteenth session)."""
    status = os.stat(path)
    return _scan_of(str(path), status.st_size, status.st_mtime_ns)


@lru_cache(maxsize=8)
def _scan_of(path: str, size: int, modified_ns: int) -> pl.LazyFrame:
    scan = pl.scan_parquet(path)
    missing = [c for c in REQUIRED if c not in scan.collect_schema().names()]
    if missing:
        raise InputFileError(f"{path}: missing column(s) {', '.join(missing)}")
    return scan


def _patient_chunks(path: Path, chunk_patients: int) -> list[_Chunk]:
    """Chunks of patients. A file grouped by patient (each patient's rows together, as sorted files are)
    is read chunk by chunk as row ranges; otherwise each chunk is selected by patient id."""
    runs = _scan(path).select(pl.col("patient_id").cast(pl.Utf8).rle().struct.unnest()).collect()
    ids = runs.get_column("value").to_list()
    grouped = len(set(ids)) == len(ids)
    if not grouped:
        distinct = list(dict.fromkeys(ids))
        return [_Chunk(distinct[i : i + chunk_patients], None) for i in range(0, len(distinct), chunk_patients)]
    lengths = runs.get_column("len").to_list()
    chunks, offset = [], 0
    for i in range(0, len(ids), chunk_patients):
        length = sum(lengths[i : i + chunk_patients])
        chunks.append(_Chunk(ids[i : i + chunk_patients], (offset, length)))
        offset += length
    return chunks


def _read_chunk(path: Path, chunk: _Chunk) -> pl.DataFrame:
    scan = _scan(path)
    if chunk.rows is not None:
        # A row index ahead of the slice made Polars decode row groups before the slice (0.2-1 s CPU per
        # chunk, against 0.05 s): the line numbers of a row range are known without it.
        offset, length = chunk.rows
        scan = scan.slice(offset, length).with_columns(
            pl.int_range(offset + 1, offset + 1 + length, dtype=pl.Int64).alias("line")
        )
    else:
        scan = scan.with_row_index("line", offset=1).filter(pl.col("patient_id").cast(pl.Utf8).is_in(chunk.patients))
    return scan.with_columns(
        pl.lit(str(path)).cast(pl.Categorical).alias("file"), pl.col("line").cast(pl.Int64)
    ).collect()


#: The part files' compression: Snappy, the Parquet ecosystem's usual codec (PyArrow's and Spark's default), which
#: every Parquet reader takes. A chunk's per-assessment parts are written in ~30 ms where zstd took ~37 at level 1 and
#: ~40 at Polars' default level 3, and are ~40 % larger than at zstd level 1 (~1.2 MB a 400-patient chunk against
#: 0.86; ~31 MB a 10,000-patient run against ~22). Measured in docs/benchmarks.md (eighteenth session).
PART_COMPRESSION = "snappy"


def _write_part(frame: pl.DataFrame, folder: Path, index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{index:05d}.parquet"
    temporary = folder / f".part-{index:05d}.parquet.tmp"
    frame.write_parquet(
        temporary,
        arrow_schema=part_arrow_schema(tuple(frame.schema.items())),
        compression=PART_COMPRESSION,
    )
    os.replace(temporary, final)


@lru_cache(maxsize=256)
def part_arrow_schema(columns: tuple[tuple[str, pl.DataType], ...]) -> pa.Schema:
    """The Arrow schema a part file declares: Polars' own for these columns, with each text column as Arrow's
    ``string_view`` (Polars' layout) instead of ``large_string``. The Parquet column is the same UTF-8 byte array
    either way, and Polars, pandas and PyArrow read the same values; but a ``large_string`` schema makes Polars'
    writer slow on a column that starts with a long run of empty texts (~150 ns a row, where other texts cost
    ~15: a chunk's ICANS timeline, whose ``missing`` is mostly empty, took 9 ms to write instead of 3;
    docs/benchmarks.md, fourteenth session)."""
    declared = pl.DataFrame(schema=dict(columns)).to_arrow().schema
    return pa.schema(
        [field.with_type(pa.string_view()) if field.type == pa.large_string() else field for field in declared],
        metadata=declared.metadata,
    )


#: The tables with a row, or a few rows, per patient. A chunk's part of one is a few hundred rows, and a Parquet
#: file costs more fixed work (~2 ms) than such rows do: written per chunk, the 13 of a run without ``cohort``
#: took ~28 ms of a chunk's ~290 ms of CPU (docs/benchmarks.md, eleventh session). Their chunks are collected instead
#: (:class:`_PerPatientParts`) and written once per group of chunks (:func:`per_patient_groups`).
PER_PATIENT_TABLES = frozenset(
    {
        "crs_episodes", "crs_summary", "icans_episodes", "icans_summary", "cytopenia_worst", "icaht", "pht",
        "car_hematotox", "easix", "hscore", "iec_hs", "car_hlh", "kinetics", "cohort_patients",
        *(f"crs_{scale}_{kind}" for scale in CRS_SCALES for kind in ("summary", "episodes")),
    }
)

#: Chunks per part of a per-patient table: 64 chunks of 400 patients keep a part near 25,600 patients (a
#: 10,000-patient run writes two parts a table, the last two chunks apart), and bound what the collecting process
#: holds (the chunks of an unfinished group and those finished ahead of it: ~1.7 MB a chunk without ``cohort``, ~110
#: MB for 64). Each part costs its writer fixed work, whatever its rows (~0.1 ms a column, and the 13 tables have ~425
#: columns): in 16-chunk groups with a halved tail, the five parts of such a run took ~0.45 s of CPU
#: (docs/benchmarks.md, nineteenth session).
PER_PATIENT_GROUP = 64

#: Every table a run may write: the per-patient ones and those per assessment or value, with those of ``evidence`` and
#: ``cohort``. A completed run removes the parts of these it did not write (:func:`_remove_stale_parts`), no other file.
BATCH_TABLES = PER_PATIENT_TABLES | {
    "crs_timeline", "icans_timeline", "cytopenia", "input_problems", "crs_evidence", "icans_evidence", "cohort_events",
}


#: The last chunks of a run, a part of their own (:func:`per_patient_groups`).
PER_PATIENT_TAIL = 2


def per_patient_groups(chunks: int, group: int = PER_PATIENT_GROUP) -> list[range]:
    """The chunks of each part of a per-patient table: ``group`` at a time, but the last :data:`PER_PATIENT_TAIL`
    chunks in a part of their own (25 chunks: 23 and 2). The group completed last is written once no chunk is left
    to grade, while the other core idles: with two processes, the two chunks graded last are their last, and the
    chunks before them are done, and their part written, while those two are graded. Each part costs fixed work whatever
    its rows: a halved tail (16 + 5 + 2 + 1 + 1 chunks) took ~0.45 s of CPU a 10,000-patient run, and one part of
    25 chunks ~0.12 s after the last chunk (docs/benchmarks.md, nineteenth session)."""
    body = max(chunks - PER_PATIENT_TAIL, 0)
    groups = [range(start, min(start + group, body)) for start in range(0, body, group)]
    return groups + [range(body, chunks)] if chunks > body else groups


class _PerPatientParts:
    """Collects the per-patient tables of graded chunks and writes each group of :func:`per_patient_groups` as the
    part numbered by its first chunk, once all its chunks are in: rows in chunk order, whatever order the chunks
    finish in, so a run's output does not depend on its workers' timing.

    Chunks may be added from several threads (a chunk added twice is added once). With a ``writer`` each table of
    a complete group is written there, not in the adding thread: a group completed by a pool's chunk is written as
    it comes in, beside the chunks still being graded, and the last group's tables by the writer's threads at once
    (written one after the other in the starting process, the groups completed last took ~0.15 s after the last
    chunk, the other core idle). :meth:`write_waiting` waits for those writes. ``group``: chunks per part
    (:func:`per_patient_groups`)."""

    def __init__(self, out: Path, writer: ThreadPoolExecutor | None = None, group: int = PER_PATIENT_GROUP) -> None:
        self.out = out
        self._writer = writer
        self._group = group
        self._lock = threading.Lock()
        self._group_of: dict[int, range] = {}
        self._waiting: dict[int, dict[str, pl.DataFrame]] = {}
        self._added: set[int] = set()
        self._writes: list[Future[None]] = []

    def plan(self, chunks: int) -> None:
        """The run's number of chunks, once they are planned."""
        self._group_of = {index: group for group in per_patient_groups(chunks, self._group) for index in group}

    def has(self, index: int) -> bool:
        with self._lock:
            return index in self._added

    def add(self, index: int, tables: dict[str, pl.DataFrame]) -> None:
        with self._lock:
            if index in self._added:
                return
            self._added.add(index)
            self._waiting[index] = tables
            group = self._group_of[index]
            if not all(i in self._waiting for i in group):
                return
            graded = self._taken(group)
            if self._writer is not None:
                self._writes += [self._writer.submit(self._write_table, name, group, graded) for name in graded[0]]
                return
        self._write(group, graded)

    def write_waiting(self) -> None:
        """Wait for the writes under way, then write what is collected, complete groups or not: after an
        interruption, the chunks graded before it. The first failed write is raised once the others are done."""
        with self._lock:
            writes, self._writes = self._writes, []
        failures = [error for error in (write.exception() for write in writes) if error is not None]
        with self._lock:
            groups = sorted({self._group_of[index] for index in self._waiting}, key=lambda group: group.start)
            left = [(group, self._taken(group)) for group in groups]
        for group, graded in left:
            self._write(group, graded)
        if failures:
            raise failures[0]

    def _taken(self, group: range) -> list[dict[str, pl.DataFrame]]:
        return [self._waiting.pop(i) for i in group if i in self._waiting]

    def _write(self, group: range, graded: list[dict[str, pl.DataFrame]]) -> None:
        for name in graded[0]:
            self._write_table(name, group, graded)

    def _write_table(self, name: str, group: range, graded: list[dict[str, pl.DataFrame]]) -> None:
        _write_part(pl.concat([tables[name] for tables in graded], how="vertical"), self.out / name, group.start)


def result_tables(result: GradingResult, evidence: bool = False) -> dict[str, pl.DataFrame]:
    """The flat tables of a result (what a registry stores); with ``evidence`` also the observations behind
    every graded row, as long tables (patient_id, t, item, day, value) joined to the timelines on (patient_id, t)."""
    keep = ["patient_id", "t", "grade", "domain", "rule", "missing"]
    extra = {"crs_evidence": result.crs.evidence(), "icans_evidence": result.icans.evidence()} if evidence else {}
    return {
        **extra,
        "crs_timeline": result.crs.timeline_columns(keep),
        "crs_episodes": result.crs.episodes,
        "crs_summary": result.crs.summary,
        "icans_timeline": result.icans.timeline_columns(keep),
        "icans_episodes": result.icans.episodes,
        "icans_summary": result.icans.summary,
        "cytopenia": result.hematology.cytopenia,
        "cytopenia_worst": result.hematology.cytopenia_worst,
        "icaht": result.hematology.icaht,
        "pht": result.hematology.pht,
        "car_hematotox": result.scores.car_hematotox,
        "easix": result.scores.easix,
        "hscore": result.scores.hscore,
        "iec_hs": result.scores.iec_hs,
        "car_hlh": result.scores.car_hlh,
        "kinetics": result.kinetics,
        "input_problems": result.errors,
    }


@dataclass(frozen=True)
class _GradedChunk:
    index: int
    counts: tuple[int, int, int]  # patients, rows, refused rows
    tables: tuple[str, ...]  # the names of all the tables it graded, written here or not
    per_patient: dict[str, pl.DataFrame]  # its part of the PER_PATIENT_TABLES, for _PerPatientParts


def _grade_and_write(
    path: Path, out: Path, config: GradingConfig, index: int, chunk: _Chunk, evidence: bool, cohort: bool
) -> _GradedChunk:
    """Worker: grade one chunk of patients, write its parts of the per-row tables, return the per-patient ones."""
    vocabulary = load_vocabulary()
    raw = _read_chunk(path, chunk)
    normalised = normalise_events(raw, vocabulary, IngestLimits(earliest_day=config.earliest_day))
    result = grade_normalised(normalised, config, vocabulary)
    tables = result_tables(result, evidence)
    if cohort:
        tables.update(cohort_tables(normalised, result, vocabulary))
    for name, table in tables.items():
        if name not in PER_PATIENT_TABLES:
            _write_part(table, out / name, index)
    per_patient = {name: table for name, table in tables.items() if name in PER_PATIENT_TABLES}
    counts = (len(chunk.patients), raw.height, normalised.problems.height)
    return _GradedChunk(index, counts, tuple(tables), per_patient)


def _remove_stale_parts(out: Path, chunks: int, written: set[str]) -> None:
    """After a completed run, remove the part files of :data:`BATCH_TABLES` that this run did not write: an earlier
    run into the same directory with more chunks (another ``chunk_patients``, a larger file) or with ``evidence`` or
    ``cohort`` left parts that no longer belong to the tables beside them, and an interrupted run its temporaries. A
    table folder left empty is removed."""
    starts = {group.start for group in per_patient_groups(chunks)}
    for name in sorted(BATCH_TABLES):
        folder = out / name
        if not folder.is_dir():
            continue
        if name not in written:
            kept: set[int] = set()
        else:
            kept = starts if name in PER_PATIENT_TABLES else set(range(chunks))
        for part in folder.glob("part-*.parquet"):
            index = part.name[len("part-") : -len(".parquet")]
            if not (index.isdigit() and int(index) in kept):
                part.unlink()
        for temporary in folder.glob(".part-*.parquet.tmp"):  # left by an interrupted writer (see _write_part)
            temporary.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def _start_worker() -> None:
    """A worker's warm-up, before its first chunk: the vocabulary, and the compiled loops' set-up, made by one small
    kernel call (the precompiled kernels' import, a millisecond; without them, Numba's set-up, ~0.5 s). Then the
    objects of the imports are frozen out of the garbage collector's reach: its full passes walked them all, ~50 ms
    each.

    At its exit, a worker skips the interpreter's teardown (freeing every module and object, ~50 ms of a 2-worker
    run's end, which the run waits for): the pool's results have been sent by then (multiprocessing joins its
    queues' feeder threads before ``sys.exit``), every part file is closed and renamed, and nothing else is kept
    but memory."""
    from tocsin.core.kernels_ingest import marked

    load_vocabulary()
    marked(np.zeros(1, np.int64), np.zeros(1, np.bool_), 1)
    gc.freeze()
    atexit.register(os._exit, 0)


@contextmanager
def _worker_environment() -> Iterator[None]:
    """:data:`WORKER_ENVIRONMENT` while the workers start (a variable the user set is kept, but for the thread
    count, which the worker design needs); this process's environment is restored after.

    jemalloc's options are a list in which a later option wins: the workers get these, then any the user set. (Polars'
    import always sets the variable, to its own decay times: kept as the user's, they silently replaced these
    until the eighth session, and each worker faulted in some 30,000 fresh pages a chunk.)"""
    previous = {name: os.environ.get(name) for name in WORKER_ENVIRONMENT}
    for name, value in WORKER_ENVIRONMENT.items():
        if name == JEMALLOC and previous[name] is not None:
            user = user_jemalloc_options(previous[name])  # type: ignore[arg-type]
            os.environ[name] = f"{value},{user}" if user else value
        elif name == "POLARS_MAX_THREADS" or previous[name] is None:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _planned(
    path: Path, chunk_patients: int, parts: _PerPatientParts, on_plan: Callable[[int], None] | None
) -> list[_Chunk]:
    chunks = _patient_chunks(path, chunk_patients)
    parts.plan(len(chunks))
    if on_plan is not None:
        on_plan(sum(len(chunk.patients) for chunk in chunks))
    return chunks


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While workers start, the script or module this process runs is not named to them: a spawned worker runs the
    parent's main script (or module, when run by ``python -m``) first, as ``__mp_main__``, for functions pickled
    from it, and the ``tocsin`` command's script imports the whole CLI (Typer, Rich, the cohort commands: ~400 more
    modules, ~0.1 s of CPU in each worker's start). The workers' tasks are functions of this module; nothing of the
    main script is sent to them."""
    main = sys.modules.get("__main__")
    hidden = {name: getattr(main, name) for name in ("__file__", "__spec__") if getattr(main, name, None) is not None}
    for name in hidden:
        setattr(main, name, None)
    try:
        yield
    finally:
        for name, value in hidden.items():
            setattr(main, name, value)


#: Chunks left per pool worker from which the pool holds each worker's next chunk too (:class:`_ChunkQueue`): a next
#: chunk held from then on leaves this process at least three more to grade while the worker grades the two it holds,
#: so the worker never still holds one when no chunk is left (from 3 on, it sometimes did: the worker then finished
#: a chunk's time after this process, ~0.2 s of a core idle).
_PREFETCH_LEFT = 4


class _ChunkQueue:
    """The chunks not yet started, taken in index order by this process and, through their futures' callbacks, by
    the pool's workers; ``stop`` leaves none to take.

    While many chunks are left, the pool holds two chunks a worker: the one it grades and the next, already in its
    queue when it finishes (a chunk submitted only once the last one was done reached the worker ~10 ms later: the
    result's trip back, the callback and the submission go through this process's threads; ~0.1 s of a worker's
    10,000-patient run). Once fewer than
    :data:`_PREFETCH_LEFT` chunks a worker are left, only the one it grades, so that no chunk waits in a worker's
    queue while this process could take it: the run still ends at most a chunk's time after the last chunk starts."""

    def __init__(self, chunks: int, pool_workers: int) -> None:
        self._next = 0
        self._chunks = chunks
        self._pool_workers = pool_workers
        self._running = 0  # submitted to the pool and not done
        self._lock = threading.Lock()
        self._submitted: list[Future[_GradedChunk]] = []

    def take(self) -> int | None:
        with self._lock:
            return self._take()

    def _take(self) -> int | None:
        if self._next >= self._chunks:
            return None
        self._next += 1
        return self._next - 1

    def _wanted(self) -> int:
        """How many chunks the pool should hold now."""
        prefetch = self._chunks - self._next >= _PREFETCH_LEFT * self._pool_workers
        return self._pool_workers * (2 if prefetch else 1)

    def fill(
        self,
        pool: ProcessPoolExecutor,
        arguments: Callable[[int], tuple],
        graded: Callable[[_GradedChunk], None] = lambda done: None,
    ) -> None:
        """Submit chunks to the pool until it holds as many as it should, while chunks are left; as each is done,
        fill the pool again and call ``graded`` with its result (in the pool's result thread)."""
        while True:
            with self._lock:
                if self._running >= self._wanted():
                    return
                index = self._take()
                if index is None:
                    return
                future = pool.submit(_grade_and_write, *arguments(index))
                self._submitted.append(future)
                self._running += 1

            def fill_unless_failed(done: Future[_GradedChunk]) -> None:
                with self._lock:
                    self._running -= 1
                if not (done.cancelled() or done.exception()):
                    self.fill(pool, arguments, graded)
                    graded(done.result())

            future.add_done_callback(fill_unless_failed)

    def drained(self) -> bool:
        """No chunk is left to take and none runs in the pool."""
        with self._lock:
            return self._next >= self._chunks and self._running == 0

    def submitted(self) -> list[Future[_GradedChunk]]:
        """The chunks submitted to the pool so far (the pool's result thread adds to them)."""
        with self._lock:
            return list(self._submitted)

    def stop(self) -> list[Future[_GradedChunk]]:
        """No chunk is started after this; the chunks submitted so far."""
        with self._lock:
            self._next = self._chunks
            return list(self._submitted)


def _grade_here_and_in_pool(
    pool: ProcessPoolExecutor,
    pool_workers: int,
    chunks: int,
    arguments: Callable[[int], tuple],
    record: Callable[[_GradedChunk], None],
    parts: _PerPatientParts,
) -> None:
    """Grade the chunks in this process and in the pool's workers, each taking the next chunk when it is free; the
    pool's results are recorded here, between this process's own chunks, but their per-patient tables are added to
    ``parts`` as they come in (a group completed by a pool's chunk is written then). This process is one of the run's
    workers: a spawned one costs ~0.5 s of CPU for its interpreter and imports, which this process has already."""
    queue = _ChunkQueue(chunks, pool_workers)
    recorded: set[Future[_GradedChunk]] = set()

    def record_done(futures: list[Future[_GradedChunk]], wait: bool) -> None:
        for future in as_completed(futures) if wait else [f for f in futures if f.done()]:
            if future not in recorded:
                recorded.add(future)
                record(future.result())

    # The pool's own thread, which reaps the workers: a shutdown without waiting forgets it (below), so it is kept to
    # be joined when this process is done (CPython's executor names it so since 3.9).
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)

    def graded_in_pool(done: _GradedChunk) -> None:
        parts.add(done.index, done.per_patient)
        if queue.drained():
            # The workers are told to exit now, while this process grades its last chunk: stopping them after it
            # took ~40 ms (the pool's threads, each worker's exit) at the end of a run. Their results are all in,
            # their part files written.
            pool.shutdown(wait=False)

    try:
        queue.fill(pool, arguments, graded_in_pool)
        while (index := queue.take()) is not None:
            record(_grade_and_write(*arguments(index)))
            record_done(queue.submitted(), wait=False)
        record_done(queue.stop(), wait=True)
        pool.shutdown()  # (the last result can be in before its callback told the workers to exit)
        if manager is not None:
            manager.join()
    except BaseException:
        # Chunks not started are not graded; those running in the pool finish, and are kept with the others
        # (this process's own chunk, interrupted, is not).
        submitted = queue.stop()
        pool.shutdown(cancel_futures=True)
        for future in submitted:
            done = None if future.cancelled() or future.exception() else future.result()
            if done is not None and not parts.has(done.index):
                record(done)
        raise


@contextmanager
def _objects_frozen() -> Iterator[None]:
    """While this process grades chunks, the objects it held before are out of the garbage collector's reach, as in
    the workers (:func:`_start_worker`): a full collection walked them all, ~80 ms each. They are given back to it
    after the run (unless the process had frozen objects of its own, which are then left as they are)."""
    own = gc.get_freeze_count() == 0
    if own:
        gc.freeze()
    try:
        yield
    finally:
        if own:
            gc.unfreeze()


def grade_parquet_to_directory(
    path: Path,
    out: Path,
    config: GradingConfig,
    chunk_patients: int = 400,
    on_chunk: Callable[[int, int], None] | None = None,
    workers: int = 1,
    evidence: bool = False,
    cohort: bool = False,
    on_plan: Callable[[int], None] | None = None,
) -> BatchStats:
    """Grade every patient of a Parquet event file and write the tables under ``out`` (with ``cohort``, also
    those of :func:`tocsin.cohort.sources.cohort_tables`). ``on_chunk(patients, rows)`` is called as each chunk is
    graded, ``on_plan(patients)`` once with the file's number of patients, when its chunks are planned (a progress
    bar's total, without a read of the file's patient ids of its own).

    With ``workers > 1`` chunks are graded in that many processes, which uses the cores better than one process
    (much of the per-patient work is sequential scans): this one and ``workers - 1`` spawned ones (each with one
    Polars thread), each taking the next chunk when it is free; the objects this process held before are then out
    of the garbage collector's reach (:func:`_objects_frozen`). Either way this process's allocators keep freed
    memory for its next chunk while the run lasts (:mod:`tocsin.adapters.calling_process_memory`; in one process a
    run faulted in ~500,000 fresh pages without, ~140,000 with).
    """
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    totals = [0, 0, 0]
    # (Threads of their own write the per-patient parts only beside other processes: one process keeps to one core.)
    writer = ThreadPoolExecutor(2, thread_name_prefix="tocsin-parts") if workers > 1 else None
    parts = _PerPatientParts(out, writer)
    written: set[str] = set()
    chunks: list[_Chunk] = []

    def record(done: _GradedChunk) -> None:
        for i, value in enumerate(done.counts):
            totals[i] += value
        written.update(done.tables)
        parts.add(done.index, done.per_patient)
        if on_chunk is not None:
            on_chunk(done.counts[0], done.counts[1])

    try:
        if workers <= 1:
            with polars_keeps_freed_memory(), glibc_keeps_freed_memory():
                chunks = _planned(path, chunk_patients, parts, on_plan)
                for index, chunk in enumerate(chunks):
                    record(_grade_and_write(path, out, config, index, chunk, evidence, cohort))
        else:
            spawn = multiprocessing.get_context("spawn")
            # Both allocators are told first, while the environment still holds the user's options only. (Told
            # inside _worker_environment, glibc's took the workers' MALLOC_* variables for the user's and kept its
            # defaults: until the nineteenth session this process faulted in ~7,700 fresh pages a chunk, the
            # workers ~2,100, and its chunks cost ~10-40 % more CPU than theirs.)
            with polars_keeps_freed_memory(), glibc_keeps_freed_memory(), _worker_environment():
                with ProcessPoolExecutor(max_workers=workers - 1, mp_context=spawn, initializer=_start_worker) as pool:
                    # One no-op task per worker starts them all now (a pool starts a worker per task submitted), so
                    # that their imports and warm-up run while this process plans the chunks (~0.2 s for 10,000
                    # patients).
                    with _main_script_hidden():
                        for _ in range(workers - 1):
                            pool.submit(int)
                    chunks = _planned(path, chunk_patients, parts, on_plan)

                    def arguments(index: int) -> tuple:
                        return path, out, config, index, chunks[index], evidence, cohort

                    with _objects_frozen():
                        _grade_here_and_in_pool(pool, workers - 1, len(chunks), arguments, record, parts)
    finally:
        try:
            parts.write_waiting()
        finally:
            if writer is not None:
                writer.shutdown()
    _remove_stale_parts(out, len(chunks), written)
    return BatchStats(patients=totals[0], events=totals[1], refused_rows=totals[2])
