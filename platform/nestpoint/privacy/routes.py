"""HTTP routes of members' rights: erasure, the retention policy and its runs (HQ)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.context import require_tenant
from nestpoint.members.service import local_today
from nestpoint.privacy import service
from nestpoint.privacy.schemas import (
    ErasureIn,
    ErasureList,
    ErasureRead,
    PolicyIn,
    PolicyRead,
    RetentionPreview,
    RetentionRunList,
    RetentionRunRead,
)

MemberIdPath = Annotated[uuid.UUID, PathParameter(name="member_id")]
RunIdPath = Annotated[uuid.UUID, PathParameter(name="run_id")]


class ErasureController(Controller):
    """A member's right of deletion (PIPL art. 47)."""

    path = "/members/{member_id:uuid}/erasure"
    tags = ["privacy", "members"]

    @post(
        "/",
        guards=[requires("privacy:write"), hq_only],
        responses=problems(403, 404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Erase a member's personal data (the books stay, pseudonymous)",
        operation_id="eraseMember",
        description=(
            "HQ key with `privacy:write`. The member's data key is shredded; phone, name, "
            "birthday, tags, children, identities and consents go; orders, points and "
            "benefits stay under the member's id. The member can no longer be looked up. "
            "Members merged into it are erased with it. Plugins erase theirs in a job "
            "(`plugins_erased_at`). Asking again answers with the first erasure. 409 while an "
            "open order holds the member's points. Audited; emits `member.erased`."
        ),
    )
    async def erase(
        self, db: Db, member_id: MemberIdPath, data: JSONBody[ErasureIn]
    ) -> ErasureRead:
        return ErasureRead.model_validate(
            await service.erase_member(db, member_id, reason=data.reason)
        )

    @get(
        "/",
        guards=[requires("privacy:read"), hq_only],
        responses=problems(403, 404),
        summary="A member's erasure: when, why, what went",
        operation_id="getErasure",
        description="404 when the member was not erased.",
    )
    async def detail(self, db: Db, member_id: MemberIdPath) -> ErasureRead:
        return ErasureRead.model_validate(await service.get_erasure(db, member_id))


class PrivacyController(Controller):
    """The chain's erasures, retention rules and their runs."""

    path = "/privacy"
    tags = ["privacy"]

    @get(
        "/erasures",
        guards=[requires("privacy:read"), hq_only],
        responses=problems(403),
        summary="Erasures, oldest first",
        operation_id="listErasures",
        description="Cursor-paginated; by request and by the retention rules alike.",
    )
    async def erasures(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> ErasureList:
        page = await service.list_erasures(db, cursor=cursor, limit=limit)
        return ErasureList(
            items=[ErasureRead.model_validate(e) for e in page.items],
            next_cursor=page.next_cursor,
        )

    @get(
        "/policy",
        guards=[requires("privacy:read"), hq_only],
        responses=problems(403),
        summary="The retention rules",
        operation_id="getPrivacyPolicy",
        description="Null: the rule is off (nothing is erased by age). Both are off until set.",
    )
    async def policy(self, db: Db) -> PolicyRead:
        return PolicyRead.model_validate(await service.get_policy(db))

    @put(
        "/policy",
        guards=[requires("privacy:write"), hq_only],
        responses=problems(403, 422),
        summary="Set the retention rules",
        operation_id="setPrivacyPolicy",
        description=(
            "Both fields; null switches a rule off. The rules run every day at 04:00 the "
            "chain's time (`privacy.retention`). Preview first: "
            "`GET /privacy/retention-preview`. Audited."
        ),
    )
    async def set_policy(self, db: Db, data: JSONBody[PolicyIn]) -> PolicyRead:
        return PolicyRead.model_validate(await service.set_policy(db, data))

    @get(
        "/retention-preview",
        guards=[requires("privacy:read"), hq_only],
        responses=problems(403),
        summary="What the retention rules would erase today",
        operation_id="previewRetention",
        description="Counts only; nothing is erased.",
    )
    async def preview(self, db: Db) -> RetentionPreview:
        policy = await service.get_policy(db)
        due = await service.due_for_retention(db, policy, await local_today(db))
        return RetentionPreview(members=len(due.member_ids), children=len(due.child_ids))

    @post(
        "/retention-runs",
        guards=[requires("privacy:write"), hq_only],
        responses=problems(403),
        status_code=202,
        summary="Run the retention rules now (queued; run by workers)",
        operation_id="runRetention",
        description=(
            "The report is created at once and filled in by a worker (`finished_at`). "
            "Running again erases only what is still due."
        ),
    )
    async def run(self, db: Db) -> RetentionRunRead:
        report = await service.start_run(db, "api")
        service.run_after_commit(db, require_tenant().tenant_id, report.id)
        return RetentionRunRead.model_validate(report)

    @get(
        "/retention-runs",
        guards=[requires("privacy:read"), hq_only],
        responses=problems(403),
        summary="Reports of the retention runs, oldest first",
        operation_id="listRetentionRuns",
        description="Cursor-paginated.",
    )
    async def runs(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> RetentionRunList:
        page = await service.list_runs(db, cursor=cursor, limit=limit)
        return RetentionRunList(
            items=[RetentionRunRead.model_validate(r) for r in page.items],
            next_cursor=page.next_cursor,
        )

    @get(
        "/retention-runs/{run_id:uuid}",
        guards=[requires("privacy:read"), hq_only],
        responses=problems(403, 404),
        summary="One retention run's report",
        operation_id="getRetentionRun",
        description="Members erased (their pseudonymous ids) and children's records erased.",
    )
    async def run_detail(self, db: Db, run_id: RunIdPath) -> RetentionRunRead:
        return RetentionRunRead.model_validate(await service.get_run(db, run_id))
