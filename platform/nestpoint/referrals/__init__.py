"""Referrals: invitation rewards for both sides after the invitee's first purchase, and
friend assists (好友助力), with abuse checks (docs/referrals.md)."""
