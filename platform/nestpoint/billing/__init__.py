"""The platform bills its tenants: plans, subscriptions on Stripe, usage and limits."""
