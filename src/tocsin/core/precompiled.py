"""Kernels compiled ahead of time: the compiled loops of :func:`tocsin.core.segments.compiled`, built at set-up
into one extension module by Numba's ahead-of-time compiler (``python -m tocsin.precompile``), from the same
loops and the argument types recorded in ``kernel_signatures.json``.

Why: Numba's just-in-time path costs every process ~0.7 s of CPU before its first graded chunk: Numba's import
(~0.3 s), its set-up at the first compiled call (~0.2 s) and the loading of each cached kernel (~0.2 s for the 38
of a batch chunk). A batch run pays it in each of its processes, ``tocsin grade`` on one course once. The extension
module needs no Numba and is imported in about a millisecond (measured in docs/benchmarks.md, eighteenth session).

Safety: a precompiled function does not check its arguments (others than its own types crash the process), so
:class:`PrecompiledLoop` calls one only with arguments of exactly its types, as Numba's ``typeof`` would type
them, and hands every other call to Numba's just-in-time dispatcher. A stale function is never called: each
function's name carries a digest of its loop's code, of the values of the module globals the loop reads (Numba
compiles them in as constants) and of its argument types (:func:`function_name`), so a loop edited after the
build finds no function and goes to Numba. So does every loop where the module was never built, was built for
another CPU or NumPy (the module's own name carries those, :func:`module_name`), or ``TOCSIN_KERNELS=jit`` is set.

Example::

    >>> from tocsin.core.precompiled import ArrayType, INT64, accepts
    >>> import numpy as np
    >>> accepts((ArrayType(np.dtype("int64"), 1, False), INT64), (np.arange(3), 2))
    True
    >>> accepts((ArrayType(np.dtype("int64"), 1, False), INT64), (np.arange(3, dtype=np.int32), 2))
    False
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

import numpy as np

#: The recorded argument types of every precompiled loop (written by ``python -m tocsin.precompile --record``).
SIGNATURES_FILE = Path(__file__).with_name("kernel_signatures.json")
#: Set to ``jit`` to run every loop through Numba's just-in-time compiler (comparisons, debugging).
KERNELS_VARIABLE = "TOCSIN_KERNELS"
#: How ``python -m tocsin.precompile`` compiles (part of the module's name: a change here is a rebuild).
BUILD_OPTIONS = "numba.pycc for the host CPU, the GIL released in every kernel"
_PACKAGE = __name__.rpartition(".")[0]
_INT64_RANGE = (-(2**63), 2**63)


@dataclass(frozen=True)
class ArrayType:
    """A C-contiguous, aligned array of ``dtype`` and ``ndim`` dimensions, read-only or writable: what Numba's
    ``typeof`` makes of such an array (read-only is part of its type)."""

    dtype: np.dtype
    ndim: int
    readonly: bool
    #: The array flags this type needs, among :data:`_LAYOUT_FLAGS` (C-contiguous, aligned, writable or not).
    flags: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", _C_CONTIGUOUS | _ALIGNED | (0 if self.readonly else _WRITEABLE))


# NumPy's flag bits (``ndarray.flags.num``): one integer read where three flag properties cost a microsecond.
_C_CONTIGUOUS, _ALIGNED, _WRITEABLE = 0x1, 0x100, 0x400
_LAYOUT_FLAGS = _C_CONTIGUOUS | _ALIGNED | _WRITEABLE


#: The scalar argument types: the Python and NumPy types Numba's ``typeof`` types as int64, float64 and boolean.
INT64: tuple[type, ...] = (int, np.int64)
FLOAT64: tuple[type, ...] = (float, np.float64)
BOOLEAN: tuple[type, ...] = (bool, np.bool_)
SCALAR_TYPES: dict[str, tuple[type, ...]] = {"int64": INT64, "float64": FLOAT64, "bool": BOOLEAN}

ArgumentType = ArrayType | tuple[type, ...]


def argument_types(recorded: Sequence[str]) -> tuple[ArgumentType, ...]:
    """The argument types of one recorded signature: ``int64``, ``float64``, ``bool``, or an array as
    ``dtype[:]`` (one ``:`` a dimension, C-contiguous) with `` readonly`` where it is read-only."""
    types: list[ArgumentType] = []
    for entry in recorded:
        if entry in SCALAR_TYPES:
            types.append(SCALAR_TYPES[entry])
            continue
        readonly = entry.endswith(" readonly")
        dtype, _, dimensions = entry.removesuffix(" readonly").partition("[")
        if not dimensions.endswith("]") or dimensions[:-1].replace(":", "").replace(", ", ""):
            raise ValueError(f"{SIGNATURES_FILE.name}: {entry!r} is not an argument type")
        types.append(ArrayType(np.dtype(dtype), dimensions.count(":"), readonly))
    return tuple(types)


def array_type_text(dtype: str, ndim: int, readonly: bool) -> str:
    """How ``kernel_signatures.json`` writes an array argument (the inverse of :func:`argument_types`)."""
    return f"{dtype}[{', '.join(':' * ndim)}]" + (" readonly" if readonly else "")


def accepts(types: tuple[ArgumentType, ...], args: tuple[Any, ...]) -> bool:
    """Whether ``args`` have exactly these types (a subclass of ndarray, another byte order, a strided or
    unaligned array, a writable array for a read-only one or the reverse, a bool for an int: not accepted)."""
    if len(args) != len(types):
        return False
    for kind, arg in zip(types, args):
        if type(kind) is ArrayType:
            if type(arg) is not np.ndarray or arg.ndim != kind.ndim or arg.flags.num & _LAYOUT_FLAGS != kind.flags:
                return False
            if arg.dtype is not kind.dtype and arg.dtype != kind.dtype:  # (the same object, for the built-in types)
                return False
        elif type(arg) not in kind:  # type: ignore[operator]
            return False
        elif kind is INT64 and type(arg) is int and not _INT64_RANGE[0] <= arg < _INT64_RANGE[1]:
            return False
    return True


class PrecompiledLoop:
    """A loop's precompiled functions, each called with arguments of its types only; any other call goes to
    Numba's just-in-time dispatcher (``jit()``, made on first need)."""

    def __init__(
        self, loop: Callable[..., Any], functions: tuple[tuple[Callable[..., Any], tuple[ArgumentType, ...]], ...],
        jit: Callable[[], Callable[..., Any]],
    ) -> None:
        self.loop, self.functions, self._jit = loop, functions, jit
        self._dispatcher: Callable[..., Any] | None = None
        self.__name__ = getattr(loop, "__name__", "loop")
        self.__doc__ = loop.__doc__

    def __call__(self, *args: Any) -> Any:
        for function, types in self.functions:
            if accepts(types, args):
                return function(*args)
        if self._dispatcher is None:
            self._dispatcher = self._jit()
        return self._dispatcher(*args)


