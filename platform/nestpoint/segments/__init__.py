"""Custom member segments: a rule tree compiled to SQL, saved per chain, exported."""
