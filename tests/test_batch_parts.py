"""The per-patient tables of `tocsin batch`: collected from the chunks and written once per group of chunks,
in chunk order whatever order the chunks finish in, and still written for the graded chunks when a run fails."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tocsin.adapters import batch
from tocsin.config import GradingConfig
from tocsin.synth import generate_cohort

import batch_tasks


def _table(rows: list[int]) -> dict[str, pl.DataFrame]:
    return {"crs_summary": pl.DataFrame({"row": rows}), "kinetics": pl.DataFrame({"row": [-r for r in rows]})}


def _parts(folder: Path) -> list[str]:
    return [p.name for p in sorted(folder.glob("part-*.parquet"))]


def test_groups_are_sixty_four_chunks_and_the_last_two_chunks_apart() -> None:
    assert batch.per_patient_groups(25) == [range(0, 23), range(23, 25)]  # a 10,000-patient run: two parts a table
    assert [len(g) for g in batch.per_patient_groups(130)] == [64, 64, 2]
    assert [len(g) for g in batch.per_patient_groups(25, 16)] == [16, 7, 2]
    assert batch.per_patient_groups(0) == [] and batch.per_patient_groups(1) == [range(0, 1)]
    assert batch.per_patient_groups(2) == [range(0, 2)] and batch.per_patient_groups(3) == [range(0, 1), range(1, 3)]
    for chunks in range(0, 200):  # every chunk in exactly one group, in order
        for group in (1, 3, 16, 64):
            groups = batch.per_patient_groups(chunks, group)
            assert [i for g in groups for i in g] == list(range(chunks))
            if chunks > batch.PER_PATIENT_TAIL:
                assert len(groups[-1]) == batch.PER_PATIENT_TAIL
                assert all(len(g) == group for g in groups[:-2]) and 1 <= len(groups[-2]) <= group


def test_a_group_is_written_in_chunk_order_once_all_its_chunks_are_in(tmp_path: Path) -> None:
    parts = batch._PerPatientParts(tmp_path, group=5)
    parts.plan(25)  # groups: chunks 0-4, 5-9, 10-14, 15-19, 20-22, 23-24
    for index in (17, 16, 19, 24, 20, 21, 22):
        parts.add(index, _table([index * 10, index * 10 + 1]))
    assert _parts(tmp_path / "crs_summary") == ["part-00020.parquet"]
    parts.add(23, _table([230]))
    assert _parts(tmp_path / "crs_summary") == ["part-00020.parquet", "part-00023.parquet"]
    parts.add(18, _table([180]))
    parts.add(15, _table([150]))
    assert _parts(tmp_path / "crs_summary") == ["part-00015.parquet", "part-00020.parquet", "part-00023.parquet"]
    rows = pl.read_parquet(tmp_path / "crs_summary" / "part-00015.parquet").get_column("row").to_list()
    assert rows == [150, 160, 161, 170, 171, 180, 190, 191]
    kinetics = pl.read_parquet(tmp_path / "kinetics" / "part-00015.parquet").get_column("row").to_list()
    assert kinetics == [-r for r in rows]
    assert parts.has(18) and not parts.has(0)
    parts.write_waiting()  # nothing left: no part is written twice
    assert _parts(tmp_path / "crs_summary") == ["part-00015.parquet", "part-00020.parquet", "part-00023.parquet"]


def test_after_an_interruption_the_collected_chunks_of_unfinished_groups_are_written(tmp_path: Path) -> None:
    parts = batch._PerPatientParts(tmp_path, group=16)
    parts.plan(20)  # groups: chunks 0-15, 16-17, 18-19
    for index in (0, 2, 16):
        parts.add(index, _table([index]))
    parts.write_waiting()
    assert _parts(tmp_path / "crs_summary") == ["part-00000.parquet", "part-00016.parquet"]
    assert pl.read_parquet(tmp_path / "crs_summary" / "part-00000.parquet").get_column("row").to_list() == [0, 2]
    assert pl.read_parquet(tmp_path / "crs_summary" / "part-00016.parquet").get_column("row").to_list() == [16]


def test_with_a_writer_groups_are_written_in_its_threads_and_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A complete group is written by the writer's threads, not the adding one; ``write_waiting`` waits for those
    writes and writes the incomplete groups itself; a chunk added twice (by the pool's thread, then when recorded)
    is added once."""
    threads: dict[int, str] = {}
    write_part = batch._write_part

    def noting(frame: pl.DataFrame, folder: Path, index: int) -> None:
        threads[index] = threading.current_thread().name
        write_part(frame, folder, index)

    monkeypatch.setattr(batch, "_write_part", noting)
    with ThreadPoolExecutor(2, thread_name_prefix="parts") as writer:
        parts = batch._PerPatientParts(tmp_path, writer, group=2)
        parts.plan(20)  # groups: chunks 0-1, 2-3, ..., 18-19
        for index in (18, 16, 17, 17, 0, 19):
            parts.add(index, _table([index]))
        parts.write_waiting()
    assert threads[16].startswith("parts") and threads[18].startswith("parts")
    assert threads[0] == threading.current_thread().name  # incomplete: written by write_waiting
    rows = pl.read_parquet(tmp_path / "crs_summary" / "part-00016.parquet").get_column("row").to_list()
    assert rows == [16, 17]
    assert pl.read_parquet(tmp_path / "kinetics" / "part-00018.parquet").get_column("row").to_list() == [-18, -19]
    assert _parts(tmp_path / "crs_summary") == ["part-00000.parquet", "part-00016.parquet", "part-00018.parquet"]


