# Shared by scripts/demo.sh and scripts/test.sh: make .venv with the pinned dependency set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.tocsin-lock-$(sha256sum "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.lock"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" \
    || "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
  rm -f "$VENV"/.tocsin-lock-*
  touch "$stamp"
fi
# Tocsin is installed editable, so pip compiles none of src/. Where PYTHONDONTWRITEBYTECODE is set (this machine,
# many CI images), every process then compiled all of Tocsin's modules at import: ~0.19 s in each batch worker and
# each `tocsin` command. Python reads bytecode even where it may not write it: written here (again for a changed
# file), it is read by every process.
"$VENV/bin/python" -m compileall -q "$ROOT/src" >/dev/null
# The compiled loops as one extension module for this machine (tocsin.core.precompiled): ~40 s once, then a check of
# well under a second; without a C compiler it says so and Numba compiles the loops at first use instead.
"$VENV/bin/python" -m tocsin.precompile
export PATH="$VENV/bin:$PATH"
