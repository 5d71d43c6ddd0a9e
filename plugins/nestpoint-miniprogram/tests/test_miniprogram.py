"""The miniprogram connector against its fake WeChat API, with Nestpoint's test kit.

Each test makes a chain, enables the plugin and sets its secret through the HTTP API (as
HQ would), then calls the connector the way the message pipeline's workers do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from nestpoint_miniprogram.fake import FakeWeChat

from nestpoint.plugins.api import OutboundMessage, PluginContext

PLUGIN = "miniprogram"
APP_ID = "wx0123456789abcdef"
SECRET = "app-secret-value"  # noqa: S105 - a test value
TEMPLATE = "tmpl-points-expiring-01"
OPENID = "o-member-1"


@pytest.fixture
def wechat() -> Iterator[FakeWeChat]:
    templates = {TEMPLATE: {"thing1", "number2", "date3"}}
    with FakeWeChat(app_id=APP_ID, app_secret=SECRET, templates=templates) as fake:
        yield fake


def _config(wechat: FakeWeChat, **extra: object) -> dict[str, object]:
    return wechat.plugin_config(
        page="pages/index/index",
        templates={
            "points_expiring": {
                "template_id": TEMPLATE,
                "fields": {"thing1": "member_name", "number2": "points", "date3": "expires_on"},
                "page": "pages/points/index",
            }
        },
        **extra,
    )


async def _connect(client, host, tenant, enable, config, secret=SECRET):  # type: ignore[no-untyped-def]
    """Enable the plugin and set its secret through the API; the connector and the
    context the pipeline would hand it (at store S1)."""
    await enable(tenant, PLUGIN, config=config)
    r = await client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/app_secret",
        json={"value": secret},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert [(s["name"], s["set"]) for s in r.json()["items"]] == [("app_secret", True)]
    assert secret not in r.text
    store = tenant.stores["S1"]
    connector = (await host.contributed("channels", tenant.id, store))["miniprogram.miniprogram"]
    merged = (await host.enabled_plugins(tenant.id, store))[PLUGIN]
    return connector, PluginContext(PLUGIN, tenant.id, store, merged)


def _message(tenant, to: str = OPENID, **extra: object) -> OutboundMessage:  # type: ignore[no-untyped-def]
    fields: dict = {  # type: ignore[type-arg]
        "message_id": uuid.uuid4().hex,
        "tenant_id": str(tenant.id),
        "store_id": str(tenant.stores["S1"]),
        "member_id": str(uuid.uuid4()),
        "channel": "miniprogram",
        "to": to,
        "purpose": "points_expiring",
        "template": "points_expiring",
        "locale": "zh-CN",
        "subject": "积分即将到期",
        "body": "您的 120 积分将于 2026-06-30 到期",
        "params": {"member_name": "王女士", "points": "120", "expires_on": "2026-06-30"},
    }
    return OutboundMessage(**(fields | extra))


async def test_a_subscribe_message_maps_params_to_the_templates_data(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wechat
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wechat),
    )  # fmt: skip
    assert (connector.address, connector.consent) == ("mp_openid", "mini_program")
    long_name = "王女士和她的宝宝豆豆以及全家人一起来参加会员日活动"  # 25 characters
    params = {"member_name": long_name, "points": "120", "expires_on": "2026-06-30"}
    first = await connector.send(_message(nestpoint_tenant, params=params), plugin)
    second = await connector.send(_message(nestpoint_tenant), plugin)
    assert first.accepted, first
    assert second.accepted, second
    assert first.provider_message_id == str(wechat.sent[0]["msgid"])
    assert wechat.token_fetches == 1
    assert wechat.token_endpoints == ["stable"]
    sent = wechat.sent[0]
    assert sent["touser"] == OPENID
    assert sent["template_id"] == TEMPLATE
    assert sent["page"] == "pages/points/index"
    assert sent["miniprogram_state"] == "formal"
    assert sent["data"] == {
        "thing1": {"value": long_name[:19] + "…"},  # WeChat's 20 characters
        "number2": {"value": "120"},
        "date3": {"value": "2026-06-30"},
    }


async def test_two_workers_at_once_fetch_the_token_once(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wechat
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wechat),
    )  # fmt: skip
    wechat.token_delay_seconds = 0.3
    receipts = await asyncio.gather(
        *(connector.send(_message(nestpoint_tenant), plugin) for _ in range(4))
    )
    assert all(r.accepted for r in receipts), receipts
    assert len(wechat.sent) == 4
    assert wechat.token_fetches == 1


@pytest.mark.parametrize("endpoint", ["stable", "classic"])
async def test_an_expired_or_revoked_token_is_fetched_again_and_the_message_goes_once(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wechat, endpoint
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wechat, token_endpoint=endpoint),
    )  # fmt: skip
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    wechat.expire_tokens()
    assert (await connector.send(_message(nestpoint_tenant, to="o-member-2"), plugin)).accepted
    assert wechat.refused == [42001]
    assert [m["touser"] for m in wechat.sent] == [OPENID, "o-member-2"]
    wechat.revoke_tokens()
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    assert wechat.refused == [42001, 40001]
    assert wechat.token_endpoints == [endpoint] * 3
    assert len(wechat.sent) == 3
    wechat.fail_next(errcode=42001, times=2)
    receipt = await connector.send(_message(nestpoint_tenant), plugin)
    assert (receipt.accepted, receipt.retry, receipt.detail) == (False, True, "errcode:42001")


async def test_no_subscription_left_falls_back_at_once(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wechat
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wechat),
    )  # fmt: skip
    wechat.subscriptions = {OPENID: 1}  # the member allowed one message
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    receipt = await connector.send(_message(nestpoint_tenant), plugin)
    assert (receipt.accepted, receipt.retry, receipt.detail) == (False, False, "not_subscribed")
    assert len(wechat.sent) == 1


async def test_outcomes_busy_is_retried_bad_openids_and_templates_are_not(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, wechat
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(wechat, timeout_seconds=0.3),
    )  # fmt: skip

    async def outcome(**extra: object) -> tuple[bool, bool, str]:
        receipt = await connector.send(_message(nestpoint_tenant, **extra), plugin)
        return receipt.accepted, receipt.retry, receipt.detail

    wechat.openids = {OPENID}
    assert await outcome(to="o-stranger") == (False, False, "errcode:40003")
    wechat.fail_next(errcode=-1)
    assert await outcome() == (False, True, "errcode:-1")
    wechat.fail_next(errcode=45011)
    assert await outcome() == (False, True, "errcode:45011")
    wechat.fail_next(errcode=45009)  # the day's quota: waiting minutes will not help
    assert await outcome() == (False, False, "errcode:45009")
    wechat.fail_next(status=503)
    assert await outcome() == (False, True, "http_503")
    wechat.delay_seconds = 1.0
    assert await outcome() == (False, True, "ReadTimeout")
    wechat.delay_seconds = 0
    # What the chain's configuration lacks: no request at all.
    assert await outcome(purpose="birthday", template="birthday") == (False, False, "no_template")
    no_points = {"member_name": "王女士", "expires_on": "2026-06-30"}
    assert await outcome(params=no_points) == (False, False, "missing_param:points")
    # A template WeChat does not know.
    wechat.templates = {}
    assert await outcome() == (False, False, "errcode:40037")
    assert wechat.sent == []

    # The token request: busy is retried; an AppSecret WeChat refuses is not.
    wechat.templates = None
    wechat.expire_tokens()
    wechat.fail_token_next(errcode=-1)
    assert await outcome() == (False, True, "errcode:-1")
    r = await nestpoint_client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/app_secret",
        json={"value": "wrong"},
        headers=nestpoint_tenant.hq(),
    )
    assert r.status_code == 200
    assert await outcome() == (False, False, "auth_failed")


async def test_invalid_configuration_names_the_field(nestpoint_tenant, nestpoint_client):
    spec = {"template_id": TEMPLATE, "fields": {"thing1": "member_name"}}
    for config, field in [
        ({"base_url": "http://api.example.com"}, "config.base_url"),
        ({"templates": {"points_expiring": spec | {"fields": {}}}},
         "config.templates.points_expiring.fields"),
        ({"templates": {"points_expiring": spec | {"fields": {"Thing": "x"}}}},
         "config.templates.points_expiring.fields.Thing.[key]"),
        ({"miniprogram_state": "beta"}, "config.miniprogram_state"),
    ]:  # fmt: skip
        r = await nestpoint_client.put(
            f"/api/v1/tenant/plugins/{PLUGIN}",
            json={"enabled": True, "config": config},
            headers=nestpoint_tenant.hq(),
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
