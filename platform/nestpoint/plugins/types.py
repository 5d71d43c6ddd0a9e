"""Values exchanged between the core and plugins: frozen, serialisable, no ORM objects.

Plugins import these through :mod:`nestpoint.plugins.api`, never from here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# ------------------------------------------------------------------ earn-rule adjustments


@dataclass(frozen=True, slots=True)
class EarnLine:
    """One line of a paid order, as the earn rules see it.

    ``sku``, ``category`` and ``quantity`` are the till's; ``paid_fen`` is what the member
    paid for the line in fen (after discounts and coupons, before points); ``base_points``
    is what the chain's earn rules give the line before any plugin adjusts it."""

    sku: str
    category: str
    quantity: int
    paid_fen: int
    base_points: int


@dataclass(frozen=True, slots=True)
class EarnContext:
    """What an earn-rule adjustment (``nestpoint_adjust_earned_points``) may look at.

    Every time and date is the chain's: ``paid_at`` is in the chain's time zone
    (``time_zone``), whatever offset the till sent, so ``paid_at.month`` or
    ``paid_at.date()`` is the month or day the chain's members live in.

    - ``tenant_id``, ``store_id``, ``member_id``: the chain, the store the order is recorded
      at (``None`` only when the kit's helpers ask without a store), and the member, as
      strings of their UUIDs;
    - ``member_birthday``: the member's birthday, if recorded;
    - ``children_birth_dates``: the recorded birth dates of the member's children (children
      not yet born, with only a due date, are not in it);
    - ``tier_code``: the member's tier when the order is recorded (before any upgrade it
      brings);
    - ``paid_at``: when the order was paid, an aware datetime in the chain's time zone;
    - ``lines``: the order's lines (:class:`EarnLine`), in the order's line order;
    - ``base_points``: the order's points before plugins (the sum of the lines');
    - ``time_zone``: the chain's IANA time zone (``Asia/Shanghai``), from its programme;
    - ``config``: this plugin's configuration for the store (chain's, overridden by the
      store's, validated, defaults filled in).
    """

    tenant_id: str
    store_id: str | None
    member_id: str
    member_birthday: date | None
    children_birth_dates: tuple[date, ...]
    tier_code: str | None
    paid_at: datetime
    lines: tuple[EarnLine, ...]
    base_points: int
    time_zone: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EarnAdjustment:
    """Extra points (negative to deduct) and why, for the whole order or for some lines.

    ``lines`` names the lines the adjustment belongs to, by their 1-based position in
    ``EarnContext.lines``; empty (the default) means the whole order. A bonus goes to the
    named line that earned most, a deduction is taken from the last named lines first, and
    no line drops below zero: so a refund of a line takes back exactly the points that line
    earned, the plugin's share included, and ``reason`` is recorded on the lines whose
    points it changed only."""

    points: int
    reason: str
    lines: tuple[int, ...] = ()


# ------------------------------------------------------------------ a member, as a plugin sees one


@dataclass(frozen=True, slots=True)
class ChildFacts:
    """A member's child (or pregnancy): its id and stage (``pregnant``, ``0-6m``, ``6-12m``,
    ``1-3y``, ``3-6y``, ``older``...; derived from its dates in the chain's calendar)."""

    id: uuid.UUID
    stage: str


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What a plugin may know of a member to apply its rules: the member's id (a merged
    member's survivor), tier and children. No personal data."""

    member_id: uuid.UUID
    tier_code: str | None
    tier_rank: int  # 0 = the entry tier: compare tiers by rank, not by code
    children: tuple[ChildFacts, ...]


# ------------------------------------------------------------------ the plugin's own context


