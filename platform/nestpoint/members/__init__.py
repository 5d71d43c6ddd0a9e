"""Members (会员): profile, children, consent, identities across channels, merge."""
