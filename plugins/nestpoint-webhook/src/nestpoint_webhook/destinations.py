"""Where a webhook may go: public internet addresses, and the operator's own networks.

A chain's HQ chooses the URL; the requests leave from the platform's workers, inside the
operator's network. So the plugin refuses, unless the operator allows them, destinations
on private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local (169.254/16,
the cloud metadata service 169.254.169.254 included, fe80::/10), shared (100.64/10),
multicast, reserved and unspecified addresses, and IPv6 forms that embed such an IPv4
address (mapped, 6to4, Teredo, NAT64).

It checks twice: when HQ saves the URL (an IP literal, ``localhost``) and when it sends,
after resolving the host name, every address it resolves to; the request then connects to
the address that was checked (not to a second resolution, which a DNS rebinding answer
could point elsewhere), with the URL's host kept as ``Host`` and for TLS.

The operator's setting (environment of the API and worker processes)::

    NESTPOINT_WEBHOOK_ALLOWED_NETWORKS=10.20.0.0/16,fd00:1234::/32

lists networks that are allowed even though they are not public (comma-separated CIDRs;
empty by default). Plain ``http://`` is accepted only to those networks.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes that carry an IPv4 address in their last 32 bits.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT


class WebhookSettings(BaseSettings):
    """The operator's settings for the webhook plugin (read from the environment)."""

    model_config = SettingsConfigDict(env_prefix="NESTPOINT_WEBHOOK_", extra="ignore")

    allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = Field(
        default=(),
        description=(
            "Networks a webhook may reach although they are not public (comma-separated "
            "CIDRs, e.g. 10.20.0.0/16): receivers inside the operator's network."
        ),
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            return tuple(ipaddress.ip_network(item, strict=False) for item in items)
        return value


def current_settings() -> WebhookSettings:
    """The settings as the environment says now (cheap; read on every use, so an operator's
    change and a test's monkeypatch apply at once)."""
    return WebhookSettings()


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _not_public(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or ``None`` when it is one."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not public"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = _not_public(inner)
            return None if reason is None else f"{reason} (embedded in IPv6)"
    return None


def _unmapped(address: IPAddress) -> IPAddress:
    """``::ffff:10.0.0.1`` is 10.0.0.1 (that is where a connection to it goes)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_allowed_networks(address: IPAddress, settings: WebhookSettings | None = None) -> bool:
    """Whether the operator allows ``address`` although it may not be public."""
    settings = settings or current_settings()
    address = _unmapped(address)
    return any(address in network for network in settings.allowed_networks)


def refusal(address: IPAddress, settings: WebhookSettings | None = None) -> str | None:
    """Why a webhook may not go to ``address`` (e.g. ``"10.0.0.1 is private"``), or
    ``None`` when it may: a public address, or one in the operator's allowed networks."""
    settings = settings or current_settings()
    if in_allowed_networks(address, settings):
        return None
    address = _unmapped(address)
    reason = _not_public(address)
    return None if reason is None else f"{address} is {reason}"


def host_refusal(host: str, settings: WebhookSettings | None = None) -> str | None:
    """What can be said of a URL's host before resolving it: an IP literal's refusal, and
    ``localhost`` (or ``*.localhost``) as loopback; a name is checked when sending."""
    literal = literal_address(host)
    if literal is not None:
        return refusal(literal, settings)
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        loopback = refusal(ipaddress.IPv4Address("127.0.0.1"), settings)
        return None if loopback is None else f"{host} is loopback"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells out, in any form a resolver accepts as one (``10.0.0.1``,
    ``[::1]``, and the legacy ``127.1``, ``0x7f.1`` or ``2130706433``), else ``None``."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(ch in "0123456789abcdefxABCDEFX." for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
