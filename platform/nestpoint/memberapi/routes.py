"""HTTP routes of the member API.

* ``/api/v1/member-tokens``: the chain's backend issues and revokes member tokens (HQ key
  with ``member_tokens:write``).
* ``/api/v1/member-auth/wechat``: the chain's WeChat mini-program (appid, sealed secret).
* ``/member-auth/{tenant_slug}/wechat`` (outside ``/api/``, no key): a WeChat login code
  becomes a member token; ``.../wechat/phone``: with the phone WeChat verified too, which
  finds (or enrols) the member and binds the WeChat account.
* ``/api/v1/me/...``: what the member of the token sees of themselves (member tokens only),
  and the member's own phone change.
* ``/api/v1/members/lookup-by-code``: the till scans a member card's QR code.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from nestpoint.api.answers import answered
from nestpoint.api.deps import (
    DEFAULT_LIMIT,
    CursorQuery,
    Db,
    LimitQuery,
    hq_only,
    member_only,
    requires,
)
from nestpoint.api.problems import problems
from nestpoint.benefits.schemas import MemberBenefits
from nestpoint.context import Actor, TenantContext, current_actor, set_request_context
from nestpoint.db import scoped_session
from nestpoint.errors import NotFound
from nestpoint.memberapi import service, wechat
from nestpoint.memberapi.schemas import (
    CardRead,
    CodeLookupIn,
    MemberTokenIn,
    MemberTokenRead,
    MeRead,
    MyMessageList,
    PointEntryList,
    PointsRead,
    RevokeIn,
    RevokeRead,
    TierProgressRead,
    WechatAppIn,
    WechatAppRead,
    WechatBindRead,
    WechatLoginIn,
    WechatPhoneLoginIn,
)
from nestpoint.members import phone
from nestpoint.members import service as members
from nestpoint.members.schemas import MemberRead, PhoneChangeIn, PhoneChangeRead, PhoneConfirmIn
from nestpoint.membership.schemas import PaidMembershipRead
from nestpoint.plugins.routing import PUBLIC_429, public_tenant
from nestpoint.wallet.schemas import WalletRead

TOKENS = "member_tokens:write"


def me_problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The member API's error statuses: 401 and 429 say what they mean for a member."""
    specs = problems(*statuses)
    specs[401] = dataclasses.replace(
        specs[401], description="No member token, or one unknown, revoked or expired."
    )
    specs[403] = dataclasses.replace(
        specs[403], description="Not a member token (an API key opens no member route)."
    )
    specs[429] = dataclasses.replace(
        specs[429],
        description="Over this member's rate limit (`NESTPOINT_MEMBER_RATE_LIMIT`): retry "
        "after `Retry-After` seconds.",
    )
    return specs


def login_problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The WeChat login takes no key (no 401 or 403); 429 is per client address."""
    specs = {k: v for k, v in problems(*statuses).items() if k not in (401, 403)}
    specs[429] = dataclasses.replace(specs[429], description=PUBLIC_429)
    specs[503] = dataclasses.replace(
        specs[503],
        description="WeChat did not answer usefully (`wechat-unavailable`) or rate-limits the "
        "chain's app (`wechat-rate-limited`): retry later.",
    )
    return specs


class MemberTokenController(Controller):
    """The chain's backend gets a token for one member (server to server)."""

    path = "/member-tokens"
    tags = ["member API"]

    @post(
        "/",
        guards=[requires(TOKENS), hq_only],
        responses=problems(404, 422),
        status_code=HTTP_201_CREATED,
        summary="Issue a member token (for the chain's mini-program or app)",
        operation_id="issueMemberToken",
        description=(
            "HQ key with `member_tokens:write`. Name the member by `member_id`, `phone`, or "
            "`identity_kind` and `identity_value` (a merged member's survivor gets it). The "
            "token acts for that member only, on `/api/v1/me/...` only, until `expires_at` "
            "(`NESTPOINT_MEMBER_TOKEN_SECONDS`). Shown once; only its hash is kept."
        ),
    )
    async def issue(self, db: Db, data: JSONBody[MemberTokenIn]) -> MemberTokenRead:
        member = await service.find_member(db, data)
        return await service.issue_token(db, member.id, "server")

    @post(
        "/revoke",
        guards=[requires(TOKENS), hq_only],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Revoke every token of a member",
        operation_id="revokeMemberTokens",
        description=(
            "HQ key with `member_tokens:write`. Every live token of the member stops at once "
            "(tokens are checked on every request, never cached)."
        ),
    )
    async def revoke(self, db: Db, data: JSONBody[RevokeIn]) -> RevokeRead:
        return await service.revoke_member_tokens(db, data.member_id, reason="api")