@dataclass(frozen=True, slots=True)
class PluginContext:
    """Who a hook call or route request is for, and the plugin's configuration there.

    ``config`` is the tenant's configuration overridden by the store's, validated against the
    plugin's schema (defaults filled in). ``session()`` opens a database session bound to the
    same tenant: every query is scoped to it, and row-level security applies on PostgreSQL.
    """

    plugin_id: str
    tenant_id: uuid.UUID
    store_id: uuid.UUID | None
    config: Mapping[str, Any]
    # Who a console panel is rendered for; ``None`` in every other call.
    viewer: ConsoleViewer | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for this tenant that commits when the block succeeds."""
        with tenant_context(self.tenant_id, self.store_id):
            async with scoped_session() as session:
                yield session


# ------------------------------------------------------------------ channels


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message for one member on one channel, rendered by the core for a connector.

    - ``message_id``: stable for this message on this channel (the same on every retry):
      give it to a provider that deduplicates or correlates by an id of yours;
    - ``channel``: the connector's key; ``to``: the member's address there (the phone in
      E.164, the e-mail address, the mini-program openid, the WeCom user id: whatever the
      connector's ``address`` asks for);
    - ``purpose``: why it is sent (``points_expiring``, ``birthday``, ``campaign``...);
      ``template`` the template's key, ``locale`` its language (``zh-CN``, ``en``);
    - ``subject``, ``body`` (plain text) and ``html`` (empty when the template has no HTML
      part): the rendered template;
    - ``params``: the template's variables as strings, for channels that send a provider's
      template id with parameters (SMS, WeChat subscribe messages) instead of a body.
    """

    message_id: str
    tenant_id: str
    store_id: str | None
    member_id: str
    channel: str
    to: str
    purpose: str
    template: str
    locale: str
    subject: str
    body: str
    html: str = ""
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What a connector reports after one send.

    - ``accepted``: the provider took the message (``provider_message_id`` is its id);
    - ``delivered``: the provider also confirmed it reached the member (a webhook's 2xx);
      otherwise a later :class:`DeliveryReport` may say so;
    - ``retry``: not accepted, but worth trying this channel again later (a timeout, a 5xx,
      the provider's rate limit): the core retries with back-off up to the connector's
      ``max_attempts`` before it falls back to the next channel. Not accepted and not
      ``retry`` (a bad number, no subscription) falls back at once.
    - ``detail``: a short reason, kept on the delivery record: never a credential.

    A connector that raises is treated as ``retry`` with the exception's class name as the
    detail (the message is not recorded: it may carry a URL with a token).
    """

    accepted: bool
    provider_message_id: str = ""
    detail: str = ""
    retry: bool = False
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A provider's call to ``POST /callbacks/{tenant}/channels/{channel}`` (delivery
    receipts): the raw request, for the connector to verify its signature and parse."""

    method: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One receipt from a provider: the message it sent (its ``provider_message_id``) did
    or did not reach the member."""

    provider_message_id: str
    delivered: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    """The question ``nestpoint_choose_channel`` answers: how to reach this member now."""

    tenant_id: str
    store_id: str | None
    member_id: str
    purpose: str  # e.g. "birthday", "points_expiring", "campaign"
    available: tuple[str, ...]  # keys of the connectors that may reach this member now


@dataclass(frozen=True, slots=True)
class ChannelConnector:
    """A way to reach members (SMS, WeCom, mini-program messages, e-mail...).

    - ``send``: ``async def send(message, plugin) -> DeliveryReceipt``, called from a worker
      (never in a request), outside any transaction, at most once per attempt;
    - ``address``: the member's address the channel needs: ``phone`` (the member's phone,
      E.164), or an identity kind the member holds (``email``, ``mp_openid``,
      ``wecom_userid``); a member without one is skipped for this channel;
    - ``consent``: the consent channel a member must have granted (``sms``, ``email``,
      ``wecom``, ``mini_program``; see the member API's ``consents``);
    - ``max_attempts`` and ``retry_seconds``: retries of this channel after a ``retry``
      receipt, waiting ``retry_seconds`` doubled each time;
    - ``idempotent``: the provider drops a second send with the same ``message_id``, so the
      core may send again after a worker died mid-send (otherwise it records the message as
      failed with reason ``interrupted`` rather than risk sending it twice);
    - ``receipts``: parses a provider's delivery callback (see :class:`CallbackRequest`):
      returns the reports, or ``None`` when the request is not genuine (bad signature,
      stale timestamp), which the core answers 401.
    """

    key: str
    title: str
    send: Callable[[OutboundMessage, PluginContext], Awaitable[DeliveryReceipt]]
    description: str = ""
    address: str = "phone"
    consent: str = "sms"
    max_attempts: int = 3
    retry_seconds: int = 30
    idempotent: bool = False
    receipts: (
        Callable[[CallbackRequest, PluginContext], Awaitable[list[DeliveryReport] | None]] | None
    ) = None


# ------------------------------------------------------------------ benefits


@dataclass(frozen=True, slots=True)
class BenefitType:
    """A kind of member benefit (a gift, a parenting consultation, a class seat...).

    ``options`` is a pydantic model (``Strict`` fields with limits) for the settings of a
    benefit of this type; HQ's catalog entry is validated against it and errors name the
    field (``options.<field>``). The core keeps the catalog, grants entitlements, counts
    quota and records every use; a plugin learns of grants and uses through the
    ``benefit.*`` events, and uses a benefit for a member from its own routes with
    :func:`nestpoint.plugins.api.use_benefit` (so a booking and its use commit together).
    """

    key: str
    title: str
    options: type[Any] | None = None
    description: str = ""


# ------------------------------------------------------------------ surveys (the surveys plugin)


@dataclass(frozen=True, slots=True)
class QuestionType:
    """A survey question type: the shape of its settings and answers, and how to score one.

    ``settings`` and ``answer`` are pydantic models (``None``: no settings; any JSON object
    as the answer). HQ's settings of a question are validated by ``settings`` (strictly, as
    JSON); a member's answer by ``answer``, with the question's validated settings as a dict
    in the validation context (``info.context["settings"]``: check a choice against the
    question's choices there). ``score(answer, settings)`` turns a valid answer (the
    ``answer`` model) into a number for averages, distributions and tag rules, or is
    ``None`` when the type is not scored. An unscored answer model with one field is
    counted by that field's value in the results.
    """

    key: str
    title: str
    settings: type[Any] | None = None
    answer: type[Any] | None = None
    score: Callable[[Any, Mapping[str, Any]], float | None] | None = None
    description: str = ""


# ------------------------------------------------------------------ console (core side later)


@dataclass(frozen=True, slots=True)
class ConsoleViewer:
    """Who a console panel is rendered for (``PluginContext.viewer``).

    - ``role``: ``hq_admin``, ``hq_analyst``, ``store_manager`` or ``store_clerk``;
    - ``locale``: the console's language for the user, ``zh_CN`` or ``en``;
    - ``personal_data``: whether the user may see the page's member's personal data
      unmasked (false for the HQ analyst, and for a store role on another store's member):
      leave out free text, names and the like when it is false.
    """

    role: str
    locale: str
    personal_data: bool


@dataclass(frozen=True, slots=True)
class ConsolePanel:
    """A panel on a console page. ``render`` returns an HTML fragment (escaped by the
    plugin), given the plugin's context and the page's subject id (a member, a store).

    ``title`` is one text, or one per console language (``{"zh_CN": "预约", "en":
    "Bookings"}``): the user's language is shown, else English, else the first given."""

    key: str
    title: str | Mapping[str, str]
    page: str  # "dashboard" | "member" | "store"
    render: Callable[[PluginContext, str | None], Awaitable[str]]
    order: int = 100

    def title_in(self, locale: str) -> str:
        """The title in ``locale`` (``zh_CN``, ``en``; ``zh-CN`` is the same), else in
        English, else the first one given."""
        if isinstance(self.title, str):
            return self.title
        titles = {k.replace("-", "_"): v for k, v in self.title.items()}
        wanted = locale.replace("-", "_")
        return titles.get(wanted) or titles.get("en") or next(iter(titles.values()), "")
