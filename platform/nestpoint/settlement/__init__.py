"""Franchise settlement: a month per store between the franchisees and HQ (docs/settlement.md)."""
