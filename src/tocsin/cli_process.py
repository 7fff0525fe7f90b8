"""The ``tocsin`` command's entry point: the settings its process must have before Polars is imported, then the CLI.

``tocsin batch --workers N`` grades chunks in this process too; Polars reads its thread count and its allocator's
options only at its import, which :mod:`tocsin.cli` makes, so they are set here first
(:func:`tocsin.adapters.worker_environment.calling_process_environment`).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run the ``tocsin`` command."""
    from tocsin.adapters.worker_environment import calling_process_environment

    os.environ.update(calling_process_environment(sys.argv[1:], os.environ))
    from tocsin.cli import app

    app()
