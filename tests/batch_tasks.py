"""Batch worker tasks for tests/test_batch_parts.py, in a module the spawned workers import: one fails on a chunk,
one notes which process graded each chunk."""

from __future__ import annotations

import os
from pathlib import Path

from tocsin.adapters import batch

#: The chunk that fails, read from the environment so that the spawned workers, which import this module anew,
#: fail the one the test chose.
FAILING_CHUNK_VARIABLE = "TOCSIN_TEST_FAILING_CHUNK"
_GRADE_AND_WRITE = batch._grade_and_write  # the real one, before a test patches the module's name with ours


class ChunkFailed(RuntimeError):
    pass


def grade_and_write_failing(*args: object) -> object:
    """``batch._grade_and_write``, but the chunk numbered by :data:`FAILING_CHUNK_VARIABLE` fails before it writes
    anything."""
    failing = int(os.environ[FAILING_CHUNK_VARIABLE])
    if args[3] == failing:
        raise ChunkFailed(f"chunk {failing} failed")
    return _GRADE_AND_WRITE(*args)  # type: ignore[arg-type]


def grade_and_write_noting_process(*args: object) -> object:
    """``batch._grade_and_write``, noting the chunk and the process that graded it as an empty file
    ``<out>/graded_by/<chunk>-<pid>``."""
    noted = Path(str(args[1])) / "graded_by"
    noted.mkdir(parents=True, exist_ok=True)
    (noted / f"{args[3]}-{os.getpid()}").touch()
    return _GRADE_AND_WRITE(*args)  # type: ignore[arg-type]
