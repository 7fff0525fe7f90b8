"""Batch worker tasks for tests/test_batch_parts.py, in a module the spawned workers import: one fails on a chunk,
one notes which process graded each chunk."""

from __future__ import annotations

import os
from pathlib import Path

from tocsin.adapters import batch

FAILING_CHUNK = 3  # the last of tests/test_batch_parts.py's four: the chunks before it have been taken
_GRADE_AND_WRITE = batch._grade_and_write  # the real one, before a test patches the module's name with ours


class ChunkFailed(RuntimeError):
    pass


def grade_and_write_failing(*args: object) -> object:
    """``batch._grade_and_write``, but chunk :data:`FAILING_CHUNK` fails before it writes anything."""
    if args[3] == FAILING_CHUNK:
        raise ChunkFailed(f"chunk {FAILING_CHUNK} failed")
    return _GRADE_AND_WRITE(*args)  # type: ignore[arg-type]


def grade_and_write_noting_process(*args: object) -> object:
    """``batch._grade_and_write``, noting the chunk and the process that graded it as an empty file
    ``<out>/graded_by/<chunk>-<pid>``."""
    noted = Path(str(args[1])) / "graded_by"
    noted.mkdir(parents=True, exist_ok=True)
    (noted / f"{args[3]}-{os.getpid()}").touch()
    return _GRADE_AND_WRITE(*args)  # type: ignore[arg-type]
