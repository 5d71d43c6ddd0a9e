"""The till's load: threads posting orders, each with its own receipt number, recording
every attempt's outcome (a status, or the connection error), and retrying what did not get
a 2xx with the same body, as a till does."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from loyalty.helpers import order_body

ORDERS = "/api/v1/orders"


@dataclass(frozen=True)
class Attempt:
    external_id: str
    started: float  # time.time()
    ended: float
    status: int | None  # None: no answer (refused, reset, timed out)
    error: str = ""
    content_type: str = ""
    replayed: bool = False
    order_id: str | None = None
    body: str = ""  # the answer's body when it was not a 2xx

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Till:
    store_code: str
    headers: dict[str, str]


@dataclass
class Load:
    url: Callable[[], str]
    tills: list[Till]
    members: list[str]
    threads: int = 3
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])  # receipts of this load
    pause: float = 0.1  # between a till's orders
    pause_after_failure: float = 0.5  # a till that got no 2xx waits a little longer
    bodies: dict[str, tuple[Till, dict[str, Any]]] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    # ---- running

    def start(self) -> Load:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"till-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in self._workers), "a load thread did not stop"

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(60, connect=5)) as client:
            while not self._stop.is_set():
                attempt = self.post(client, self._new_order())
                time.sleep(self.pause if attempt.ok else self.pause_after_failure)

    def _new_order(self) -> str:
        with self._lock:
            n = next(self._numbers)
        till = self.tills[n % len(self.tills)]
        member = self.members[n % len(self.members)]
        fen = 30_000 + (n % 5) * 10_000  # 300 to 700 yuan: members climb the tiers
        line = {
            "sku": f"SKU-{n % 7}",
            "name": "Formula",
            "category": "feeding",
            "quantity": 1,
            "unit_price_fen": fen,
            "paid_fen": fen,
        }
        external_id = f"{self.prefix}-{n:06d}"
        body = order_body(
            external_id, member={"id": member}, lines=[line], store_code=till.store_code
        )
        body["paid_at"] = datetime.now(UTC).isoformat()
        with self._lock:
            self.bodies[external_id] = (till, body)
        return external_id

    def post(self, client: httpx.Client, external_id: str) -> Attempt:
        till, body = self.bodies[external_id]
        with self._lock:
            self.in_flight += 1
        started = time.time()
        try:
            r = client.post(f"{self.url()}{ORDERS}", json=body, headers=till.headers)
        except httpx.HTTPError as exc:
            attempt = Attempt(
                external_id, started, time.time(), None, f"{type(exc).__name__}: {exc}"
            )
        else:
            ok = 200 <= r.status_code < 300
            attempt = Attempt(
                external_id,
                started,
                time.time(),
                r.status_code,
                content_type=r.headers.get("content-type", ""),
                replayed=r.headers.get("idempotent-replayed") == "true",
                order_id=r.json()["id"] if ok else None,
                body="" if ok else r.text[:2000],
            )
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.attempts.append(attempt)
        return attempt

    # ---- reading

    def answered(self, since: float = 0.0) -> int:
        """Orders answered 2xx that were sent at or after ``since``."""
        with self._lock:
            return sum(1 for a in self.attempts if a.ok and a.started >= since)

    def wait_answered(self, count: int, since: float, timeout: float = 90) -> None:
        """Wait until ``count`` orders sent since ``since`` got a 2xx. A 500 is never right:
        the first one fails the test at once, with the answer."""
        deadline = time.monotonic() + timeout
        while self.answered(since) < count:
            with self._lock:
                errors = [a for a in self.attempts if a.status == 500]
            assert not errors, f"an order answered 500: {errors[0]}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the load got {self.answered(since)} of {count} orders answered within "
                    f"{timeout:g} s; last attempts: {self.attempts[-5:]}"
                )
            time.sleep(0.05)

    def unanswered(self) -> list[str]:
        """Orders that never got a 2xx."""
        with self._lock:
            done = {a.external_id for a in self.attempts if a.ok}
            return sorted(set(self.bodies) - done)

    def retry_unanswered(self, timeout: float = 90) -> list[Attempt]:
        """Send every order that got no 2xx again, with the same body, until each gets one;
        returns the retries' attempts."""
        retries: list[Attempt] = []
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=httpx.Timeout(60, connect=5)) as client:
            for external_id in self.unanswered():
                while True:
                    attempt = self.post(client, external_id)
                    retries.append(attempt)
                    if attempt.ok:
                        break
                    assert time.monotonic() < deadline, f"no 2xx for {external_id}: {attempt}"
                    time.sleep(0.5)
        return retries
