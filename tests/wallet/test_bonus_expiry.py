"""Bonus expiry (赠送金有效期): only where the chain's rule says so, only the bonus, only
what is left of it; unspendable from its date even before the hourly job takes it back; the
job writes one ``expire`` entry per member and is idempotent."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from nestpoint.db import utcnow
from nestpoint.wallet import service
from nestpoint.wallet.models import WalletLot
from payments.test_payments import in_tenant
from wallet.test_wallet import derivable, entries, line, paying, set_rules, topped, wallet

RULES = {"bonus_tiers": [{"threshold_fen": 100_000, "bonus_fen": 10_000}], "bonus_valid_days": 30}


async def _age_bonus(t: Any, member_id: str, days: int) -> None:
    """Move the member's bonus lots' date ``days`` into the past (time passing)."""

    async def work(session: Any) -> None:
        lots = (
            await session.scalars(
                select(WalletLot).where(
                    WalletLot.member_id == uuid.UUID(member_id), WalletLot.bucket == "bonus"
                )
            )
        ).all()
        for lot in lots:
            assert lot.expires_at is not None
            await session.execute(update(WalletLot).where(WalletLot.id == lot.id).values(
                expires_at=lot.expires_at - timedelta(days=days)))  # fmt: skip

    await in_tenant(t.id, work)


async def _expire(t: Any) -> int:
    return await in_tenant(t.id, lambda s: service.expire_bonus(s))


async def test_bonus_expires_after_the_chains_days_and_only_the_bonus(  # type: ignore[no-untyped-def]
    client, make_tenant, enrol
) -> None:
    t = await make_tenant()
    await set_rules(client, t, RULES)
    member = str((await enrol(t.hq()))["id"])
    await topped(client, t, member, 100_000)
    # Some bonus is spent first (principal first, so spend past it): 100,000 + 4,000.
    r = await client.post("/api/v1/orders", json=paying(member, 104_000, [line(104_000)]),
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    assert await _expire(t) == 0  # nothing due yet
    await _age_bonus(t, member, 31)
    # Past its date the bonus is no longer spendable, before the job has run.
    r = await client.post("/api/v1/orders", json=paying(member, 1, [line(1)]), headers=t.hq())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "payment.stored_value_fen"
    assert (await wallet(client, t, member))["bonus_fen"] == 6_000  # until the job takes it
    assert await _expire(t) == 1
    assert await _expire(t) == 0  # idempotent
    got = await derivable(client, t, member)
    assert (got["principal_fen"], got["bonus_fen"]) == (0, 0)
    expired = [e for e in await entries(client, t, member) if e["kind"] == "expire"]
    assert [(e["principal_fen"], e["bonus_fen"]) for e in expired] == [(0, -6_000)]


async def test_without_the_rule_bonus_never_expires(client, make_tenant, enrol) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    await set_rules(client, t, RULES | {"bonus_valid_days": None})
    member = str((await enrol(t.hq()))["id"])
    await topped(client, t, member, 100_000)

    async def far_future(session: Any) -> int:
        return await service.expire_bonus(session, utcnow() + timedelta(days=36500))

    assert await in_tenant(t.id, far_future) == 0
    assert (await wallet(client, t, member))["bonus_fen"] == 10_000


async def test_the_rule_is_part_of_the_chains_rules(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    await set_rules(client, t, RULES)
    r = await client.get("/api/v1/wallet/rules", headers=t.hq())
    assert r.json()["bonus_valid_days"] == 30
    r = await client.put("/api/v1/wallet/rules", json=RULES | {"bonus_valid_days": 0},
                         headers=t.hq())  # fmt: skip
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "bonus_valid_days"
