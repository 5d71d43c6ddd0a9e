"""Fixtures for the benefits tests: the loyalty tests' members and programme helpers."""

from loyalty.conftest import enrol, set_program, till

__all__ = ["enrol", "set_program", "till"]
