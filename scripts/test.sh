#!/usr/bin/env bash
# Install (pinned, into .venv) and run the whole test suite.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
ruff check src tests benchmarks   # unused code and imports fail the run (pyproject [tool.ruff])
exec python -m pytest -n 2 -q "$@"
