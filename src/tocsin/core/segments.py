"""Window operations within a patient (or a patient's episode) on frames sorted by patient and time.

``expr.forward_fill().over("patient_id")`` hashes the key for every expression; a batch of ten thousand
courses needs dozens of such fills over millions of rows. Because the frame is sorted, a segment is a
run of rows, and each operation becomes a global, hash-free one plus a check against the index of the
segment's first row (column ``SEGMENT_START``, added by :func:`with_segment_start`); the kinetics' running
peak still uses these. The graders' per-patient work is compiled loops over the sorted rows instead:
:func:`compiled` gives them precompiled (:mod:`tocsin.core.precompiled`) or compiled by Numba at first use,
and the latest-row pass of :func:`tocsin.core.timeline.latest_valid` lives here.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from functools import cache, partial
from importlib.abc import MetaPathFinder
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from tocsin.core.precompiled import PrecompiledLoop, precompiled_functions

SEGMENT_START = "_segment_start"
ROW = "_row_index"


def row_index() -> pl.Expr:
    """The row number, read from the column :func:`with_segment_start` adds (computed once per frame)."""
    return pl.col(ROW)


def segment_start(keys: list[str]) -> pl.Expr:
    """Index of the first row of the current run of equal ``keys``."""
    changed = pl.any_horizontal([(pl.col(k) != pl.col(k).shift(1)).fill_null(True) for k in keys])
    return pl.when(changed).then(row_index()).forward_fill()


def with_segment_start(df: pl.DataFrame, keys: list[str], name: str = SEGMENT_START) -> pl.DataFrame:
    """Add (or refresh, after rows were filtered) the row number and the segment-start column."""
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW))  # half the traffic of Int64
    return df.with_columns(segment_start(keys).alias(name))


def last_index(condition: pl.Expr, start: str = SEGMENT_START) -> pl.Expr:
    """Row number of the latest row (at or before this one, in the segment) where ``condition`` holds.

    Gathering columns at this index gives "the last value seen" for many columns from one fill.
    """
    source = pl.when(condition.fill_null(False)).then(row_index()).forward_fill()
    return pl.when(source >= pl.col(start)).then(source)


def shift1(expr: pl.Expr, start: str = SEGMENT_START) -> pl.Expr:
    """The previous row's value within the segment (null on the segment's first row)."""
    return pl.when(row_index() > pl.col(start)).then(expr.shift(1))


def latest_rows_loop(flags: np.ndarray, first: np.ndarray) -> np.ndarray:
    """At every row, for each condition (a row of ``flags``), the latest row at or before it in its segment (a new
    segment where ``first``) where the condition held; -1 for none. Compile with :func:`compiled`."""
    out = np.empty(flags.shape, dtype=np.int64)
    for k in range(flags.shape[0]):
        latest = -1
        for row in range(flags.shape[1]):
            if first[row]:
                latest = -1
            if flags[k, row]:
                latest = row
            out[k, row] = latest
    return out


def read_only(array: np.ndarray) -> np.ndarray:
    """``array`` as a read-only view, for a kernel's input that is sometimes an Arrow buffer (read-only) and
    sometimes a NumPy result: Numba compiles, caches and loads one specialisation per argument type, and read-only
    is part of the type (each needless one was a compile on a fresh cache and 3-10 ms of loading in every batch
    worker)."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


@cache
def compiled(loop: Callable[..., Any]) -> Callable[..., Any]:
    """``loop`` compiled: its precompiled functions where the set-up built them for this machine and this code
    (:mod:`tocsin.core.precompiled`; no Numba needed), with every call of other argument types going to Numba;
    otherwise Numba's just-in-time dispatcher (cached on disk next to its module). Numba is imported on first use,
    so that the commands that never grade, and the runs that find every loop precompiled, do not pay its 0.3 s
    import and its ~0.4 s of set-up and kernel loads."""
    return PrecompiledLoop(loop, precompiled_functions(loop), partial(jit_dispatcher, loop))  # type: ignore[arg-type]


_DISPATCHERS: dict[Callable[..., Any], Any] = {}


def jit_dispatcher(loop: Callable[..., Any]) -> Any:
    """``loop``'s Numba just-in-time dispatcher (one per loop: its compiled specialisations are what
    ``python -m tocsin.precompile --record`` writes down)."""
    dispatcher = _DISPATCHERS.get(loop)
    if dispatcher is None:
        dispatcher = _DISPATCHERS.setdefault(loop, _numba().njit(cache=True, nogil=True)(loop))
    return dispatcher


def jit_dispatchers() -> dict[Callable[..., Any], Any]:
    """Every loop's dispatcher made so far in this process."""
    return dict(_DISPATCHERS)


@cache
def _numba() -> ModuleType:
    """Numba, with its NumPy implementations loaded without their BLAS probe. ``numba.np.arraymath``, loaded at
    the first compiled call, imports ``scipy.linalg`` (~0.27 s: a tenth of a batch worker's start, a seventh of a
    ``tocsin grade``) only to learn whether ``np.correlate`` and ``np.convolve`` may call BLAS; without it they
    run a plain loop. No kernel here uses them, so the probe is made to fail, and the block is lifted at once: an
    ``import scipy.linalg``, or a kernel calling ``np.dot`` (which asks for BLAS when it is compiled), works as
    usual. The block is a finder that refuses ``scipy.linalg`` to this thread only: another thread of a server
    importing it meanwhile gets it (and then the probe finds it loaded).

    And without the event callbacks Numba's import puts on LLVM's lock (:func:`_without_llvm_lock_events`)."""
    import numba

    _without_llvm_lock_events()
    if "scipy.linalg" in sys.modules or "numba.np.arraymath" in sys.modules:  # loaded already: nothing to save
        return numba
    block = _RefusedToThisThread("scipy.linalg")
    sys.meta_path.insert(0, block)
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        sys.meta_path.remove(block)
    return numba


def _without_llvm_lock_events() -> None:
    """Numba's import registers callbacks on llvmlite's lock that record a "numba:llvm_lock" event (the LLVM time in
    a compile's metadata) at every call into LLVM. Loading a cached kernel walks every symbol of its library through
    such calls: the events were ~0.1 s of each batch worker's first chunk (a third of its kernel loads; fourteenth
    session, docs/benchmarks.md). The lock's callbacks (Numba's are the only ones) are removed, the lock itself kept:
    a compile's metadata then has no LLVM lock time, and nothing else reads it. Where llvmlite keeps its callbacks
    elsewhere (another version), nothing is removed."""
    from llvmlite.binding import ffi

    callbacks = getattr(getattr(ffi.lib, "_lock", None), "_cblist", None)
    for acquire, release in list(callbacks or ()):
        ffi.unregister_lock_callback(acquire, release)


class _RefusedToThisThread(MetaPathFinder):
    """An import finder that refuses one module to the thread that made it (others look it up as usual)."""

    def __init__(self, name: str) -> None:
        self.name, self.thread = name, threading.get_ident()

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == self.name and threading.get_ident() == self.thread:
            raise ImportError(f"{fullname} is not imported during Numba's set-up", name=fullname)
        return None
