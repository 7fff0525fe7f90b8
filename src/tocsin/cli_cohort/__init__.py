"""``tocsin cohort ...``: from raw courses to the tables and curves of a cohort paper.

Each sub-command lives in its own module and registers itself on :data:`cohort_app`.
"""

from tocsin.cli_cohort import cox_command  # noqa: F401  (registers `tocsin cohort cox`)
from tocsin.cli_cohort import cuminc_command  # noqa: F401  (registers `tocsin cohort cuminc`)
from tocsin.cli_cohort import derive_command  # noqa: F401  (registers `tocsin cohort derive`)
from tocsin.cli_cohort import incidence_command  # noqa: F401  (registers incidence, durations, logistic)
from tocsin.cli_cohort import survival_command  # noqa: F401  (registers `tocsin cohort survival`)
from tocsin.cli_cohort import table1_command  # noqa: F401  (registers `tocsin cohort table1`)
from tocsin.cli_cohort.app import cohort_app

__all__ = ["cohort_app"]
