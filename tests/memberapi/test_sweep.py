"""A member token reaches nothing but the member API: every operation of the OpenAPI
document outside /api/v1/me refuses it (401, 403 or 404, never a 2xx), and, behind the
middleware that refuses it first, every guard of those routes refuses a member actor too."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace
from typing import Any

from litestar.handlers import HTTPRouteHandler

from nestpoint.context import acting_as
from nestpoint.errors import Forbidden, NotFound
from nestpoint.memberapi.tokens import member_actor

ME = "/api/v1/me"


def _outside_me(path: str) -> bool:
    return path.startswith("/api/") and path != ME and not path.startswith(ME + "/")


async def test_every_operation_outside_me_refuses_a_member_token(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, app: Any
) -> None:
    t = await make_tenant()
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    spec = app.openapi_schema.to_schema()
    swept = 0
    for template, item in spec["paths"].items():
        if not _outside_me(template):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            if method not in item:
                continue
            # Path values name the member's own rows where they can: the most tempting case.
            path = re.sub(
                r"\{(\w+)\}",
                lambda g: m["id"] if g.group(1) == "member_id" else str(uuid.uuid4()),
                template,
            )
            body = {"member_id": m["id"]} if method in ("post", "put", "patch") else None
            r = await client.request(method.upper(), path, json=body, headers=mine)
            assert r.status_code in (401, 403, 404), (method, template, r.status_code, r.text)
            swept += 1
    assert swept > 100
    # The token still works where it belongs.
    assert (await client.get(ME, headers=mine)).status_code == 200


async def test_every_guard_outside_me_refuses_a_member_actor(app: Any) -> None:
    """The second wall: were the middleware's check gone, the routes' own guards (which
    accept only tenant, store or platform keys; plugins' routes answer 404 to any other
    actor) would refuse a member too."""
    checked = 0
    connection: Any = SimpleNamespace(path_params={}, query_params={}, headers={}, scope={})
    for route in app.routes:
        if not _outside_me(route.path):
            continue
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler) or handler.http_methods <= {
                "OPTIONS",
                "HEAD",
            }:
                continue  # Litestar's own answer to OPTIONS
            refused = False
            with acting_as(member_actor(uuid.uuid4())):
                for guard in handler.resolve_guards():
                    try:
                        await guard(connection, handler)
                    except (Forbidden, NotFound):  # plugins' routes: 404 to all but keys
                        refused = True
                        break
                    except Exception:  # noqa: S112 - another guard's check (a 404 first): not ours
                        continue
            assert refused, f"{route.path} {sorted(handler.http_methods)} lets a member through"
            checked += 1
    assert checked > 100
