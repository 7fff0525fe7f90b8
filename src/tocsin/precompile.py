"""Build the precompiled kernels (:mod:`tocsin.core.precompiled`) for this machine, or record their signatures.

    python -m tocsin.precompile            # build, unless the built module is current (the set-up runs this)
    python -m tocsin.precompile --record   # rewrite kernel_signatures.json from a representative run

The build compiles every loop of ``kernel_signatures.json``, for each of its recorded argument lists, with Numba's
ahead-of-time compiler (``numba.pycc``: LLVM for the host CPU, then the C compiler for the module's glue) into
``tocsin/core/_kernels_<machine digest>.<extension suffix>``, and removes the modules of earlier builds. It takes
~40 s and needs a C compiler and Python's headers; where it fails, it says why and the loops are compiled by
Numba at first use as before (nothing else changes). ``--record`` runs the batch on a small synthetic cohort (with
evidence and cohort tables, and the one-process chunk path) and a single course read from Parquet and from CSV, all
through Numba, and writes down every argument list each loop was compiled for.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FunctionType
from typing import Any

from tocsin.core import precompiled


def _loop(module: str, name: str) -> FunctionType:
    return getattr(importlib.import_module(module), name)


def expected_functions(signatures: dict[tuple[str, str], tuple[tuple[Any, ...], ...]]) -> dict[str, tuple]:
    """Every function the module must export for these signatures, by name: (loop, recorded argument list)."""
    expected = {}
    for (module, name), recorded_lists in sorted(signatures.items()):
        loop = _loop(module, name)
        digest = precompiled.loop_digest(loop)
        if digest is None:
            raise ValueError(f"{module}.{name} reads a global that is not a constant: it cannot be precompiled")
        for recorded in recorded_lists:
            expected[precompiled.function_name(name, digest, recorded)] = (loop, recorded)
    return expected


def is_current(folder: Path, module_name: str, expected: dict[str, tuple]) -> bool:
    """Whether ``folder`` holds a module ``module_name`` that loads and exports every expected function."""
    if not any(folder.glob(f"{module_name}.*")):
        return False
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module_name, None)
    return all(hasattr(module, name) for name in expected)


def build(folder: Path, module_name: str, expected: dict[str, tuple], say: Callable[[str], None]) -> Path:
    """Compile the expected functions into ``folder/module_name``, then remove other ``_kernels_*`` modules there.
    The module is written under a temporary name and moved into place, so a process never loads half a file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending-deprecation notice
        from numba.core import types
        from numba.np.numpy_support import from_dtype
        from numba.pycc import CC, compiler

    class _GilReleased(compiler.Flags):  # the JIT's nogil=True: a server's other threads run while a kernel does
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    scalars = {precompiled.INT64: types.int64, precompiled.FLOAT64: types.float64, precompiled.BOOLEAN: types.boolean}

    def numba_type(kind: precompiled.ArgumentType) -> Any:
        if isinstance(kind, precompiled.ArrayType):
            return types.Array(from_dtype(kind.dtype), kind.ndim, "C", readonly=kind.readonly)
        return scalars[kind]

    with tempfile.TemporaryDirectory(prefix="tocsin-kernels-") as scratch:
        module = CC(module_name)
        module.output_dir = scratch
        module.target_cpu = "host"
        for name, (loop, recorded) in expected.items():
            module.export(name, tuple(numba_type(kind) for kind in precompiled.argument_types(recorded)))(loop)
        started = time.perf_counter()
        flags, compiler.Flags = compiler.Flags, _GilReleased
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module.compile()
        finally:
            compiler.Flags = flags
        built = next(Path(scratch).glob(f"{module_name}.*"))
        temporary = folder / f".{built.name}.{os.getpid()}.tmp"  # (two set-ups building at once: each its own)
        shutil.copyfile(built, temporary)
        final = folder / built.name
        os.replace(temporary, final)
    for old in folder.glob("_kernels_*"):
        if old != final and not old.name.startswith(f"{module_name}."):
            old.unlink(missing_ok=True)
    say(f"precompiled {len(expected)} kernels in {time.perf_counter() - started:.0f} s: {final}")
    return final


