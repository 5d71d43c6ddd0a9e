"""A member token reaches nothing but the member API: every operation of the OpenAPI
document outside /api/v1/me refuses it (401, 403 or 404, never a 2xx), and, behind the
middleware that refuses it first, every guard of those routes refuses a member actor too.
Inside it, plugins' member routes (/api/v1/me/plugins/...) refuse API keys and never reach
another member's rows, whatever a path names."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

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


# ---------------------------------------------------------------- plugins' member routes

PLUGIN_ME = ME + "/plugins/"
EVERY_DAY = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(1, 8)]


def _slot(days: int, hour: int) -> str:
    day = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=days)).date()
    return datetime(
        day.year, day.month, day.day, hour, tzinfo=ZoneInfo("Asia/Shanghai")
    ).isoformat()


async def _bookable_chain(client: Any, make_tenant: Any) -> Any:
    """A chain with the consultations and classes plugins on at S1, a consultant ``wang``
    and a class session ``music`` there."""
    t = await make_tenant(("S1",))
    for plugin in ("consultations", "classes"):
        r = await client.put(
            f"/api/v1/tenant/plugins/{plugin}/stores/S1", json={"enabled": True}, headers=t.hq()
        )
        assert r.status_code == 200, r.text
    consultant = {"name": "王老师", "weekly": EVERY_DAY}
    r = await client.put(
        "/api/v1/plugins/consultations/consultants/wang", json=consultant, headers=t.store("S1")
    )
    assert r.status_code == 200, r.text
    starts = datetime.now(ZoneInfo("UTC")) + timedelta(days=3)
    session = {
        "title": "亲子音乐",
        "starts_at": starts.isoformat(),
        "capacity": 5,
        "opens_at": (starts - timedelta(days=7)).isoformat(),
    }
    r = await client.put(
        "/api/v1/plugins/classes/sessions/music", json=session, headers=t.store("S1")
    )
    assert r.status_code == 200, r.text
    return t


async def _family(client: Any, t: Any) -> tuple[str, str]:
    born = date.today() - timedelta(days=400)
    body = {
        "phone": f"133{uuid.uuid4().int % 100_000_000:08d}",
        "guardian_consent": {"granted": True, "source": "pos"},
        "children": [{"nickname": "宝宝", "birth_date": str(born)}],
    }
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/members/{r.json()['id']}", headers=t.hq())
    return str(r.json()["id"]), str(r.json()["children"][0]["id"])


def _fill(template: str, code: str, row: str | None) -> str:
    """A path of the template: ``{code}`` the plugin's code, every ``{..._id}`` ``row``."""
    return re.sub(r"\{(\w+)\}", lambda g: code if g.group(1) == "code" else str(row), template)


def _plugin_member_operations(app: Any) -> list[tuple[str, str]]:
    spec = app.openapi_schema.to_schema()
    return [
        (method, template)
        for template, item in spec["paths"].items()
        if template.startswith(PLUGIN_ME)
        for method in ("get", "post", "put", "patch", "delete")
        if method in item
    ]


async def test_plugins_member_routes_never_reach_another_members_rows(
    client: Any, make_tenant: Any, member_token: Any, app: Any
) -> None:
    """Member A offers member B's booking ids (and B's child) to every plugin member
    operation: never a 2xx for a path naming B's row, never B's ids in an answer, and B's
    bookings are untouched."""
    t = await _bookable_chain(client, make_tenant)
    a, _ = await _family(client, t)
    b, b_child = await _family(client, t)
    mine, theirs = await member_token(t, a), await member_token(t, b)
    key = uuid.uuid4().hex
    consult = {"idempotency_key": key, "starts_at": _slot(2, 10)}
    r = await client.post(
        f"{PLUGIN_ME}consultations/consultants/wang/bookings", json=consult, headers=theirs
    )
    assert r.status_code == 201, r.text
    b_rows = [r.json()["id"]]
    seat = {"idempotency_key": key, "child_id": b_child}
    r = await client.post(f"{PLUGIN_ME}classes/sessions/music/bookings", json=seat, headers=theirs)
    assert r.status_code == 201, r.text
    b_rows.append(r.json()["id"])
    secrets = [b, b_child, *b_rows]

    operations = _plugin_member_operations(app)
    assert len(operations) >= 9  # consultations' 5 and classes' 4, at least
    codes = {"consultations": "wang", "classes": "music"}
    # B's key and B's child, in a body the route accepts: the most tempting one.
    bodies = {
        "consultations": {"idempotency_key": key, "starts_at": _slot(2, 11)},
        "classes": {"idempotency_key": key, "child_id": b_child},
    }
    swept = 0
    for method, template in operations:
        plugin = template[len(PLUGIN_ME) :].split("/", 1)[0]
        targets = b_rows if re.search(r"\{\w+_id\}", template) else [None]
        for target in targets:
            path = _fill(template, codes[plugin], target)
            sent = bodies[plugin] if method != "get" else None
            r = await client.request(method.upper(), path, json=sent, headers=mine)
            assert r.status_code < 500, (method, path, r.text)
            if target is not None:
                assert r.status_code == 404, (method, path, r.status_code, r.text)
            answer = r.json()
            if isinstance(answer, dict):
                answer.pop("instance", None)  # a problem echoes the path A sent
            for secret in secrets:
                assert secret not in json.dumps(answer), (method, path, r.text)
            for other_key in (t.hq(), t.store("S1"), {}):
                refused = await client.request(method.upper(), path, json=sent, headers=other_key)
                assert refused.status_code == (403 if other_key else 401), (method, path)
            swept += 1
    assert swept >= 11
    for plugin in ("consultations", "classes"):
        r = await client.get(f"{PLUGIN_ME}{plugin}/bookings", headers=theirs)
        assert [row["status"] for row in r.json()] == ["booked"], r.text
