"""`tocsin grade` (the bedside path) does not pay for the cohort analytics' libraries when the CLI starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# pint (tocsin.units) runs a bare `import scipy` to see whether it is installed; that loads scipy's package
# skeleton only. What costs seconds are the sub-packages and libraries the estimators and figures use.
HEAVY = ("pandas", "lifelines", "statsmodels", "matplotlib", "scipy.stats", "scipy.optimize", "scipy.special")


def test_import_cli_does_not_import_the_statistics_libraries() -> None:
    code = (
        "import sys, tocsin.cli\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(h for h in heavy if any(m == h or m.startswith(h + '.') for m in sys.modules)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"`import tocsin.cli` imports {', '.join(loaded)}; import them inside the command function"


def test_grading_a_batch_chunk_does_not_import_pandas_or_pint() -> None:
    """Every batch worker grades and writes its chunks without pandas (0.45 s and ~60 MB a worker): PyArrow's
    ``to_numpy`` and ``pa.array`` import it, so the engine makes its Arrow arrays from buffers. Nor pint (~0.1 s):
    the units of the synthetic courses are all in the conversion table. Nor rapidfuzz (~30 ms), which only
    suggests the nearest name of a misspelt item."""
    code = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "import polars as pl\n"
        "from tocsin.adapters.batch import grade_parquet_to_directory\n"
        "from tocsin.config import GradingConfig\n"
        "from tocsin.synth import generate_cohort\n"
        "folder = Path(tempfile.mkdtemp())\n"
        "generate_cohort(6, 3).events.write_parquet(folder / 'events.parquet')\n"
        "grade_parquet_to_directory(folder / 'events.parquet', folder / 'out', GradingConfig(), 4, evidence=True,"
        " cohort=True)\n"
        "print('pandas' in sys.modules, 'pint' in sys.modules, 'rapidfuzz' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False", "False"]


def test_compiled_kernels_start_without_scipy_and_leave_it_importable() -> None:
    """Numba's set-up does not import ``scipy.linalg`` (its BLAS probe, ~0.27 s a process) and leaves no event
    callbacks on LLVM's lock (a third of a batch worker's kernel loads), and neither the kernels nor a later
    ``import scipy.linalg``, BLAS call or compile are the worse for it."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from llvmlite.binding import ffi\n"
        "from tocsin.core.kernels_ingest import marked, rounded\n"
        "print(marked(np.array([1, 3]), np.array([True, False]), 4).tolist(), rounded(np.array([0.1234565])))\n"
        "print('scipy.linalg' in sys.modules, len(ffi.lib._lock._cblist))\n"
        "import numba, scipy.linalg\n"
        "print(numba.njit(lambda a: np.dot(a, a))(np.arange(3.0)), scipy.linalg.norm([3.0, 4.0]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:3] == ["[False, True, False, False] [0.123456]", "False 0", "5.0 5.0"]


def test_the_import_block_of_numbas_set_up_holds_for_its_own_thread_only() -> None:
    """While Numba's set-up refuses ``scipy.linalg`` to its thread, a server's other threads import it as usual."""
    code = (
        "import sys, threading\n"
        "from tocsin.core.segments import _RefusedToThisThread\n"
        "block = _RefusedToThisThread('colorsys')\n"
        "sys.meta_path.insert(0, block)\n"
        "try:\n"
        "    import colorsys\n"
        "    print('imported here')\n"
        "except ImportError:\n"
        "    print('refused here')\n"
        "other = threading.Thread(target=lambda: print(__import__('colorsys').__name__, 'in another thread'))\n"
        "other.start(); other.join()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["refused here", "colorsys in another thread"]


def test_a_batch_worker_exits_without_the_interpreters_teardown(tmp_path: Path) -> None:
    """A pool worker started by ``_start_worker`` exits with code 0 once its results are sent, and skips the
    interpreter's teardown: an object that only the teardown frees is never finalised."""
    marker = tmp_path / "teardown_ran"
    script = tmp_path / "pool.py"  # a file, so that the spawned worker can import this function from it
    script.write_text(f"""
import multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
from tocsin.adapters import batch

class Kept:
    def __del__(self):
        open(r"{marker}", "w").close()

def keep_an_object():
    sys.modules[__name__].kept = Kept()  # a module global: freed by the teardown only
    return multiprocessing.current_process().pid

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=batch._start_worker) as pool:
        pool.submit(keep_an_object).result()
        processes = list(pool._processes.values())
    print([p.exitcode for p in processes])
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0]"
    assert not marker.exists()


def test_batch_workers_do_not_run_the_main_script_of_the_starting_process(tmp_path: Path) -> None:
    """A spawned worker would run its parent's main script first (the ``tocsin`` command's imports the whole CLI);
    the batch hides it while its workers start, so they run only what they are sent, and the script is named again
    after (for its own later use)."""
    script = tmp_path / "run_batch.py"
    marker = tmp_path / "imported_by_a_worker"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "if __name__ == '__mp_main__':\n"
        f"    Path({str(marker)!r}).open('a').write('worker\\n')\n"
        "if __name__ == '__main__':\n"
        "    from tocsin.adapters.batch import grade_parquet_to_directory\n"
        "    from tocsin.config import GradingConfig\n"
        "    from tocsin.synth import generate_cohort\n"
        f"    folder = Path({str(tmp_path)!r})\n"
        "    generate_cohort(6, 3).events.write_parquet(folder / 'events.parquet')\n"
        "    stats = grade_parquet_to_directory(folder / 'events.parquet', folder / 'out', GradingConfig(), 2,"
        " workers=2)\n"
        "    print(stats.patients, sys.modules['__main__'].__file__ == __file__)\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["6", "True"]
    assert not marker.exists(), marker.read_text()
