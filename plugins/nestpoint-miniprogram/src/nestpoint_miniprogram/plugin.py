"""The miniprogram plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

from nestpoint.plugins.api import (
    ChannelConnector,
    ChannelRegistry,
    ConfigSchemaRegistry,
    hookimpl,
)
from nestpoint_miniprogram.config import MiniProgramConfig
from nestpoint_miniprogram.connector import SECRET, send


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(MiniProgramConfig)
    registry.secret(SECRET, "The mini-program's AppSecret (gets its access token).")


@hookimpl
def nestpoint_register_channel_connectors(registry: ChannelRegistry) -> None:
    registry.add(
        ChannelConnector(
            key="miniprogram",
            title="小程序订阅消息 Mini-program",
            send=send,
            description=(
                "A WeChat subscribe message (订阅消息) from the chain's mini-program: a "
                "template whose data come from the message's parameters."
            ),
            address="mp_openid",
            consent="mini_program",
        )
    )