def test_a_failed_write_in_the_writer_is_raised_after_the_other_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_part = batch._write_part

    def failing_for_18(frame: pl.DataFrame, folder: Path, index: int) -> None:
        if index == 18:
            raise OSError("disk full")
        write_part(frame, folder, index)

    monkeypatch.setattr(batch, "_write_part", failing_for_18)
    with ThreadPoolExecutor(2) as writer:
        parts = batch._PerPatientParts(tmp_path, writer, group=1)
        parts.plan(20)  # groups: chunks 0, 1, ..., 17, 18-19
        for index in (18, 19, 0, 1):
            parts.add(index, _table([index]))
        with pytest.raises(OSError, match="disk full"):
            parts.write_waiting()
    assert _parts(tmp_path / "crs_summary") == ["part-00000.parquet", "part-00001.parquet"]


def _patients(out: Path, table: str) -> set[str]:
    files = sorted((out / table).glob("part-*.parquet"))
    return set(pl.read_parquet(files).get_column("patient_id").cast(pl.Utf8)) if files else set()


@pytest.mark.parametrize(
    ("workers", "failing"),
    # 3, the last of four chunks: some are graded before it, by whichever process. 0 with two processes: the
    # spawned worker's first chunk (it fails there while this process grades the next ones).
    [(1, 3), (2, 3), (2, 0)],
)
def test_a_failed_run_keeps_per_patient_rows_for_exactly_the_chunks_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, failing: int
) -> None:
    """A chunk fails, in this process or in a spawned worker: the error reaches the caller, and the per-patient
    tables hold the patients of exactly the chunks whose per-assessment parts were written (never one without the
    other), the failed chunk's not."""
    cohort = generate_cohort(8, seed=3)
    events = tmp_path / "events.parquet"
    cohort.events.write_parquet(events)
    out = tmp_path / "graded"
    monkeypatch.setattr(batch, "_grade_and_write", batch_tasks.grade_and_write_failing)
    monkeypatch.setenv(batch_tasks.FAILING_CHUNK_VARIABLE, str(failing))
    with pytest.raises(batch_tasks.ChunkFailed):
        batch.grade_parquet_to_directory(events, out, GradingConfig(), chunk_patients=2, workers=workers)
    order = list(dict.fromkeys(cohort.events.get_column("patient_id")))
    failed = set(order[2 * failing : 2 * failing + 2])
    written = _patients(out, "crs_timeline")
    assert written and not written & failed
    for table in ("crs_summary", "icans_summary", "icaht", "kinetics"):
        assert _patients(out, table) == written, table
    if workers == 1:  # chunks run in order: those before the failure are kept
        assert written == set(order[:6])


