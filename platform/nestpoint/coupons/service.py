"""Coupons' rules: templates, issue (a grant, an exchange for points, a campaign's), the
till's check, hold and release, redemption inside an order and restoration on its refund.

Locks, in the one order every till path takes: the member's points account, then the
template (issue: stock and the per-member limit), then the coupons. No HTTP; never commits.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, String, Uuid, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from nestpoint.audit.service import record as audit
from nestpoint.context import require_tenant
from nestpoint.coupons import rules
from nestpoint.coupons.models import Coupon, CouponEvent, CouponTemplate
from nestpoint.coupons.rules import BasketLine, Value
from nestpoint.coupons.schemas import (
    MAX_CODES,
    CheckIn,
    CheckResult,
    CouponDetail,
    CouponEventRead,
    CouponHoldIn,
    CouponHoldRead,
    CouponRead,
    IssueIn,
    TemplateIn,
    TemplateRead,
)
from nestpoint.db import utcnow
from nestpoint.db.base import UTCDateTime, table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.service import get_program
from nestpoint.members.service import get_active_member
from nestpoint.points import service as points
from nestpoint.tenancy.service import ensure_store_trading, store_codes

coupons_table = table_of(Coupon)
events_table = table_of(CouponEvent)

# Crockford's base 32 (no I, L, O, U): read aloud and typed at a till without ambiguity.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16  # 80 random bits: not guessable, not enumerable


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normal_code(code: str) -> str:
    """A code as typed (lower case, dashes) in the form it is stored."""
    return code.replace("-", "").upper()


# ------------------------------------------------------------------ templates


async def put_template(
    session: AsyncSession, code: str, data: TemplateIn
) -> tuple[TemplateRead, bool]:
    """Create or replace a template under ``code`` (what was issued is kept); True if new.
    Audited when it changes."""
    found = await find_template(session, code)
    values = data.model_dump()
    if found is None:
        found = CouponTemplate(code=code, issued=0, **values)
        session.add(found)
        changes = values
    else:
        if data.stock is not None and data.stock < found.issued:
            raise Invalid.field("stock", f"{found.issued} were issued already")
        changes = template_diff(found, data)
        for name, value in values.items():
            setattr(found, name, value)
    await session.flush()
    if changes:
        audit(session, "coupon_template.put", "coupon_template", code, values_for_audit(changes))
    return TemplateRead.model_validate(found), changes is values


async def find_template(session: AsyncSession, code: str) -> CouponTemplate | None:
    return await session.scalar(select(CouponTemplate).where(CouponTemplate.code == code))


def template_diff(stored: CouponTemplate, data: TemplateIn) -> dict[str, object]:
    """What ``data`` changes of a stored template: ``{field: [before, after]}``."""
    return {
        name: [getattr(stored, name), value]
        for name, value in data.model_dump().items()
        if getattr(stored, name) != value
    }


def values_for_audit(values: dict[str, object]) -> dict[str, object]:
    """JSON-ready: dates as ISO text (also inside a ``[before, after]`` pair)."""

    def plain(v: object) -> object:
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v.isoformat() if isinstance(v, datetime) else v

    return {k: plain(v) for k, v in values.items()}


async def list_templates(session: AsyncSession) -> list[TemplateRead]:
    rows = await session.scalars(select(CouponTemplate).order_by(CouponTemplate.code))
    return [TemplateRead.model_validate(t) for t in rows.all()]


async def get_template(
    session: AsyncSession, code: str, *, for_update: bool = False, field: str = "template_code"
) -> CouponTemplate:
    stmt = select(CouponTemplate).where(CouponTemplate.code == code)
    if for_update:
        stmt = stmt.with_for_update()
    found = await session.scalar(stmt.execution_options(populate_existing=True))
    if found is None:
        raise NotFound(f"no coupon template {code!r}", errors=[FieldError(field, "no such")])
    return found


# ------------------------------------------------------------------ issue


async def issue(
    session: AsyncSession,
    template_code: str,
    member_id: uuid.UUID,
    *,
    cause_type: str,
    cause_id: str,
    now: datetime,
) -> Coupon:
    """Issue a coupon of ``template_code`` to a member, once per cause: the same call again
    returns the coupon it issued. Conflict (naming ``template_code``) when the template is
    inactive, over, out of stock, or the member holds its per-member limit."""
    template = await get_template(session, template_code, for_update=True)
    return await issue_from(
        session, template, member_id, cause_type=cause_type, cause_id=cause_id, now=now
    )


async def issue_from(
    session: AsyncSession,
    template: CouponTemplate,
    member_id: uuid.UUID,
    *,
    cause_type: str,
    cause_id: str,
    now: datetime,
) -> Coupon:
    """:func:`issue` with the template already locked by the caller."""
    earlier = await session.scalar(
        select(Coupon).where(
            Coupon.template_id == template.id,
            Coupon.member_id == member_id,
            Coupon.cause_type == cause_type,
            Coupon.cause_id == cause_id,
        )
    )
    if earlier is not None:
        return earlier
    window = _check_issuable(template, now)
    await _check_member_limit(session, template, member_id)
    template.issued += 1
    coupon = Coupon(
        id=uuid.uuid4(),
        template_id=template.id,
        member_id=member_id,
        code=new_code(),
        status="available",
        valid_from=window[0],
        valid_until=window[1],
        cause_type=cause_type,
        cause_id=cause_id,
        issued_at=now,
    )
    session.add(coupon)
    await session.flush()
    _event(session, coupon, "issue", now, reason=f"{cause_type}:{cause_id}"[:200])
    return coupon


def _check_issuable(template: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if not template.active:
        raise _cannot_issue("the template is inactive")
    if template.stock is not None and template.issued >= template.stock:
        raise _cannot_issue(f"out of stock: all {template.stock} were issued")
    window = rules.validity(template, now)
    if window is None:
        raise _cannot_issue("the template's validity is over")
    return window


async def _check_member_limit(
    session: AsyncSession, template: CouponTemplate, member_id: uuid.UUID
) -> None:
    if template.per_member_limit is None:
        return
    held = await session.scalar(
        select(func.count())
        .select_from(Coupon)
        .where(Coupon.template_id == template.id, Coupon.member_id == member_id)
    )
    if (held or 0) >= template.per_member_limit:
        raise _cannot_issue(f"the member was issued the limit of {template.per_member_limit}")


def _cannot_issue(why: str) -> Conflict:
    return Conflict(why, errors=[FieldError("template_code", why)])


async def grant_or_exchange(
    session: AsyncSession, member_id: uuid.UUID, data: IssueIn, *, may_grant: bool
) -> Answer[CouponRead]:
    """A member gets a coupon: free (an HQ grant) or for its points price. Idempotent by the
    key: a retry replays the first answer; the same key for another request is 409."""
    member = await get_active_member(session, member_id)
    if not data.pay_with_points and not may_grant:
        raise Forbidden("a free coupon needs coupons:write; pay_with_points needs coupons:use")
    account = await points.lock_account(session, member.id)  # the one lock order
    request = fingerprint({"kind": "coupon", "member": member.id} | data.model_dump())
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    now = utcnow()
    cause = "exchange" if data.pay_with_points else "grant"
    template = await get_template(session, data.template_code, for_update=True)
    coupon = await issue_from(session, template, member.id, cause_type=cause, cause_id=key, now=now)
    paid = 0
    if data.pay_with_points:
        paid = await _pay_points(session, account, template, coupon, now)
    audit(
        session, f"coupon.{cause}", "coupon", coupon.id, {"template": template.code, "points": paid}
    )
    result = _read(coupon, template).model_copy(update={"points_paid": paid})
    answer = idempotency.created(result)
    return await idempotency.record(
        session, idempotency.REQUEST, key, request, answer, field="idempotency_key"
    )


async def _pay_points(
    session: AsyncSession,
    account: points.Account,
    template: CouponTemplate,
    coupon: Coupon,
    now: datetime,
) -> int:
    if template.points_price is None:
        raise Invalid.field("pay_with_points", "this coupon is not exchanged for points")
    await points.spend(
        session,
        account,
        template.points_price,
        kind="redeem",
        cause_type="exchange",
        cause_id=str(coupon.id),
        now=now,
        field_name="pay_with_points",
    )
    await points.save(session, account, now)
    return template.points_price


# ------------------------------------------------------------------ reading


async def _templates_of(
    session: AsyncSession, coupons: Sequence[Coupon]
) -> dict[uuid.UUID, CouponTemplate]:
    """The templates of these coupons (only theirs: a chain may have hundreds)."""
    ids = sorted({c.template_id for c in coupons})
    if not ids:
        return {}
    rows = await session.scalars(select(CouponTemplate).where(CouponTemplate.id.in_(ids)))
    return {t.id: t for t in rows.all()}


def _read(coupon: Coupon, template: CouponTemplate, now: datetime | None = None) -> CouponRead:
    expired = coupon.status in ("available", "held") and coupon.valid_until <= (now or utcnow())
    return CouponRead(
        id=coupon.id,
        code=coupon.code,
        template_code=template.code,
        name=template.name,
        kind=template.kind,
        member_id=coupon.member_id,
        status=None if expired else coupon.status,
        expired=expired,
        valid_from=coupon.valid_from,
        valid_until=coupon.valid_until,
        issued_at=coupon.issued_at,
        cause_type=coupon.cause_type,
        held_until=coupon.held_until if coupon.status == "held" else None,
        order_id=coupon.order_id,
        amount_fen=coupon.amount_fen,
    )


async def member_coupons(session: AsyncSession, member_id: uuid.UUID) -> list[CouponRead]:
    """A member's coupons, newest first (an expired one says so)."""
    member = await get_active_member(session, member_id)
    rows = await session.scalars(
        select(Coupon)
        .where(Coupon.member_id == member.id)
        .order_by(Coupon.issued_at.desc(), Coupon.id)
    )
    found = rows.all()
    templates = await _templates_of(session, found)
    now = utcnow()
    return [_read(c, templates[c.template_id], now) for c in found]


