"""Request id, request logging and API-key authentication, as one ASGI middleware.

For each HTTP request: take a sane ``X-Request-ID`` or make one, echo it on the response,
resolve the API key (``Authorization: Bearer <key>`` or ``X-API-Key``) into the tenant
context and actor for the rest of the request, count it against the key's rate limit
(``nestpoint.api.ratelimit``), and log one line when the response starts. A member token
(``npm_...``) is accepted only under ``/api/v1/me`` (403 elsewhere, before any lookup) and
counts against the member's own limit.
Paths outside ``/api/`` (health, OpenAPI) need no key; the public routes of plugins
(``/public/...``) need none either, nor does the member login (``/member-auth/...``): both
count against a limit per client address instead.

Two layers: :class:`RequestIdMiddleware` wraps the whole application (route middleware
never sees the router's own 404 and 405, and those responses need a request id too), and
:class:`RequestContextMiddleware`, a route middleware, authenticates.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from nestpoint.api.input import path_problem, query_problem
from nestpoint.api.problems import PROBLEM_BASE, PROBLEM_JSON
from nestpoint.api.ratelimit import (
    MEMBER_AUTH_PATH_PREFIX,
    PUBLIC_PATH_PREFIX,
    member_rate_limit,
    public_rate_limit,
    rate_limit,
)
from nestpoint.context import _actor, _tenant, request_id
from nestpoint.db import get_database
from nestpoint.errors import Forbidden, NestpointError, RateLimited, Unauthorized
from nestpoint.memberapi.tokens import is_member_token
from nestpoint.tenancy.auth import authenticate

log = logging.getLogger("nestpoint.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# The member API: the only paths a member token opens (nestpoint.memberapi).
MEMBER_API_PATH = "/api/v1/me"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _presented_key(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return _header(scope, b"x-api-key")


class RequestIdMiddleware:
    """Outermost layer: request id, one log line, and a clean tenant and actor per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        rid_token = request_id.set(rid)
        tenant_token = _tenant.set(None)
        actor_token = _actor.set(_actor.get())
        started = time.perf_counter()
        status: dict[str, Any] = {}

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope["path"],
                    "status": status.get("code"),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            _actor.reset(actor_token)
            _tenant.reset(tenant_token)
            request_id.reset(rid_token)


class RequestContextMiddleware:
    """Route middleware: the API key becomes the request's tenant and actor.

    They are set for the rest of the request (the access log line carries the tenant) and
    reset by :class:`RequestIdMiddleware` when the request ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"].startswith("/api/"):
            try:
                await self._authenticate(scope)
                actor = scope["auth"].actor
                await (member_rate_limit() if actor.kind == "member" else rate_limit()).check(actor)
            except (Unauthorized, Forbidden, RateLimited) as exc:
                await _send_problem(send, scope, exc)
                return
            if bad := path_problem(scope["path"]) or query_problem(scope.get("query_string", b"")):
                await _send_problem(send, scope, bad)
                return
        elif scope["type"] == ScopeType.HTTP and scope["path"].startswith(
            (PUBLIC_PATH_PREFIX, MEMBER_AUTH_PATH_PREFIX)
        ):
            # No key: the plugin's public router (or the member login) finds the tenant by
            # its slug.
            try:
                await public_rate_limit().check_client(scope)
            except RateLimited as exc:
                await _send_problem(send, scope, exc)
                return
            if bad := path_problem(scope["path"]) or query_problem(scope.get("query_string", b"")):
                await _send_problem(send, scope, bad)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> None:
        raw = _presented_key(scope)
        if not raw:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        if is_member_token(raw) and not _member_api(scope["path"]):
            # Before any lookup: a member token opens only the member's own routes.
            raise Forbidden("a member token is accepted only by the member API (/api/v1/me/...)")
        if is_member_token(raw) and (_header(scope, b"authorization") or "")[7:].strip() != raw:
            raise Unauthorized("send the member token as 'Authorization: Bearer <token>'")
        principal = await authenticate(get_database(), raw)
        if principal is None and is_member_token(raw):
            raise Unauthorized("the member token is unknown, revoked or expired: get a new one")
        if principal is None:
            raise Unauthorized("the API key is unknown or revoked")
        _tenant.set(principal.tenant)
        _actor.set(principal.actor)
        scope["auth"] = principal


def _member_api(path: str) -> bool:
    return path == MEMBER_API_PATH or path.startswith(MEMBER_API_PATH + "/")


async def _send_problem(send: Send, scope: Scope, exc: NestpointError) -> None:
    body = json.dumps(
        {
            "type": PROBLEM_BASE + exc.slug,
            "title": exc.title,
            "status": exc.status,
            "detail": exc.detail,
            "instance": scope["path"],
            "request_id": request_id.get(),
            "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
        }
    ).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="nestpoint"'))
    if isinstance(exc, RateLimited):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": exc.status,
        "headers": headers,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
