"""Metrics and tracing (docs/operations.md, "Metrics, tracing and rate limits")."""