class WechatAppController(Controller):
    """The chain's WeChat mini-program, for the login-code exchange."""

    path = "/member-auth/wechat"
    tags = ["member API"]

    @get(
        "/",
        guards=[requires(TOKENS), hq_only],
        responses=problems(),
        summary="Whether the chain's mini-program is set (never its secret)",
        operation_id="getWechatApp",
        description="HQ key with `member_tokens:write`.",
    )
    async def get_app(self, db: Db) -> WechatAppRead:
        return await service.get_wechat_app(db)

    @put(
        "/",
        guards=[requires(TOKENS), hq_only],
        responses=problems(422),
        status_code=HTTP_200_OK,
        summary="Set the chain's WeChat mini-program (appid and AppSecret)",
        operation_id="putWechatApp",
        description=(
            "HQ key with `member_tokens:write`. The AppSecret is sealed with the core's keys "
            "and never answered back; audited without it."
        ),
    )
    async def put_app(self, db: Db, data: JSONBody[WechatAppIn]) -> WechatAppRead:
        return await service.put_wechat_app(db, data)


SlugPath = Annotated[str, PathParameter(name="tenant_slug", max_length=63)]


@post(
    "/member-auth/{tenant_slug:str}/wechat",
    tags=["member API"],
    responses=login_problems(404, 422, 503),
    status_code=HTTP_200_OK,
    summary="Log a member in with a WeChat mini-program login code",
    operation_id="wechatMemberLogin",
    description=(
        "No key (limited per client address). The code from `wx.login()` is exchanged with "
        "WeChat (`sns/jscode2session`) for the member's openid; the member holding that "
        "`mp_openid` (or the answer's unionid as `mp_unionid`) gets a member token. 404 "
        "`wechat-not-bound`: no member has this WeChat identity (enrol or bind, then log in "
        "again); 404 `not-found`: no such chain, or `wechat-not-configured`; 422 "
        "`wechat-code-invalid`: WeChat refused the code (call `wx.login()` again); 503 "
        "`wechat-rate-limited` or `wechat-unavailable`: retry later."
    ),
    security=[],
)
async def wechat_login(
    db: Db, tenant_slug: SlugPath, data: JSONBody[WechatLoginIn]
) -> MemberTokenRead:
    app = await _login_app(tenant_slug)
    found = await wechat.code_to_session(app.appid, app.secret, data.code)
    member = await service.wechat_member(db, found)
    return await service.issue_token(db, member.id, "wechat")


async def _login_app(tenant_slug: str) -> wechat.WechatApp:
    """Act for the chain of ``tenant_slug`` (404 for none), and its WeChat app."""
    tenant_id = await public_tenant(tenant_slug)
    if tenant_id is None:
        raise NotFound("no such chain")
    set_request_context(TenantContext(tenant_id), Actor("system", name="member-auth:wechat"))
    return await _wechat_app()


async def _wechat_app() -> wechat.WechatApp:
    # The secret is read in a transaction of its own: none stays open while WeChat answers.
    async with scoped_session() as session:
        return await service.wechat_credentials(session)


@post(
    "/member-auth/{tenant_slug:str}/wechat/phone",
    tags=["member API"],
    responses=login_problems(404, 409, 422, 503),
    status_code=HTTP_200_OK,
    summary="Log a member in with a WeChat login code and the phone WeChat verified",
    operation_id="wechatPhoneMemberLogin",
    description=(
        "No key (limited per client address). `code` from `wx.login()` gives the openid "
        "(`sns/jscode2session`); `phone_code` from the `getPhoneNumber` button gives the "
        "phone WeChat verified (`wxa/business/getuserphonenumber`). The member holding that "
        "phone gets the WeChat account bound (`mp_openid`, `mp_unionid`) and a member token. "
        "No member has the phone: enrolled when the chain allows it (`enrol_by_phone`), else "
        "404 `wechat-phone-not-member`. 409 `wechat-bound-elsewhere` (naming `code`): the "
        "WeChat account is another member's (log in with `code` alone); 409 "
        "`plan-limit-reached` when enrolling past the plan. 422 `wechat-code-invalid` naming "
        "`code` or `phone_code`; 404 `wechat-not-configured` or `not-found` (no such chain); "
        "503 `wechat-rate-limited` or `wechat-unavailable`."
    ),
    security=[],
)
async def wechat_phone_login(
    db: Db, tenant_slug: SlugPath, data: JSONBody[WechatPhoneLoginIn]
) -> MemberTokenRead:
    app = await _login_app(tenant_slug)
    # The free login exchange first: WeChat charges the phone check, so it goes last.
    found = await wechat.code_to_session(app.appid, app.secret, data.code)
    verified = await wechat.verified_phone(app, data.phone_code)
    member = await service.wechat_phone_member(db, found, verified)
    return await service.issue_token(db, member.id, "wechat_phone")


