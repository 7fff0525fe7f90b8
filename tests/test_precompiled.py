"""The precompiled kernels (``tocsin.core.precompiled``, built by ``python -m tocsin.precompile``): a function is
called only with arguments of exactly its types, a loop changed since the build is never precompiled, the built
module covers every loop a batch chunk and a course call (no Numba in such a run) and gives the tables Numba gives."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tocsin import precompile
from tocsin.core import kernels_ingest, precompiled
from tocsin.core.precompiled import BOOLEAN, FLOAT64, INT64, ArrayType, PrecompiledLoop, accepts

HAS_COMPILER = shutil.which("cc") is not None or shutil.which("gcc") is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler: the set-up could not build the module")
I8 = ArrayType(np.dtype("int64"), 1, False)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    ("types", "args", "expected"),
    [
        ((I8, INT64), (np.arange(3), 2), True),
        ((I8, INT64), (np.arange(3), np.int64(2)), True),
        ((I8,), (np.arange(3, dtype=np.int32),), False),  # another dtype
        ((I8,), (np.arange(3).astype(">i8"),), False),  # another byte order
        ((I8,), (np.arange(6)[::2],), False),  # strided
        ((I8,), (np.arange(6).reshape(2, 3),), False),  # two dimensions
        ((I8,), (_readonly(np.arange(3)),), False),  # read-only for a writable argument
        ((ArrayType(np.dtype("int64"), 1, True),), (_readonly(np.arange(3)),), True),
        ((ArrayType(np.dtype("int64"), 1, True),), (np.arange(3),), False),  # writable for a read-only one
        ((I8,), (np.ma.masked_array(np.arange(3)),), False),  # a subclass
        ((I8,), ([1, 2],), False),
        ((I8,), (np.frombuffer(b"\0" + bytes(24), dtype=np.int64, offset=1),), False),  # unaligned
        ((ArrayType(np.dtype("float64"), 2, False),), (np.zeros((2, 2)),), True),
        ((ArrayType(np.dtype("float64"), 2, False),), (np.asfortranarray(np.zeros((2, 3))),), False),
        ((INT64,), (True,), False),  # a bool is not an int64 to Numba
        ((INT64,), (2**63,), False),  # beyond int64
        ((INT64,), (-(2**63),), True),
        ((INT64,), (np.int32(1),), False),
        ((FLOAT64,), (1.5,), True),
        ((FLOAT64,), (1,), False),
        ((FLOAT64,), (np.float32(1),), False),
        ((BOOLEAN,), (np.bool_(True),), True),
        ((BOOLEAN,), (1,), False),
        ((I8, INT64), (np.arange(3),), False),  # too few
    ],
)
def test_a_function_takes_only_arguments_of_exactly_its_types(types: tuple, args: tuple, expected: bool) -> None:
    assert accepts(types, args) is expected


def test_argument_types_read_the_recorded_texts() -> None:
    recorded = ["int64", "float64", "bool", "uint8[:] readonly", "bool[:, :]", "float64[:, :, :]"]
    assert precompiled.argument_types(recorded) == (
        INT64, FLOAT64, BOOLEAN, ArrayType(np.dtype("uint8"), 1, True), ArrayType(np.dtype("bool"), 2, False),
        ArrayType(np.dtype("float64"), 3, False),
    )
    assert precompiled.array_type_text("uint8", 1, True) == "uint8[:] readonly"
    assert precompiled.array_type_text("bool", 2, False) == "bool[:, :]"
    for bad in ("int64[", "int64[2]", "int64[:] writable", "complex"):
        with pytest.raises((ValueError, TypeError)):
            precompiled.argument_types([bad])


def _function(source: str, namespace: dict) -> object:
    exec(compile(textwrap.dedent(source), "<loop>", "exec"), namespace)
    return namespace["loop"]


LOOP = """
def loop(values):
    total = 0.0
    for value in values:
        total += value * SCALE
    return total
