"""The plugin platform: hook specifications, discovery, and the one facade that calls hooks."""

import pluggy

PROJECT_NAME = "nestpoint"
ENTRY_POINT_GROUP = "nestpoint"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator plugin authors put on hook implementations: ``@hookimpl``."""

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl"]