def test_a_rerun_into_the_same_directory_leaves_only_its_own_parts(tmp_path: Path) -> None:
    """An earlier run with smaller chunks and ``evidence`` wrote more parts and more tables: a rerun with larger
    chunks and without evidence leaves exactly what a run into an empty directory leaves, and no file of the user's."""
    events = tmp_path / "events.parquet"
    generate_cohort(6, seed=5).events.write_parquet(events)
    out, fresh = tmp_path / "graded", tmp_path / "fresh"
    progress: list[tuple[str, int]] = []
    batch.grade_parquet_to_directory(
        events, out, GradingConfig(), chunk_patients=1, evidence=True,
        on_plan=lambda patients: progress.append(("planned", patients)),
        on_chunk=lambda patients, _rows: progress.append(("graded", patients)),
    )
    assert progress == [("planned", 6)] + [("graded", 1)] * 6  # the total once, before the chunks
    assert len(_parts(out / "crs_timeline")) == 6 and (out / "crs_evidence").is_dir()
    (out / "notes.txt").write_text("the user's")
    (out / "crs_timeline" / "README").write_text("the user's")
    (out / "crs_timeline" / ".part-00009.parquet.tmp").write_text("an interrupted writer's")
    batch.grade_parquet_to_directory(events, out, GradingConfig(), chunk_patients=4)
    batch.grade_parquet_to_directory(events, fresh, GradingConfig(), chunk_patients=4)
    tables = sorted(p.name for p in fresh.iterdir())
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == tables and "crs_evidence" not in tables
    for table in tables:
        assert _parts(out / table) == _parts(fresh / table), table
        assert pl.read_parquet(out / table / "part-*.parquet").equals(pl.read_parquet(fresh / table / "part-*.parquet"))
    assert (out / "notes.txt").exists() and (out / "crs_timeline" / "README").exists()
    assert not (out / "crs_timeline" / ".part-00009.parquet.tmp").exists()


