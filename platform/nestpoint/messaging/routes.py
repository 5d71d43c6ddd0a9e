"""HTTP routes of messaging: translate HTTP to service calls, nothing more.

Under ``/api/v1/messaging`` (settings, templates, preview, reach) and ``/api/v1/messages``
(send, delivery records); providers' delivery receipts arrive without a key at
``/public/{tenant_slug}/channels/{channel}/receipts``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter

from nestpoint.api.answers import answered
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.api.ratelimit import PUBLIC_PATH_PREFIX
from nestpoint.context import Actor, TenantContext, current_actor, set_request_context
from nestpoint.db.base import utcnow
from nestpoint.errors import Forbidden, NotFound, Unauthorized
from nestpoint.messaging import service, templates
from nestpoint.messaging.schemas import (
    AttemptRead,
    Locale,
    MessageDetail,
    MessageList,
    MessageRead,
    MessagingSettings,
    PreviewIn,
    ReachReport,
    Rendered,
    SendIn,
    Status,
    TemplateIn,
    TemplateList,
    TemplateRead,
)
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.routing import public_tenant
from nestpoint.plugins.types import CallbackRequest, PluginContext

KeyPath = Annotated[
    str, PathParameter(name="key", pattern=r"^[a-z][a-z0-9_]{0,63}$", max_length=64)
]
LocalePath = Annotated[Locale, PathParameter(name="locale")]
MessageIdPath = Annotated[uuid.UUID, PathParameter(name="message_id")]


class MessagingController(Controller):
    """The chain's messaging rules and templates, previews and reach (HQ)."""

    path = "/messaging"
    tags = ["messaging"]

    @get(
        "/settings",
        guards=[requires("messages:read")],
        responses=problems(),
        summary="The chain's messaging rules",
        operation_id="getMessagingSettings",
        description="Channel order, quiet hours, frequency cap, transactional switches.",
    )
    async def get_settings(self, db: Db) -> MessagingSettings:
        return await service.get_messaging_settings(db)

    @put(
        "/settings",
        guards=[requires("messages:write"), hq_only],
        responses=problems(422),
        summary="Replace the chain's messaging rules (HQ)",
        operation_id="putMessagingSettings",
        description="HQ key with `messages:write`; audited.",
    )
    async def put_settings(self, db: Db, data: JSONBody[MessagingSettings]) -> MessagingSettings:
        return await service.put_messaging_settings(db, data)

    @get(
        "/templates",
        guards=[requires("messages:read")],
        responses=problems(),
        summary="Every template, in zh-CN and en (built-in or the chain's own)",
        operation_id="listMessageTemplates",
        description="With the variables every template may use.",
    )
    async def list_templates(self, db: Db) -> TemplateList:
        return TemplateList(
            items=await service.list_templates(db), variables=dict(templates.VARIABLES)
        )

    @put(
        "/templates/{key:str}/{locale:str}",
        guards=[requires("messages:write"), hq_only],
        responses=problems(404, 422),
        summary="Set the chain's wording of a template in one locale (HQ)",
        operation_id="putMessageTemplate",
        description=(
            "Jinja2 syntax (`{{ member_name }}`), rendered in a sandbox; 422 naming the field "
            "with the line of a syntax error. A new key makes a new template for `POST /messages`."
        ),
    )
    async def put_template(
        self, db: Db, key: KeyPath, locale: LocalePath, data: JSONBody[TemplateIn]
    ) -> TemplateRead:
        return await service.put_template(db, key, locale, data)

    @delete(
        "/templates/{key:str}/{locale:str}",
        guards=[requires("messages:write"), hq_only],
        responses=problems(404),
        status_code=204,
        summary="Back to the built-in wording (HQ)",
        operation_id="deleteMessageTemplate",
        description="Removing a wording the chain never set changes nothing.",
    )
    async def delete_template(self, db: Db, key: KeyPath, locale: LocalePath) -> None:
        await service.delete_template(db, key, locale)

    @post(
        "/preview",
        guards=[requires("messages:read")],
        responses=problems(403, 404, 422),
        status_code=200,
        summary="Render a template for a member, or with sample values",
        operation_id="previewMessage",
        description="Sends nothing. Needs `members:pii` too when a member is named.",
    )
    async def preview(self, db: Db, data: JSONBody[PreviewIn]) -> Rendered:
        if data.member_id is not None and not current_actor().has("members:pii"):
            raise Forbidden("a preview for a member shows personal data: it needs `members:pii`")
        return await service.preview(db, data)

    @get(
        "/reach",
        guards=[requires("messages:read")],
        responses=problems(422),
        summary="Reach: messages by channel, status and reason, and the reach rate",
        operation_id="getMessagingReach",
        description="Messages created in `[since, until)` (default: the last 30 days).",
    )
    async def reach(
        self,
        db: Db,
        since: Annotated[datetime | None, QueryParameter(name="since")] = None,
        until: Annotated[datetime | None, QueryParameter(name="until")] = None,
    ) -> ReachReport:
        end = until or utcnow()
        return await service.reach(db, since or end - timedelta(days=30), end)


