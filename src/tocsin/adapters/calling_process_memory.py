"""The memory allocators of the process that calls a batch run, told to keep freed memory while it grades chunks
(alone, or beside spawned workers), as the workers' environment tells theirs (:data:`WORKER_ENVIRONMENT`): every
chunk allocates the same few hundred MB of columns, and faulting fresh (zeroed) pages in again for each one is costly.

Two allocators serve a chunk: glibc's (NumPy's arrays) and jemalloc, linked into Polars' runtime library. Both read
their variables once, at the process's start or at Polars' import, so this process's are set at run time instead:
glibc's by ``mallopt``, jemalloc's by its ``mallctl``. Polars does not export ``mallctl``; it is found in the
library's symbol table (:func:`polars_jemalloc`), and where it cannot be (a stripped or non-ELF library, another
system), the run goes on with Polars' own decay times. After the run both allocators hand the memory back.
Measured in docs/benchmarks.md (sixteenth and seventeenth sessions).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from tocsin.adapters.worker_environment import JEMALLOC, WORKER_ENVIRONMENT, user_jemalloc_options

#: glibc's ``mallopt`` parameters (``malloc.h``) and the default of the trim threshold.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _GLIBC_TRIM_DEFAULT = -1, -3, 128 * 1024


class _WhileAnyRun:
    """A process-wide setting held while at least one run lasts: made by the first run to start, undone by the last
    to end. Runs in threads of one process overlap, and a run undoing the setting at its own end would take it from
    the others (and restore as "old" values the ones another run had set)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._undo: Callable[[], None] | None = None

    @contextmanager
    def held(self, make: Callable[[], Callable[[], None]]) -> Iterator[None]:
        """While this lasts, the setting ``make`` makes (it returns what undoes it)."""
        with self._lock:
            if self._runs == 0:
                self._undo = make()
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if self._runs == 0 and self._undo is not None:
                    undo, self._undo = self._undo, None
                    undo()


_GLIBC_SETTING, _JEMALLOC_SETTING = _WhileAnyRun(), _WhileAnyRun()


@contextmanager
def glibc_keeps_freed_memory() -> Iterator[None]:
    """While this process grades chunks, glibc (NumPy's allocator) keeps freed memory for the next chunk, as in the
    workers (:data:`WORKER_ENVIRONMENT`'s ``MALLOC_*`` options, set here by ``mallopt``): a chunk in this process took
    ~10-30 % more CPU without. After the run (the last, where runs overlap in threads) the trim threshold is glibc's
    default again and the heap is trimmed, so the memory goes back to the system; the mmap threshold stays at 32 MB,
    glibc's own ceiling for it. A variable the user set is kept, and nothing is done on another C library (musl,
    macOS)."""
    libc = ctypes.CDLL(None)
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        yield
        return

    def keep() -> Callable[[], None]:
        trim = "MALLOC_TRIM_THRESHOLD_" not in os.environ
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(_M_MMAP_THRESHOLD, int(WORKER_ENVIRONMENT["MALLOC_MMAP_THRESHOLD_"]))
        if trim:
            libc.mallopt(_M_TRIM_THRESHOLD, int(WORKER_ENVIRONMENT["MALLOC_TRIM_THRESHOLD_"]))

        def give_back() -> None:
            if trim:
                libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_DEFAULT)
                libc.malloc_trim(0)

        return give_back

    with _GLIBC_SETTING.held(keep):
        yield


#: The two kinds of unused pages jemalloc keeps for reuse, each with its decay time (ms; -1 keeps them until purged).
DECAY_KINDS = ("dirty", "muzzy")
#: jemalloc's arena index that names all arenas at once (``MALLCTL_ARENAS_ALL``).
_ALL_ARENAS = 4096
#: jemalloc's answer for an arena index not yet in use (``EFAULT``): it has no decay of its own yet.
_EFAULT = 14


