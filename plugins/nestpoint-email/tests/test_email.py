"""The e-mail connector against a real (fake) SMTP server, configured through the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtplib.errors import (
    SMTPConnectError,
    SMTPException,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPResponseException,
)
from nestpoint_email.address import normalise_address
from nestpoint_email.connector import outcome_of
from nestpoint_email.connector import send as email_send
from nestpoint_email.fake import FakeSmtp
from nestpoint_email.message import build_email, header_id, message_id_header

from nestpoint.plugins.api import ChannelConnector, OutboundMessage, PluginContext

PLUGIN = "email"
LOGIN, PASSWORD = "mailer", "s3cret-Pa55word!x"
SUBJECT = "您的积分即将过期 · 贝贝母婴"
BODY = "亲爱的会员:\n\n您有 120 积分将于 3 月 1 日过期,欢迎到店使用。\n<不要忘记>"
SECRETS = "/api/v1/tenant/plugins/email/secrets"


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp(username=LOGIN, password=PASSWORD) as server:
        yield server


def _config(smtp: FakeSmtp, **extra: Any) -> dict[str, Any]:
    return {
        "host": smtp.host,
        "port": smtp.port,
        "security": "none",
        "username": LOGIN,
        "from_address": "hello@bloom.example",
        "from_name": "贝贝母婴 Bloom",
        "timeout": 5,
    } | extra


async def _set_up(client, t, enable, smtp, password=PASSWORD, **extra):  # type: ignore[no-untyped-def]
    await enable(t, PLUGIN, config=_config(smtp, **extra))
    r = await client.put(f"{SECRETS}/password", json={"value": password}, headers=t.hq())
    assert r.status_code == 200, r.text
    return r


async def _connector(host, t) -> tuple[ChannelConnector, PluginContext]:  # type: ignore[no-untyped-def]
    """The connector as the messaging pipeline finds it: through the plugin host, for the
    plugins enabled in the chain, with the chain's merged configuration."""
    offered = await host.contributed("channels", t.id, None)
    config = (await host.enabled_plugins(t.id, None))[PLUGIN]
    return offered["email.email"], PluginContext(PLUGIN, t.id, None, config)


def _message(to: str = "mum@example.com", **extra: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": f"{uuid.uuid4()}:email",  # as the messaging pipeline makes it
        "tenant_id": str(uuid.uuid4()),
        "store_id": None,
        "member_id": str(uuid.uuid4()),
        "channel": "email",
        "to": to,
        "purpose": "points_expiring",
        "template": "points_expiring",
        "locale": "zh-CN",
        "subject": SUBJECT,
        "body": BODY,
        "html": "<p>亲爱的会员:您有 <b>120</b> 积分将于 3 月 1 日过期。</p>",
    }
    return OutboundMessage(**(fields | extra))


async def test_a_message_arrives_with_both_parts_and_its_headers(
    smtp, nestpoint_host, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t = nestpoint_tenant
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp)
    connector, plugin = await _connector(nestpoint_host, t)
    assert (connector.address, connector.consent, connector.idempotent) == ("email", "email", False)
    message = _message()

    receipt = await connector.send(message, plugin)

    assert receipt.accepted, receipt
    assert not receipt.retry
    [received] = smtp.messages
    assert received.login == LOGIN  # logged in with the secret
    assert (received.mail_from, received.rcpt_tos) == ("hello@bloom.example", ["mum@example.com"])
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")  # 7-bit on the wire
    assert "Subject: =?utf-8?" in raw_headers  # RFC 2047
    email = received.message
    assert email["Subject"] == SUBJECT  # decoded
    assert email["From"].addresses[0].display_name == "贝贝母婴 Bloom"
    assert email["From"].addresses[0].addr_spec == "hello@bloom.example"
    assert email["To"] == "mum@example.com"
    assert email["X-Nestpoint-Message"] == message.message_id
    left = message.message_id.replace(":", ".")
    assert email["Message-ID"].strip() == f"<{left}@bloom.example>"
    assert receipt.provider_message_id == email["Message-ID"].strip()
    assert email.get_content_type() == "multipart/alternative"
    text, html = email.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == BODY
    assert html.get_content_type() == "text/html"
    assert "<b>120</b>" in html.get_content()

    # The same message again (a retry) has the same Message-ID: a duplicate is recognisable.
    again = await connector.send(message, plugin)
    assert again.provider_message_id == receipt.provider_message_id
    assert smtp.messages[1].message["Message-ID"] == email["Message-ID"]
    assert smtp.messages[1].message["X-Nestpoint-Message"] == message.message_id


