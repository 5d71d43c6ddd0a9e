"""Fixtures for the messaging tests: fake channel connectors registered for one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nestpoint.plugins.api import (
    CallbackRequest,
    ChannelConnector,
    ChannelRegistry,
    DeliveryReceipt,
    DeliveryReport,
    OutboundMessage,
    PluginContext,
    hookimpl,
)
from nestpoint.plugins.manager import PluginHost, get_plugin_host


class WorkerLost(BaseException):
    """The worker process dies inside the connector call (no ``except Exception`` sees it)."""


class FakeChannel:
    """A connector that records what it is given and answers from a script (accepted when
    the script is empty). A script entry that is an exception class is raised."""

    def __init__(
        self, key: str, consent: str, address: str = "phone", *, idempotent: bool = False
    ) -> None:
        self.key, self.consent, self.address, self.idempotent = key, consent, address, idempotent
        self.sent: list[OutboundMessage] = []
        self.script: list[Any] = []

    @hookimpl
    def nestpoint_register_channel_connectors(self, registry: ChannelRegistry) -> None:
        registry.add(
            ChannelConnector(
                self.key,
                f"Fake {self.key}",
                send=self.send,
                address=self.address,
                consent=self.consent,
                max_attempts=2,
                retry_seconds=60,
                idempotent=self.idempotent,
                receipts=self.receipts,
            )
        )

    async def send(self, message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
        self.sent.append(message)
        answer = self.script.pop(0) if self.script else None
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer("scripted")
        return answer or DeliveryReceipt(True, provider_message_id=f"{self.key}-{len(self.sent)}")

    async def receipts(
        self, request: CallbackRequest, plugin: PluginContext
    ) -> list[DeliveryReport] | None:
        if request.headers.get("x-fake-signature") != "good":
            return None
        import json

        return [
            DeliveryReport(r["id"], r["delivered"], r.get("code", ""))
            for r in json.loads(request.body)
        ]


@pytest.fixture
def host(app: Any) -> PluginHost:
    return get_plugin_host()


@pytest.fixture
def channels(host: PluginHost) -> Iterator[Callable[..., FakeChannel]]:
    """Factory: a fake connector registered as plugin ``fake_<key>`` for one test."""
    added: list[str] = []

    def make(key: str, consent: str, address: str = "phone", **kwargs: Any) -> FakeChannel:
        channel = FakeChannel(key, consent, address, **kwargs)
        info = host.register_plugin(channel, f"fake_{key}")
        assert info.loaded, info.reason
        added.append(f"fake_{key}")
        return channel

    yield make
    for plugin_id in added:
        host.unregister(plugin_id)
