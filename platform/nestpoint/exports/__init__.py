"""Exports: members, children, points ledgers and orders to CSV and XLSX, streamed into
chunks in the database by a worker, downloaded by HQ (``docs/exports.md``)."""
