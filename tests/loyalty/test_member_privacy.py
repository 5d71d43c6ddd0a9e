"""Children's data and identities: encrypted at rest, dates behind members:pii, consent erasure."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from loyalty.helpers import order_body
from loyalty.support import audit, member, post_order, without_ids
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.members import pii
from nestpoint.members.models import Child, Member, MemberIdentity
from nestpoint.members.service import rotate_keys
from nestpoint.settings import get_settings

CONSENT = {"granted": True, "source": "pos"}


def _today() -> datetime:
    return datetime.now(UTC)


async def _dump(tenant_id: uuid.UUID, *tables: str) -> str:
    """Every value of these tables for one tenant, as one string."""
    values: list[str] = []
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            for table in tables:
                rows = (await session.execute(text(f"SELECT * FROM {table}"))).mappings().all()
                values += [str(v) for row in rows for v in row.values() if v is not None]
    return " ".join(values)


async def test_children_and_identities_are_not_stored_in_clear(client, make_tenant, enrol):
    t = await make_tenant()
    token = uuid.uuid4().hex[:10]
    nickname, card, openid = f"豆豆{token[:4]}", f"6222{token}", f"oX{token}openid"
    created = await enrol(
        t.hq(),
        guardian_consent=CONSENT,
        children=[
            {"nickname": nickname, "birth_date": (_today().date() - timedelta(days=90)).isoformat()}
        ],
        identities=[{"kind": "pos_card", "value": card}],
    )
    (child,) = created["children"]
    url = f"/api/v1/members/{created['id']}"
    r = await client.post(
        f"{url}/identities", json={"kind": "mp_openid", "value": openid}, headers=t.hq()
    )
    assert r.status_code == 204, r.text
    renamed = nickname + "二"
    r = await client.patch(
        f"{url}/children/{child['id']}", json={"nickname": renamed}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    assert r.json()["nickname"] == renamed

    dump = await _dump(t.id, "children", "member_identities", "audit_entries", "outbox_events")
    for secret in (nickname, renamed, card, openid, token):
        assert secret not in dump, secret
    # ... yet the API gives them back to HQ, and finds the member by either identity.
    shown = await member(client, t.hq(), created["id"])
    assert [c["nickname"] for c in shown["children"]] == [renamed]
    assert without_ids(shown["identities"]) == [
        {"kind": "mp_openid", "value": openid},
        {"kind": "pos_card", "value": card},
    ]
    for kind, value in (("pos_card", card), ("mp_openid", openid)):
        r = await client.get(
            "/api/v1/members/lookup",
            params={"identity_kind": kind, "identity_value": value},
            headers=t.hq(),
        )
        assert r.status_code == 200, r.text
        assert r.json()["id"] == created["id"]
    # The same value under another kind is not the same identity.
    r = await client.get(
        "/api/v1/members/lookup",
        params={"identity_kind": "mall_user", "identity_value": card},
        headers=t.hq(),
    )
    assert r.status_code == 404
    # An identity still belongs to one member: the keyed hash is unique per tenant and kind.
    other = await enrol(t.hq())
    r = await client.post(
        f"/api/v1/members/{other['id']}/identities",
        json={"kind": "pos_card", "value": card},
        headers=t.hq(),
    )
    assert r.status_code == 409, r.text


async def test_an_order_finds_its_member_by_card(client, make_tenant, enrol):
    """The till path (orders.lock_member) looks identities up by their keyed hash."""
    t = await make_tenant()
    card = f"6222{uuid.uuid4().hex[:12]}"
    created = await enrol(t.hq(), identities=[{"kind": "pos_card", "value": card}])
    order = await post_order(
        client,
        t.hq(),
        order_body(member={"identity": {"kind": "pos_card", "value": card}}),
    )
    assert order["member_id"] == created["id"]


async def test_dates_and_identity_values_need_members_pii(client, make_tenant, enrol, till):
    t = await make_tenant()
    today = _today().date()
    born, due = today - timedelta(days=400), today + timedelta(days=60)
    card = f"6222{uuid.uuid4().hex[:12]}"
    clerk = await till(t)  # default till scopes: no members:pii
    created = await enrol(
        clerk,
        birthday="1990-07-15",
        guardian_consent=CONSENT,
        children=[
            {"nickname": "乐乐", "birth_date": born.isoformat()},
            {"nickname": "宝宝", "due_date": due.isoformat()},
        ],
        identities=[{"kind": "pos_card", "value": card}],
    )
    # The clerk sees stages, the birthday's month and a masked card: no dates, no numbers.
    for shown in (created, await member(client, clerk, created["id"])):
        assert shown["birthday"] is None
        assert shown["birthday_month"] == 7
        assert [(c["nickname"], c["stage"]) for c in shown["children"]] == [
            ("乐乐", "1-3y"),
            ("宝宝", "pregnant"),
        ]
        assert [(c["birth_date"], c["due_date"]) for c in shown["children"]] == [(None, None)] * 2
        assert without_ids(shown["identities"]) == [
            {"kind": "pos_card", "value": "****" + card[-4:]}
        ]
    r = await client.post(
        f"/api/v1/members/{created['id']}/children",
        json={"nickname": "二宝", "due_date": due.isoformat()},
        headers=clerk,
    )
    assert r.status_code == 201, r.text
    assert r.json()["due_date"] is None
    assert r.json()["stage"] == "pregnant"
    # A key with members:pii (HQ by default) sees them all.
    shown = await member(client, t.hq(), created["id"])
    assert shown["birthday"] == "1990-07-15"
    assert [(c["birth_date"], c["due_date"]) for c in shown["children"]] == [
        (born.isoformat(), None),
        (None, due.isoformat()),
        (None, due.isoformat()),
    ]
    assert without_ids(shown["identities"]) == [{"kind": "pos_card", "value": card}]
    # So does a store key given members:pii, for the members it reaches.
    r = await client.post(
        "/api/v1/api-keys",
        headers=t.hq(),
        json={
            "name": "manager",
            "kind": "store",
            "store_code": "S1",
            "scopes": ["members:read", "members:pii"],
        },
    )
    assert r.status_code == 201, r.text
    manager = {"Authorization": f"Bearer {r.json()['key']}"}
    shown = await member(client, manager, created["id"])
    assert shown["birthday"] == "1990-07-15"
    assert shown["children"][0]["birth_date"] == born.isoformat()


async def test_withdrawing_guardian_consent_erases_the_children(client, make_tenant, enrol):
    t = await make_tenant()
    today = _today().date()
    kids = [
        {"nickname": "大宝", "birth_date": (today - timedelta(days=800)).isoformat()},
        {"nickname": "二宝", "due_date": (today + timedelta(days=30)).isoformat()},
    ]
    created = await enrol(t.hq(), guardian_consent=CONSENT, children=kids)
    bystander = await enrol(t.hq(), guardian_consent=CONSENT, children=kids[:1])
    assert len(created["children"]) == 2

    url = f"/api/v1/members/{created['id']}"
    r = await client.patch(
        url, json={"guardian_consent": {"granted": False, "source": "wecom"}}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    assert r.json()["guardian_consent"] is False
    assert r.json()["children"] == []
    # Gone from the database, not only from the view.
    with tenant_context(t.id):
        async with scoped_session() as session:
            left = (
                await session.scalars(
                    select(Child.id).where(Child.member_id == uuid.UUID(created["id"]))
                )
            ).all()
            consent_at = await session.scalar(
                select(Member.child_data_consent_at).where(Member.id == uuid.UUID(created["id"]))
            )
    assert left == []
    assert consent_at is None
    trail = [
        e for e in await audit(client, t.hq(), "member.updated") if e["subject_id"] == created["id"]
    ]
    assert trail[-1]["changes"]["guardian_consent"] is False
    assert trail[-1]["changes"]["children_erased"] == 2
    # No new child data without consent again; other members keep theirs.
    r = await client.post(f"{url}/children", json=kids[0], headers=t.hq())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "guardian_consent"
    assert len((await member(client, t.hq(), bystander["id"]))["children"]) == 1


# ------------------------------------------------------------------ key rotation


def _use_keys(spec: str, hash_key: str) -> None:
    os.environ["NESTPOINT_PII_KEYS"] = spec
    os.environ["NESTPOINT_PII_HASH_KEY"] = hash_key
    get_settings.cache_clear()


@dataclass
class Rotation:
    key_id: str
    fresh: str  # "<id>:<base64>"
    spec: str  # the keys before the rotation
    hash_key: str

    async def undo(self, tenant_id: uuid.UUID) -> None:
        """Re-encrypt the tenant's rows under the old active key, so that later tests (and
        runs) read them once the fresh key is gone."""
        _use_keys(f"{self.spec},{self.fresh}", self.hash_key)
        while await run_for_tenant(tenant_id, lambda s: rotate_keys(s), name="test.rotate"):
            pass


@pytest.fixture
def new_active_key(database_env: dict[str, str]) -> Iterator[Rotation]:
    """Put a fresh key first in NESTPOINT_PII_KEYS (the current ones still decrypt)."""
    settings = get_settings()
    spec, hash_key = settings.pii_keys, settings.pii_hash_key
    if not spec or not hash_key:
        spec, hash_key = pii._dev_keys(pii.dev_key_file(settings))
    key_id = f"rot{secrets.token_hex(3)}"
    fresh = f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    saved = {k: os.environ.get(k) for k in ("NESTPOINT_PII_KEYS", "NESTPOINT_PII_HASH_KEY")}
    _use_keys(f"{fresh},{spec}", hash_key)
    try:
        yield Rotation(key_id, fresh, spec, hash_key)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


async def test_rotate_keys_covers_children_and_identities(client, make_tenant, enrol, request):
    t = await make_tenant()
    card = f"6222{uuid.uuid4().hex[:12]}"
    created = await enrol(
        t.hq(),
        guardian_consent=CONSENT,
        children=[
            {"nickname": "糖糖", "due_date": (_today().date() + timedelta(days=20)).isoformat()}
        ],
        identities=[{"kind": "pos_card", "value": card}],
    )
    rotation = request.getfixturevalue("new_active_key")
    key_id = rotation.key_id
    rewritten = 0
    while done := await run_for_tenant(t.id, lambda s: rotate_keys(s, 1), name="test.rotate"):
        rewritten += done
    # One row: the member's data key, wrapped again; what it seals stays as it is.
    assert rewritten == 1
    with tenant_context(t.id):
        async with scoped_session() as session:
            wrapped = (await session.scalars(select(Member.data_key))).all()
            tokens = [
                *(await session.scalars(select(Member.phone_enc))).all(),
                *(await session.scalars(select(Member.name_enc))).all(),
                *(await session.scalars(select(Child.nickname_enc))).all(),
                *(await session.scalars(select(MemberIdentity.value_enc))).all(),
            ]
    assert [k for k in wrapped if not k.startswith(f"{key_id}:")] == []
    assert len(tokens) == 4
    assert [t for t in tokens if not t.startswith("@m:")] == []
    shown = await member(client, t.hq(), created["id"])
    assert [c["nickname"] for c in shown["children"]] == ["糖糖"]
    assert without_ids(shown["identities"]) == [{"kind": "pos_card", "value": card}]
    r = await client.get(
        "/api/v1/members/lookup",
        params={"identity_kind": "pos_card", "identity_value": card},
        headers=t.hq(),
    )
    assert r.json()["id"] == created["id"]
    assert await run_for_tenant(t.id, lambda s: rotate_keys(s), name="test.rotate") == 0
    await rotation.undo(t.id)


async def test_members_from_before_data_keys_get_one(client, make_tenant, enrol):
    """A member written before migration 0019 (no data key; phone, name, nickname and card
    sealed under the keyring itself) reads as before, and rotate-keys gives it a key and
    seals its data under it."""
    t = await make_tenant()
    card = f"6222{uuid.uuid4().hex[:12]}"
    created = await enrol(
        t.hq(),
        name="旧会员",
        guardian_consent=CONSENT,
        children=[{"nickname": "旧旧", "birth_date": _today().date().isoformat()}],
        identities=[{"kind": "pos_card", "value": card}],
    )
    member_id = uuid.UUID(created["id"])
    ring = pii.keyring()
    with tenant_context(t.id):
        async with scoped_session() as session:
            row = await session.scalar(select(Member).where(Member.id == member_id))
            child = await session.scalar(select(Child).where(Child.member_id == member_id))
            identity = await session.scalar(
                select(MemberIdentity).where(MemberIdentity.member_id == member_id)
            )
            assert row is not None
            assert child is not None
            assert identity is not None
            old = pii.member_cipher(t.id, member_id, row.data_key)
            context = f"{t.id}:{member_id}".encode()
            row.phone_enc = ring.encrypt(
                old.decrypt(row.phone_enc, context=context), context=context
            )
            assert row.name_enc is not None
            assert child.nickname_enc is not None
            row.name_enc = ring.encrypt(old.decrypt(row.name_enc, context=context), context=context)
            for table, sealed in (("children", child), ("member_identities", identity)):
                ctx = pii.row_context(t.id, table, sealed.id)
                attr = "nickname_enc" if table == "children" else "value_enc"
                plain = old.decrypt(getattr(sealed, attr), context=ctx)
                setattr(sealed, attr, ring.encrypt(plain, context=ctx))
            row.data_key = None
            await session.commit()
    before = await member(client, t.hq(), created["id"])
    assert (before["name"], before["children"][0]["nickname"]) == ("旧会员", "旧旧")
    assert without_ids(before["identities"]) == [{"kind": "pos_card", "value": card}]
    rewritten = await run_for_tenant(t.id, lambda s: rotate_keys(s), name="test.rotate")
    assert rewritten == 3  # the member (key, phone, name), the child, the identity
    with tenant_context(t.id):
        async with scoped_session() as session:
            row = await session.scalar(select(Member).where(Member.id == member_id))
            assert row is not None
            assert row.data_key is not None
            tokens = [
                row.phone_enc,
                row.name_enc,
                *(
                    await session.scalars(
                        select(Child.nickname_enc).where(Child.member_id == member_id)
                    )
                ),
                *(
                    await session.scalars(
                        select(MemberIdentity.value_enc).where(
                            MemberIdentity.member_id == member_id
                        )
                    )
                ),
            ]
    assert [token for token in tokens if not str(token).startswith("@m:")] == []
    assert await member(client, t.hq(), created["id"]) == before
    assert await run_for_tenant(t.id, lambda s: rotate_keys(s), name="test.rotate") == 0
