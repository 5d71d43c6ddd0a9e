"""The wecom plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

from nestpoint.plugins.api import (
    ChannelConnector,
    ChannelRegistry,
    ConfigSchemaRegistry,
    hookimpl,
)
from nestpoint_wecom.config import WeComConfig
from nestpoint_wecom.connector import SECRET, send


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(WeComConfig)
    registry.secret(SECRET, "The WeCom application's Secret (gets its access token).")


@hookimpl
def nestpoint_register_channel_connectors(registry: ChannelRegistry) -> None:
    registry.add(
        ChannelConnector(
            key="wecom",
            title="企业微信 WeCom",
            send=send,
            description="A text or text-card message from the chain's WeCom application.",
            address="wecom_userid",
            consent="wecom",
        )
    )