async def test_without_an_html_part_the_text_becomes_an_escaped_page(
    smtp, nestpoint_host, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t = nestpoint_tenant
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp)
    connector, plugin = await _connector(nestpoint_host, t)

    receipt = await connector.send(_message(html=""), plugin)

    assert receipt.accepted, receipt
    page = smtp.messages[0].message.get_body(("html",)).get_content()
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="zh-CN">' in page
    assert "<p>亲爱的会员:</p>" in page  # a paragraph per blank line
    assert "&lt;不要忘记&gt;" in page  # the text is escaped
    assert "<不要忘记>" not in page


async def test_a_wrong_password_is_refused_for_good_and_never_shown(
    smtp, nestpoint_host, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t = nestpoint_tenant
    wrong = "not-the-password-123"
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp, password=wrong)
    connector, plugin = await _connector(nestpoint_host, t)

    receipt = await connector.send(_message(), plugin)

    assert (receipt.accepted, receipt.retry) == (False, False)
    assert "535" in receipt.detail
    assert wrong not in repr(receipt)
    assert smtp.messages == []
    assert smtp.failed_logins >= 1


async def test_refusals_map_to_retry_or_fall_back(
    smtp, nestpoint_host, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t = nestpoint_tenant
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp)
    connector, plugin = await _connector(nestpoint_host, t)
    smtp.refuse("greylisted@example.com", 451)
    smtp.refuse("gone@example.com", 550)

    later = await connector.send(_message("greylisted@example.com"), plugin)
    never = await connector.send(_message("gone@example.com"), plugin)

    assert (later.accepted, later.retry) == (False, True)
    assert "451" in later.detail
    assert (never.accepted, never.retry) == (False, False)
    assert "550" in never.detail
    assert "gone@example.com" not in never.detail  # the server's text is not kept
    assert smtp.messages == []


async def test_a_server_that_is_down_is_tried_again_later(
    smtp, nestpoint_host, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t = nestpoint_tenant
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp)
    connector, plugin = await _connector(nestpoint_host, t)
    smtp.stop()

    receipt = await connector.send(_message(), plugin)

    assert (receipt.accepted, receipt.retry) == (False, True)
    assert PASSWORD not in repr(receipt)


async def test_a_bad_address_or_a_missing_setting_sends_nothing(
    smtp, nestpoint_host, nestpoint_make_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t = await nestpoint_make_tenant(("S1",))
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp)
    connector, plugin = await _connector(nestpoint_host, t)
    for bad in (
        "not-an-address",
        "a b@example.com",
        "x@example.com\r\nBcc: y@example.com",
        "@x.cn",
    ):
        receipt = await connector.send(_message(bad), plugin)
        assert (receipt.accepted, receipt.retry, receipt.detail) == (
            False,
            False,
            "not an e-mail address",
        ), bad

    # A login without its password, or no server at all: the chain's to fix, no retry.
    r = await nestpoint_client.delete(f"{SECRETS}/password", headers=t.hq())
    assert r.status_code == 200, r.text
    receipt = await connector.send(_message(), plugin)
    assert (receipt.accepted, receipt.retry) == (False, False)
    assert "password" in receipt.detail
    bare = await email_send(_message(), PluginContext(PLUGIN, t.id, None, {}))
    assert (bare.accepted, bare.retry) == (False, False)
    assert "not configured" in bare.detail
    assert smtp.messages == []


