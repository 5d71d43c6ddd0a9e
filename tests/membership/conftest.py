"""Fixtures for the paid-membership tests: the loyalty tests' members and programme set-up."""

from __future__ import annotations

from loyalty.conftest import enrol, set_program

__all__ = ["enrol", "set_program"]
