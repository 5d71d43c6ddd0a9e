"""API shapes of messaging: settings, templates, sending, delivery records and reach."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from nestpoint.limits import bounded_json
from nestpoint.schemas import Strict
from nestpoint.text import optional, required

Locale = Literal["zh-CN", "en"]
Key = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", max_length=64)]
ChannelKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", max_length=32)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["21:00"])]
Status = Literal["queued", "sending", "sent", "delivered", "failed", "suppressed"]

# The transactional purposes, each switchable per chain (``MessagingSettings.transactional``).
TRANSACTIONAL = (
    "points_earned",
    "points_expiring",
    "tier_up",
    "birthday",
    "booking_confirmed",
    "booking_reminder",
    "delivery_scheduled",
)


class QuietHours(Strict):
    """No message reaches a member between ``start`` and ``end`` in the chain's time zone
    (an interval across midnight when ``end`` is earlier): ``defer`` holds it until the
    end, ``suppress`` drops it (recorded as suppressed, reason ``quiet_hours``)."""

    start: ClockTime = "21:00"
    end: ClockTime = "08:00"
    action: Literal["defer", "suppress"] = "defer"

    @property
    def window(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class FrequencyCap(Strict):
    """At most ``count`` messages per member in ``days`` days (sent or delivered ones
    count); purposes in ``exempt`` neither count nor are capped."""

    count: int = Field(default=4, ge=1, le=1000)
    days: int = Field(default=7, ge=1, le=366)
    exempt: list[Key] = Field(
        default_factory=lambda: ["booking_confirmed", "booking_reminder", "delivery_scheduled"],
        max_length=50,
    )


class MessagingSettings(Strict):
    """The chain's messaging rules (``GET/PUT /api/v1/messaging/settings``)."""

    channel_order: list[ChannelKey] = Field(
        default_factory=lambda: ["miniprogram", "wecom", "sms", "email"],
        max_length=20,
        description="Channels tried in this order; the next one when a channel fails.",
    )
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    frequency_cap: FrequencyCap | None = Field(default_factory=FrequencyCap)
    transactional: dict[str, bool] = Field(
        default_factory=lambda: {p: p != "points_earned" for p in TRANSACTIONAL},
        description="Which transactional messages the chain sends (points_earned off by default).",
    )

    @model_validator(mode="after")
    def _known_purposes(self) -> MessagingSettings:
        unknown = sorted(set(self.transactional) - set(TRANSACTIONAL))
        if unknown:
            raise ValueError(f"transactional: unknown purposes {', '.join(unknown)}")
        self.transactional = {
            p: self.transactional.get(p, p != "points_earned") for p in TRANSACTIONAL
        }
        if len(set(self.channel_order)) != len(self.channel_order):
            raise ValueError("channel_order: a channel is named twice")
        return self


class TemplateIn(Strict):
    subject: Annotated[str, optional(200)] = ""
    body: Annotated[str, required(4000)]
    html: Annotated[str, optional(20000)] = ""


class TemplateRead(BaseModel):
    key: str
    locale: str
    subject: str
    body: str
    html: str
    custom: bool = Field(description="The chain's own wording (false: the built-in one).")


class TemplateList(BaseModel):
    items: list[TemplateRead]
    variables: dict[str, str] = Field(description="The variables every template may use.")


Params = Annotated[dict[str, Any], AfterValidator(bounded_json)]


class PreviewIn(Strict):
    """Render a template (the stored one for ``key``, or the given text) for a member or
    with sample values."""

    key: Key | None = None
    locale: Locale = "zh-CN"
    subject: Annotated[str, optional(200)] | None = None
    body: Annotated[str, optional(4000)] | None = None
    html: Annotated[str, optional(20000)] | None = None
    member_id: uuid.UUID | None = None
    params: Params = Field(default_factory=dict)

    @model_validator(mode="after")
    def _something_to_render(self) -> PreviewIn:
        if self.key is None and self.body is None:
            raise ValueError("give a template key or a body to render")
        return self


class Rendered(BaseModel):
    subject: str
    body: str
    html: str
    variables: dict[str, str]


class SendIn(Strict):
    """Send a template to members: one message per member, each idempotent by
    ``message_key`` + member (sending again with the same key sends nothing new)."""

    message_key: Annotated[str, required(120)]
    purpose: Key = "campaign"
    template: Key
    member_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)
    params: Params = Field(default_factory=dict)
    store_code: Annotated[str, optional(32)] | None = None


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    number: int
    outcome: str | None
    detail: str
    provider_message_id: str | None
    started_at: datetime
    finished_at: datetime | None


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    message_key: str
    member_id: uuid.UUID
    purpose: str
    template: str
    status: Status
    reason: str | None
    channel: str | None
    tried: list[str]
    attempts: int
    provider_message_id: str | None
    not_before: datetime
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class MessageDetail(MessageRead):
    attempt_log: list[AttemptRead] = Field(default_factory=list)


class MessageList(BaseModel):
    items: list[MessageRead]
    next_cursor: str | None = None


class ReachRow(BaseModel):
    channel: str | None
    status: Status
    reason: str | None
    count: int


class ReachReport(BaseModel):
    """Messages created in ``[since, until)``: counts by channel, status and reason, and
    the reach rate (sent or delivered, of all not still queued)."""

    since: datetime
    until: datetime
    total: int
    reached: int
    reach_rate: float | None
    rows: list[ReachRow]
