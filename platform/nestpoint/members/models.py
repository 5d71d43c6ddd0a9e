"""Tables of the members context.

Phone and name, children's nicknames and channel identity values are stored encrypted
(``members.pii``); ``phone_hash`` and ``value_hash`` are the keyed hashes used for exact lookup
and per-tenant uniqueness. Dates (birthday, birth and due dates) stay in clear so that stages
can be queried; the API shows them only to keys with ``members:pii``. Tier state
(``tier_code``, ``growth_value``) lives on the member row so the till reads a member in one
query; the tiers context owns it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow

CHANNELS = ("sms", "wecom", "mini_program", "email")
IDENTITY_KINDS = (
    "pos_card",
    "mall_user",
    "mp_openid",
    "mp_unionid",
    "app_user",
    "email",
    "wecom_userid",
)
JOIN_CHANNELS = ("pos", "mall", "mini_program", "app", "import", "api")


class Member(TenantOwned, Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("tenant_id", "phone_hash"),
        ForeignKeyConstraint(["tenant_id", "home_store_id"], ["stores.tenant_id", "stores.id"]),
        ForeignKeyConstraint(["tenant_id", "join_store_id"], ["stores.tenant_id", "stores.id"]),
        Index("ix_members_tenant_id_home_store_id", "tenant_id", "home_store_id"),
        Index("ix_members_tenant_id_joined_at", "tenant_id", "joined_at"),
    )

    phone_hash: Mapped[str] = mapped_column(String(64))
    phone_enc: Mapped[str] = mapped_column(Text)
    name_enc: Mapped[str | None] = mapped_column(Text, default=None)
    # The member's own data key, wrapped by the keyring (pii.MemberCipher): phone, name,
    # children's nicknames and identity values are sealed under it. None once erased (the
    # key is shredded) and on rows from before migration 0019 until rotate-keys runs.
    data_key: Mapped[str | None] = mapped_column(Text, default=None)
    gender: Mapped[str] = mapped_column(String(8), default="unknown")
    birthday: Mapped[date | None] = mapped_column(Date, default=None)
    home_store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    join_channel: Mapped[str] = mapped_column(String(16), default="api")
    join_store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    tags: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    # The guardian's separate consent to children's data (PIPL: under-14s are sensitive).
    child_data_consent_at: Mapped[datetime | None] = mapped_column(default=None)
    child_data_consent_source: Mapped[str | None] = mapped_column(String(50), default=None)
    family_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    # Tier state, owned by the tiers context.
    tier_code: Mapped[str | None] = mapped_column(String(32), default=None)
    growth_value: Mapped[int] = mapped_column(BigInteger, default=0)  # 64-bit: migration 0006
    tier_since: Mapped[datetime | None] = mapped_column(default=None)
    tier_protected_until: Mapped[datetime | None] = mapped_column(default=None)
    last_order_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Child(TenantOwned, Base):
    """A child, or a pregnancy (due date, no birth date yet). The stage is always derived."""

    __tablename__ = "children"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_children_tenant_id_member_id", "tenant_id", "member_id"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    # Encrypted (pii.row_context(tenant, "children", id)); None for no nickname.
    nickname_enc: Mapped[str | None] = mapped_column(Text, default=None)
    gender: Mapped[str] = mapped_column(String(8), default="unknown")
    birth_date: Mapped[date | None] = mapped_column(Date, default=None)
    due_date: Mapped[date | None] = mapped_column(Date, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MemberConsent(TenantOwned, Base):
    """Marketing consent per channel: the current state (history is in the audit trail)."""

    __tablename__ = "member_consents"
    __table_args__ = (
        UniqueConstraint("tenant_id", "member_id", "channel"),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    channel: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(50))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberIdentity(TenantOwned, Base):
    """A member's id in one channel (POS card, mall user, mini-program openid, ...)."""

    __tablename__ = "member_identities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "value_hash"),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_member_identities_tenant_id_member_id", "tenant_id", "member_id"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    kind: Mapped[str] = mapped_column(String(16))
    # pii.identity_hash(kind, value), for lookup; the value itself is encrypted
    # (pii.row_context(tenant, "member_identities", id)).
    value_hash: Mapped[str] = mapped_column(String(64))
    value_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberPhoneChange(TenantOwned, Base):
    """A change of a member's phone awaiting its one-time code (``members.phone``).

    The code is sent to the new phone; only its keyed hash is kept (``code_hash``, bound to
    this row). ``status``: ``pending`` until ``confirmed``, or ``cancelled`` (too many wrong
    codes, or a newer change started) or ``expired``. ``new_phone_enc`` is sealed under the
    member's key (``pii.row_context(tenant, "member_phone_changes", id)``).
    """

    __tablename__ = "member_phone_changes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_member_phone_changes_member", "tenant_id", "member_id", "created_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    new_phone_hash: Mapped[str] = mapped_column(String(64))
    new_phone_enc: Mapped[str] = mapped_column(Text)
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # wrong codes so far
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    actor: Mapped[str] = mapped_column(String(100), default="")
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
