"""Paid membership (付费会员): plans, cards bought through Stripe, renewals, upgrades."""
