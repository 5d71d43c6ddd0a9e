"""Plugins of the tests' own, registered for the session (``nestpoint_plugins``):

* ``kept``: a channel connector that keeps what it is given, so a test reads the personal
  link a member received;
* ``babycare``: another plugin's question types, used by surveys like the built-in ones: a
  baby-stage picker (unscored) and hours of sleep (scored).

Every request of the test client comes from one address: the public routes' limit is set
high for each test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from nestpoint.plugins.api import (
    ChannelConnector,
    ChannelRegistry,
    DeliveryReceipt,
    OutboundMessage,
    PluginContext,
    QuestionType,
    SurveyTypeRegistry,
    hookimpl,
)

Stage = Literal["pregnant", "0-6m", "6-12m", "1-3y", "3-6y"]


class Outbox:
    """A channel connector that keeps what it is given (the member's SMS, as a list)."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    @hookimpl
    def nestpoint_register_channel_connectors(self, registry: ChannelRegistry) -> None:
        registry.add(ChannelConnector("kept", "Kept", send=self.send, consent="sms"))

    async def send(self, message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
        self.sent.append(message)
        return DeliveryReceipt(True, provider_message_id=f"kept-{len(self.sent)}")


class StageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[Stage] = Field(min_length=2)


class StageAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: Stage

    @field_validator("stage")
    @classmethod
    def _offered(cls, stage: str, info: ValidationInfo) -> str:
        offered = (info.context or {}).get("settings", {}).get("stages", [])
        if stage not in offered:
            raise ValueError("not a stage this question offers")
        return stage


class SleepAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: float = Field(ge=0, le=24)


def _sleep_score(answer: Any, settings: Mapping[str, Any]) -> float:
    return float(answer.hours)


class BabyCare:
    """Another plugin: two question types of its own."""

    @hookimpl
    def nestpoint_register_survey_types(self, registry: SurveyTypeRegistry) -> None:
        registry.add(
            QuestionType("baby_stage", "宝宝阶段", settings=StageSettings, answer=StageAnswer)
        )
        registry.add(
            QuestionType("sleep_hours", "睡眠时长", answer=SleepAnswer, score=_sleep_score)
        )


@pytest.fixture(scope="session")
def nestpoint_plugins() -> Mapping[str, object]:
    return {"kept": Outbox(), "babycare": BabyCare()}


@pytest.fixture
def outbox(nestpoint_plugins: Mapping[str, object]) -> Outbox:
    """The channel that keeps the messages, emptied for the test."""
    kept = nestpoint_plugins["kept"]
    assert isinstance(kept, Outbox)
    kept.sent.clear()
    return kept


@pytest.fixture(autouse=True)
def _generous_public_limit(nestpoint_public_rate_limit: Callable[[str], None]) -> None:
    nestpoint_public_rate_limit("100000/minute")
