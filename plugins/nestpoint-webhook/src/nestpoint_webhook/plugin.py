"""The webhook plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

from nestpoint.plugins.api import ConfigSchemaRegistry, Event, PluginContext, hookimpl
from nestpoint_webhook.config import WebhookConfig
from nestpoint_webhook.delivery import SIGNING_SECRET, deliver


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(WebhookConfig)
    registry.secret(
        SIGNING_SECRET,
        "The key of the HMAC-SHA256 signature (Nestpoint-Signature) receivers verify.",
    )


@hookimpl
async def nestpoint_on_event(event: Event, plugin: PluginContext) -> None:
    """POST every wanted event, signed, to the chain's receiver. Raising (receiver down,
    5xx, 408, 429, not configured, destination refused) makes the outbox retry this event
    for this plugin alone, with back-off; see ``nestpoint_webhook.delivery``."""
    await deliver(event, plugin)