def precompiled_functions(
    loop: FunctionType, module: ModuleType | None = None
) -> tuple[tuple[Callable[..., Any], tuple[ArgumentType, ...]], ...]:
    """The functions of ``module`` (default: this machine's built module, :func:`built_module`) compiled from
    ``loop`` as it is now, with their argument types; none where the module is missing, ``TOCSIN_KERNELS=jit``
    is set, or the loop changed since the build."""
    if module is None:
        if os.environ.get(KERNELS_VARIABLE, "").strip().lower() == "jit":
            return ()
        module = built_module()
    signatures = recorded_signatures().get((loop.__module__, loop.__name__))
    if module is None or not signatures:
        return ()
    digest = loop_digest(loop)
    if digest is None:
        return ()
    found = []
    for recorded in signatures:
        function = getattr(module, function_name(loop.__name__, digest, recorded), None)
        if function is not None:
            found.append((function, argument_types(recorded)))
    return tuple(found)


@cache
def recorded_signatures() -> dict[tuple[str, str], tuple[tuple[str, ...], ...]]:
    """``kernel_signatures.json`` by (module, loop): each loop's recorded argument lists. A file that cannot be read
    is a RuntimeWarning, and every loop goes to Numba."""
    try:
        data = json.loads(SIGNATURES_FILE.read_text(encoding="utf-8"))
        signatures = {
            (kernel["module"], kernel["loop"]): tuple(tuple(signature) for signature in kernel["signatures"])
            for kernel in data["kernels"]
        }
        for recorded_lists in signatures.values():
            for recorded in recorded_lists:
                argument_types(recorded)  # every type readable, or none is used
        return signatures
    except (OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(
            f"{SIGNATURES_FILE} cannot be read ({type(error).__name__}: {error}); Numba compiles every loop. "
            "Rewrite it with: python -m tocsin.precompile --record",
            RuntimeWarning,
            stacklevel=2,
        )
        return {}


def function_name(loop_name: str, digest: str, recorded: Sequence[str]) -> str:
    """The exported name of ``loop_name`` compiled, at code digest ``digest``, for one recorded argument list."""
    types = hashlib.sha256("|".join(recorded).encode()).hexdigest()[:12]
    return f"{loop_name}__{digest}__{types}"


@cache
def module_name() -> str:
    """The built module's name: ``_kernels_`` and a digest of what its machine code depends on beyond the loops
    (how it was built, the CPU it was compiled for, NumPy's major version for the array layout it reads, the
    Python build)."""
    numpy_major = np.__version__.split(".")[0]
    python = sys.implementation.cache_tag or ""
    identity = "\n".join((BUILD_OPTIONS, platform.machine(), _cpu_identity(), numpy_major, python))
    return "_kernels_" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def _cpu_identity() -> str:
    """The CPU's model and instruction-set flags (from ``/proc/cpuinfo``; the processor's name elsewhere): the module
    is compiled for the host CPU, and another CPU may lack its instructions."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            first = cpuinfo.read(65536).split("\n\n", 1)[0]
    except OSError:
        return platform.processor()
    keep = ("vendor_id", "model name", "flags", "Features", "CPU part", "CPU implementer")
    return "\n".join(line for line in first.splitlines() if line.split(":", 1)[0].strip() in keep)


@cache
def built_module() -> ModuleType | None:
    """This machine's built module, or None: never built, or built elsewhere. A module that is there but fails to
    load (a broken build) is a RuntimeWarning, and the loops go to Numba."""
    name = f"{_PACKAGE}.{module_name()}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        return None
    except ImportError as error:
        warnings.warn(
            f"the precompiled kernels ({name}) could not be loaded ({error}); Numba compiles them instead. "
            "Rebuild them with: python -m tocsin.precompile",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def loop_digest(loop: FunctionType) -> str | None:
    """A digest of what Numba compiles of ``loop``: its code (not its line numbers), its defaults, and the values
    of the module globals it names. None where a global it names is not a plain constant (a number, text, tuple,
    NumPy array or scalar, or a module): such a loop is never precompiled."""
    if loop.__closure__:
        return None
    parts = _code_parts(loop.__code__) + [repr(loop.__defaults__), repr(loop.__kwdefaults__)]
    for name in sorted(_names(loop.__code__)):
        if name in loop.__globals__:
            described = _constant(loop.__globals__[name])
            if described is None:
                return None
            parts.append(f"{name}={described}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _code_parts(code: CodeType) -> list[str]:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames), repr(code.co_freevars),
             f"{code.co_argcount} {code.co_kwonlyargcount} {code.co_posonlyargcount} {code.co_flags}"]
    for constant in code.co_consts:
        parts += _code_parts(constant) if isinstance(constant, CodeType) else [repr(constant)]
    return parts


def _names(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            names |= _names(constant)
    return names


def _constant(value: Any) -> str | None:
    if isinstance(value, ModuleType):
        return f"module {value.__name__}"
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, tuple):
        described = [_constant(item) for item in value]
        return None if None in described else "(" + ", ".join(described) + ")"  # type: ignore[arg-type]
    if type(value) is np.ndarray:
        content = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return f"array {value.dtype.str} {value.shape} {content}"
    return None
