"""The environment of the processes that grade a batch's chunks, in a module of its own: the ``tocsin`` command reads
it before anything imports Polars (:mod:`tocsin.cli_process`), which reads its own settings only at its import."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Environment of the worker processes, read at their start (they are spawned). One Polars thread and one
#: OpenBLAS thread per worker: the workers are the parallelism, and idle OpenBLAS threads spun on the cores the
#: other worker needed. The allocators keep freed memory for the next chunk instead of handing it back: every
#: chunk allocates the same few hundred MB of columns, and faulting fresh (zeroed) pages in again was a fifth of
#: the workers' CPU time. jemalloc (Polars' allocator, prefixed ``_RJEM_``) never decays dirty pages, gives large
#: allocations no separate, immediately purged arena and runs no purging thread; glibc (NumPy's) serves arrays up
#: to its 32 MB maximum from the heap and trims the heap only past 1 GB. Measured in docs/benchmarks.md: these
#: settings alone add ~0.1 GB to a worker's resident memory.
WORKER_ENVIRONMENT = {
    "POLARS_MAX_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0,background_thread:false",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024),
}


#: What importing Polars writes into ``_RJEM_MALLOC_CONF`` (``polars/__init__.py`` of the pinned version, with
#: ``POLARS_THP=1`` the second form), ahead of whatever the variable held: the options a user set follow it.
POLARS_JEMALLOC_DEFAULTS = ("dirty_decay_ms:500,muzzy_decay_ms:1000,thp:always,metadata_thp:always",
                            "dirty_decay_ms:500,muzzy_decay_ms:1000")
JEMALLOC = "_RJEM_MALLOC_CONF"


def user_jemalloc_options(conf: str) -> str:
    """The options of ``_RJEM_MALLOC_CONF`` that a user set, without those Polars' import put ahead of them."""
    for defaults in POLARS_JEMALLOC_DEFAULTS:
        if conf == defaults or conf.startswith(defaults + ","):
            return conf[len(defaults) + 1 :]
    return conf


def calling_process_environment(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to set for the ``tocsin`` command's own process, before its imports, when it runs ``tocsin batch``
    with ``--workers`` above 1: the process then grades chunks beside its spawned workers
    (:func:`tocsin.adapters.batch.grade_parquet_to_directory`), and with Polars' own two threads its chunks cost
    ~0.55 s more CPU a 10,000-patient run (docs/benchmarks.md, fifteenth session). The workers' thread counts and
    jemalloc options, as for the workers: a variable the user set is kept (their jemalloc options after these, so
    that theirs win). glibc's options are set by ``mallopt`` during the run instead (glibc reads its variables only
    at the process's start)."""
    if not argv or argv[0] != "batch" or _workers(argv[1:]) <= 1:
        return {}
    changes = {name: WORKER_ENVIRONMENT[name] for name in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS")
               if name not in environ}
    user = environ.get(JEMALLOC)
    changes[JEMALLOC] = f"{WORKER_ENVIRONMENT[JEMALLOC]},{user}" if user else WORKER_ENVIRONMENT[JEMALLOC]
    return changes


def _workers(options: Sequence[str]) -> int:
    """The value of ``--workers`` among a command's options (1 when absent or not a number: the command's own parsing
    then reports it)."""
    for k, option in enumerate(options):
        if option == "--workers" and k + 1 < len(options):
            value = options[k + 1]
        elif option.startswith("--workers="):
            value = option.split("=", 1)[1]
        else:
            continue
        return int(value) if value.strip().isdigit() else 1
    return 1
