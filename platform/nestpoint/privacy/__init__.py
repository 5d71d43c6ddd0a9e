"""Members' rights beyond access: erasure (crypto-shredding) and retention."""
