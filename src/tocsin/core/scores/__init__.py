"""Risk scores and screens computed from the canonical events: one score per module (docs/scores.md)."""