async def _coupon_by_code(session: AsyncSession, code: str, *, for_update: bool = False) -> Coupon:
    stmt = select(Coupon).where(Coupon.code == normal_code(code))
    if for_update:
        stmt = stmt.with_for_update()
    found = await session.scalar(stmt.execution_options(populate_existing=True))
    if found is None:
        raise NotFound("no such coupon")
    return found


async def get_coupon(session: AsyncSession, code: str) -> CouponDetail:
    coupon = await _coupon_by_code(session, code)
    template = await session.get_one(
        CouponTemplate, (require_tenant().tenant_id, coupon.template_id)
    )
    events = await session.scalars(
        select(CouponEvent)
        .where(CouponEvent.coupon_id == coupon.id)
        .order_by(CouponEvent.created_at, CouponEvent.id)
    )
    return CouponDetail(
        **_read(coupon, template).model_dump(),
        events=[CouponEventRead.model_validate(e) for e in events.all()],
    )


async def void(session: AsyncSession, code: str, reason: str) -> CouponDetail:
    """Void an unused coupon for good (a redeemed one is 409; voiding again is a no-op)."""
    peek = await _coupon_by_code(session, code)
    await points.lock_account(session, peek.member_id)  # the one lock order
    coupon = await _coupon_by_code(session, code, for_update=True)
    if coupon.status == "redeemed":
        raise Conflict("a redeemed coupon cannot be voided (refund its order)")
    if coupon.status != "void":
        now = utcnow()
        coupon.status, coupon.hold_id, coupon.held_until = "void", None, None
        _event(session, coupon, "void", now, reason=reason)
        audit(session, "coupon.void", "coupon", coupon.id, {"reason": reason})
        await session.flush()
    return await get_coupon(session, code)