"""


def test_a_loop_digest_follows_its_code_and_the_constants_it_reads_not_its_lines() -> None:
    first = precompiled.loop_digest(_function(LOOP, {"SCALE": 2.0, "np": np}))
    assert first == precompiled.loop_digest(_function(LOOP, {"SCALE": 2.0, "np": np}))
    assert first == precompiled.loop_digest(_function("\n\n\n" + LOOP, {"SCALE": 2.0}))  # moved down the file
    assert first != precompiled.loop_digest(_function(LOOP, {"SCALE": 3.0}))  # Numba compiles the value in
    assert first != precompiled.loop_digest(_function(LOOP.replace("+=", "-="), {"SCALE": 2.0}))
    table = precompiled.loop_digest(_function(LOOP, {"SCALE": np.array([1, 2])}))
    assert table != precompiled.loop_digest(_function(LOOP, {"SCALE": np.array([1, 3])}))
    assert precompiled.loop_digest(_function(LOOP, {"SCALE": (1, 2.5, "x")})) is not None
    assert precompiled.loop_digest(_function(LOOP, {"SCALE": [1, 2]})) is None  # not a constant: never precompiled
    assert precompiled.loop_digest(_function(LOOP, {"SCALE": print})) is None


def _fake_module(loop: object, recorded: tuple[str, ...], function: object) -> SimpleNamespace:
    name = precompiled.function_name(loop.__name__, precompiled.loop_digest(loop), recorded)  # type: ignore[arg-type]
    return SimpleNamespace(**{name: function})


def test_a_loop_changed_since_the_build_finds_no_function(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = kernels_ingest._rounded_loop
    (recorded,) = precompiled.recorded_signatures()[(loop.__module__, loop.__name__)]
    module = _fake_module(loop, recorded, len)
    ((function, types),) = precompiled.precompiled_functions(loop, module)  # type: ignore[arg-type]
    assert function is len and types == precompiled.argument_types(recorded)
    monkeypatch.setattr(kernels_ingest, "ROUNDING_SCALE", kernels_ingest.ROUNDING_SCALE * 10)
    assert precompiled.precompiled_functions(loop, module) == ()  # type: ignore[arg-type]


def test_the_variable_sends_every_loop_to_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(precompiled.KERNELS_VARIABLE, "jit")
    assert precompiled.precompiled_functions(kernels_ingest._marked_loop) == ()


def test_a_call_of_other_types_goes_to_numba_which_is_made_once_and_only_then() -> None:
    made: list[int] = []

    def jit() -> object:
        made.append(1)
        return lambda *args: ("jit", args)

    def precompiled_function(*args: object) -> tuple:
        return ("precompiled", args)

    loop = PrecompiledLoop(kernels_ingest._marked_loop, ((precompiled_function, (I8, INT64)),), jit)
    assert loop(np.arange(2), 3)[0] == "precompiled" and not made
    assert loop(np.arange(2, dtype=np.int32), 3)[0] == "jit"
    assert loop(np.arange(2), 3.0)[0] == "jit" and made == [1]


def test_a_module_that_does_not_load_is_a_warning_and_numba(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fakekernels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / f"_kernels_broken{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"not a library")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(precompiled, "_PACKAGE", "fakekernels")
    monkeypatch.setattr(precompiled, "module_name", lambda: "_kernels_broken")
    with pytest.warns(RuntimeWarning, match="python -m tocsin.precompile"):
        assert precompiled.built_module.__wrapped__() is None
    monkeypatch.setattr(precompiled, "module_name", lambda: "_kernels_never_built")
    assert precompiled.built_module.__wrapped__() is None


def test_the_module_name_is_stable_and_names_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    name = precompiled.module_name.__wrapped__()
    assert name == precompiled.module_name() and name.startswith("_kernels_") and name.isidentifier()
    monkeypatch.setattr(precompiled, "_cpu_identity", lambda: "flags: sse2")  # another CPU: another module
    assert precompiled.module_name.__wrapped__() != name
    monkeypatch.undo()
    monkeypatch.setattr(precompiled, "BUILD_OPTIONS", "another build")  # built another way: another module
    assert precompiled.module_name.__wrapped__() != name


@needs_compiler
def test_the_builder_compiles_a_loop_and_removes_older_builds(tmp_path: Path) -> None:
    loop = kernels_ingest._marked_loop
    signatures = {(loop.__module__, loop.__name__): (("int64[:]", "bool[:]", "int64"),)}
    expected = precompile.expected_functions(signatures)
    (tmp_path / "_kernels_0000.cpython-311-x86_64-linux-gnu.so").write_bytes(b"an older build")
    assert not precompile.is_current(tmp_path, "_kernels_test", expected)
    said: list[str] = []
    built = precompile.build(tmp_path, "_kernels_test", expected, said.append)
    assert [p.name for p in tmp_path.iterdir()] == [built.name] and "1 kernels" in said[0]
    assert precompile.is_current(tmp_path, "_kernels_test", expected)
    more = {**expected, "another__0__0": next(iter(expected.values()))}
    assert not precompile.is_current(tmp_path, "_kernels_test", more)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("_kernels_test")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("_kernels_test", None)
    (function, types), = precompiled.precompiled_functions(loop, module)
    assert types == (I8, ArrayType(np.dtype("bool"), 1, False), INT64)
    assert function(np.array([0, 2]), np.array([True, False]), 4).tolist() == [True, False, False, False]


@needs_compiler
def test_the_set_up_built_the_module_for_every_recorded_loop() -> None:
    expected = precompile.expected_functions(precompiled.recorded_signatures())
    assert precompile.is_current(precompiled.SIGNATURES_FILE.parent, precompiled.module_name(), expected), (
        "the precompiled kernels are missing or stale: run python -m tocsin.precompile (the README's commands do)"
    )


RUN = """
import sys
from pathlib import Path
import polars as pl
from tocsin.adapters.batch import result_tables
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_events
from tocsin.core.segments import jit_dispatchers
from tocsin.synth import generate_cohort

