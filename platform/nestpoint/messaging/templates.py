"""Templates: the built-in wording of each purpose, and rendering in a Jinja sandbox.

A template is text with ``{{ variable }}`` placeholders (Jinja2's syntax, its sandbox: no
attribute or method of a Python object is reachable, so a chain's template cannot read more
than the variables given). The plain-text parts render without escaping; the HTML part with
autoescaping. A variable the message does not have renders empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from nestpoint.errors import FieldError, Invalid

# What every template may use (the pipeline fills them in; the sender's params add more).
VARIABLES: dict[str, str] = {
    "member_name": "the member's name (or 会员 / member when not recorded)",
    "chain_name": "the chain's name",
    "store_name": "the store the message is sent for (the member's home store otherwise)",
    "points_balance": "the member's points balance",
    "points_expiring": "points expiring within the programme's horizon",
    "points_expiring_on": "the date by which they expire (the chain's calendar)",
    "child_stage": "the youngest child's stage (pregnant, 0-6m, 6-12m, 1-3y, 3-6y...)",
    "child_age": "the youngest child's age (e.g. 8个月 / 8 months)",
}
MAX_RENDERED = 20_000

_text = SandboxedEnvironment(autoescape=False, undefined=Undefined)
_html = SandboxedEnvironment(autoescape=True, undefined=Undefined)


@dataclass(frozen=True, slots=True)
class Wording:
    subject: str
    body: str
    html: str = ""


# The built-in wording, by purpose and locale; a chain overrides any of them.
BUILT_IN: dict[str, dict[str, Wording]] = {
    "points_expiring": {
        "zh-CN": Wording(
            "积分即将过期提醒",
            "{{ member_name }}您好，您有 {{ points_expiring }} 积分将于 {{ points_expiring_on }}"
            " 前过期，欢迎到{{ store_name or chain_name }}使用。",
        ),
        "en": Wording(
            "Your points expire soon",
            "Hello {{ member_name }}, {{ points_expiring }} of your points expire before"
            " {{ points_expiring_on }}. Use them at {{ store_name or chain_name }}.",
        ),
    },
    "points_earned": {
        "zh-CN": Wording(
            "积分到账",
            "{{ member_name }}您好，本次消费获得 {{ points_earned }} 积分，当前积分"
            " {{ points_balance }}。",
        ),
        "en": Wording(
            "Points earned",
            "Hello {{ member_name }}, you earned {{ points_earned }} points; your balance is"
            " {{ points_balance }}.",
        ),
    },
    "tier_up": {
        "zh-CN": Wording(
            "会员等级升级",
            "恭喜{{ member_name }}升级为{{ tier_name }}，更多专属权益等您来享。",
        ),
        "en": Wording(
            "You moved up a tier",
            "Congratulations {{ member_name }}: you are now {{ tier_name }}.",
        ),
    },
    "birthday": {
        "zh-CN": Wording(
            "生日快乐",
            "{{ member_name }}，{{ chain_name }}祝您生日快乐！生日当月专属礼遇已为您准备好。",
        ),
        "en": Wording(
            "Happy birthday",
            "Happy birthday, {{ member_name }}! Your birthday treats at {{ chain_name }} await.",
        ),
    },
    "booking_confirmed": {
        "zh-CN": Wording(
            "预约成功",
            "{{ member_name }}您好，您预约的{{ booking_title }}已确认，时间 {{ booking_time }}。",
        ),
        "en": Wording(
            "Booking confirmed",
            "Hello {{ member_name }}, your {{ booking_title }} is booked for {{ booking_time }}.",
        ),
    },
    "booking_reminder": {
        "zh-CN": Wording(
            "预约提醒",
            "{{ member_name }}您好，提醒您 {{ booking_time }} 的{{ booking_title }}，"
            "期待您的到来。",
        ),
        "en": Wording(
            "Booking reminder",
            "Hello {{ member_name }}, a reminder of your {{ booking_title }} at"
            " {{ booking_time }}.",
        ),
    },
    "survey_invite": {
        "zh-CN": Wording(
            "{{ survey_title }}",
            "{{ member_name }}您好，邀请您参与「{{ survey_title }}」，您的意见将帮助我们改进会员"
            "权益：{{ survey_link }}",
        ),
        "en": Wording(
            "{{ survey_title }}",
            'Hello {{ member_name }}, please tell us what you need in "{{ survey_title }}":'
            " {{ survey_link }}",
        ),
    },
    "paid_membership_renewal": {
        "zh-CN": Wording(
            "付费会员续费提醒",
            "{{ member_name }}您好，您的{{ plan_name }}将于 {{ renews_on }} 自动续费"
            " ¥{{ price_yuan }}，如需取消请在此之前操作。",
        ),
        "en": Wording(
            "Your paid membership renews soon",
            "Hello {{ member_name }}, your {{ plan_name }} renews on {{ renews_on }} for"
            " ¥{{ price_yuan }}. Turn auto-renewal off before then if you do not want it.",
        ),
    },
    "delivery_scheduled": {
        "zh-CN": Wording(
            "送货安排",
            "{{ member_name }}您好，您的商品将于 {{ delivery_date }} {{ delivery_slot }} 送达。",
        ),
        "en": Wording(
            "Delivery scheduled",
            "Hello {{ member_name }}, your delivery is scheduled for {{ delivery_date }}"
            " {{ delivery_slot }}.",
        ),
    },
    # A system message: the one-time code of a phone change, to the new phone
    # (members.phone). ``code`` and ``minutes`` are its variables.
    "phone_verification": {
        "zh-CN": Wording(
            "验证码",
            "【{{ chain_name }}】您的验证码是 {{ code }}，用于更换会员手机号，{{ minutes }}"
            " 分钟内有效。如非本人操作，请忽略本短信。",
        ),
        "en": Wording(
            "Verification code",
            "{{ chain_name }}: your code is {{ code }}, to change your member phone number. It"
            " expires in {{ minutes }} minutes. If you did not ask for it, ignore this message.",
        ),
    },
}


def check(field: str, source: str, *, html: bool = False) -> None:
    """422 naming ``field`` when ``source`` is not a valid template."""
    try:
        (_html if html else _text).parse(source)
    except TemplateSyntaxError as exc:
        raise Invalid.field(field, f"template error on line {exc.lineno}: {exc.message}") from exc


def render(source: str, variables: dict[str, Any], *, html: bool = False) -> str:
    """Render ``source`` with ``variables`` in the sandbox (output capped in length)."""
    if not source:
        return ""
    try:
        out = (_html if html else _text).from_string(source).render(variables)
    except Exception as exc:  # a sandbox refusal or a runtime error in the chain's template
        raise Invalid(
            "the template could not be rendered",
            errors=[FieldError("html" if html else "body", f"{type(exc).__name__}: {exc}")],
        ) from exc
    return out[:MAX_RENDERED]