# ------------------------------------------------------------------ the till


@dataclass(frozen=True, slots=True)
class Place:
    """Where a coupon is used: the store's id and code."""

    store_id: uuid.UUID
    store_code: str


async def place_of(session: AsyncSession, store_code: str | None) -> Place:
    """The caller's store (a store key), or the named one (HQ keys)."""
    ctx = require_tenant()
    codes = await store_codes(session)
    if ctx.store_id is not None:
        own = next((c for c, i in codes.items() if i == ctx.store_id), "")
        if store_code is not None and store_code != own:
            raise Invalid.field("store_code", "a store key uses coupons at its own store")
        return Place(ctx.store_id, own)
    if store_code is None:
        raise Invalid.field("store_code", "required with an HQ key")
    if store_code not in codes:
        raise Invalid.field("store_code", f"no store with code {store_code!r}")
    return Place(codes[store_code], store_code)


def usable_now(
    coupon: Coupon,
    template: CouponTemplate,
    member_id: uuid.UUID,
    place: Place,
    at: datetime,
    now: datetime,
) -> str:
    """Why ``coupon`` cannot pay at ``place`` at ``at`` ("" when it can), lines aside."""
    if coupon.member_id != member_id:
        return "the coupon belongs to another member"
    if coupon.status in ("redeemed", "void"):
        return f"the coupon is {coupon.status}"
    if coupon.status == "held" and _held_elsewhere(coupon, place, now):
        return "the coupon is held at another till"
    if not coupon.valid_from <= at < coupon.valid_until:
        return "the coupon is not valid at this time"
    if template.store_codes and place.store_code not in template.store_codes:
        return "the coupon is not valid at this store"
    return ""


