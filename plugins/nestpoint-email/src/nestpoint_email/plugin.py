"""The e-mail plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

from nestpoint.plugins.api import ChannelRegistry, ConfigSchemaRegistry, hookimpl
from nestpoint_email.config import EmailConfig
from nestpoint_email.connector import CONNECTOR, PASSWORD


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(EmailConfig)
    registry.secret(PASSWORD, "The SMTP password (or the provider's authorisation code).")


@hookimpl
def nestpoint_register_channel_connectors(registry: ChannelRegistry) -> None:
    """``email.email``: members with an ``email`` identity and the ``email`` consent."""
    registry.add(CONNECTOR)
