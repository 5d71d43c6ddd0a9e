"""Fixtures for the stored-value tests: members through the API (as the loyalty tests)."""

from __future__ import annotations

from typing import Any

import pytest

from loyalty.helpers import new_phone


@pytest.fixture
def enrol(client):  # type: ignore[no-untyped-def]
    async def make(headers: dict[str, str], **extra: Any) -> dict[str, Any]:
        body = {"phone": new_phone(), "name": "王芳"} | extra
        r = await client.post("/api/v1/members", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    return make