class Jemalloc:
    """jemalloc's control interface (``mallctl``) in this process: read a value, swap one for another."""

    def __init__(self, mallctl: Callable[..., int]) -> None:
        self._mallctl = mallctl

    def unsigned(self, name: str) -> int:
        """An ``unsigned`` value, such as ``arenas.narenas``."""
        return self._read(name, ctypes.c_uint)

    def size(self, name: str) -> int:
        """A ``size_t`` value, such as ``opt.oversize_threshold``."""
        return self._read(name, ctypes.c_size_t)

    def flag(self, name: str) -> bool:
        """A ``bool`` value, such as ``background_thread``."""
        return bool(self._read(name, ctypes.c_bool))

    def swap_decay(self, name: str, value: int) -> int | None:
        """Set a decay time (``ssize_t``, ms) and return the one it replaces; None for an arena not yet in use."""
        old, new = ctypes.c_ssize_t(), ctypes.c_ssize_t(value)
        old_size = ctypes.c_size_t(ctypes.sizeof(old))
        code = self._mallctl(name.encode(), ctypes.byref(old), ctypes.byref(old_size), ctypes.byref(new),
                             ctypes.sizeof(new))
        if code == _EFAULT and name.startswith("arena."):
            return None
        if code:
            raise OSError(code, f"jemalloc's mallctl({name!r}) failed: {os.strerror(code)}")
        return old.value

    def purge(self) -> None:
        """Hand every arena's unused pages back to the system now."""
        code = self._mallctl(f"arena.{_ALL_ARENAS}.purge".encode(), None, None, None, 0)
        if code:
            raise OSError(code, f"jemalloc's arena purge failed: {os.strerror(code)}")

    def _read(self, name: str, kind: type[ctypes.c_uint] | type[ctypes.c_size_t] | type[ctypes.c_bool]) -> int:
        value, size = kind(), ctypes.c_size_t(ctypes.sizeof(kind))
        code = self._mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0)
        if code:
            raise OSError(code, f"jemalloc's mallctl({name!r}) failed: {os.strerror(code)}")
        return int(value.value)


@dataclass
class _KeptDecays:
    """The decay times replaced while the run lasts: the defaults new arenas take, and each arena's own."""

    kinds: tuple[str, ...]
    defaults: dict[str, int] = field(default_factory=dict)
    arenas: dict[tuple[int, str], int] = field(default_factory=dict)


def keep_freed_pages(jemalloc: Jemalloc, kept: _KeptDecays) -> None:
    """No decay of ``kept.kinds`` of unused pages, in every arena and in those made later (the defaults). Each time
    replaced is noted in ``kept`` as it is replaced, so that a failure half-way leaves what to restore."""
    for kind in kept.kinds:
        old = jemalloc.swap_decay(f"arenas.{kind}_decay_ms", -1)
        if old is not None:
            kept.defaults[kind] = old
    for index in range(jemalloc.unsigned("arenas.narenas")):
        for kind in kept.kinds:
            old = jemalloc.swap_decay(f"arena.{index}.{kind}_decay_ms", -1)
            if old is not None:
                kept.arenas[index, kind] = old


def restore_decays(jemalloc: Jemalloc, kept: _KeptDecays) -> None:
    """The decay times before :func:`keep_freed_pages`, then every unused page handed back. An arena made during
    the run gets the time it would have had: the default, but for the arena of oversize allocations, which jemalloc
    purges at once (0) when the default is above 0 and no background thread purges (``arena_create_huge_arena``,
    jemalloc 5.3; Polars runs them). That arena's index is the number of automatic arenas (``opt.narenas``), when
    oversize allocations have one (``opt.oversize_threshold`` above 0). A control that fails does not stop the
    others: the first failure is raised after them all."""
    failures: list[OSError] = []

    def attempt(step: Callable[[], object]) -> None:
        try:
            step()
        except OSError as error:
            failures.append(error)

    for kind, value in kept.defaults.items():
        attempt(lambda kind=kind, value=value: jemalloc.swap_decay(f"arenas.{kind}_decay_ms", value))
    huge: int | None = None
    try:
        if jemalloc.size("opt.oversize_threshold") > 0 and not jemalloc.flag("background_thread"):
            huge = jemalloc.unsigned("opt.narenas")
    except OSError as error:  # then no arena is taken for the oversize one
        failures.append(error)
    try:
        arenas = jemalloc.unsigned("arenas.narenas")
    except OSError as error:  # then at least those changed
        failures.append(error)
        arenas = 1 + max((index for index, _ in kept.arenas), default=-1)
    for index in range(arenas):
        for kind, default in kept.defaults.items():
            value = kept.arenas.get((index, kind))
            if value is None:
                value = 0 if index == huge and default > 0 else default
            attempt(lambda name=f"arena.{index}.{kind}_decay_ms", value=value: jemalloc.swap_decay(name, value))
    attempt(jemalloc.purge)
    if failures:
        raise failures[0]