def _held_elsewhere(coupon: Coupon, place: Place, now: datetime) -> bool:
    lapsed = coupon.held_until is not None and coupon.held_until <= now
    return not lapsed and coupon.hold_store_id not in (None, place.store_id)


async def check(session: AsyncSession, data: CheckIn) -> list[CheckResult]:
    """What each of the member's coupons (or those named) would pay on the basket."""
    member = await get_active_member(session, data.member_id)
    place = await place_of(session, data.store_code)
    now = utcnow()
    stmt = select(Coupon).where(Coupon.member_id == member.id)
    if data.codes is not None:
        stmt = stmt.where(Coupon.code.in_([normal_code(c) for c in data.codes]))
    else:
        stmt = stmt.where(Coupon.status.in_(("available", "held")), Coupon.valid_until > now)
    coupons = (await session.scalars(stmt.order_by(Coupon.valid_until, Coupon.id))).all()
    templates = await _templates_of(session, coupons)
    lines = [BasketLine(li.sku, li.category, li.quantity, li.paid_fen) for li in data.lines]
    results = []
    for coupon in coupons:
        template = templates[coupon.template_id]
        why = usable_now(coupon, template, member.id, place, now, now)
        value = Value(0, why) if why else rules.value_on(template, lines)
        results.append(
            CheckResult(
                code=coupon.code,
                template_code=template.code,
                name=template.name,
                usable=value.usable,
                amount_fen=value.amount_fen if value.usable else 0,
                reason=value.reason,
                stackable=template.stackable,
            )
        )
    return results


async def hold(session: AsyncSession, data: CouponHoldIn) -> Answer[CouponHoldRead]:
    """Set a member's coupons aside at scan, until an order redeems them, a release, or
    the points hold timeout. Idempotent by ``idempotency_key`` when one is given."""
    member = await get_active_member(session, data.member_id)
    store_id = require_tenant().store_id
    await points.lock_account(session, member.id)
    request = fingerprint({"kind": "coupon_hold", "member": member.id, "codes": data.codes})
    if data.idempotency_key:
        earlier = await idempotency.replay(
            session, idempotency.REQUEST, data.idempotency_key, request, field="idempotency_key"
        )
        if earlier is not None:
            return earlier
    if store_id is not None:
        await ensure_store_trading(session, store_id)
    now = utcnow()
    program = await get_program(session)
    until = now + timedelta(minutes=program.points.hold_timeout_minutes)
    hold_id = uuid.uuid4()
    coupons = await _lock_codes(session, data.codes, "codes")
    for i, coupon in enumerate(coupons):
        _check_holdable(coupon, member.id, now, f"codes.{i}")
        coupon.status, coupon.hold_id = "held", hold_id
        coupon.hold_store_id, coupon.held_until = store_id, until
        _event(session, coupon, "hold", now, store_id=store_id)
    await session.flush()
    answer = idempotency.created(
        CouponHoldRead(
            hold_id=hold_id,
            member_id=member.id,
            codes=[c.code for c in coupons],
            held_until=until,
            status="held",
        )
    )
    if data.idempotency_key:
        await idempotency.record(
            session,
            idempotency.REQUEST,
            data.idempotency_key,
            request,
            answer,
            field="idempotency_key",
        )
    return answer


