"""The example Nestpoint plugin (entry point ``example`` in the ``nestpoint`` group)."""

__version__ = "0.1.0"
