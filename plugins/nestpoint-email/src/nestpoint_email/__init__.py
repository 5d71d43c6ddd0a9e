"""Nestpoint plugin ``email``: channel connector: e-mail over SMTP, with a plain-text and an
HTML part."""
