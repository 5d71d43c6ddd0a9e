"""``localstripe`` (a local fake of part of Stripe's API) as a real process for the tests,
and webhook events signed the way Stripe signs them.

The fake keeps its objects in memory: the tests share one process (started once per run on
a free port) and every test makes its own customers and payments. The application is
pointed at it through ``NESTPOINT_STRIPE_API_BASE``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from served import free_port

TEST_KEY = "sk_test_nestpoint"
# localstripe's test cards (its resources.py): one pays, one is declined when charged.
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"


@dataclass
class LocalStripe:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalStripe:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "localstripe", "--port", str(self.port), "--from-scratch"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"localstripe exited with {self.process.returncode}")
            try:
                if self.get("/v1/balance").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("localstripe did not answer within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, auth=(TEST_KEY, ""), timeout=10)

    def post(self, path: str, data: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + path, data=data, auth=(TEST_KEY, ""), timeout=10)

    def payment_method(self, card: str = CARD_OK) -> str:
        """A card payment method, as Stripe's SDK makes on the member's phone."""
        r = self.post(
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": card,
                "card[exp_month]": "12",
                "card[exp_year]": "2035",
                "card[cvc]": "123",
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def payment_intent(self, intent_id: str) -> dict[str, Any]:
        r = self.get(f"/v1/payment_intents/{intent_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def payment_intents(self) -> list[dict[str, Any]]:
        r = self.get("/v1/payment_intents?limit=100")
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    def send_webhooks_to(self, url: str, secret: str) -> None:
        """Have the fake sign and send its events to ``url`` (a real HTTP server)."""
        r = httpx.post(
            f"{self.url}/_config/webhooks/{uuid.uuid4().hex}",
            data={"url": url, "secret": secret},
            timeout=10,
        )
        assert r.status_code == 200, r.text


def signed_event(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A webhook body and headers signed as Stripe signs them (``t=...,v1=HMAC``)."""
    body = json.dumps(event).encode()
    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), b"%d.%s" % (t, body), hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={t},v1={signature}", "Content-Type": "application/json"}


def event(type_: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """A Stripe event around ``obj`` (for what the fake cannot produce)."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": type_,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
    }
