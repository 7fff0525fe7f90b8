"""Survival analysis: Kaplan-Meier, log-rank, follow-up, RMST, Cox regression and competing risks."""
