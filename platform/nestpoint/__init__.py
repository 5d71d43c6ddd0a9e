"""Nestpoint: the membership platform for mother-and-baby store chains."""

__version__ = "0.1.0"
