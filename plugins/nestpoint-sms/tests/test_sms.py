"""The sms connector against its fake gateway, with Nestpoint's test kit.

Each test makes a chain, enables the plugin and sets its secret through the HTTP API (as
HQ would), then calls the connector the way the message pipeline's workers do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from nestpoint_sms.fake import FakeSmsGateway
from nestpoint_sms.signing import sign, string_to_sign

from nestpoint.plugins.api import CallbackRequest, OutboundMessage, PluginContext

PLUGIN = "sms"
KEY_ID = "LTAI-chain-1"
SECRET = "gateway-secret-value"  # noqa: S105 - a test value
PHONE = "+8613912345678"


@pytest.fixture
def gateway() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(access_key_id=KEY_ID, access_key_secret=SECRET) as fake:
        yield fake


def _config(gateway: FakeSmsGateway, **extra: object) -> dict[str, object]:
    return {
        "base_url": gateway.url,
        "access_key_id": KEY_ID,
        "sign_name": "贝贝母婴",
        "templates": {"points_expiring": "SMS_0001", "birthday": "SMS_0002"},
        "default_template": "SMS_0099",
    } | extra


async def _connect(client, host, tenant, enable, config, secret=SECRET):  # type: ignore[no-untyped-def]
    """Enable the plugin at S1 and set its secret through the API; the connector and the
    context the pipeline would hand it."""
    await enable(tenant, PLUGIN, config=config)
    r = await client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/access_key_secret",
        json={"value": secret},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    listed = {s["name"]: s for s in r.json()["items"]}
    assert listed["access_key_secret"]["set"] is True
    assert listed["callback_secret"]["set"] is False
    assert secret not in r.text  # write-only
    store = tenant.stores["S1"]
    connector = (await host.contributed("channels", tenant.id, store))["sms.sms"]
    merged = (await host.enabled_plugins(tenant.id, store))[PLUGIN]
    return connector, PluginContext(PLUGIN, tenant.id, store, merged)


def _message(tenant, to: str = PHONE, **extra: object) -> OutboundMessage:  # type: ignore[no-untyped-def]
    fields: dict = {  # type: ignore[type-arg]
        "message_id": uuid.uuid4().hex,
        "tenant_id": str(tenant.id),
        "store_id": str(tenant.stores["S1"]),
        "member_id": str(uuid.uuid4()),
        "channel": "sms",
        "to": to,
        "purpose": "points_expiring",
        "template": "points_expiring",
        "locale": "zh-CN",
        "subject": "",
        "body": "您的 120 积分将于 2026-06-30 到期",
        "params": {"name": "王女士", "points": "120", "date": "2026-06-30"},
    }
    return OutboundMessage(**(fields | extra))


async def test_a_signed_send_reaches_the_gateway_with_template_params_and_sign_name(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, gateway
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(gateway),
    )  # fmt: skip
    assert (connector.address, connector.consent) == ("phone", "sms")
    message = _message(nestpoint_tenant)
    receipt = await connector.send(message, plugin)

    assert receipt.accepted, receipt
    assert not receipt.retry
    (sent,) = gateway.sent
    assert receipt.provider_message_id == sent.biz_id
    assert sent.phone == PHONE
    assert sent.sign_name == "贝贝母婴"
    assert sent.template_code == "SMS_0001"
    assert sent.params == {"name": "王女士", "points": "120", "date": "2026-06-30"}
    assert sent.out_id == message.message_id
    assert sent.access_key_id == KEY_ID

    # Another purpose maps to its own code; an unmapped one to the default.
    birthday = _message(nestpoint_tenant, to="+8613900000001", purpose="birthday", template="x")
    other = _message(nestpoint_tenant, to="+8613900000002", purpose="campaign", template="y")
    assert (await connector.send(birthday, plugin)).accepted
    assert (await connector.send(other, plugin)).accepted
    assert [s.template_code for s in gateway.sent[1:]] == ["SMS_0002", "SMS_0099"]


async def test_the_fakes_own_configuration_sends_any_purpose(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin
):
    """What the core's end-to-end test and the demo do: configure the plugin from the fake."""
    with FakeSmsGateway(callback_secret="for-receipts") as fake:  # noqa: S106
        await nestpoint_enable_plugin(nestpoint_tenant, PLUGIN, config=fake.plugin_config())
        for name, value in fake.plugin_secrets().items():
            r = await nestpoint_client.put(
                f"/api/v1/tenant/plugins/{PLUGIN}/secrets/{name}",
                json={"value": value},
                headers=nestpoint_tenant.hq(),
            )
            assert r.status_code == 200, r.text
        assert all(s["set"] for s in r.json()["items"])
        store = nestpoint_tenant.stores["S1"]
        connector = await nestpoint_host.contributed("channels", nestpoint_tenant.id, store)
        merged = (await nestpoint_host.enabled_plugins(nestpoint_tenant.id, store))[PLUGIN]
        plugin = PluginContext(PLUGIN, nestpoint_tenant.id, store, merged)
        receipt = await connector["sms.sms"].send(_message(nestpoint_tenant, purpose="x"), plugin)
        assert receipt.accepted, receipt
        assert [s.template_code for s in fake.sent] == ["SMS_DEFAULT"]
        headers, body = fake.signed_receipts([fake.receipt(receipt.provider_message_id)])
        request = CallbackRequest("POST", headers, {}, body)
        reports = await connector["sms.sms"].receipts(request, plugin)
        assert [(r.provider_message_id, r.delivered) for r in reports or []] == [
            (receipt.provider_message_id, True)
        ]


