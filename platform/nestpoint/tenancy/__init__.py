"""Tenants (store chains), their stores, and API keys."""