async def test_starttls_is_required_when_configured(
    smtp, nestpoint_host, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    """A server that does not offer STARTTLS never gets the password or the mail in clear."""
    t = nestpoint_tenant
    await _set_up(nestpoint_client, t, nestpoint_enable_plugin, smtp, security="starttls")
    connector, plugin = await _connector(nestpoint_host, t)

    receipt = await connector.send(_message(), plugin)

    assert (receipt.accepted, receipt.retry) == (False, False)
    assert "does not offer" in receipt.detail
    assert smtp.messages == []
    assert smtp.failed_logins == 0


async def test_the_password_is_write_only(
    smtp, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    answer = await _set_up(client, t, nestpoint_enable_plugin, smtp)
    assert PASSWORD not in answer.text
    assert {s["name"]: s["set"] for s in answer.json()["items"]} == {"password": True}
    for path in ("/api/v1/tenant/plugins/email", SECRETS, "/api/v1/tenant/plugins"):
        r = await client.get(path, headers=t.hq())
        assert r.status_code == 200, r.text
        assert PASSWORD not in r.text, path
    r = await client.get(SECRETS, headers=t.store("S1"))
    assert r.status_code == 403  # HQ only
    # The password is no configuration field: the configuration is readable by more keys.
    r = await client.put(
        "/api/v1/tenant/plugins/email",
        json={"config": {"password": PASSWORD}},
        headers=t.hq(),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config.password"]
    assert PASSWORD not in r.text


async def test_the_configuration_is_checked_naming_the_field(nestpoint_tenant, nestpoint_client):
    t, client = nestpoint_tenant, nestpoint_client
    for field, value in (
        ("security", "ssl"),
        ("from_address", "bloom"),
        ("host", "smtp://mail.example.com"),
        ("port", 70000),
        ("from_name", "Bloom\r\nBcc: x@example.com"),
    ):
        r = await client.put(
            "/api/v1/tenant/plugins/email",
            json={"enabled": True, "config": {field: value}},
            headers=t.hq(),
        )
        assert r.status_code == 422, (field, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [f"config.{field}"]


# ---- without a database


@pytest.mark.parametrize(
    ("address", "normalised"),
    [
        ("mum@example.com", "mum@example.com"),
        ("first.last+tag@mail.example.cn", "first.last+tag@mail.example.cn"),
        ("mum@例子.中国", "mum@xn--fsqu00a.xn--fiqs8s"),
        ("妈妈@example.com", None),
        ("mum@localhost", None),
        ("mum@example.123", None),
        ("mum@@example.com", None),
        ("<mum@example.com>", None),
        ("mum@exa_mple.com", None),
        ("." + "a" * 70 + "@example.com", None),
    ],
)
def test_address_shapes(address: str, normalised: str | None) -> None:
    assert normalise_address(address) == normalised


@pytest.mark.parametrize(
    ("error", "retry", "code"),
    [
        (SMTPResponseException(421, "busy"), True, "421"),
        (SMTPResponseException(554, "rejected"), False, "554"),
        (SMTPConnectError("connection refused"), True, "SMTPConnectError"),
        (SMTPReadTimeoutError("timed out"), True, "SMTPReadTimeoutError"),
        (ConnectionResetError(), True, "ConnectionResetError"),
        (SMTPNotSupported("no SMTPUTF8"), False, "does not offer"),
        (SMTPException("SMTP STARTTLS extension not supported by server."), False, "not offer"),
    ],
)
def test_failures_map_to_receipts(error: Exception, retry: bool, code: str) -> None:
    receipt = outcome_of(error)
    assert (receipt.accepted, receipt.retry) == (False, retry)
    assert code in receipt.detail


def test_odd_message_ids_still_make_stable_headers() -> None:
    odd = "消息 1\r\nBcc: x@example.com"
    first = message_id_header(odd, "hello@bloom.example")
    assert first == message_id_header(odd, "hello@bloom.example")
    assert first.startswith("<sha256-")
    assert first.endswith("@bloom.example>")
    assert header_id(odd).startswith("sha256-")
    assert header_id("0b6c…:email") != header_id("0b6c…:sms")


def test_a_subject_on_several_lines_becomes_one() -> None:
    email = build_email(
        _message(subject="积分提醒\r\nBcc: x@example.com"),
        to="mum@example.com",
        from_address="hello@bloom.example",
    )
    assert email["Subject"] == "积分提醒 Bcc: x@example.com"
    assert "Bcc" not in [name for name, _ in email.items()]