def test_the_documented_signature_example():
    """The example in docs/plugins/sms.md, computed by hand."""
    params = {
        "AccessKeyId": "LTAI-demo",
        "OutId": "m-1",
        "PhoneNumbers": "+8613912345678",
        "SignName": "贝贝母婴",
        "SignatureMethod": "HMAC-SHA256",
        "SignatureNonce": "3f1c0c8e",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_0001",
        "TemplateParam": '{"points":"120"}',
        "Timestamp": "2026-05-20T10:00:00Z",
    }
    text = string_to_sign("post", "/sms/send", params | {"Signature": "ignored"})
    assert text == (
        "POST\n/sms/send\nAccessKeyId=LTAI-demo&OutId=m-1&PhoneNumbers=%2B8613912345678"
        "&SignName=%E8%B4%9D%E8%B4%9D%E6%AF%8D%E5%A9%B4&SignatureMethod=HMAC-SHA256"
        "&SignatureNonce=3f1c0c8e&SignatureVersion=1.0&TemplateCode=SMS_0001"
        "&TemplateParam=%7B%22points%22%3A%22120%22%7D&Timestamp=2026-05-20T10%3A00%3A00Z"
    )
    assert sign("demo-secret", text) == "uTuAUJpnCpR6zSLf6Qtj5HmjlMg/dqrBEUYkiF+yNFY="


async def test_a_wrong_secret_is_auth_failed_without_retry(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, gateway
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(gateway), secret="not-the-secret",  # noqa: S106
    )  # fmt: skip
    receipt = await connector.send(_message(nestpoint_tenant), plugin)
    assert (receipt.accepted, receipt.retry, receipt.detail) == (False, False, "auth_failed")
    assert gateway.sent == []
    assert [r.code for r in gateway.requests] == ["SignatureDoesNotMatch"]
    assert "not-the-secret" not in repr(receipt)


async def test_not_configured_and_no_template_fall_back_at_once(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, gateway
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(gateway, default_template=None),
    )  # fmt: skip
    receipt = await connector.send(_message(nestpoint_tenant, purpose="x", template="y"), plugin)
    assert (receipt.accepted, receipt.retry, receipt.detail) == (False, False, "no_template")
    bare = PluginContext(PLUGIN, plugin.tenant_id, plugin.store_id, {})
    receipt = await connector.send(_message(nestpoint_tenant), bare)
    assert (receipt.accepted, receipt.retry, receipt.detail) == (False, False, "not_configured")
    assert gateway.requests == []


async def test_the_per_number_limit_refuses_without_retry_but_a_retry_is_not_counted(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, gateway
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(gateway, rate_limits="2/minute;5/hour"),
    )  # fmt: skip
    # A first message fails at the gateway (5xx) and is retried: one count, not two.
    first = _message(nestpoint_tenant)
    gateway.fail_next(status=503)
    assert (await connector.send(first, plugin)).retry
    assert (await connector.send(first, plugin)).accepted
    assert (await connector.send(_message(nestpoint_tenant), plugin)).accepted
    third = await connector.send(_message(nestpoint_tenant), plugin)
    assert (third.accepted, third.retry, third.detail) == (False, False, "rate_limited")
    assert len(gateway.sent) == 2
    # Another number has its own count.
    assert (await connector.send(_message(nestpoint_tenant, to="+8613700000000"), plugin)).accepted


