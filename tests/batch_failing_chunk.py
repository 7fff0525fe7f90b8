"""A batch worker task that fails on one chunk (imported by the spawned workers of tests/test_batch_parts.py)."""

from __future__ import annotations

from tocsin.adapters import batch

FAILING_CHUNK = 1
_GRADE_AND_WRITE = batch._grade_and_write  # the real one, before a test patches the module's name with ours


class ChunkFailed(RuntimeError):
    pass


def grade_and_write_failing(*args: object) -> object:
    """``batch._grade_and_write``, but chunk :data:`FAILING_CHUNK` fails before it writes anything."""
    if args[3] == FAILING_CHUNK:
        raise ChunkFailed(f"chunk {FAILING_CHUNK} failed")
    return _GRADE_AND_WRITE(*args)  # type: ignore[arg-type]
