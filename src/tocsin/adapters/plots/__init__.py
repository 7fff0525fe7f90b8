"""Figures (matplotlib, Agg backend): one patient's course and the cohort report's plots."""
