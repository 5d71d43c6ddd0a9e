"""Tiers (等级) and growth value (成长值): upgrade at once, downgrade at evaluation."""
