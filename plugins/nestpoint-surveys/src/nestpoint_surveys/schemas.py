"""The plugin's configuration, and the shapes of its routes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
QuestionKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
TypeKey = Annotated[
    str,
    StringConstraints(max_length=128, pattern=r"^[a-z0-9][a-z0-9_-]*\.[a-z][a-z0-9_]{0,62}$"),
]
ChoiceKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
# A member tag as the members API keeps it (at most 32 characters), without spaces, quotes
# or control characters: ``interested_early_education``, ``早教意向``.
TagName = Annotated[str, StringConstraints(pattern=r'^[^\x00-\x20"\\\x7f]{1,32}$')]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00]*$"),
]
QuestionTitle = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00]*$"),
]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=1000, pattern=r"^[^\x00]*$")
]
SettingName = Annotated[str, StringConstraints(max_length=64)]
RoundStatus = Literal["inviting", "open", "closed"]
_URL = re.compile(r"^https?://[^\s/?#]+(:\d+)?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SurveysConfig(Strict):
    """Every field has a default: the plugin works as soon as it is enabled."""

    public_base_url: str = Field(
        "",
        max_length=200,
        description="The service's public address (`https://api.example.com`), put in front "
        "of the personal links sent to members. Empty: the links are paths "
        "(`/public/<chain>/surveys/links/<token>/form`), which a channel cannot open: set it "
        "before a round goes out.",
    )

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value and not _URL.match(value):
            raise ValueError("an http(s) URL without a path, e.g. https://api.example.com")
        return value


# ------------------------------------------------------------------ surveys


class TagRule(Strict):
    """A tag the answer sets on the member: when ``choice`` is picked (single and multiple
    choice), or when the answer's score is within ``min_score``-``max_score`` (a scored
    type: rating, NPS, another plugin's)."""

    tag: TagName
    choice: ChoiceKey | None = None
    min_score: float | None = Field(None, ge=-1_000_000, le=1_000_000)
    max_score: float | None = Field(None, ge=-1_000_000, le=1_000_000)

    @model_validator(mode="after")
    def _one_condition(self) -> TagRule:
        scored = self.min_score is not None or self.max_score is not None
        if (self.choice is None) == (not scored):
            raise ValueError("give a choice, or a score range (min_score, max_score)")
        if (
            self.min_score is not None
            and self.max_score is not None
            and self.min_score > self.max_score
        ):
            raise ValueError("min_score must not be above max_score")
        return self


class QuestionIn(Strict):
    key: QuestionKey = Field(description="Stable key: answers are sent under it (`q1`).")
    type: TypeKey = Field(
        description="A question type by `<plugin-id>.<key>`: `surveys.single`, "
        "`surveys.multiple`, `surveys.rating`, `surveys.nps`, `surveys.text`, or another "
        "enabled plugin's (`GET /question-types`)."
    )
    title: QuestionTitle
    help: Text = ""
    required: bool = True
    settings: dict[SettingName, Any] = Field(
        default_factory=dict,
        max_length=50,
        description="Validated by the type's settings model (the choices, the scale...).",
    )
    tags: list[TagRule] = Field(default_factory=list, max_length=20)


class QuestionRead(BaseModel):
    key: str
    type: str
    title: str
    help: str
    required: bool
    settings: dict[str, Any]
    tags: list[TagRule]


class Audience(Strict):
    tags: list[TagName] = Field(
        default_factory=list,
        max_length=20,
        description="Members holding any of these tags; empty: every active member.",
    )


class Schedule(Strict):
    every: Literal["month"] = "month"
    day: int = Field(1, ge=1, le=28, description="The day of the month (chain's calendar).")
    hour: int = Field(10, ge=0, le=23, description="The hour (chain's time zone).")


class SurveyIn(Strict):
    title: Title
    description: Text = ""
    questions: list[QuestionIn] = Field(min_length=1, max_length=50)
    anonymous: bool = Field(
        False,
        description="Responses keep no member (and only their day); tag rules are refused.",
    )
    audience: Audience = Field(default_factory=Audience)
    schedule: Schedule | None = Field(
        None, description="Open a round every month by itself; null: HQ opens rounds."
    )
    open_days: int = Field(14, ge=1, le=90, description="A round closes this many days on.")
    active: bool = Field(True, description="False: no more rounds (open ones run on).")


class SurveyRead(BaseModel):
    code: str
    title: str
    description: str
    questions: list[QuestionRead]
    anonymous: bool
    audience: Audience
    schedule: Schedule | None
    open_days: int
    active: bool
    rounds: int
    created_at: datetime
    updated_at: datetime


class QuestionTypeRead(BaseModel):
    type: str = Field(description="`<plugin-id>.<key>`, what a question's `type` names.")
    title: str
    description: str
    scored: bool = Field(description="Answers have a score: averages, score tag rules.")
    settings_schema: dict[str, Any] | None
    answer_schema: dict[str, Any] | None


# ------------------------------------------------------------------ rounds


class RoundIn(Strict):
    idempotency_key: Key
    open_days: int | None = Field(
        None, ge=1, le=90, description="Override the survey's `open_days` for this round."
    )


class RoundRead(BaseModel):
    survey_code: str
    number: int
    period: str | None = Field(description="`2026-12` for a scheduled round; null: opened by HQ.")
    status: RoundStatus
    title: str
    anonymous: bool
    opened_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    invited: int
    responded: int


class Bucket(BaseModel):
    value: str = Field(description="A choice's key, a score, or another type's answer value.")
    label: str
    count: int


class NpsRead(BaseModel):
    promoters: int = Field(description="Answers of 9 or 10.")
    passives: int = Field(description="Answers of 7 or 8.")
    detractors: int = Field(description="Answers of 0 to 6.")
    score: float = Field(description="% promoters - % detractors, -100 to 100 (one decimal).")


class QuestionResult(BaseModel):
    key: str
    type: str
    title: str
    answered: int
    distribution: list[Bucket]
    average: float | None = Field(description="Of the scores (scored types; two decimals).")
    nps: NpsRead | None = None


class ResultsRead(BaseModel):
    survey_code: str
    round: int
    status: RoundStatus
    anonymous: bool
    invited: int
    responded: int
    response_rate: float = Field(description="responded / invited, 0-1 (four decimals).")
    questions: list[QuestionResult]


# ------------------------------------------------------------------ public


class PublicQuestion(BaseModel):
    key: str
    type: str
    title: str
    help: str
    required: bool
    settings: dict[str, Any]


class SurveyPage(BaseModel):
    title: str
    description: str
    anonymous: bool
    status: Literal["open", "answered"]
    closes_at: datetime
    questions: list[PublicQuestion]


class AnswersIn(Strict):
    answers: dict[Annotated[str, StringConstraints(max_length=32)], dict[SettingName, Any]] = Field(
        max_length=50,
        description='By question key, each answer in its type\'s shape: `{"q1": {"choice": '
        '"0-6m"}, "q3": {"score": 9}, "q4": {"text": "..."}}`.',
    )


class ReceiptRead(BaseModel):
    title: str
    round: int
    anonymous: bool
