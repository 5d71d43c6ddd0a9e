"""Nestpoint plugin ``wecom``: channel connector: messages through the chain's WeCom
(企业微信) application."""
