"""The public extension API's functions the surveys plugin added to the core
(``nestpoint.plugins.api``): ``member_ids``, ``add_member_tags`` and ``question_types``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from nestpoint.plugins.api import (
    Invalid,
    NotFound,
    PluginContext,
    add_member_tags,
    member_ids,
    question_types,
)


async def _member(client: Any, t: Any, tags: list[str]) -> uuid.UUID:
    body = {"phone": f"137{uuid.uuid4().int % 100_000_000:08d}", "tags": tags}
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


async def test_member_ids_pages_through_the_chains_active_members_by_tag(
    nestpoint_make_tenant, nestpoint_client
):
    client = nestpoint_client
    t, other = await nestpoint_make_tenant(), await nestpoint_make_tenant()
    under = await _member(client, t, ["a_b", "vip"])
    cross = await _member(client, t, ["axb"])  # "_" is no wildcard: not an "a_b" member
    chinese = await _member(client, t, ["早教意向"])
    plain = await _member(client, t, [])
    quoted = await _member(client, t, ['say"hi'])
    await _member(client, other, ["a_b"])  # another chain's
    context = PluginContext("surveys", t.id, None, {})
    async with context.session() as db:
        everyone = await member_ids(db)
        assert everyone == sorted([under, cross, chinese, plain, quoted])
        assert await member_ids(db, tags=["a_b"]) == [under]
        assert await member_ids(db, tags=["早教意向"]) == [chinese]
        assert await member_ids(db, tags=['say"hi']) == [quoted]
        assert await member_ids(db, tags=["a_b", "axb"]) == sorted([under, cross])
        assert await member_ids(db, tags=["a%"]) == []
        pages, after = [], None
        while page := await member_ids(db, after=after, limit=2):
            pages.append(page)
            after = page[-1]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [m for p in pages for m in p] == everyone
        with pytest.raises(ValueError, match="limit"):
            await member_ids(db, limit=0)


async def test_add_member_tags_is_idempotent_audited_and_bounded(
    nestpoint_tenant, nestpoint_client
):
    t, client = nestpoint_tenant, nestpoint_client
    member = await _member(client, t, ["vip"])
    context = PluginContext("surveys", t.id, None, {})
    async with context.session() as db:
        tags = await add_member_tags(db, context, member, ["interested_early_education", "vip"])
    assert tags == ["interested_early_education", "vip"]
    async with context.session() as db:  # again: nothing changes, nothing is audited
        assert await add_member_tags(db, context, member, ["vip"]) == tags
    r = await client.get(f"/api/v1/members/{member}", headers=t.hq())
    assert r.json()["tags"] == tags
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    entries = [e for e in r.json()["items"] if e["action"] == "member.tags_added"]
    assert [(e["actor_id"], e["subject_id"], e["changes"]) for e in entries] == [
        ("plugin:surveys", str(member), {"tags": ["interested_early_education"]})
    ]
    for bad, field in (([" "], "tags.0"), (["x" * 33], "tags.0"), (["ok", "\x00"], "tags.1")):
        async with context.session() as db:
            with pytest.raises(Invalid) as refused:
                await add_member_tags(db, context, member, bad)
        assert refused.value.errors[0].field == field
    async with context.session() as db:
        with pytest.raises(Invalid) as refused:
            await add_member_tags(db, context, member, [f"t{n}" for n in range(49)])
    assert refused.value.errors[0].field == "tags"  # 2 + 49 > 50: nothing added
    async with context.session() as db:
        assert len(await add_member_tags(db, context, member, [f"t{n}" for n in range(48)])) == 50
        with pytest.raises(NotFound):
            await add_member_tags(db, context, uuid.uuid4(), ["x"])


async def test_question_types_are_those_of_the_plugins_enabled_here(
    nestpoint_tenant, nestpoint_enable_plugin
):
    t = nestpoint_tenant
    chain = PluginContext("surveys", t.id, None, {})
    store = PluginContext("surveys", t.id, t.stores["S1"], {})
    assert await question_types(chain) == {}
    await nestpoint_enable_plugin(t, "surveys")
    await nestpoint_enable_plugin(t, "babycare", store="S2")
    built_in = {f"surveys.{k}" for k in ("single", "multiple", "rating", "nps", "text")}
    assert set(await question_types(store)) == built_in  # babycare is not on at S1
    # The chain's context (HQ, a public link, a job): the plugins on anywhere in the chain.
    found = await question_types(chain)
    assert set(found) == built_in | {"babycare.baby_stage", "babycare.sleep_hours"}
    assert found["surveys.nps"].score is not None
