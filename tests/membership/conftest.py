"""Fixtures for the paid-membership tests: members and the programme through the API."""

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


@pytest.fixture
def set_program(client):  # type: ignore[no-untyped-def]
    async def put(headers: dict[str, str], **changes: Any) -> dict[str, Any]:
        r = await client.get("/api/v1/loyalty/program", headers=headers)
        assert r.status_code == 200, r.text
        program = r.json()
        program.pop("version")
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(program.get(key), dict):
                program[key] = program[key] | value
            else:
                program[key] = value
        r = await client.put("/api/v1/loyalty/program", json=program, headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    return put
