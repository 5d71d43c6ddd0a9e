"""The sms plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

from nestpoint.plugins.api import (
    ChannelConnector,
    ChannelRegistry,
    ConfigSchemaRegistry,
    hookimpl,
)
from nestpoint_sms.config import SmsConfig
from nestpoint_sms.connector import CALLBACK_SECRET, SECRET, receipts, send


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(SmsConfig)
    registry.secret(SECRET, "The gateway access key's secret: signs every send request.")
    registry.secret(
        CALLBACK_SECRET,
        "Optional: the secret the gateway signs delivery receipts with, when it is not the "
        "access key secret.",
    )


@hookimpl
def nestpoint_register_channel_connectors(registry: ChannelRegistry) -> None:
    registry.add(
        ChannelConnector(
            key="sms",
            title="短信 SMS",
            send=send,
            description=(
                "A gateway template and its parameters to the member's phone, signed "
                "(HMAC-SHA256); delivery receipts by signed callback."
            ),
            address="phone",
            consent="sms",
            receipts=receipts,
        )
    )
