"""`tocsin grade` (the bedside path) does not pay for the cohort analytics' libraries when the CLI starts."""

from __future__ import annotations

import subprocess
import sys

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
