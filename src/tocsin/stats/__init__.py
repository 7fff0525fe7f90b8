"""Pure, deterministic statistics for cohort analyses (no I/O): summaries and tests, survival, incidence.

Each estimator follows one shape: a function or class that takes columns (Polars/NumPy) and returns a
typed result with a ``summary`` (a Polars frame) and the references it implements in its docstring.
"""
