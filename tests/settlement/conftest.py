"""Fixtures for the settlement tests: a chain with two franchise stores and a direct one,
points usable at once, members through the API, and a settlement clock tests can move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from loyalty.helpers import new_phone
from nestpoint.settlement import service


@pytest.fixture
def enrol(client):  # type: ignore[no-untyped-def]
    async def make(headers: dict[str, str], **extra: Any) -> dict[str, Any]:
        body = {"phone": new_phone(), "name": "王芳"} | extra
        r = await client.post("/api/v1/members", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    return make


@pytest.fixture
def chain(client, make_tenant):  # type: ignore[no-untyped-def]
    """Factory: stores A and B (franchise) and D (direct); points spendable at once."""

    async def make() -> Any:
        t = await make_tenant(("A", "B", "D"))
        for code in ("A", "B"):
            r = await client.patch(
                f"/api/v1/stores/{code}", json={"kind": "franchise"}, headers=t.hq()
            )
            assert r.status_code == 200, r.text
        r = await client.get("/api/v1/loyalty/program", headers=t.hq())
        assert r.status_code == 200, r.text
        program = r.json()
        program.pop("version")
        program["points"]["pending_days"] = 0
        r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
        assert r.status_code == 200, r.text
        return t

    return make


class Clock:
    """The settlement's clock (the ledgers keep the real one): ``at`` moves it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def at(self, moment: datetime) -> None:
        self.monkeypatch.setattr(service, "utcnow", lambda: moment)


@pytest.fixture
def settlement_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)
