"""Cohort derivation: one row per patient from graded courses (``tocsin cohort derive``; docs/cohort.md)."""