def user_decay_kinds(conf: str) -> set[str]:
    """The kinds whose decay time a user set in ``_RJEM_MALLOC_CONF`` (after those Polars' import put first)."""
    options = [option.split(":", 1)[0].strip() for option in user_jemalloc_options(conf).split(",")]
    return {kind for kind in DECAY_KINDS if f"{kind}_decay_ms" in options}


@contextmanager
def polars_keeps_freed_memory() -> Iterator[None]:
    """While this process grades chunks, Polars' allocator (jemalloc) keeps its unused pages for the next chunk, as in
    the workers (:data:`WORKER_ENVIRONMENT`'s ``_RJEM_MALLOC_CONF``): with Polars' decay times (0.5 and 1 s) a
    10,000-patient run faulted in ~340,000 fresh pages in this process beside a worker (~210,000 without), and
    ~540,000 alone (~140,000 with this and glibc's, :func:`glibc_keeps_freed_memory`). After the run the times are
    restored and the unused pages handed back (by the last run, where runs overlap in threads). A decay time set in
    ``_RJEM_MALLOC_CONF`` is kept (as the ``tocsin`` command sets them,
    :func:`tocsin.adapters.worker_environment.calling_process_environment`), and nothing is done where jemalloc's
    control cannot be found. A control that fails (another jemalloc) never fails the run: it is a
    :class:`RuntimeWarning`, and what was changed before it is restored."""
    jemalloc = polars_jemalloc()
    kinds = tuple(kind for kind in DECAY_KINDS if kind not in user_decay_kinds(os.environ.get(JEMALLOC, "")))
    if jemalloc is None or not kinds:
        yield
        return

    def keep() -> Callable[[], None]:
        kept = _KeptDecays(kinds)
        with _failure_warned("keeps its decay times for this run"):
            keep_freed_pages(jemalloc, kept)

        def give_back() -> None:
            with _failure_warned("could not be given its decay times back"):
                restore_decays(jemalloc, kept)

        return give_back

    with _JEMALLOC_SETTING.held(keep):
        yield


@contextmanager
def _failure_warned(outcome: str) -> Iterator[None]:
    """A failing control (:class:`OSError`) as a warning: the allocator's settings are not worth a failed run."""
    try:
        yield
    except OSError as error:
        warnings.warn(f"Polars' allocator (jemalloc) {outcome}: {error}", RuntimeWarning, stacklevel=4)


#: ELF's constants: a 64-bit little-endian shared object, a symbol table and a string table section, a function.
_ELF_MAGIC, _ELF_64, _ELF_LITTLE, _ET_DYN, _SHT_SYMTAB, _SHT_STRTAB, _STT_FUNC = b"\x7fELF", 2, 1, 3, 2, 3, 2
_SYMBOL = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                    ("size", "<u8")])
_SECTION = struct.Struct("<IIQQQQIIQQ")
_MALLCTL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                            ctypes.c_void_p, ctypes.c_size_t)


