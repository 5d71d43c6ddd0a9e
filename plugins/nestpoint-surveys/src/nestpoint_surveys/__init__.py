"""Nestpoint plugin ``surveys``: the needs survey and its results."""
