"""The audit trail: who changed what, append-only."""
