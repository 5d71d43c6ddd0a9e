"""Nestpoint plugin ``traceability``: product traceability (产品溯源).

Batches imported from CSV, their inspection reports, scan codes per batch and per unit, a
public look-up with a counterfeit hint, and members' scans (``docs/plugins/traceability.md``).
"""
