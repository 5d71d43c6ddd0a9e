"""Imports of legacy data: members, children, opening balances, orders and tags (CSV, XLSX)."""
