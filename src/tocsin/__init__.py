"""Tocsin: graded, explained CAR-T toxicity monitoring from the raw course.

The pure core lives in :mod:`tocsin.core` (events -> timeline -> grades -> episodes); everything that
touches files, terminals or the clock lives in :mod:`tocsin.adapters` and :mod:`tocsin.cli`.
"""

__version__ = "0.1.0"
