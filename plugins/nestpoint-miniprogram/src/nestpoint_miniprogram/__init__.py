"""Nestpoint plugin ``miniprogram``: channel connector: WeChat mini-program subscribe messages."""
