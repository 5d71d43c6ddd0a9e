"""Tables of the member API.

* ``member_tokens``: the tokens that act for one member of one chain (``/api/v1/me/...``).
  Only the SHA-256 of a token is kept (as for API keys), with a short prefix for people to
  recognise it; a token is shown once, when issued. A token works while it is not revoked,
  not expired, and its member is active (a merged-away or erased member's tokens stop).
* ``wechat_apps``: the chain's WeChat mini-program (its appid, and its AppSecret sealed with
  the core's keys like the chain's Stripe keys), used to exchange a login code for the
  member's openid, and whether a phone WeChat verified that no member holds enrols a new
  member (``enrol_by_phone``, migration 0037).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

# How a token was issued: by the chain's backend with its HQ key, by a WeChat login code, or
# by a login code with the phone WeChat verified (``getuserphonenumber``).
ISSUED_VIA = ("server", "wechat", "wechat_phone")


class MemberToken(TenantOwned, Base):
    __tablename__ = "member_tokens"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_hash", name="uq_member_tokens_hash"),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_member_tokens_member", "tenant_id", "member_id", "expires_at"),
        Index("ix_member_tokens_expires", "tenant_id", "expires_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    token_hash: Mapped[str] = mapped_column(String(64))
    token_prefix: Mapped[str] = mapped_column(String(16))
    issued_via: Mapped[str] = mapped_column(String(16))  # one of ISSUED_VIA
    issued_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WechatApp(TenantScoped, Base):
    """The chain's WeChat mini-program: one per chain."""

    __tablename__ = "wechat_apps"

    appid: Mapped[str] = mapped_column(String(64))
    secret_enc: Mapped[str] = mapped_column(Text)
    enrol_by_phone: Mapped[bool] = mapped_column(default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="")
