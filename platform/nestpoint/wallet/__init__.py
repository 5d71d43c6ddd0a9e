"""Stored value (储值): a money ledger per member, separate from points."""
