"""Liveness and readiness probes (no API key; Kubernetes calls them)."""

from __future__ import annotations

import asyncio
import logging

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from nestpoint import cache
from nestpoint.db import get_database
from nestpoint.jobs import broker as jobs_broker

log = logging.getLogger("nestpoint.health")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@get(
    "/healthz",
    tags=["health"],
    summary="The process is up",
    operation_id="getLiveness",
    description="Liveness probe: no API key, touches no dependency.",
    include_in_schema=True,
)
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    tags=["health"],
    summary="The database answers (and whether the broker does)",
    operation_id="getReadiness",
    description=(
        "Readiness probe: no API key. 503 while the database does not answer. A broker that "
        "does not answer leaves the process ready (`status: degraded`, `checks.broker: "
        "unavailable`): orders and every other request still succeed, their events wait in "
        "the outbox, and taking every API replica out of service for it would stop the tills."
    ),
    responses={503: ResponseSpec(data_container=Health, description="The database is down")},
)
async def readyz() -> Response[Health]:
    checks: dict[str, str] = {}
    try:
        async with get_database().engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("database not ready", exc_info=exc)
        checks["database"] = "unavailable"
    try:
        ok = await asyncio.to_thread(jobs_broker.ping)
        checks["broker"] = "ok" if ok else "unavailable"
    except Exception as exc:
        log.warning("broker not ready", exc_info=exc)
        checks["broker"] = "unavailable"
    if checks["database"] != "ok":
        return Response(Health(status="unavailable", checks=checks), status_code=503)
    status = "ok" if checks["broker"] == "ok" else "degraded"
    return Response(Health(status=status, checks=checks), status_code=200)


class CacheRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    size: int
    max_size: int
    ttl_seconds: float
    hits: int
    misses: int
    hit_rate: float


@get(
    "/cachez",
    tags=["health"],
    summary="This process's caches: size, bound, TTL, hits and misses",
    operation_id="listCaches",
    description=(
        "No API key. Counters since the process started, for this process only; no cached content, "
        "no tenant data."
    ),
)
async def cachez() -> list[CacheRead]:
    return [CacheRead.model_validate(c) for c in cache.stats()]
