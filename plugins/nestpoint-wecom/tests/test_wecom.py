"""The wecom connector against its fake WeCom API, with Nestpoint's test kit.

Each test makes a chain, enables the plugin and sets its secret through the HTTP API (as
HQ would), then calls the connector the way the message pipeline's workers do.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from nestpoint_wecom.fake import FakeWeCom

from nestpoint.plugins.api import OutboundMessage, PluginContext

PLUGIN = "wecom"
CORP = "ww-chain-1"
AGENT = 1000002
SECRET = "corp-secret-value"  # noqa: S105 - a test value


@pytest.fixture
def wecom() -> Iterator[FakeWeCom]:
    with FakeWeCom(corp_id=CORP, corp_secret=SECRET, agent_id=AGENT, users={"wang", "li"}) as fake:
        yield fake


def _config(wecom: FakeWeCom, **extra: object) -> dict[str, object]:
    return wecom.plugin_config(**extra)  # base_url, corp_id, agent_id


async def _connect(client, host, tenant, enable, config, secret=SECRET):  # type: ignore[no-untyped-def]
    """Enable the plugin and set its secret through the API; the connector and the
    context the pipeline would hand it (at store S1)."""
    await enable(tenant, PLUGIN, config=config)
    r = await client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/corp_secret",
        json={"value": secret},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"][0] | {"updated_at": None, "updated_by": None} == {
        "name": "corp_secret",
        "description": "The WeCom application's Secret (gets its access token).",
        "set": True,
        "updated_at": None,
        "updated_by": None,
    }
    assert secret not in r.text
    store = tenant.stores["S1"]
    connector = (await host.contributed("channels", tenant.id, store))["wecom.wecom"]
    merged = (await host.enabled_plugins(tenant.id, store))[PLUGIN]
    return connector, PluginContext(PLUGIN, tenant.id, store, merged)


def _message(tenant, to: str = "wang", **extra: object) -> OutboundMessage:  # type: ignore[no-untyped-def]
    fields: dict = {  # type: ignore[type-arg]
        "message_id": uuid.uuid4().hex,
        "tenant_id": str(tenant.id),
        "store_id": str(tenant.stores["S1"]),
        "member_id": str(uuid.uuid4()),
        "channel": "wecom",
        "to": to,
        "purpose": "points_expiring",
        "template": "points_expiring",
        "locale": "zh-CN",
        "subject": "积分即将到期",
        "body": "您的 120 积分将于 6 月 30 日到期，欢迎到店使用。",
        "params": {"points": "120"},
    }
    return OutboundMessage(**(fields | extra))


async def test_a_message_goes_with_one_token_for_two_sends(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wecom
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wecom),
    )  # fmt: skip
    assert (connector.address, connector.consent) == ("wecom_userid", "wecom")
    first = await connector.send(_message(nestpoint_tenant), plugin)
    second = await connector.send(_message(nestpoint_tenant, to="li"), plugin)
    assert first.accepted, first
    assert second.accepted, second
    assert [first.provider_message_id, second.provider_message_id] == [
        m["msgid"] for m in wecom.sent
    ]
    assert wecom.token_fetches == 1
    sent = wecom.sent[0]
    assert (sent["touser"], sent["agentid"], sent["msgtype"]) == ("wang", AGENT, "text")
    assert sent["text"] == {
        "content": "积分即将到期\n您的 120 积分将于 6 月 30 日到期，欢迎到店使用。"
    }


async def test_two_workers_at_once_fetch_the_token_once(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wecom
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wecom),
    )  # fmt: skip
    wecom.token_delay_seconds = 0.3  # both are in flight while the token is fetched
    receipts = await asyncio.gather(
        *(connector.send(_message(nestpoint_tenant), plugin) for _ in range(4))
    )
    assert all(r.accepted for r in receipts), receipts
    assert len(wecom.sent) == 4
    assert wecom.token_fetches == 1


async def test_an_expired_or_revoked_token_is_fetched_again_and_the_message_goes_once(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wecom
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wecom),
    )  # fmt: skip
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    wecom.expire_tokens()
    message = _message(nestpoint_tenant, to="li")
    receipt = await connector.send(message, plugin)
    assert receipt.accepted, receipt
    assert wecom.refused == [42001]
    assert wecom.token_fetches == 2
    assert [m["touser"] for m in wecom.sent] == ["wang", "li"]  # the message went once

    wecom.revoke_tokens()
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    assert wecom.refused == [42001, 40014]
    assert wecom.token_fetches == 3
    # Refused again with the fresh token: only once more in the call, then a retry later.
    wecom.fail_next(errcode=42001, times=2)
    receipt = await connector.send(_message(nestpoint_tenant), plugin)
    assert (receipt.accepted, receipt.retry, receipt.detail) == (False, True, "errcode:42001")
    assert len(wecom.sent) == 3


async def test_outcomes_busy_is_retried_unknown_user_and_bad_secret_are_not(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wecom
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wecom, timeout_seconds=0.3),
    )  # fmt: skip

    async def outcome(to: str = "wang") -> tuple[bool, bool, str]:
        receipt = await connector.send(_message(nestpoint_tenant, to=to), plugin)
        return receipt.accepted, receipt.retry, receipt.detail

    assert await outcome("zhao") == (False, False, "errcode:81013")
    wecom.fail_next(errcode=45009)
    assert await outcome() == (False, True, "errcode:45009")
    wecom.fail_next(errcode=-1)
    assert await outcome() == (False, True, "errcode:-1")
    wecom.fail_next(errcode=40003)
    assert await outcome() == (False, False, "errcode:40003")
    wecom.fail_next(status=502)
    assert await outcome() == (False, True, "http_502")
    wecom.delay_seconds = 1.0
    assert await outcome() == (False, True, "ReadTimeout")
    wecom.delay_seconds = 0
    assert wecom.sent == []

    # The token request: busy is retried; a secret WeCom refuses is not.
    wecom.expire_tokens()
    wecom.fail_token_next(errcode=-1)
    assert await outcome() == (False, True, "errcode:-1")
    r = await nestpoint_client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/corp_secret",
        json={"value": "wrong"},
        headers=nestpoint_tenant.hq(),
    )
    assert r.status_code == 200
    assert await outcome() == (False, False, "auth_failed")
    r = await nestpoint_client.delete(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/corp_secret", headers=nestpoint_tenant.hq()
    )
    assert r.status_code == 200
    assert await outcome() == (False, False, "not_configured")


async def test_a_text_card_links_to_the_configured_page(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wecom
):
    url = "https://m.example.com/points"
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wecom, msgtype="textcard", card_url=url),
    )  # fmt: skip
    long_body = "宝" * 400  # 1,200 bytes: cut to WeCom's 512 for a card's description
    assert (await connector.send(_message(nestpoint_tenant, body=long_body), plugin)).accepted
    (sent,) = wecom.sent
    card = sent["textcard"]
    assert (card["title"], card["url"], card["btntxt"]) == ("积分即将到期", url, "详情")
    assert card["description"] == "宝" * 170  # 510 bytes: never half a character


async def test_neither_secret_nor_token_reaches_a_log_line_or_a_receipt(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wecom, caplog
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wecom, timeout_seconds=0.3),
    )  # fmt: skip
    caplog.set_level(logging.DEBUG)
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    wecom.delay_seconds = 1.0
    timed_out = await connector.send(_message(nestpoint_tenant), plugin)
    assert timed_out.detail == "ReadTimeout"
    token = wecom._current
    assert token
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "gettoken" in logged  # httpx logged the requests...
    assert SECRET not in logged  # ...masked
    assert token not in logged
    assert token not in repr(timed_out)


async def test_invalid_configuration_names_the_field(nestpoint_tenant, nestpoint_client):
    for config, field in [
        ({"base_url": "http://qyapi.example.com"}, "config.base_url"),
        ({"msgtype": "textcard"}, "config.card_url"),
        ({"agent_id": -1}, "config.agent_id"),
    ]:
        r = await nestpoint_client.put(
            f"/api/v1/tenant/plugins/{PLUGIN}",
            json={"enabled": True, "config": config},
            headers=nestpoint_tenant.hq(),
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
