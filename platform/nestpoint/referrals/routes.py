"""HTTP routes of referrals and friend assists: translate HTTP to service calls."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import Db, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.referrals import service
from nestpoint.referrals.models import ReferralStatus
from nestpoint.referrals.schemas import (
    AssistIn,
    AssistRead,
    BindIn,
    CodeRead,
    HelpIn,
    ReferralRead,
    ReferralSettings,
    ReviewIn,
    RewardRun,
)

InviterQuery = Annotated[uuid.UUID | None, QueryParameter(name="inviter_id", required=False)]
StatusQuery = Annotated[ReferralStatus | None, QueryParameter(name="status", required=False)]


class ReferralController(Controller):
    """Referrals (邀请有礼): the chain's rules, binds, reviews, the reward run."""

    path = "/referrals"
    tags = ["referrals"]

    @get(
        "/settings",
        guards=[requires("referrals:read")],
        responses=problems(),
        summary="The chain's referral and friend-assist rules",
        operation_id="getReferralSettings",
        description="Off, with the defaults, until HQ sets them (docs/referrals.md).",
    )
    async def settings(self, db: Db) -> ReferralSettings:
        return await service.get_settings(db)

    @put(
        "/settings",
        guards=[requires("referrals:write"), hq_only],
        responses=problems(422),
        status_code=HTTP_200_OK,
        summary="Replace the chain's referral and friend-assist rules",
        operation_id="putReferralSettings",
        description=(
            "HQ key with `referrals:write`. A coupon named must be one of the chain's "
            "templates (422 naming the field). Audited when it changes."
        ),
    )
    async def put_settings(self, db: Db, data: JSONBody[ReferralSettings]) -> ReferralSettings:
        return await service.put_settings(db, data)

    @post(
        "/",
        guards=[requires("referrals:use")],
        responses=problems(404, 409, 422) | created_spec(ReferralRead),
        summary="Bind a new member to the inviter whose code they came with",
        operation_id="bindReferral",
        description=(
            "Needs `referrals:use`. Abuse checks: self-invitation (also through a merge), one "
            "family, a member who is not new, a device that bound or helped before (422 naming "
            "the field); an invitee referred already is 409. An inviter's invitees beyond the "
            "day's limit at one store go to `review`. Both sides are rewarded after the "
            "invitee's first qualifying purchase (the `referrals.reward` job)."
        ),
    )
    async def bind(self, db: Db, data: JSONBody[BindIn]) -> Response[ReferralRead]:
        return Response(await service.bind(db, data), status_code=201)

    @get(
        "/",
        guards=[requires("referrals:read"), hq_only],
        responses=problems(),
        summary="Referrals, newest first (at most 500)",
        operation_id="listReferrals",
        description="HQ key with `referrals:read`; filtered by inviter and status.",
    )
    async def all(
        self, db: Db, inviter_id: InviterQuery = None, status: StatusQuery = None
    ) -> list[ReferralRead]:
        return await service.list_referrals(db, inviter_id, status)

    @post(
        "/{referral_id:uuid}/review",
        guards=[requires("referrals:write"), hq_only],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Approve or reject a referral held for review",
        operation_id="reviewReferral",
        description="Approved: pending again, rewarded as usual. 409 unless in review. Audited.",
    )
    async def review(
        self, db: Db, referral_id: FromPath[uuid.UUID], data: JSONBody[ReviewIn]
    ) -> ReferralRead:
        return await service.review(db, referral_id, data.approve, data.reason)

    @post(
        "/rewards/run",
        guards=[requires("referrals:write"), hq_only],
        responses=problems(),
        status_code=HTTP_200_OK,
        summary="Reward the referrals due now (the job's run, on demand)",
        operation_id="runReferralRewards",
        description=(
            "What the periodic `referrals.reward_all` job does every five minutes: rewards "
            "pending referrals whose invitee's first purchase qualified, each once, and "
            "expires those past the purchase window."
        ),
    )
    async def run_rewards(self, db: Db) -> RewardRun:
        return await service.reward_due(db)


class MemberReferralController(Controller):
    """A member's invitation code and friend assists."""

    path = "/members/{member_id:uuid}"
    tags = ["referrals"]

    @get(
        "/referral-code",
        guards=[requires("referrals:use")],
        responses=problems(404),
        summary="The member's invitation code (made on first ask)",
        operation_id="getReferralCode",
        description="Needs `referrals:use`. The same code every time.",
    )
    async def code(self, db: Db, member_id: FromPath[uuid.UUID]) -> CodeRead:
        return await service.code_of(db, member_id)

    @post(
        "/assists",
        guards=[requires("referrals:use")],
        responses=problems(404, 409, 422) | created_spec(AssistRead),
        summary="Open a friend assist (好友助力) for the member",
        operation_id="startAssist",
        description=(
            "Needs `referrals:use`. One open assist per member (409 otherwise); it needs the "
            "chain's `assist_goal` friends within `assist_days`. A retry with the same "
            "`idempotency_key` replays the first 201."
        ),
    )
    async def start_assist(
        self, db: Db, member_id: FromPath[uuid.UUID], data: JSONBody[AssistIn]
    ) -> Response[AssistRead]:
        return answered(await service.start_assist(db, member_id, data), AssistRead)


class AssistController(Controller):
    """Friends helping an assist."""

    path = "/assists"
    tags = ["referrals"]

    @get(
        "/{assist_id:uuid}",
        guards=[requires("referrals:use")],
        responses=problems(404),
        summary="An assist and how many friends helped",
        operation_id="getAssist",
        description="Needs `referrals:use`.",
    )
    async def detail(self, db: Db, assist_id: FromPath[uuid.UUID]) -> AssistRead:
        return await service.get_assist(db, assist_id)

    @post(
        "/{assist_id:uuid}/helpers",
        guards=[requires("referrals:use")],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="A friend helps (the goal-th completes it and rewards the asker)",
        operation_id="helpAssist",
        description=(
            "Needs `referrals:use`. The asker may not help (422 `helper_id`), a friend helps "
            "once (409), one device helps once (422 `device_id`); a completed or expired "
            "assist is 409."
        ),
    )
    async def help(
        self, db: Db, assist_id: FromPath[uuid.UUID], data: JSONBody[HelpIn]
    ) -> AssistRead:
        return await service.help_assist(db, assist_id, data)
