"""Write an output file atomically: to a hidden temporary file beside it, then renamed into place.

A failed or interrupted write leaves the previous file intact and no temporary file behind. Every cohort
command writes its ``--out`` through here (tables, JSON documents, Table 1 renderings, reports).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def partial_path(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through (hidden, in the same directory, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` and rename the temporary file to ``path``; the parent folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_bytes_atomically(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically."""
    write_atomically(path, lambda partial: partial.write_bytes(content))
