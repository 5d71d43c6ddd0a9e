"""HTTP routes of segments under ``/api/v1/segments``: translate HTTP to service calls."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.members import service as members
from nestpoint.members.schemas import MemberList
from nestpoint.segments import builtin, service
from nestpoint.segments.builtin import Thresholds
from nestpoint.segments.schemas import (
    CODE_PATTERN,
    BuiltinGroupRead,
    BuiltinLabel,
    BuiltinList,
    Preview,
    PreviewIn,
    SegmentIn,
    SegmentList,
    SegmentRead,
)

# Why the caller reads members' personal data: audited with every unmasked read (as on
# the members' routes).
Purpose = Annotated[
    str | None,
    HeaderParameter(
        name="Nestpoint-Purpose",
        max_length=200,
        description="Why personal data is read: audited with every unmasked read.",
    ),
]
CodePath = Annotated[str, PathParameter(name="code", pattern=CODE_PATTERN, max_length=64)]


class SegmentController(Controller):
    """A chain's custom segments: rule trees over members, children and orders (HQ)."""

    path = "/segments"
    tags = ["segments"]

    @post(
        "/preview",
        guards=[requires("segments:read"), requires("members:read"), hq_only],
        responses=problems(422),
        status_code=200,
        summary="Count a rule's members and show a sample (nothing is saved)",
        operation_id="previewSegment",
        description=(
            "HQ key with `segments:read` and `members:read`. The count of active members the "
            "rule holds for now and the first 20 by id, masked without `members:pii` (an "
            "unmasked sample is audited per member with the `Nestpoint-Purpose` header). A bad "
            "node, an unknown store code or a tree over the limits (50 conditions, 6 levels) "
            "is a 422 naming its path (`rule.all.1.value`)."
        ),
    )
    async def preview(self, db: Db, data: JSONBody[PreviewIn], purpose: Purpose = None) -> Preview:
        total, sample = await service.preview(db, data.rule)
        await members.audit_unmasked(db, sample, purpose, "previewSegment")
        reach = await members.caller_reach(db)
        return Preview(
            count=total, sample=[members.member_summary(m, reach.view(m)) for m in sample]
        )

    @get(
        "/",
        guards=[requires("segments:read"), hq_only],
        responses=problems(),
        summary="The chain's segments, by code",
        operation_id="listSegments",
        description="Cursor-paginated; without counts (read one segment for its count).",
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> SegmentList:
        page = await service.list_segments(db, cursor=cursor, limit=limit)
        return SegmentList(
            items=[SegmentRead.model_validate(s, from_attributes=True) for s in page.items],
            next_cursor=page.next_cursor,
        )

    @get(
        "/builtin",
        guards=[requires("segments:read"), hq_only],
        responses=problems(),
        summary="The built-in segments, each with its number of members",
        operation_id="listBuiltinSegments",
        description=(
            "Every RFM group, value circle and lifecycle stage with its code, its label in "
            "English and Chinese and its active members as of the last recomputation (the "
            "daily `segments.recompute` job, at the chain's local 02:30). A rule names them "
            '(`{"field": "rfm_group", "op": "in", "value": ["important_value"]}`).'
        ),
    )
    async def builtin(self, db: Db) -> BuiltinList:
        groups, computed_on = await builtin.builtin_groups(db)
        return BuiltinList(
            computed_on=computed_on,
            items=[
                BuiltinGroupRead(
                    kind=g.kind,
                    code=g.code,
                    label=BuiltinLabel(en=g.label_en, zh=g.label_zh),
                    count=g.count,
                )
                for g in groups
            ],
        )

    @get(
        "/thresholds",
        guards=[requires("segments:read"), hq_only],
        responses=problems(),
        summary="The thresholds of the built-in segments",
        operation_id="getSegmentThresholds",
        description="The chain's own, or the defaults (docs/segments.md).",
    )
    async def thresholds(self, db: Db) -> Thresholds:
        return await builtin.get_thresholds(db)

    @put(
        "/thresholds",
        guards=[requires("segments:write"), hq_only],
        responses=problems(422),
        status_code=200,
        summary="Replace the thresholds of the built-in segments",
        operation_id="putSegmentThresholds",
        description=(
            "HQ key with `segments:write`. A field left out takes its default. They apply "
            "from the next recomputation. Audited (`segments.thresholds_changed`)."
        ),
    )
    async def put_thresholds(self, db: Db, data: JSONBody[Thresholds]) -> Thresholds:
        return await builtin.put_thresholds(db, data)

    @get(
        "/{code:str}",
        guards=[requires("segments:read"), hq_only],
        responses=problems(404),
        summary="One segment, with the number of members in it now",
        operation_id="getSegment",
        description="`count`: the active members the rule holds for now.",
    )
    async def detail(self, db: Db, code: CodePath) -> SegmentRead:
        segment = await service.get_segment(db, code)
        read = SegmentRead.model_validate(segment, from_attributes=True)
        read.count = await service.segment_count(db, segment)
        return read

    @put(
        "/{code:str}",
        guards=[requires("segments:write"), hq_only],
        responses={
            200: ResponseSpec(data_container=SegmentRead, description="Replaced."),
            201: ResponseSpec(data_container=SegmentRead, description="Created."),
            **problems(404, 422),
        },
        summary="Create or replace a segment",
        operation_id="putSegment",
        description=(
            "HQ key with `segments:write`. 201 when the code is new, 200 when it replaces the "
            "segment's name and rule (the same body again changes nothing). The rule is checked "
            "as in `POST /segments/preview`. Audited."
        ),
    )
    async def put(self, db: Db, code: CodePath, data: JSONBody[SegmentIn]) -> Response[SegmentRead]:
        segment, created = await service.put_segment(db, code, data)
        body = SegmentRead.model_validate(segment, from_attributes=True)
        return Response(body, status_code=201 if created else 200)

    @delete(
        "/{code:str}",
        guards=[requires("segments:write"), hq_only],
        responses=problems(404),
        status_code=204,
        summary="Delete a segment",
        operation_id="deleteSegment",
        description="Its exports stay. Audited.",
    )
    async def remove(self, db: Db, code: CodePath) -> None:
        await service.delete_segment(db, code)

    @get(
        "/{code:str}/members",
        guards=[requires("segments:read"), requires("members:read"), hq_only],
        responses=problems(404),
        summary="The segment's members now, by id",
        operation_id="listSegmentMembers",
        description=(
            "HQ key with `segments:read` and `members:read`; cursor-paginated, masked without "
            "`members:pii` (an unmasked page is audited per member with the "
            "`Nestpoint-Purpose` header)."
        ),
    )
    async def members(
        self,
        db: Db,
        code: CodePath,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        purpose: Purpose = None,
    ) -> MemberList:
        page = await service.segment_members(db, code, cursor=cursor, limit=limit)
        await members.audit_unmasked(db, page.items, purpose, "listSegmentMembers")
        reach = await members.caller_reach(db)
        return MemberList(
            items=[members.member_summary(m, reach.view(m)) for m in page.items],
            next_cursor=page.next_cursor,
        )
