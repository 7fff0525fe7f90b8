"""``tocsin cohort ...``: from raw courses to the tables and curves of a cohort paper.

Each sub-command lives in its own module and registers itself on :data:`cohort_app`.
"""

from tocsin.cli_cohort import table1_command  # noqa: F401  (registers `tocsin cohort table1`)
from tocsin.cli_cohort.app import cohort_app

__all__ = ["cohort_app"]
