"""Nestpoint plugin ``webhook``: signed HTTP POST of events to the chain's own systems."""