def ensure_built(folder: Path | None = None, say: Callable[[str], None] = print) -> bool:
    """Build the module unless it is current; False (with the reason said) where it cannot be built."""
    folder = folder or precompiled.SIGNATURES_FILE.parent
    module_name = precompiled.module_name()
    try:
        # (a loop that cannot be precompiled fails here: the set-up goes on with Numba, the tests name the loop)
        expected = expected_functions(precompiled.recorded_signatures())
        if is_current(folder, module_name, expected):
            return True
        build(folder, module_name, expected, say)
    except Exception as error:  # a missing compiler or headers: the loops stay with Numba's JIT
        say(f"precompiled kernels not built ({type(error).__name__}: {error}); Numba compiles them at first use")
        return False
    return True


def record(say: Callable[[str], None] = print) -> Path:
    """Run a representative workload through Numba and write every loop's compiled argument lists to
    ``kernel_signatures.json``."""
    os.environ[precompiled.KERNELS_VARIABLE] = "jit"
    import numpy as np
    import polars as pl
    from numba.core import types
    from numba.np.numpy_support import as_dtype

    from tocsin.adapters.batch import grade_parquet_to_directory
    from tocsin.adapters.files import read_event_file
    from tocsin.config import GradingConfig
    from tocsin.core.engine import grade_events
    from tocsin.core.events import IngestLimits
    from tocsin.core.segments import jit_dispatchers
    from tocsin.synth import generate_cohort
    from tocsin.vocabulary import load_vocabulary

    config = GradingConfig()
    cohort = generate_cohort(30, seed=2026)  # ~80,000 rows: one chunk takes the batch's coded path
    with tempfile.TemporaryDirectory(prefix="tocsin-record-") as scratch:
        events = Path(scratch) / "events.parquet"
        cohort.events.write_parquet(events)
        grade_parquet_to_directory(events, Path(scratch) / "plain", config, chunk_patients=30)
        full = Path(scratch) / "full"
        grade_parquet_to_directory(events, full, config, chunk_patients=30, evidence=True, cohort=True)
    first = cohort.events.get_column("patient_id")[0]
    course = cohort.events.filter(pl.col("patient_id") == first)
    limits, vocabulary = IngestLimits(earliest_day=config.earliest_day), load_vocabulary()
    with tempfile.TemporaryDirectory(prefix="tocsin-record-") as scratch:  # one course as `tocsin grade` reads it
        parquet, text = Path(scratch) / "course.parquet", Path(scratch) / "course.csv"
        course.write_parquet(parquet)
        course.write_csv(text)
        for path in (parquet, text):
            grade_events(read_event_file(path), config, limits, vocabulary)

    def recorded(numba_type: Any) -> str | None:
        if isinstance(numba_type, types.Array):
            if numba_type.layout != "C" or not numba_type.aligned:
                return None
            dtype = np.dtype(as_dtype(numba_type.dtype)).name
            return precompiled.array_type_text(dtype, numba_type.ndim, not numba_type.mutable)
        return {types.int64: "int64", types.float64: "float64", types.boolean: "bool"}.get(numba_type)

    kernels = []
    for loop, dispatcher in jit_dispatchers().items():
        signatures = []
        for signature in dispatcher.signatures:
            entries = [recorded(argument) for argument in signature]
            if None in entries:
                say(f"{loop.__module__}.{loop.__name__}{signature}: a type the precompiled module does not take")
            elif entries not in signatures:
                signatures.append(entries)
        if signatures:
            kernels.append((loop.__module__, loop.__name__, sorted(signatures)))
    lines = [
        f'  {{"module": "{module}", "loop": "{name}", "signatures": [\n'
        + ",\n".join(f"    {json.dumps(signature)}" for signature in signatures)
        + "]}"
        for module, name, signatures in sorted(kernels)
    ]
    note = "Written by python -m tocsin.precompile --record: the argument types each compiled loop is called with."
    text = f'{{"about": "{note}",\n "format": 1,\n "kernels": [\n' + ",\n".join(lines) + "\n]}\n"
    json.loads(text)  # (laid out by hand, a line a signature: checked to be JSON before it replaces the file)
    precompiled.SIGNATURES_FILE.write_text(text, encoding="utf-8")
    say(f"recorded {sum(len(k[2]) for k in kernels)} signatures of {len(kernels)} loops")
    return precompiled.SIGNATURES_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tocsin.precompile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="rewrite kernel_signatures.json from a run")
    args = parser.parse_args(argv)
    if args.record:
        record()
        precompiled.recorded_signatures.cache_clear()
    ensure_built()
    return 0


if __name__ == "__main__":
    sys.exit(main())