out = Path(sys.argv[1])
events = generate_cohort(30, seed=11).events  # one batch-sized chunk (the coded ingest path), and one course
events = events.with_columns(pl.lit("f").alias("file"), pl.int_range(1, pl.len() + 1).alias("line"))
first = events.get_column("patient_id")[0]
for label, rows in (("chunk", events), ("course", events.filter(pl.col("patient_id") == first))):
    for name, table in result_tables(grade_events(rows, GradingConfig()), evidence=True).items():
        table.write_parquet(out / f"{label}-{name}.parquet")
print("numba" in sys.modules, sorted(loop.__name__ for loop in jit_dispatchers()))
"""


@needs_compiler
@pytest.mark.slow
def test_a_chunk_and_a_course_run_without_numba_and_grade_as_numba_does(tmp_path: Path) -> None:
    found = {}
    for mode in ("precompiled", "jit"):
        folder = tmp_path / mode
        folder.mkdir()
        environment = dict(os.environ)
        environment.pop(precompiled.KERNELS_VARIABLE, None)
        if mode == "jit":
            environment[precompiled.KERNELS_VARIABLE] = "jit"
        done = subprocess.run([sys.executable, "-c", RUN, str(folder)], capture_output=True, text=True,
                              timeout=600, env=environment)
        assert done.returncode == 0, done.stderr
        found[mode] = done.stdout.strip().splitlines()[-1]
    assert found["precompiled"] == "False []", "a loop ran through Numba: run python -m tocsin.precompile --record"
    assert found["jit"].startswith("True ")
    names = sorted(p.name for p in (tmp_path / "jit").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "precompiled").iterdir()) and len(names) > 30
    for name in names:
        assert_frame_equal(pl.read_parquet(tmp_path / "precompiled" / name), pl.read_parquet(tmp_path / "jit" / name))


def test_a_signature_file_that_cannot_be_read_is_a_warning_and_numba(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "kernel_signatures.json"
    broken.write_text('{"kernels": [{"module": "x"}]}')
    monkeypatch.setattr(precompiled, "SIGNATURES_FILE", broken)
    with pytest.warns(RuntimeWarning, match="--record"):
        assert precompiled.recorded_signatures.__wrapped__() == {}
    broken.write_text('{"kernels": [{"module": "x", "loop": "y", "signatures": [["int64[2]"]]}]}')
    with pytest.warns(RuntimeWarning, match="not an argument type"):
        assert precompiled.recorded_signatures.__wrapped__() == {}
    monkeypatch.setattr(precompiled, "SIGNATURES_FILE", tmp_path / "missing.json")
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        assert precompiled.recorded_signatures.__wrapped__() == {}