class MessageController(Controller):
    """Messages to members: send, and every delivery record."""

    path = "/messages"
    tags = ["messaging"]

    @post(
        "/",
        guards=[requires("messages:write"), hq_only],
        responses=problems(404, 409, 422),
        status_code=202,
        summary="Send a template to members (queued; sent by workers)",
        operation_id="sendMessages",
        description=(
            "One message per member (a member named twice gets one). Idempotent by "
            "`message_key`: a retry replays the first 202 (`Idempotent-Replayed: true`) and "
            "queues nothing new; the key with another request is 409. Consent, quiet hours, "
            "the frequency cap and the channel order apply in the workers (see the records)."
        ),
    )
    async def send(self, db: Db, data: JSONBody[SendIn]) -> Response[MessageList]:
        return answered(await service.send(db, data), MessageList)

    @get(
        "/",
        guards=[requires("messages:read")],
        responses=problems(),
        summary="Delivery records, oldest first",
        operation_id="listMessages",
        description="Cursor-paginated; filtered by member, status or purpose.",
    )
    async def list(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        member_id: Annotated[uuid.UUID | None, QueryParameter(name="member_id")] = None,
        status: Annotated[Status | None, QueryParameter(name="status")] = None,
        purpose: Annotated[str | None, QueryParameter(name="purpose", max_length=64)] = None,
    ) -> MessageList:
        page = await service.list_messages(
            db, cursor=cursor, limit=limit, member_id=member_id, status=status, purpose=purpose
        )
        return MessageList(
            items=[MessageRead.model_validate(m) for m in page.items],
            next_cursor=page.next_cursor,
        )

    @get(
        "/{message_id:uuid}",
        guards=[requires("messages:read")],
        responses=problems(404),
        summary="One message with every attempt",
        operation_id="getMessage",
        description="Its status, reason, channels tried and each connector call's outcome.",
    )
    async def detail(self, db: Db, message_id: MessageIdPath) -> MessageDetail:
        message, attempts = await service.get_message(db, message_id)
        return MessageDetail(
            **MessageRead.model_validate(message).model_dump(),
            attempt_log=[AttemptRead.model_validate(a) for a in attempts],
        )


ChannelPath = Annotated[
    str, PathParameter(name="channel", pattern=r"^[a-z][a-z0-9_]{0,31}$", max_length=32)
]
SlugPath = Annotated[str, PathParameter(name="tenant_slug", max_length=63)]
MAX_RECEIPT_BYTES = 256 * 1024


@post(
    f"{PUBLIC_PATH_PREFIX}{{tenant_slug:str}}/channels/{{channel:str}}/receipts",
    tags=["messaging"],
    responses=problems(401, 404),
    status_code=200,
    summary="A provider's delivery receipts (no key: the connector checks the signature)",
    operation_id="receiveDeliveryReceipts",
    description=(
        "Called by an SMS gateway or another provider: the connector of `channel` verifies "
        "the request (401 otherwise) and the messages it names become delivered or failed."
    ),
    security=[],
)
async def receive_receipts(
    request: Request[Any, Any, Any], db: Db, tenant_slug: SlugPath, channel: ChannelPath
) -> dict[str, int]:
    tenant_id = await public_tenant(tenant_slug)
    if tenant_id is None:
        raise NotFound("no such page")
    set_request_context(TenantContext(tenant_id), Actor("system", name=f"receipts:{channel}"))
    host = get_plugin_host()
    enabled = await host.enabled_plugins(tenant_id, None, anywhere=True)
    for plugin_id in sorted(enabled):
        connector = host.contributions[plugin_id].channels.get(channel)
        if connector is None or connector.receipts is None:
            continue
        body = await request.body()
        call = CallbackRequest(
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            query={k: str(v) for k, v in request.query_params.items()},
            body=body[:MAX_RECEIPT_BYTES],
        )
        reports = await connector.receipts(
            call, PluginContext(plugin_id, tenant_id, None, enabled[plugin_id])
        )
        if reports is None:
            raise Unauthorized("the receipt's signature does not verify")
        return {"applied": await service.apply_reports(db, channel, reports)}
    raise NotFound("no such page")