def _check_holdable(coupon: Coupon, member_id: uuid.UUID, now: datetime, field: str) -> None:
    if coupon.member_id != member_id:
        raise Invalid.field(field, "the coupon belongs to another member")
    lapsed = coupon.status == "held" and coupon.held_until is not None and coupon.held_until <= now
    if coupon.status != "available" and not lapsed:
        raise Conflict(
            f"{field}: the coupon is {coupon.status}",
            errors=[FieldError(field, f"the coupon is {coupon.status}")],
        )
    if coupon.valid_until <= now:
        raise Invalid.field(field, "the coupon has expired")


async def _lock_codes(session: AsyncSession, codes: Sequence[str], field: str) -> list[Coupon]:
    """The coupons of ``codes``, locked, in the order given; 422 naming an unknown or
    repeated one."""
    wanted = [normal_code(c) for c in codes]
    for i, code in enumerate(wanted):
        if code in wanted[:i]:
            raise Invalid.field(f"{field}.{i}", "the coupon is listed twice")
    rows = await session.scalars(
        select(Coupon)
        .where(Coupon.code.in_(wanted))
        .order_by(Coupon.id)  # one lock order between concurrent holds
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    by_code = {c.code: c for c in rows.all()}
    for i, code in enumerate(wanted):
        if code not in by_code:
            raise Invalid.field(f"{field}.{i}", "no such coupon")
    return [by_code[c] for c in wanted]


async def release(session: AsyncSession, hold_id: uuid.UUID) -> CouponHoldRead:
    """Release a hold: its coupons are available again (exactly once; again is a no-op)."""
    held = (await session.scalars(select(Coupon).where(Coupon.hold_id == hold_id))).all()
    store_id = require_tenant().store_id
    if not held or (store_id is not None and held[0].hold_store_id != store_id):
        raise NotFound("no such coupon hold")
    await points.lock_account(session, held[0].member_id)
    coupons = await _lock_codes(session, [c.code for c in held], "hold_id")
    if any(c.status == "redeemed" for c in coupons):
        raise Conflict("an order redeemed this hold's coupons")
    now = utcnow()
    for coupon in coupons:
        if coupon.status == "held":
            coupon.status, coupon.held_until = "available", None
            _event(session, coupon, "release", now, store_id=store_id)
    await session.flush()
    return CouponHoldRead(
        hold_id=hold_id,
        member_id=coupons[0].member_id,
        codes=[c.code for c in coupons],
        held_until=max(c.held_until or now for c in coupons),
        status="released",
    )


# ------------------------------------------------------------------ inside an order


@dataclass(frozen=True, slots=True)
class Redemption:
    """A coupon an order redeems and what it pays."""

    coupon: Coupon
    template: CouponTemplate
    amount_fen: int


async def redeemable(
    session: AsyncSession,
    member_id: uuid.UUID,
    place: Place,
    claims: Sequence[tuple[str, int]],
    lines: Sequence[BasketLine],
    paid_at: datetime,
    now: datetime,
) -> list[Redemption]:
    """The coupons an order pays with (``claims``: code and amount, as the till gives them),
    locked and checked: the member's, usable here and then, worth exactly that amount on
    these lines, combined only where their templates allow. Writes nothing."""
    coupons = await _lock_codes(session, [code for code, _ in claims], "payment.coupons")
    templates = await _templates_of(session, coupons)
    found: list[Redemption] = []
    for i, (coupon, (_, amount)) in enumerate(zip(coupons, claims, strict=True)):
        field = f"payment.coupons.{i}"
        template = templates[coupon.template_id]
        why = usable_now(coupon, template, member_id, place, paid_at, now)
        if why:
            raise _refused(f"{field}.code", why, conflict=coupon.status != "available")
        value = rules.value_on(template, lines)
        if not value.usable:
            raise Invalid.field(f"{field}.code", value.reason)
        if amount != value.amount_fen:
            raise Invalid.field(
                f"{field}.amount_fen", f"the coupon pays {value.amount_fen} fen on these lines"
            )
        found.append(Redemption(coupon, template, amount))
    _check_stacking(found)
    return found


def _refused(field: str, why: str, *, conflict: bool) -> Invalid | Conflict:
    if conflict:
        return Conflict(f"{field}: {why}", errors=[FieldError(field, why)])
    return Invalid.field(field, why)


def _check_stacking(found: Sequence[Redemption]) -> None:
    """One coupon alone, or only stackable ones, each template at most once."""
    if len(found) < 2:
        return
    seen: set[uuid.UUID] = set()
    for i, r in enumerate(found):
        if not r.template.stackable:
            raise Invalid.field(
                f"payment.coupons.{i}.code", "this coupon cannot be combined with others"
            )
        if r.template.id in seen:
            raise Invalid.field(f"payment.coupons.{i}.code", "one coupon of a template per order")
        seen.add(r.template.id)


def _redeem_statement(i: int) -> UpdateBase:
    """The ``i``-th coupon of an order marked redeemed (bound names of its own, so several
    go into one batch; built once)."""
    c = coupons_table.c

    def p(name: str, type_: Any) -> Any:
        return bindparam(f"coupon_{i}_{name}", type_=type_)

    return (
        update(coupons_table)
        .where(c.tenant_id == p("tenant", Uuid()), c.id == p("id", Uuid()))
        .values(
            status=p("status", String()),
            held_until=None,
            order_id=p("order", Uuid()),
            amount_fen=p("amount", BigInteger()),
            redeemed_at=p("at", UTCDateTime()),
        )
    )


REDEEM = [_redeem_statement(i) for i in range(MAX_CODES)]


def redeem(
    writes: WriteBatch,
    found: Sequence[Redemption],
    order_id: uuid.UUID,
    store_id: uuid.UUID,
    now: datetime,
) -> None:
    """Mark the coupons redeemed by the order, with what each paid, and their ledger's
    entries: into the order's batch (its one round trip), after its idempotency claim (a
    replayed order writes nothing)."""
    tenant_id = require_tenant().tenant_id
    for i, r in enumerate(found):
        values = {"tenant": tenant_id, "id": r.coupon.id, "status": "redeemed",
                  "order": order_id, "amount": r.amount_fen, "at": now}  # fmt: skip
        writes.add(REDEEM[i], {f"coupon_{i}_{name}": v for name, v in values.items()})
    writes.insert(
        events_table,
        [
            {"tenant_id": tenant_id, "id": uuid.uuid4(), "coupon_id": r.coupon.id,
             "kind": "redeem", "order_id": order_id, "store_id": store_id,
             "amount_fen": r.amount_fen, "reason": "", "created_at": now}
            for r in found
        ],
    )  # fmt: skip


async def restore_for_order(
    session: AsyncSession, order_id: uuid.UUID, store_id: uuid.UUID, now: datetime
) -> list[str]:
    """The whole order was refunded: the coupons it redeemed are the member's again (until
    their own end of validity). Returns their codes."""
    rows = await session.scalars(
        select(Coupon)
        .where(Coupon.order_id == order_id, Coupon.status == "redeemed")
        .order_by(Coupon.id)
        .with_for_update()
    )
    restored = []
    for coupon in rows.all():
        amount = coupon.amount_fen or 0
        coupon.status, coupon.order_id = "available", None
        coupon.amount_fen, coupon.redeemed_at, coupon.hold_id = None, None, None
        _event(session, coupon, "restore", now, order_id=order_id, store_id=store_id,
               amount_fen=amount, reason="order refunded")  # fmt: skip
        restored.append(coupon.code)
    return restored


async def move_coupons(session: AsyncSession, source_id: uuid.UUID, target_id: uuid.UUID) -> int:
    """A merge: the source member's coupons become the target's."""
    moved = await session.execute(
        update(Coupon).where(Coupon.member_id == source_id).values(member_id=target_id)
    )
    return int(moved.rowcount or 0)  # type: ignore[attr-defined]


def _event(
    session: AsyncSession,
    coupon: Coupon,
    kind: str,
    now: datetime,
    *,
    order_id: uuid.UUID | None = None,
    store_id: uuid.UUID | None = None,
    amount_fen: int = 0,
    reason: str = "",
) -> None:
    session.add(
        CouponEvent(
            id=uuid.uuid4(),
            coupon_id=coupon.id,
            kind=kind,
            order_id=order_id,
            store_id=store_id,
            amount_fen=amount_fen,
            reason=reason,
            created_at=now,
        )
    )
