"""Points (积分): an append-only ledger over lots, holds for the till, expiry."""
