"""HTTP routes of the members context (and a member's points and tier history)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.context import current_actor
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid, NotFound
from nestpoint.loyalty.service import get_program
from nestpoint.members import merge, phone, service
from nestpoint.members.schemas import (
    BirthIn,
    ChildIn,
    ChildRead,
    ChildUpdate,
    ConsentIn,
    FamilyIn,
    IdentityIn,
    IdentityKind,
    MemberCreate,
    MemberList,
    MemberRead,
    MemberUpdate,
    MergeIn,
    PhoneChangeIn,
    PhoneChangeRead,
    PhoneConfirmIn,
    Stage,
    one_per_channel,
)
from nestpoint.orders import service as orders
from nestpoint.orders.routes import DayQuery, FromQuery, StoreQuery, ToQuery
from nestpoint.orders.schemas import OrderList, OrderSummary
from nestpoint.points import service as points
from nestpoint.points.schemas import (
    AdjustmentIn,
    BalancesRead,
    EntryList,
    EntryRead,
    GrowthIn,
    GrowthRead,
    TierChangeList,
    TierChangeRead,
    TransferIn,
)
from nestpoint.text import literal_pattern
from nestpoint.tiers import service as tiers

MemberId = FromPath[uuid.UUID]
STAGE_PATTERN = literal_pattern(Stage)
IDENTITY_KIND_PATTERN = literal_pattern(IdentityKind)


# Why the caller reads members' personal data (e.g. `PIPL access request #12`, `delivery`):
# kept in the audit trail with every unmasked read.
Purpose = Annotated[
    str | None,
    HeaderParameter(
        name="Nestpoint-Purpose",
        max_length=200,
        description="Why personal data is read: audited with every unmasked read.",
    ),
]


class MemberController(Controller):
    path = "/members"
    tags = ["members"]

    @post(
        "/",
        guards=[requires("members:write")],
        responses=problems(409, 422),
        summary="Enrol a member (at the till, online, or by HQ)",
        operation_id="createMember",
        description=(
            "Needs `members:write`; a store key enrols at its own store. The phone is unique in the"
            " chain (409 naming `phone`); child data needs the guardian's separate consent."
        ),
    )
    async def create(self, db: Db, data: JSONBody[MemberCreate]) -> MemberRead:
        member = await service.create_member(db, data)
        return await service.member_read(db, member)

    @get(
        "/",
        guards=[requires("members:read")],
        responses=problems(422),
        summary="List members",
        operation_id="listMembers",
        description=(
            "Needs `members:read`; cursor-paginated, filtered by tag, tier, home store and child "
            "stage. Lists only the members in the caller's reach, masked without `members:pii`; "
            "an unmasked page is audited per member with the `Nestpoint-Purpose` header."
        ),
    )
    async def list_members(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        tag: Annotated[str | None, QueryParameter(name="tag", max_length=32)] = None,
        tier: Annotated[str | None, QueryParameter(name="tier", max_length=32)] = None,
        home_store: Annotated[str | None, QueryParameter(name="home_store", max_length=32)] = None,
        stage: Annotated[
            str | None,
            QueryParameter(name="stage", pattern=STAGE_PATTERN),
        ] = None,
        purpose: Purpose = None,
    ) -> MemberList:
        page = await service.list_members(
            db,
            cursor=cursor,
            limit=limit,
            tag=tag,
            tier=tier,
            home_store_code=home_store,
            stage=stage,
        )
        await service.audit_unmasked(db, page.items, purpose, "listMembers")
        reach = await service.caller_reach(db)
        return MemberList(
            items=[service.member_summary(m, reach.view(m)) for m in page.items],
            next_cursor=page.next_cursor,
        )

    @get(
        "/lookup",
        guards=[requires("members:read")],
        responses=problems(404, 422),
        summary="Look a member up by exact phone or channel identity (any store serves anyone)",
        operation_id="lookupMember",
        description=(
            "Needs `members:read`; give `phone`, or `identity_kind` and `identity_value`. A member "
            "outside the caller's reach is answered in the masked view. An unmasked answer is "
            "audited with the `Nestpoint-Purpose` header."
        ),
    )
    async def lookup(
        self,
        phone: Annotated[str | None, QueryParameter(name="phone", max_length=32)] = None,
        identity_kind: Annotated[
            str | None,
            QueryParameter(
                name="identity_kind",
                pattern=IDENTITY_KIND_PATTERN,
            ),
        ] = None,
        identity_value: Annotated[
            str | None, QueryParameter(name="identity_value", max_length=128)
        ] = None,
        purpose: Purpose = None,
    ) -> MemberRead:
        if phone:
            try:
                found = await service.lookup_by_phone(phone)
            except Invalid as exc:  # the service names the body's field; this is the query's
                raise Invalid.field("query.phone", exc.errors[0].message) from exc
            if found is None:
                raise NotFound("no such member")
            if current_actor().has("members:pii"):  # the till's keys have not: no session
                async with scoped_session() as db:
                    await service.audit_unmasked(db, [found], purpose, "lookupMember")
            return found
        if not (identity_kind and identity_value):
            raise Invalid.field("query.phone", "give phone, or identity_kind and identity_value")
        # The till's lookup by phone needs no session; this one opens its own.
        async with scoped_session() as db:
            member = await service.find_by_identity(db, identity_kind, identity_value)
            if member is None:
                raise NotFound("no such member")
            await service.audit_unmasked(db, [member], purpose, "lookupMember")
            return await service.member_read(db, member)

    @get(
        "/{member_id:uuid}",
        guards=[requires("members:read")],
        responses=problems(404),
        summary="Get a member",
        operation_id="getMember",
        description=(
            "Needs `members:read`. A member outside a store key's reach is 404, as if it did not "
            "exist; without `members:pii` the view is masked. An unmasked read is audited with "
            "the `Nestpoint-Purpose` header (docs/privacy.md)."
        ),
    )
    async def get_member(self, db: Db, member_id: MemberId, purpose: Purpose = None) -> MemberRead:
        member = await service.get_member_in_reach(db, member_id)
        await service.audit_unmasked(db, [member], purpose, "getMember")
        return await service.member_read(db, member)

    @patch(
        "/{member_id:uuid}",
        guards=[requires("members:write")],
        responses=problems(404, 422),
        summary="Update a member's profile",
        operation_id="updateMember",
        description=(
            "Needs `members:write`; only the fields sent change. Withdrawing `guardian_consent` "
            "erases the member's children in the same transaction."
        ),
    )
    async def update(self, db: Db, member_id: MemberId, data: JSONBody[MemberUpdate]) -> MemberRead:
        member = await service.update_member(db, member_id, data)
        return await service.member_read(db, member)

    @post(
        "/{member_id:uuid}/children",
        guards=[requires("members:write")],
        responses=problems(404, 422),
        summary="Add a child or a pregnancy",
        operation_id="addChild",
        description=(
            "Needs `members:write` and the guardian's consent on the member (422 otherwise). Give "
            "`birth_date`, or `due_date` for a pregnancy."
        ),
    )
    async def add_child(self, db: Db, member_id: MemberId, data: JSONBody[ChildIn]) -> ChildRead:
        child = await service.add_child(db, member_id, data)
        return await service.child_read(db, child)

    @patch(
        "/{member_id:uuid}/children/{child_id:uuid}",
        guards=[requires("members:write")],
        responses=problems(404, 422),
        summary="Update a child",
        operation_id="updateChild",
        description=(
            "Needs `members:write`; only the fields sent change, under the same date rules as on "
            "enrolment."
        ),
    )
    async def update_child(
        self,
        db: Db,
        member_id: MemberId,
        child_id: FromPath[uuid.UUID],
        data: JSONBody[ChildUpdate],
    ) -> ChildRead:
        child = await service.update_child(db, member_id, child_id, data)
        return await service.child_read(db, child)

    @post(
        "/{member_id:uuid}/children/{child_id:uuid}/birth",
        guards=[requires("members:write")],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Record a birth: the pregnancy becomes a newborn (child.born)",
        operation_id="recordBirth",
        description=(
            "Needs `members:write` and the guardian's consent. The same birth date again changes "
            "nothing; another date for a recorded birth is 409. Emits `child.born`."
        ),
    )
    async def record_birth(
        self, db: Db, member_id: MemberId, child_id: FromPath[uuid.UUID], data: JSONBody[BirthIn]
    ) -> ChildRead:
        child = await service.record_birth(db, member_id, child_id, data)
        return await service.child_read(db, child)

    @put(
        "/{member_id:uuid}/consents",
        guards=[requires("members:write")],
        responses=problems(404, 422),
        status_code=HTTP_204_NO_CONTENT,
        summary="Set marketing consent per channel",
        operation_id="setConsents",
        description=(
            "Needs `members:write`; at most one entry per channel, channels not listed keep their "
            "state. Every change is in the audit trail."
        ),
    )
    async def set_consents(
        self, db: Db, member_id: MemberId, data: JSONBody[list[ConsentIn]]
    ) -> None:
        try:  # a rule of the list as a whole (at most one entry per channel, so at most 4)
            consents = one_per_channel(data)
        except ValueError as exc:
            raise Invalid.field("body", str(exc)) from exc
        await service.set_consents(db, member_id, consents)

    @post(
        "/{member_id:uuid}/identities",
        guards=[requires("members:write")],
        responses=problems(404, 409, 422),
        status_code=HTTP_204_NO_CONTENT,
        summary="Link a channel identity (card, mall user, openid, ...)",
        operation_id="addIdentity",
        description=(
            "Needs `members:write`. An identity belongs to one member per tenant (409 otherwise); "
            "lookups and orders can then name the member by it."
        ),
    )
    async def add_identity(self, db: Db, member_id: MemberId, data: JSONBody[IdentityIn]) -> None:
        await service.add_identity(db, member_id, data)

    @post(
        "/{member_id:uuid}/phone-change",
        guards=[requires("members:write")],
        responses=problems(404, 409, 422),
        status_code=HTTP_202_ACCEPTED,
        summary="Start changing the member's phone: a one-time code goes to the new phone",
        operation_id="startPhoneChange",
        description=(
            "Needs `members:write`. The new phone must differ from the member's (422) and belong "
            "to no other member (409 naming `phone`); a six-digit code goes to it by SMS (a "
            "system message: no consent, quiet hours or cap), valid 10 minutes; at most 5 codes a"
            " member an hour (429). A newer start cancels the pending change. With "
            "`idempotency_key` a retry replays the first 202 and sends nothing."
        ),
    )
    async def start_phone_change(
        self, db: Db, member_id: MemberId, data: JSONBody[PhoneChangeIn]
    ) -> Response[PhoneChangeRead]:
        return answered(await phone.start_change(db, member_id, data), PhoneChangeRead)

    @post(
        "/{member_id:uuid}/phone-change/confirm",
        guards=[requires("members:write")],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Confirm the phone change with its code: the member's phone changes",
        operation_id="confirmPhoneChange",
        description=(
            "Needs `members:write`. The right code changes the phone (409 naming `phone` if "
            "another member took it meanwhile), audited with both phones masked, and emits "
            "`member.updated`; the same code again answers the member again. A wrong code is 422 "
            "naming `code`, counted: the fifth cancels the change. No pending change or an "
            "expired code is 409 naming `code`."
        ),
    )
    async def confirm_phone_change(
        self, db: Db, member_id: MemberId, data: JSONBody[PhoneConfirmIn]
    ) -> MemberRead:
        outcome = await phone.confirm_change(db, member_id, data)
        if isinstance(outcome, phone.WrongCode):
            await db.commit()  # the wrong attempt counts, though the answer is an error
            raise outcome.error()
        return await service.member_read(db, outcome.member)

    @delete(
        "/{member_id:uuid}/identities/{identity_id:uuid}",
        guards=[requires("members:write")],
        responses=problems(404),
        status_code=HTTP_204_NO_CONTENT,
        summary="Unlink a channel identity (a lost card, a closed app account)",
        operation_id="removeIdentity",
        description=(
            "Needs `members:write`; the identity's `id` is in the member's `identities`. Lookups "
            "and orders no longer find the member by it, and it may be linked again. Audited "
            "(`identity.removed`, with the kind), emits `member.updated`. Unlinking it again is "
            "404. The member's last identity may go: the phone always finds the member."
        ),
    )
    async def remove_identity(
        self, db: Db, member_id: MemberId, identity_id: FromPath[uuid.UUID]
    ) -> None:
        await service.remove_identity(db, member_id, identity_id)

    @post(
        "/{member_id:uuid}/merge",
        guards=[requires("members:write"), hq_only],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Merge a duplicate member into this one",
        operation_id="mergeMembers",
        description=(
            "HQ key with `members:write`. The source's points, holds, debt, orders, children, "
            "identities and growth move to this member; the source stays as a tombstone leading "
            "here."
        ),
    )
    async def merge(self, db: Db, member_id: MemberId, data: JSONBody[MergeIn]) -> MemberRead:
        member = await merge.merge_members(db, member_id, data.source_member_id)
        return await service.member_read(db, member)

    @post(
        "/{member_id:uuid}/family",
        guards=[requires("members:write")],
        responses=problems(404, 409, 422),
        status_code=HTTP_204_NO_CONTENT,
        summary="Put another member in this member's family (for points transfers)",
        operation_id="linkFamily",
        description=(
            "Needs `members:write`; both members must be in the caller's reach. Transfers within a "
            "family need the programme's `points.family_transfer`."
        ),
    )
    async def link_family(self, db: Db, member_id: MemberId, data: JSONBody[FamilyIn]) -> None:
        await service.link_family(db, member_id, data.member_id)

    @get(
        "/{member_id:uuid}/orders",
        guards=[requires("members:read"), requires("orders:read")],
        responses=problems(404, 422),
        summary="The member's orders, newest paid first",
        operation_id="listMemberOrders",
        description=(
            "Needs `members:read` and `orders:read`; `GET /orders?member=` for a member in the "
            "caller's reach (404 otherwise, as for no member), with the same filters. A store key "
            "sees the member's orders at its own store only."
        ),
    )
    async def member_orders(
        self,
        db: Db,
        member_id: MemberId,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        store: StoreQuery = None,
        day: DayQuery = None,
        since: FromQuery = None,
        until: ToQuery = None,
    ) -> OrderList:
        member = await service.get_member_in_reach(db, member_id)
        page = await orders.list_orders(
            db,
            cursor=cursor,
            limit=limit,
            member_id=member.id,
            store_code=store,
            day=day,
            since=since,
            until=until,
        )
        return OrderList(
            items=[OrderSummary.model_validate(o) for o in page.items],
            next_cursor=page.next_cursor,
        )

    # -------------------------------------------------------------- points and tiers

    @get(
        "/{member_id:uuid}/points",
        guards=[requires("members:read")],
        responses=problems(404),
        summary="Points: balance, available, pending (积分冻结), held, expiring soon",
        operation_id="getPointsBalances",
        description="Needs `members:read`; read from the ledger, never from a cache.",
    )
    async def balances(self, db: Db, member_id: MemberId) -> BalancesRead:
        member = await service.get_member_in_reach(db, member_id, active=True)
        result = await points.balances(db, await get_program(db), member.id)
        return BalancesRead(member_id=member.id, **asdict(result))

    @get(
        "/{member_id:uuid}/points/entries",
        guards=[requires("members:read")],
        responses=problems(404),
        summary="The member's points ledger, oldest first",
        operation_id="listPointsEntries",
        description=(
            "Needs `members:read`; cursor-paginated, append-only entries with their kind and cause."
        ),
    )
    async def entries(
        self,
        db: Db,
        member_id: MemberId,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> EntryList:
        await service.get_member_in_reach(db, member_id)
        page = await points.list_entries(db, member_id, cursor=cursor, limit=limit)
        return EntryList(
            items=[EntryRead.model_validate(e) for e in page.items], next_cursor=page.next_cursor
        )

    @post(
        "/{member_id:uuid}/points/adjustments",
        guards=[requires("points:write"), hq_only],
        responses=problems(404, 409, 422) | created_spec(EntryRead),
        summary="Adjust points by hand, with a reason (idempotent by key)",
        operation_id="adjustPoints",
        description=(
            "HQ key with `points:write`; recorded with the reason and the actor, emits "
            "`points.adjusted`. A retry with the same `idempotency_key` replays the first 201, a "
            "different body is 409."
        ),
    )
    async def adjust(
        self, db: Db, member_id: MemberId, data: JSONBody[AdjustmentIn]
    ) -> Response[EntryRead]:
        member = await service.get_member_in_reach(db, member_id, active=True)
        answer = await points.adjust(
            db,
            await get_program(db),
            member.id,
            data.amount,
            reason=data.reason,
            actor=str(current_actor().key_id),
            idempotency_key=data.idempotency_key,
        )
        return answered(answer, EntryRead)

    @post(
        "/{member_id:uuid}/points/transfers",
        guards=[requires("points:write")],
        responses=problems(404, 409, 422) | created_spec(EntryRead),
        summary="Transfer points within a family (idempotent by key)",
        operation_id="transferPoints",
        description=(
            "Needs `points:write`; both members in one family, with the programme's "
            "`points.family_transfer` on. A retry with the same `idempotency_key` replays the first"
            " 201, a different body is 409."
        ),
    )
    async def transfer(
        self, db: Db, member_id: MemberId, data: JSONBody[TransferIn]
    ) -> Response[EntryRead]:
        await service.get_member_in_reach(db, member_id, active=True)
        await service.get_member_in_reach(db, data.to_member_id, active=True)
        answer = await points.transfer(
            db,
            await get_program(db),
            member_id,
            data.to_member_id,
            data.amount,
            actor=str(current_actor().key_id),
            idempotency_key=data.idempotency_key,
        )
        return answered(answer, EntryRead)

    @post(
        "/{member_id:uuid}/growth",
        guards=[requires("points:write"), hq_only],
        responses=problems(404, 409, 422) | created_spec(GrowthRead),
        summary="Give bonus growth value for an activity (upgrades at once if reached)",
        operation_id="addGrowth",
        description=(
            "HQ key with `points:write`. A retry with the same `idempotency_key` replays the first "
            "201 and adds nothing, a different body is 409."
        ),
    )
    async def add_growth(
        self, db: Db, member_id: MemberId, data: JSONBody[GrowthIn]
    ) -> Response[GrowthRead]:
        return answered(
            await tiers.bonus_growth(
                db, member_id, data.amount, reason=data.reason, key=data.idempotency_key
            ),
            GrowthRead,
        )

    @get(
        "/{member_id:uuid}/tier-history",
        guards=[requires("members:read")],
        responses=problems(404),
        summary="The member's tier changes with reasons",
        operation_id="listTierChanges",
        description=(
            "Needs `members:read`; cursor-paginated, each change with its reason (`join`, "
            "`upgrade`, `evaluation`, `merge`, `tier_removed`)."
        ),
    )
    async def tier_history(
        self,
        db: Db,
        member_id: MemberId,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> TierChangeList:
        await service.get_member_in_reach(db, member_id)
        page = await tiers.history(db, member_id, cursor=cursor, limit=limit)
        return TierChangeList(
            items=[TierChangeRead.model_validate(c) for c in page.items],
            next_cursor=page.next_cursor,
        )