async def test_5xx_throttling_and_timeouts_are_retried_bad_numbers_are_not(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, gateway
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(gateway, rate_limits="", timeout_seconds=0.3),
    )  # fmt: skip

    async def outcome() -> tuple[bool, bool, str]:
        receipt = await connector.send(_message(nestpoint_tenant), plugin)
        return receipt.accepted, receipt.retry, receipt.detail

    gateway.fail_next(status=500, code="isp.SYSTEM_ERROR")
    assert await outcome() == (False, True, "http_500")
    gateway.fail_next(status=200, code="Throttling.User")
    assert await outcome() == (False, True, "Throttling.User")
    gateway.fail_next(status=429, code="Throttling")
    assert await outcome() == (False, True, "throttled")
    gateway.fail_next(status=200, code="isv.BUSINESS_LIMIT_CONTROL")
    assert await outcome() == (False, False, "rate_limited")
    gateway.fail_next(status=400, code="isv.SMS_TEMPLATE_ILLEGAL")
    assert await outcome() == (False, False, "isv.SMS_TEMPLATE_ILLEGAL")

    gateway.invalid_numbers.add(PHONE)
    assert await outcome() == (False, False, "isv.MOBILE_NUMBER_ILLEGAL")
    gateway.invalid_numbers.clear()

    gateway.delay_seconds = 1.0
    assert await outcome() == (False, True, "ReadTimeout")
    gateway.delay_seconds = 0
    gateway.stop()
    accepted, retry, detail = await outcome()
    assert (accepted, retry, detail) == (False, True, "ConnectError")
    assert gateway.sent == []


async def test_receipts_need_a_valid_signature_and_a_fresh_timestamp(
    nestpoint_tenant, nestpoint_client, nestpoint_host, nestpoint_enable_plugin, gateway
):
    connector, plugin = await _connect(
        nestpoint_client, nestpoint_host, nestpoint_tenant, nestpoint_enable_plugin,
        _config(gateway),
    )  # fmt: skip
    sent = await connector.send(_message(nestpoint_tenant), plugin)
    failed = await connector.send(_message(nestpoint_tenant, to="+8613800000000"), plugin)
    reports = [
        gateway.receipt(sent.provider_message_id),
        gateway.receipt(failed.provider_message_id, delivered=False, err_code="MK:0001"),
        {"success": True},  # no biz_id: skipped
    ]

    def request(headers: dict[str, str], body: bytes) -> CallbackRequest:
        return CallbackRequest(method="POST", headers=headers, query={}, body=body)

    headers, body = gateway.signed_receipts(reports)
    parsed = await connector.receipts(request(headers, body), plugin)
    assert parsed is not None
    assert [(r.provider_message_id, r.delivered, r.detail) for r in parsed] == [
        (sent.provider_message_id, True, "DELIVERED"),
        (failed.provider_message_id, False, "MK:0001"),
    ]

    # A changed body, another secret, no signature, a stale or a future timestamp: not genuine.
    assert (
        await connector.receipts(request(headers, body.replace(b"true", b"fals")), plugin) is None
    )
    wrong = gateway.signed_receipts(reports, secret="someone-else")  # noqa: S106
    assert await connector.receipts(request(*wrong), plugin) is None
    unsigned = {k: v for k, v in headers.items() if k != "x-sms-signature"}
    assert await connector.receipts(request(unsigned, body), plugin) is None
    stale = gateway.signed_receipts(reports, timestamp=int(time.time()) - 301)
    assert await connector.receipts(request(*stale), plugin) is None
    future = gateway.signed_receipts(reports, timestamp=int(time.time()) + 301)
    assert await connector.receipts(request(*future), plugin) is None

    # A separate callback secret, once HQ sets one, is the one that counts.
    r = await nestpoint_client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}/secrets/callback_secret",
        json={"value": "receipts-only"},
        headers=nestpoint_tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert await connector.receipts(request(headers, body), plugin) is None
    own = gateway.signed_receipts(reports, secret="receipts-only")  # noqa: S106
    assert len(await connector.receipts(request(*own), plugin) or []) == 2


async def test_invalid_configuration_names_the_field(nestpoint_tenant, nestpoint_client):
    for config, field in [
        ({"base_url": "http://sms.example.com"}, "config.base_url"),
        ({"rate_limits": "often"}, "config.rate_limits"),
        ({"templates": {"points_expiring": "bad code!"}}, "config.templates.points_expiring"),
    ]:
        r = await nestpoint_client.put(
            f"/api/v1/tenant/plugins/{PLUGIN}",
            json={"enabled": True, "config": config},
            headers=nestpoint_tenant.hq(),
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
