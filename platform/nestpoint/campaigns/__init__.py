"""Campaigns: plays over an audience with exactly-once grants, holdout and results."""
