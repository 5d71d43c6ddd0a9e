"""The miniprogram plugin's configuration (the chain's, overridden field by field by a
store's).

The AppSecret is not here: it is the plugin secret ``app_secret``, set by HQ through
``PUT /api/v1/tenant/plugins/miniprogram/secrets/app_secret``.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

TemplateKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
# A subscribe-message template's data key: its type and its position (thing1, date3...).
DataKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,30}[0-9]{1,3}$")]
ParamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Page = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\s]*$")]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_base_url(value: str) -> str:
    """``https://`` (``http://`` only to a loopback address: a local fake), no trailing
    slash. The AppSecret travels to the token endpoint: never in clear text."""
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    raise ValueError("must be an https:// URL (http:// only to 127.0.0.1 or localhost)")


class TemplateSpec(BaseModel):
    """One subscribe-message template: its id in the mini-program's account and where each
    of its data keys takes its value from (a name of the message's ``params``)."""

    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    fields: dict[DataKey, ParamName] = Field(
        min_length=1,
        max_length=20,
        description='Data key -> message parameter: {"thing1": "member_name", "date3": ...}.',
    )
    page: Page | None = Field(None, description="The page the card opens (default: page).")


class MiniProgramConfig(BaseModel):
    """Every field has a default, so the plugin loads before it is configured; it sends
    nothing (``not_configured``) until ``app_id`` and the ``app_secret`` secret are set,
    and nothing for a message whose template or purpose no entry of ``templates`` names
    (``no_template``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        "https://api.weixin.qq.com", max_length=300, description="WeChat's API (or a fake)."
    )
    app_id: str = Field(
        "", max_length=64, pattern=r"^[A-Za-z0-9_-]*$", description="The mini-program's AppID."
    )
    page: Page = Field("", description="The page a message opens, e.g. pages/points/index.")
    miniprogram_state: Literal["formal", "trial", "developer"] = Field(
        "formal", description="Which version of the mini-program the message opens."
    )
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] = Field("zh_CN")
    templates: dict[TemplateKey, TemplateSpec] = Field(
        default_factory=dict,
        max_length=100,
        description="Message template key or purpose -> subscribe-message template.",
    )
    token_endpoint: Literal["stable", "classic"] = Field(
        "stable",
        description=(
            "stable: POST /cgi-bin/stable_token (other systems of the same AppID keep "
            "their tokens); classic: GET /cgi-bin/token."
        ),
    )
    timeout_seconds: float = Field(5.0, gt=0, le=30, description="Per request to WeChat.")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_base_url(value)

    def template_for(self, template: str, purpose: str) -> TemplateSpec | None:
        """The subscribe-message template for a message: its template key's, else its
        purpose's."""
        return self.templates.get(template) or self.templates.get(purpose)
