"""Coupons: templates, issued coupons with codes nobody can guess, and their ledger."""
