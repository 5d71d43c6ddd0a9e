"""``nestpoint member-tokens revoke`` and ``purge``, and the periodic purge."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from commands import nestpoint
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.jobs.registry import PERIODIC_JOBS
from nestpoint.memberapi import actors
from nestpoint.memberapi.models import MemberToken
from nestpoint.memberapi.tokens import hash_token


async def test_revoke_a_members_tokens_from_the_command_line(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    m = await enrol(t.hq())
    token = await member_token(t, m["id"])
    done = await nestpoint("member-tokens", "revoke", "--tenant", t.slug, "--member", m["id"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"revoked 1 token(s) of member {m['id']}"
    assert (await client.get("/api/v1/me", headers=token)).status_code == 401
    unknown = str(uuid.uuid4())
    done = await nestpoint("member-tokens", "revoke", "--tenant", t.slug, "--member", unknown)
    assert done.returncode == 2
    done = await nestpoint("member-tokens", "revoke", "--tenant", t.slug, "--member", "nope")
    assert done.returncode == 2


async def test_purge_deletes_only_long_expired_tokens(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    m = await enrol(t.hq())
    old, live = await member_token(t, m["id"]), await member_token(t, m["id"])
    raw = old["Authorization"].split(" ", 1)[1]
    with tenant_context(t.id):
        async with scoped_session() as session:
            await session.execute(
                update(MemberToken)
                .where(MemberToken.token_hash == hash_token(raw))
                .values(expires_at=utcnow() - timedelta(days=8))
            )
    done = await nestpoint("member-tokens", "purge", "--older-than-days", "7")
    assert done.returncode == 0, done.stderr
    with tenant_context(t.id):
        async with scoped_session() as session:
            left = await session.scalar(select(func.count()).select_from(MemberToken))
    assert left == 1
    assert (await client.get("/api/v1/me", headers=live)).status_code == 200


async def test_the_periodic_job_deletes_long_expired_tokens(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, worker: Any
) -> None:
    assert any(job[0] is actors.purge_tokens_all for job in PERIODIC_JOBS)
    t = await make_tenant()
    m = await enrol(t.hq())
    old, recent = await member_token(t, m["id"]), await member_token(t, m["id"])
    with tenant_context(t.id):
        async with scoped_session() as session:
            for headers, days in ((old, 8), (recent, 6)):
                await session.execute(
                    update(MemberToken)
                    .where(MemberToken.token_hash == hash_token(headers["Authorization"][7:]))
                    .values(expires_at=utcnow() - timedelta(days=days))
                )
    actors.purge_tokens_all.send()
    left = 2
    for _ in range(200):
        await asyncio.sleep(0.05)
        with tenant_context(t.id):
            async with scoped_session() as session:
                left = await session.scalar(select(func.count()).select_from(MemberToken))
        if left == 1:
            break
    assert left == 1  # the one expired 6 days ago stays a week