@lru_cache(maxsize=1)
def polars_jemalloc() -> Jemalloc | None:
    """jemalloc's ``mallctl`` in Polars' runtime library (``_rjem_mallctl``, a local symbol of its symbol table),
    or None where it cannot be found for sure: not Linux, a library not 64-bit little-endian ELF, no symbol table,
    the symbol missing or not a function, or the library's load address (from its exported module initialiser)
    not that of its mapping in ``/proc/self/maps``. Looked up once (~25 ms)."""
    runtime = sys.modules.get("polars._plr")
    path = Path(getattr(runtime, "__file__", "") or "")
    if runtime is None or not sys.platform.startswith("linux") or not path.is_file():
        return None
    initialiser = "PyInit_" + runtime.__name__.rsplit(".", 1)[-1]
    try:  # an unreadable or malformed library is only no lookup: the run goes on without it
        addresses = function_addresses(path, [b"_rjem_mallctl", initialiser.encode()])
        if addresses is None:
            return None
        mallctl, init = addresses
        exported = ctypes.cast(getattr(ctypes.CDLL(str(path)), initialiser), ctypes.c_void_p).value
        if exported is None or exported - init not in mapped_at_offset_zero(path, Path("/proc/self/maps")):
            return None
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return Jemalloc(_MALLCTL(exported - init + mallctl))


def function_addresses(path: Path, names: list[bytes]) -> list[int] | None:
    """The addresses (relative to the load address) of these functions in a 64-bit little-endian ELF shared
    object's symbol table (``.symtab``, which a stripped library lacks), or None if any is missing or ambiguous."""
    with path.open("rb") as file:
        header = file.read(64)
        if (len(header) < 64 or header[:4] != _ELF_MAGIC or header[4] != _ELF_64 or header[5] != _ELF_LITTLE
                or struct.unpack_from("<H", header, 16)[0] != _ET_DYN):
            return None
        (section_offset,) = struct.unpack_from("<Q", header, 0x28)
        entry_size, count = struct.unpack_from("<HH", header, 0x3A)
        file.seek(section_offset)
        table = file.read(entry_size * count)
        if entry_size != _SECTION.size or len(table) != entry_size * count:
            return None
        sections = [_SECTION.unpack_from(table, i * entry_size) for i in range(count)]
        symtab = next((s for s in sections if s[1] == _SHT_SYMTAB), None)
        if symtab is None or symtab[6] >= count or sections[symtab[6]][1] != _SHT_STRTAB:
            return None
        table_bytes = os.pread(file.fileno(), symtab[5], symtab[4])
        symbols = np.frombuffer(table_bytes, dtype=_SYMBOL, count=len(table_bytes) // _SYMBOL.itemsize)
        _, _, _, _, strings_at, strings_size, *_ = sections[symtab[6]]
        # The string table (35 MB in Polars' library) is searched where it lies in the page cache, not copied.
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as image:
            offsets = [_ends_of(image, name, strings_at, strings_at + strings_size) for name in names]
    addresses = []
    for candidates in offsets:
        named = np.flatnonzero(np.isin(symbols["name"], np.array(candidates, np.int64)))
        found = {int(symbols["value"][i]) for i in named
                 if symbols["info"][i] & 0xF == _STT_FUNC and symbols["shndx"][i] != 0 and symbols["value"][i]}
        if len(found) != 1:
            return None
        addresses.append(found.pop())
    return addresses


def _ends_of(image: mmap.mmap, name: bytes, start: int, end: int) -> list[int]:
    """The offsets, within the string table at ``start``, of every place where ``name`` ends a string: a name may
    be the tail of a longer one (linkers merge them), and a symbol names its string by such an offset."""
    places, at = [], image.find(name + b"\0", start, end)
    while at >= 0:
        places.append(at - start)
        at = image.find(name + b"\0", at + 1, end)
    return places


def mapped_at_offset_zero(path: Path, maps: Path) -> set[int]:
    """The start addresses of this file's mappings from its first byte, in a ``/proc/<pid>/maps`` listing."""
    if not maps.is_file():
        return set()
    target = os.path.realpath(path)  # the kernel lists a mapping's resolved path
    starts = set()
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target and int(fields[2], 16) == 0:
            starts.add(int(fields[0].split("-", 1)[0], 16))
    return starts
