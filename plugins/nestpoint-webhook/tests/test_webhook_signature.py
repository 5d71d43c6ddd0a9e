"""The signature recipe receivers copy, the address policy and the event filter (no
database, no network)."""

from __future__ import annotations

import ipaddress

import pytest
from nestpoint_webhook.delivery import wanted
from nestpoint_webhook.destinations import WebhookSettings, literal_address, refusal
from nestpoint_webhook.verify import sign, signature_header, verify_signature
from pydantic import ValidationError

SECRET = "whsec-unit"  # noqa: S105 - a test value
BODY = b'{"id":"e-1","type":"member.joined","payload":{"member_id":"m-1"}}'
NOW = 1_780_000_000


def _headers(secret: str = SECRET, at: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {
        "Nestpoint-Timestamp": str(at),
        "Nestpoint-Signature": signature_header(secret, at, body),
    }


def test_the_signature_is_stripes_scheme() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert signature_header(SECRET, NOW, BODY) == f"t={NOW},v1={expected}"


def test_a_genuine_request_verifies_whatever_the_header_case() -> None:
    assert verify_signature(SECRET, _headers(), BODY, now=NOW + 10)
    lower = {k.lower(): v for k, v in _headers().items()}
    assert verify_signature(SECRET, lower, BODY, now=NOW - 10)
    # Rotation: the new and the old secret both accepted for a while.
    assert verify_signature(["new-secret", SECRET], _headers(), BODY, now=NOW)


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (_headers(), BODY + b" ", NOW),  # tampered body
        (_headers(), BODY, NOW + 301),  # too old
        (_headers(), BODY, NOW - 301),  # from the future
        (_headers("wrong"), BODY, NOW),  # another secret
        ({}, BODY, NOW),  # unsigned
        ({"Nestpoint-Signature": f"t={NOW}"}, BODY, NOW),  # no v1
        ({"Nestpoint-Signature": "v1=abc,t=x"}, BODY, NOW),  # malformed t
        ({"Nestpoint-Signature": f"t=١٢٣,v1={sign(SECRET, NOW, BODY)}"}, BODY, NOW),
        ({**_headers(), "Nestpoint-Timestamp": str(NOW + 1)}, BODY, NOW),  # disagreeing
        ({"Nestpoint-Signature": f"t={NOW},v1=é"}, BODY, NOW),  # not hex
    ],
)
def test_what_a_receiver_refuses(headers: dict[str, str], body: bytes, now: int) -> None:
    assert not verify_signature(SECRET, headers, body, now=now)


def test_the_tolerance_is_the_receivers_choice() -> None:
    assert verify_signature(SECRET, _headers(), BODY, tolerance=3600, now=NOW + 3000)
    assert not verify_signature(SECRET, _headers(), BODY, tolerance=60, now=NOW + 61)


NONE = WebhookSettings(allowed_networks=())


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address checked, not bound
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # documentation (TEST-NET-1)
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
    ],
)
def test_what_is_not_a_public_destination(address: str, reason: str | None) -> None:
    refused = refusal(ipaddress.ip_address(address), NONE)
    assert (refused is None) == (reason is None), refused
    if reason is not None:
        assert reason in str(refused)


def test_the_operator_allows_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTPOINT_WEBHOOK_ALLOWED_NETWORKS", " 10.20.0.0/16 , fd00::/8,")
    settings = WebhookSettings()
    assert settings.allowed_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert refusal(ipaddress.ip_address("10.20.1.2"), settings) is None
    assert refusal(ipaddress.ip_address("::ffff:10.20.1.2"), settings) is None
    assert refusal(ipaddress.ip_address("fd00::5"), settings) is None
    assert "private" in str(refusal(ipaddress.ip_address("10.21.0.1"), settings))
    assert "link-local" in str(refusal(ipaddress.ip_address("169.254.169.254"), settings))
    monkeypatch.setenv("NESTPOINT_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ValidationError):
        WebhookSettings()


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("[::1]", "::1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("hooks.example.com", None),
        ("deadbeef.example", None),
    ],
)
def test_ip_literals_in_every_spelling(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == address


def test_the_event_filter_patterns() -> None:
    assert wanted("member.joined", [])
    assert wanted("points.earned", ["points.*"])
    assert not wanted("order.paid", ["points.*", "member.joined"])
    assert wanted("delivery.status_changed", ["*"])
    assert not wanted("webhook.refused", [])  # its own events: never relayed (no loop)
