"""The allocators of the process that calls a batch run: told to keep freed memory while it grades, and to hand it
back after (glibc through ``mallopt``, Polars' jemalloc through its ``mallctl``)."""

from __future__ import annotations

import ctypes
import struct
import sys
from contextlib import ExitStack
from pathlib import Path

import polars as pl
import pytest

from tocsin.adapters import calling_process_memory as memory
from tocsin.adapters.worker_environment import POLARS_JEMALLOC_DEFAULTS


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int] | tuple[str, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.mark.parametrize(
    "user_set", [(), ("MALLOC_TRIM_THRESHOLD_",), ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")]
)
def test_the_calling_process_keeps_freed_memory_while_it_grades_and_trims_after(
    monkeypatch: pytest.MonkeyPatch, user_set: tuple[str, ...]
) -> None:
    """glibc's thresholds are the workers' while the run lasts; after it, the trim threshold is glibc's default and
    the heap is trimmed. A threshold the user set in the environment is left alone."""
    libc = _FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        if name in user_set:
            monkeypatch.setenv(name, "4096")
        else:
            monkeypatch.delenv(name, raising=False)
    with memory.glibc_keeps_freed_memory():
        during = list(libc.calls)
    expected = []
    if "MALLOC_MMAP_THRESHOLD_" not in user_set:
        expected.append(("mallopt", -3, 32 * 1024 * 1024))
    if "MALLOC_TRIM_THRESHOLD_" not in user_set:
        expected.append(("mallopt", -1, 1024 * 1024 * 1024))
    assert during == expected
    after = [("mallopt", -1, 128 * 1024), ("malloc_trim", 0)] if "MALLOC_TRIM_THRESHOLD_" not in user_set else []
    assert libc.calls[len(during):] == after



class _FakeMallctl:
    """jemalloc's ``mallctl`` as far as these controls go, called through ctypes as the real one is: values by name,
    arenas without a decay of their own (not yet in use) answering ``EFAULT``, and new arenas taking the defaults."""

    def __init__(self, in_use: list[int], background_thread: bool, oversize_threshold: int = 8 << 20) -> None:
        self.values: dict[str, int] = {"arenas.dirty_decay_ms": 500, "arenas.muzzy_decay_ms": 1000,
                                       "arenas.narenas": 9, "opt.narenas": 8,
                                       "opt.oversize_threshold": oversize_threshold,
                                       "background_thread": int(background_thread)}
        for index in in_use:
            self.start_arena(index, 500, 1000)
        self.purged = 0
        self.function = memory._MALLCTL(self._call)

    def start_arena(self, index: int, dirty: int, muzzy: int) -> None:
        self.values[f"arena.{index}.dirty_decay_ms"] = dirty
        self.values[f"arena.{index}.muzzy_decay_ms"] = muzzy

    def decays(self) -> dict[int, tuple[int, int]]:
        return {i: (self.values[f"arena.{i}.dirty_decay_ms"], self.values[f"arena.{i}.muzzy_decay_ms"])
                for i in range(self.values["arenas.narenas"]) if f"arena.{i}.dirty_decay_ms" in self.values}

    def _call(self, name: bytes, old: int | None, old_size: object, new: int | None, new_size: int) -> int:
        key = name.decode()
        if key == "arena.4096.purge":
            self.purged += 1
            return 0
        if key not in self.values:
            return 14 if key.startswith("arena.") else 2
        kind = {"arenas.narenas": ctypes.c_uint, "opt.narenas": ctypes.c_uint, "opt.oversize_threshold":
                ctypes.c_size_t, "background_thread": ctypes.c_bool}.get(key, ctypes.c_ssize_t)
        if old:
            ctypes.cast(old, ctypes.POINTER(kind))[0] = self.values[key]  # type: ignore[call-overload]
        if new:
            assert new_size == ctypes.sizeof(kind) and kind is ctypes.c_ssize_t
            self.values[key] = ctypes.cast(new, ctypes.POINTER(kind))[0]  # type: ignore[call-overload]
        return 0


@pytest.mark.parametrize("background_thread", [True, False])
def test_jemalloc_keeps_unused_pages_while_it_grades_and_restores_every_arena_after(background_thread: bool) -> None:
    """During the run no arena in use decays its unused pages, nor would one made then (the defaults); after it
    every arena has its old decay times, one made during the run those it would have had (the oversize arena, 8,
    purged at once unless a background thread purges), and the unused pages are purged."""
    fake = _FakeMallctl(in_use=[0, 1], background_thread=background_thread)
    jemalloc = memory.Jemalloc(fake.function)
    kept = memory._KeptDecays(memory.DECAY_KINDS)
    memory.keep_freed_pages(jemalloc, kept)
    assert fake.decays() == {0: (-1, -1), 1: (-1, -1)}
    assert (fake.values["arenas.dirty_decay_ms"], fake.values["arenas.muzzy_decay_ms"]) == (-1, -1)
    fake.start_arena(2, -1, -1)
    fake.start_arena(8, -1, -1)
    fake.values["arena.1.dirty_decay_ms"] = -1  # as it was set
    memory.restore_decays(jemalloc, kept)
    huge = (500, 1000) if background_thread else (0, 0)
    assert fake.decays() == {0: (500, 1000), 1: (500, 1000), 2: (500, 1000), 8: huge}
    assert (fake.values["arenas.dirty_decay_ms"], fake.values["arenas.muzzy_decay_ms"]) == (500, 1000)
    assert fake.purged == 1


def test_jemalloc_keeps_a_decay_the_user_set() -> None:
    """Only the kinds not set in the environment are changed, and with neither the oversize arena is ordinary."""
    fake = _FakeMallctl(in_use=[0], background_thread=False, oversize_threshold=0)
    jemalloc = memory.Jemalloc(fake.function)
    kept = memory._KeptDecays(("muzzy",))
    memory.keep_freed_pages(jemalloc, kept)
    assert fake.decays() == {0: (500, -1)}
    fake.start_arena(8, 500, -1)
    memory.restore_decays(jemalloc, kept)
    assert fake.decays() == {0: (500, 1000), 8: (500, 1000)}


def test_a_failing_control_is_an_error_naming_it() -> None:
    fake = _FakeMallctl(in_use=[0], background_thread=False)
    del fake.values["arenas.dirty_decay_ms"]
    with pytest.raises(OSError, match="arenas.dirty_decay_ms"):
        memory.Jemalloc(fake.function).swap_decay("arenas.dirty_decay_ms", -1)


def test_a_control_failing_half_way_never_fails_the_run_and_what_was_changed_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another jemalloc without one of the controls: a warning, the run goes on, and the times changed before the
    failing control are restored after it."""
    fake = _FakeMallctl(in_use=[0, 1], background_thread=True)
    fake.values["arena.1.muzzy_decay_ms"] = 1000
    real_call = fake._call

    def failing_on_arena_1(name: bytes, old: int | None, size: object, new: int | None, new_size: int) -> int:
        return 2 if name == b"arena.1.dirty_decay_ms" else real_call(name, old, size, new, new_size)

    function = memory._MALLCTL(failing_on_arena_1)
    monkeypatch.setattr(memory, "polars_jemalloc", lambda: memory.Jemalloc(function))
    monkeypatch.setenv("_RJEM_MALLOC_CONF", POLARS_JEMALLOC_DEFAULTS[0])
    ran = False
    with pytest.warns(RuntimeWarning, match="arena.1.dirty_decay_ms") as warned:
        with memory.polars_keeps_freed_memory():
            ran = True
            assert fake.decays()[0] == (-1, -1)
    assert ran and len(warned) == 2  # kept only in part, and restored but for the same control
    assert fake.decays() == {0: (500, 1000), 1: (500, 1000)} and fake.purged == 1
    assert (fake.values["arenas.dirty_decay_ms"], fake.values["arenas.muzzy_decay_ms"]) == (500, 1000)


def test_restoring_goes_on_when_the_arena_count_cannot_be_read() -> None:
    """Without ``arenas.narenas`` (or the oversize options) the arenas that were changed are restored all the same,
    and the failure is raised after."""
    fake = _FakeMallctl(in_use=[0, 1], background_thread=False)
    jemalloc = memory.Jemalloc(fake.function)
    kept = memory._KeptDecays(memory.DECAY_KINDS)
    memory.keep_freed_pages(jemalloc, kept)
    del fake.values["arenas.narenas"], fake.values["background_thread"]
    with pytest.raises(OSError, match="background_thread"):
        memory.restore_decays(jemalloc, kept)
    fake.values["arenas.narenas"] = 9  # (read by the check below)
    assert fake.decays() == {0: (500, 1000), 1: (500, 1000)} and fake.purged == 1


def test_runs_that_overlap_share_the_setting_and_the_last_to_end_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs in threads of one process: the second to start finds the setting made (it does not note the first's
    -1 as the times to restore), the first to end leaves it, and the last restores the times before both."""
    fake = _FakeMallctl(in_use=[0], background_thread=True)
    monkeypatch.setattr(memory, "polars_jemalloc", lambda: memory.Jemalloc(fake.function))
    monkeypatch.setenv("_RJEM_MALLOC_CONF", POLARS_JEMALLOC_DEFAULTS[0])
    libc = _FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    first, second = ExitStack(), ExitStack()
    for run in (first, second):
        run.enter_context(memory.polars_keeps_freed_memory())
        run.enter_context(memory.glibc_keeps_freed_memory())
    first.close()
    assert fake.decays() == {0: (-1, -1)} and fake.purged == 0
    assert ("malloc_trim", 0) not in libc.calls and len(libc.calls) == 2
    second.close()
    assert fake.decays() == {0: (500, 1000)} and fake.purged == 1
    assert libc.calls[2:] == [("mallopt", -1, 128 * 1024), ("malloc_trim", 0)]
    with memory.polars_keeps_freed_memory():  # and a later run makes the setting again
        assert fake.decays() == {0: (-1, -1)}
    assert fake.decays() == {0: (500, 1000)}


def test_a_library_that_cannot_be_read_is_no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(path: Path, names: list[bytes]) -> list[int] | None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(memory, "function_addresses", unreadable)
    assert memory.polars_jemalloc.__wrapped__() is None


@pytest.mark.parametrize(("conf", "kinds"), [
    ("", set()),
    (POLARS_JEMALLOC_DEFAULTS[0], set()),
    (POLARS_JEMALLOC_DEFAULTS[1] + ",muzzy_decay_ms:0", {"muzzy"}),
    (POLARS_JEMALLOC_DEFAULTS[1] + ",dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0", {"dirty", "muzzy"}),
    ("narenas:2, dirty_decay_ms:100", {"dirty"}),
])
def test_the_decays_a_user_set_are_read_after_polars_defaults(conf: str, kinds: set[str]) -> None:
    assert memory.user_decay_kinds(conf) == kinds


def _decays(jemalloc: memory.Jemalloc) -> dict[str, int]:
    """The default decay times and those of every arena in use, read by setting them to what they are."""
    values: dict[str, int] = {}
    for name in ["arenas.dirty_decay_ms", "arenas.muzzy_decay_ms"] + [
        f"arena.{i}.{kind}_decay_ms" for i in range(jemalloc.unsigned("arenas.narenas")) for kind in ("dirty", "muzzy")
    ]:
        old = jemalloc.swap_decay(name, 0)
        if old is not None:
            values[name] = old
            jemalloc.swap_decay(name, old)
    return values


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Polars' runtime is an ELF library on Linux only")
def test_polars_own_jemalloc_keeps_its_pages_during_the_run_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the pinned Polars, jemalloc's control is found; inside the run every arena in use keeps its unused pages
    (also those Polars' threads start then), and after it the decay times are those before, and Polars' defaults
    in an arena started during the run (Polars' jemalloc runs background purging threads, so the oversize arena
    too)."""
    monkeypatch.setenv("_RJEM_MALLOC_CONF", POLARS_JEMALLOC_DEFAULTS[0])
    jemalloc = memory.polars_jemalloc()
    assert jemalloc is not None and jemalloc.flag("background_thread")
    before = _decays(jemalloc)
    assert (before["arenas.dirty_decay_ms"], before["arenas.muzzy_decay_ms"]) == (500, 1000)
    with memory.polars_keeps_freed_memory():
        pl.DataFrame({"x": range(3_000_000)}).sort("x", descending=True)
        during = _decays(jemalloc)
        assert set(during) >= set(before) and set(during.values()) == {-1}
    after = _decays(jemalloc)
    assert set(after) == set(during)
    assert after == before | {name: 500 if "dirty" in name else 1000 for name in set(after) - set(before)}


def test_a_decay_set_in_the_environment_is_left_to_jemalloc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_RJEM_MALLOC_CONF", POLARS_JEMALLOC_DEFAULTS[0] + ",dirty_decay_ms:500,muzzy_decay_ms:1000")
    calls: list[str] = []
    monkeypatch.setattr(memory, "keep_freed_pages", lambda *args: calls.append("kept"))
    with memory.polars_keeps_freed_memory():
        pass
    assert calls == []


def _elf(symbols: list[tuple[int, int, int, int]], strings: bytes, strip: bool = False) -> bytes:
    """A 64-bit little-endian shared object with only a symbol table (name offset, type, section, value) and its
    strings; ``strip`` leaves the table out, as ``strip`` does."""
    table = b"\0" * 24 + b"".join(struct.pack("<IBBHQQ", name, kind, 0, section, value, 16)
                                  for name, kind, section, value in symbols)
    body_at = 64
    symtab_at, strtab_at = body_at, body_at + len(table)
    headers_at = strtab_at + len(strings)
    sections = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, strtab_at, len(strings), 0, 0, 1, 0)]
    if not strip:
        sections.append(struct.pack("<IIQQQQIIQQ", 0, 2, 0, 0, symtab_at, len(table), 1, 1, 8, 24))
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, 3, 62)
    struct.pack_into("<Q", header, 0x28, headers_at)
    struct.pack_into("<HHH", header, 0x3A, 64, len(sections), 0)
    return bytes(header) + table + strings + b"".join(sections)


def test_function_addresses_are_read_from_the_symbol_table(tmp_path: Path) -> None:
    """A name shared as the tail of a longer string is found; a missing one, one that is not a function, one only
    referenced (section 0), one defined twice at different addresses, and a stripped or non-ELF file give None."""
    strings = b"\0x_rjem_mallctl\0PyInit_rt\0data\0"
    mallctl, init, data = 2, strings.index(b"PyInit_rt"), strings.index(b"data")
    library = tmp_path / "lib.so"
    library.write_bytes(_elf([(mallctl, 2, 5, 0x1000), (init, 0x12, 5, 0x2000), (data, 1, 5, 0x3000)], strings))
    assert memory.function_addresses(library, [b"_rjem_mallctl", b"PyInit_rt"]) == [0x1000, 0x2000]
    assert memory.function_addresses(library, [b"_rjem_mallctl", b"absent"]) is None
    assert memory.function_addresses(library, [b"data"]) is None
    library.write_bytes(_elf([(mallctl, 2, 0, 0x1000)], strings))
    assert memory.function_addresses(library, [b"_rjem_mallctl"]) is None
    library.write_bytes(_elf([(mallctl, 2, 5, 0x1000), (mallctl, 2, 5, 0x1800)], strings))
    assert memory.function_addresses(library, [b"_rjem_mallctl"]) is None
    library.write_bytes(_elf([(mallctl, 2, 5, 0x1000)], strings, strip=True))
    assert memory.function_addresses(library, [b"_rjem_mallctl"]) is None
    library.write_bytes(b"#!/bin/sh\n" + b"\0" * 64)
    assert memory.function_addresses(library, [b"_rjem_mallctl"]) is None


def test_the_load_address_is_checked_against_the_mappings(tmp_path: Path) -> None:
    library = tmp_path / "lib.so"
    library.write_bytes(b"")
    maps = tmp_path / "maps"
    maps.write_text(
        f"7f0000000000-7f0000100000 r--p 00000000 08:01 12 {library}\n"
        f"7f0000100000-7f0000900000 r-xp 00100000 08:01 12 {library}\n"
        "7f0000a00000-7f0000b00000 r--p 00000000 08:01 13 /usr/lib/other.so\n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"
    )
    assert memory.mapped_at_offset_zero(library, maps) == {0x7F0000000000}
    assert memory.mapped_at_offset_zero(library, tmp_path / "absent") == set()
