"""Reaching members: templates, the send pipeline, delivery records and reach.

See ``docs/messaging.md``.
"""