PUBLIC_ROUTES = [wechat_login, wechat_phone_login]


# Why the caller reads a member's personal data: audited with every unmasked read.
Purpose = Annotated[
    str | None,
    HeaderParameter(
        name="Nestpoint-Purpose",
        max_length=200,
        description="Why personal data is read: audited with every unmasked read.",
    ),
]


class MemberCodeController(Controller):
    """The till scans a member card's rotating QR code."""

    path = "/members/lookup-by-code"
    tags = ["members"]

    @post(
        "/",
        guards=[requires("members:read")],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Look a member up by the QR code of their card (the member API's card)",
        operation_id="lookupMemberByCode",
        description=(
            "Needs `members:read`; answers as `GET /members/lookup` does (masked outside the "
            "caller's reach). 422 `member-code-expired` for a code older than "
            "`NESTPOINT_MEMBER_CODE_SECONDS` (the member refreshes the card), 422 "
            "`member-code-invalid` for one this chain's server did not make; both name `code`."
        ),
    )
    async def lookup(self, data: JSONBody[CodeLookupIn], purpose: Purpose = None) -> MemberRead:
        # As the lookup by phone: raw statements, no session unless an unmasked read is audited.
        found = await members.lookup_by_id(service.member_id_of_code(data.code))
        if found is None:
            raise NotFound("no such member")
        if current_actor().has("members:pii"):
            async with scoped_session() as db:
                await members.audit_unmasked(db, [found], purpose, "lookupMemberByCode")
        return found


class MeController(Controller):
    """The member of the token, seen by themselves (member tokens only)."""

    path = "/me"
    tags = ["member API"]
    guards = [member_only]

    @staticmethod
    def _member() -> uuid.UUID:
        member_id = current_actor().key_id
        assert member_id is not None  # member_only
        return member_id

    @get(
        "/",
        responses=me_problems(404),
        summary="The member's own profile",
        operation_id="getMe",
        description="Member token. The member's own data, in full.",
    )
    async def me(self, db: Db) -> MeRead:
        return await service.me_profile(db, self._member())

    @get(
        "/card",
        responses=me_problems(404),
        summary="The member card with a fresh QR code",
        operation_id="getMyCard",
        description=(
            "Member token. `code` is what the QR code shows; the till accepts it for "
            "`NESTPOINT_MEMBER_CODE_SECONDS` (60 s): fetch a new one after `refresh_in` seconds."
        ),
    )
    async def card(self, db: Db) -> Response[CardRead]:
        card = await service.me_card(db, self._member())
        return Response(card, headers={"Cache-Control": "no-store"})

    @get(
        "/points",
        responses=me_problems(404),
        summary="Points balance and when the points expire",
        operation_id="getMyPoints",
        description="Member token.",
    )
    async def points(self, db: Db) -> PointsRead:
        return await service.me_points(db, self._member())

    @get(
        "/points/entries",
        responses=me_problems(404),
        summary="The member's points ledger, oldest first",
        operation_id="listMyPointEntries",
        description="Member token; cursor-paginated.",
    )
    async def entries(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> PointEntryList:
        return await service.me_point_entries(db, self._member(), cursor=cursor, limit=limit)

    @get(
        "/tier",
        responses=me_problems(404),
        summary="Tier and progress to the next tier",
        operation_id="getMyTier",
        description="Member token.",
    )
    async def tier(self, db: Db) -> TierProgressRead:
        return await service.me_tier(db, self._member())

    @get(
        "/benefits",
        responses=me_problems(404, 422),
        summary="Benefits held, what is left of each, and what points can buy",
        operation_id="getMyBenefits",
        description=(
            "Member token. With `store_code`, whether each can be used at that store "
            "(422 naming `store_code` for an unknown store)."
        ),
    )
    async def benefits(
        self,
        db: Db,
        store_code: Annotated[str | None, QueryParameter(name="store_code", max_length=32)] = None,
    ) -> MemberBenefits:
        return await service.me_benefits(db, self._member(), store_code)

    @get(
        "/wallet",
        responses=me_problems(404),
        summary="Stored-value balance",
        operation_id="getMyWallet",
        description="Member token.",
    )
    async def wallet(self, db: Db) -> WalletRead:
        return await service.me_wallet(db, self._member())

    @get(
        "/membership",
        responses=me_problems(404),
        summary="The member's paid membership cards, newest first",
        operation_id="listMyPaidMemberships",
        description="Member token.",
    )
    async def membership(self, db: Db) -> list[PaidMembershipRead]:
        return await service.me_membership(db, self._member())

    @get(
        "/messages",
        responses=me_problems(404),
        summary="Messages sent to the member, oldest first",
        operation_id="listMyMessages",
        description="Member token; cursor-paginated; only messages sent or delivered.",
    )
    async def messages(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> MyMessageList:
        return await service.me_messages(db, self._member(), cursor=cursor, limit=limit)

    @post(
        "/wechat",
        responses=me_problems(404, 409, 422, 503),
        status_code=HTTP_200_OK,
        summary="Bind the member's WeChat account (a login code) for later logins",
        operation_id="bindMyWechat",
        description=(
            "Member token (e.g. issued by the chain's backend after it verified the phone). "
            "The code from `wx.login()` is exchanged with WeChat; its openid (and unionid) "
            "become the member's `mp_openid` (`mp_unionid`), so `POST "
            "/member-auth/{tenant_slug}/wechat` finds the member from then on. Again: a "
            "no-op. 409 `wechat-bound-elsewhere` (naming `code`): another member has this "
            "WeChat account; 422 `wechat-code-invalid`; 404 `wechat-not-configured`; 503 "
            "`wechat-rate-limited` or `wechat-unavailable`."
        ),
    )
    async def bind_wechat(self, db: Db, data: JSONBody[WechatLoginIn]) -> WechatBindRead:
        app = await _wechat_app()
        found = await wechat.code_to_session(app.appid, app.secret, data.code)
        return await service.bind_wechat(db, self._member(), found)

    @post(
        "/phone-change",
        responses=me_problems(404, 409, 422),
        status_code=HTTP_202_ACCEPTED,
        summary="Start changing my phone: a one-time code goes to the new phone",
        operation_id="startMyPhoneChange",
        description=(
            "Member token. As `POST /members/{member_id}/phone-change`: the new phone must "
            "differ from the member's (422) and be no other member's (409 naming `phone`); a "
            "six-digit code goes to it by SMS, valid 10 minutes; at most 5 codes an hour "
            "(429). 409 `phone-code-undeliverable` (naming `phone`): the chain has no channel "
            "that can send the code, and nothing is started. With `idempotency_key` a retry "
            "replays the first 202 and sends nothing."
        ),
    )
    async def start_phone_change(
        self, db: Db, data: JSONBody[PhoneChangeIn]
    ) -> Response[PhoneChangeRead]:
        answer = await service.me_start_phone_change(db, self._member(), data)
        return answered(answer, PhoneChangeRead)

    @post(
        "/phone-change/confirm",
        responses=me_problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Confirm my phone change with its code: my profile with the new phone",
        operation_id="confirmMyPhoneChange",
        description=(
            "Member token. The right code changes the phone (409 naming `phone` if another "
            "member took it meanwhile); the same code again answers the profile again. A "
            "wrong code is 422 naming `code`, counted: the fifth cancels the change. No "
            "pending change or an expired code is 409 naming `code`."
        ),
    )
    async def confirm_phone_change(self, db: Db, data: JSONBody[PhoneConfirmIn]) -> MeRead:
        outcome = await service.me_confirm_phone_change(db, self._member(), data)
        if isinstance(outcome, phone.WrongCode):
            await db.commit()  # the wrong attempt counts, though the answer is an error
            raise outcome.error()
        return outcome

    @delete(
        "/token",
        responses=me_problems(),
        status_code=HTTP_204_NO_CONTENT,
        summary="Log out: the presented token stops working",
        operation_id="revokeMyToken",
        description="Member token.",
    )
    async def logout(self, db: Db, request: Request[Any, Any, Any]) -> None:
        auth = request.headers.get("authorization", "")
        raw = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        await service.revoke_token(db, raw or request.headers.get("x-api-key", ""), self._member())