def test_every_table_a_run_writes_is_one_whose_stale_parts_are_removed(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    generate_cohort(3, seed=2).events.write_parquet(events)
    batch.grade_parquet_to_directory(events, tmp_path / "out", GradingConfig(), evidence=True, cohort=True)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written and written <= batch.BATCH_TABLES, written - batch.BATCH_TABLES


def test_a_part_file_declares_texts_as_views_and_reads_back_the_same_everywhere(tmp_path: Path) -> None:
    """Text columns are declared ``string_view`` (Polars' writer is slow on long runs of empty texts under its
    default ``large_string``); every reader still gets the same values and Polars the same column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pl.DataFrame(
        {
            "missing": [""] * 5 + ["temperature"],
            "rule": pl.Series(["CRS-G0"] * 6, dtype=pl.Enum(["CRS-G0", "CRS-G1"])),
            "patient_id": pl.Series(["P1"] * 3 + ["P2"] * 3, dtype=pl.Categorical),
            "evidence": [["a"], [], ["b", ""], None, [""], ["c"]],
            "t": [0.0, 0.5, None, 1.0, 1.5, 2.0],
            "note": [None, "x", "", None, "y", ""],
        }
    )
    batch._write_part(frame, tmp_path / "table", 3)
    path = tmp_path / "table" / "part-00003.parquet"
    assert _parts(tmp_path / "table") == ["part-00003.parquet"]
    back = pl.read_parquet(path)
    assert back.schema == frame.schema and back.equals(frame)
    declared = pq.read_schema(path)
    assert declared.field("missing").type == pa.string_view() and declared.field("note").type == pa.string_view()
    table = pq.read_table(path)
    assert table.column("missing").to_pylist() == frame.get_column("missing").to_list()
    assert table.column("note").to_pylist() == frame.get_column("note").to_list()
    assert table.column("rule").to_pylist() == ["CRS-G0"] * 6
    assert table.to_pandas()["missing"].tolist() == frame.get_column("missing").to_list()
    empty = frame.clear()
    batch._write_part(empty, tmp_path / "empty", 0)
    assert pl.read_parquet(tmp_path / "empty" / "part-00000.parquet").schema == frame.schema
    # Snappy, the codec every Parquet reader takes (docs/benchmarks.md: faster to write than zstd)
    metadata = pq.ParquetFile(path).metadata
    codecs = {metadata.row_group(0).column(i).compression for i in range(metadata.num_columns)}
    assert codecs == {"SNAPPY"}


def test_in_one_process_the_allocators_keep_freed_memory_while_the_chunks_are_graded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``workers=1``: both allocators are told to keep freed memory around the chunks, and told back after."""
    events = tmp_path / "events.parquet"
    generate_cohort(4, seed=5).events.write_parquet(events)
    calls: list[str] = []

    def noting(name: str) -> Callable[[], Any]:
        @contextmanager
        def context() -> Iterator[None]:
            calls.append(f"{name} kept")
            yield
            calls.append(f"{name} restored")

        return context

    graded = batch._grade_and_write

    def grading(*arguments: Any) -> Any:
        calls.append("chunk")
        return graded(*arguments)

    monkeypatch.setattr(batch, "polars_keeps_freed_memory", noting("jemalloc"))
    monkeypatch.setattr(batch, "glibc_keeps_freed_memory", noting("glibc"))
    monkeypatch.setattr(batch, "_grade_and_write", grading)
    stats = batch.grade_parquet_to_directory(events, tmp_path / "out", GradingConfig(), chunk_patients=2)
    assert stats.patients == 4
    assert calls == ["jemalloc kept", "glibc kept", "chunk", "chunk", "glibc restored", "jemalloc restored"]


def test_with_workers_the_calling_process_grades_chunks_beside_the_spawned_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``workers=2`` is this process and one spawned worker: the first chunk goes to the worker, this process takes
    the next ones while it starts, every chunk is graded once, and the tables are those of a run in one process.
    Both allocators are told to keep freed memory once, before the workers' options are in the environment (which
    they read for the user's), and told back after the run."""
    events = tmp_path / "events.parquet"
    generate_cohort(10, seed=5).events.write_parquet(events)
    monkeypatch.setattr(batch, "_grade_and_write", batch_tasks.grade_and_write_noting_process)
    allocator: list[tuple[str, str | None]] = []

    @contextmanager
    def noting_the_environment() -> Iterator[None]:
        allocator.append(("kept", os.environ.get("_RJEM_MALLOC_CONF")))
        yield
        allocator.append(("restored", os.environ.get("_RJEM_MALLOC_CONF")))

    @contextmanager
    def noting_glibc() -> Iterator[None]:
        allocator.append(("glibc kept", os.environ.get("MALLOC_MMAP_THRESHOLD_")))
        yield
        allocator.append(("glibc restored", os.environ.get("MALLOC_MMAP_THRESHOLD_")))

    monkeypatch.setattr(batch, "polars_keeps_freed_memory", noting_the_environment)
    monkeypatch.setattr(batch, "glibc_keeps_freed_memory", noting_glibc)
    monkeypatch.setenv("_RJEM_MALLOC_CONF", "narenas:8")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    stats = batch.grade_parquet_to_directory(events, tmp_path / "two", GradingConfig(), chunk_patients=2, workers=2)
    # Both see the user's environment, not the workers' variables (glibc's took them for the user's once).
    assert allocator == [
        ("kept", "narenas:8"), ("glibc kept", None), ("glibc restored", None), ("restored", "narenas:8")
    ]
    assert not multiprocessing.active_children()  # the workers, told to exit early, are reaped before the return
    graded = dict(p.name.split("-") for p in (tmp_path / "two" / "graded_by").iterdir())
    assert sorted(graded, key=int) == ["0", "1", "2", "3", "4"] and stats.patients == 10
    assert graded["0"] != str(os.getpid()) and str(os.getpid()) in graded.values()
    batch.grade_parquet_to_directory(events, tmp_path / "one", GradingConfig(), chunk_patients=2)
    for table in sorted(batch.BATCH_TABLES):
        if (tmp_path / "one" / table).exists():
            parts = _parts(tmp_path / "one" / table)
            assert _parts(tmp_path / "two" / table) == parts, table
            for part in parts:
                assert pl.read_parquet(tmp_path / "two" / table / part).equals(
                    pl.read_parquet(tmp_path / "one" / table / part)
                ), (table, part)


def test_the_calling_process_objects_are_frozen_only_while_it_grades() -> None:
    """The objects held before the run are out of the collector's reach during it and given back after; a process
    that froze objects of its own keeps them frozen."""
    assert gc.get_freeze_count() == 0
    with batch._objects_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with batch._objects_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_file_rewritten_between_runs_is_read_anew(tmp_path: Path) -> None:
    """The scan a process keeps for a file is the file as it was: rewritten (another size or time), it is read again."""
    path = tmp_path / "events.parquet"
    pl.DataFrame({"patient_id": ["P1"], "day": [0.0], "item": ["temperature"], "value": ["38.5"]}).write_parquet(path)
    first = batch._scan(path)
    assert batch._scan(path) is first
    pl.DataFrame({"patient_id": ["P1", "P2"], "day": [0.0, 1.0], "item": ["temperature"] * 2,
                  "value": ["38.5", "37.0"]}).write_parquet(path)
    assert batch._scan(path) is not first and batch._scan(path).collect().height == 2
