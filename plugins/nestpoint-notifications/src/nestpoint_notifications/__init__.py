"""Nestpoint plugin ``notifications``: transactional messages from domain events."""
