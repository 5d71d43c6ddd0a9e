"""The built-in question types, registered through ``nestpoint_register_survey_types`` like
any other plugin's (so they are ``surveys.single``, ``surveys.multiple``, ``surveys.rating``,
``surveys.nps`` and ``surveys.text``).

A type is a :class:`QuestionType`: a ``settings`` model (what HQ sets on the question: the
choices, the scale), an ``answer`` model (what a member sends) and an optional ``score``
(a number for averages and distributions). An answer is validated with the question's
settings in the validation context (``info.context["settings"]``, the validated settings
as a dict), so an answer model checks a choice against the question's choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nestpoint.plugins.api import QuestionType

ChoiceKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00]*$"),
]
OptionalLabel = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=100, pattern=r"^[^\x00]*$")
]
MAX_CHOICES = 30
MAX_TEXT = 2000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _settings(info: ValidationInfo) -> Mapping[str, Any]:
    """The question's settings from the validation context (empty without one)."""
    context = info.context if isinstance(info.context, Mapping) else {}
    settings = context.get("settings")
    return settings if isinstance(settings, Mapping) else {}


# ------------------------------------------------------------------ settings


class Choice(Strict):
    key: ChoiceKey = Field(description="Stable key of the choice (answers and tag rules name it).")
    label: Label


class ChoiceSettings(Strict):
    """A single-choice question: 2-30 choices, each key once."""

    choices: list[Choice] = Field(min_length=2, max_length=MAX_CHOICES)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Choice]) -> list[Choice]:
        keys = [c.key for c in choices]
        duplicate = next((k for k in keys if keys.count(k) > 1), None)
        if duplicate is not None:
            raise ValueError(f"choice {duplicate!r} is listed twice")
        return choices


class MultipleSettings(ChoiceSettings):
    """A multiple-choice question: how many choices a member ticks, at least and at most."""

    min_choices: int = Field(1, ge=0, le=MAX_CHOICES)
    max_choices: int | None = Field(None, ge=1, le=MAX_CHOICES)

    @model_validator(mode="after")
    def _bounds(self) -> MultipleSettings:
        most = self.max_choices if self.max_choices is not None else len(self.choices)
        if not self.min_choices <= most <= len(self.choices):
            raise ValueError("min_choices <= max_choices <= the number of choices")
        return self


class RatingSettings(Strict):
    """A rating from 1 to ``max`` (5 stars by default)."""

    max: int = Field(5, ge=2, le=10)
    low_label: OptionalLabel = ""
    high_label: OptionalLabel = ""


class NpsSettings(Strict):
    """The NPS question (0-10: how likely to recommend us); only its labels are set."""

    low_label: OptionalLabel = "完全不可能 Not at all likely"
    high_label: OptionalLabel = "非常愿意 Extremely likely"


class TextSettings(Strict):
    """Free text, at most ``max_length`` characters."""

    max_length: int = Field(500, ge=1, le=MAX_TEXT)


# ------------------------------------------------------------------ answers


class SingleAnswer(Strict):
    choice: str = Field(max_length=32)

    @field_validator("choice")
    @classmethod
    def _offered(cls, choice: str, info: ValidationInfo) -> str:
        keys = [c.get("key") for c in _settings(info).get("choices", [])]
        if choice not in keys:
            raise ValueError(f"not one of the choices ({', '.join(map(str, keys))})")
        return choice


class MultipleAnswer(Strict):
    choices: list[Annotated[str, StringConstraints(max_length=32)]] = Field(max_length=MAX_CHOICES)

    @field_validator("choices")
    @classmethod
    def _offered(cls, choices: list[str], info: ValidationInfo) -> list[str]:
        settings = _settings(info)
        keys = [c.get("key") for c in settings.get("choices", [])]
        unknown = [c for c in choices if c not in keys]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of the choices")
        if len(set(choices)) != len(choices):
            raise ValueError("a choice is ticked twice")
        least = int(settings.get("min_choices", 1))
        most = settings.get("max_choices") or len(keys)
        if not least <= len(choices) <= int(most):
            raise ValueError(f"tick {least} to {most} choices")
        return choices


class ScoreAnswer(Strict):
    score: int

    @field_validator("score")
    @classmethod
    def _on_the_scale(cls, score: int, info: ValidationInfo) -> int:
        top = int(_settings(info).get("max", 5))
        if not 1 <= score <= top:
            raise ValueError(f"a whole number from 1 to {top}")
        return score


class NpsAnswer(Strict):
    score: int = Field(ge=0, le=10, description="0 (not at all likely) to 10 (extremely).")


class TextAnswer(Strict):
    text: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=MAX_TEXT, pattern=r"^[^\x00]*$"
        ),
    ]

    @field_validator("text")
    @classmethod
    def _not_too_long(cls, text: str, info: ValidationInfo) -> str:
        most = int(_settings(info).get("max_length", 500))
        if len(text) > most:
            raise ValueError(f"at most {most} characters")
        return text


def _score(answer: Any, settings: Mapping[str, Any]) -> float | None:
    return float(answer.score)


BUILT_IN = (
    QuestionType(
        "single",
        "单选 Single choice",
        settings=ChoiceSettings,
        answer=SingleAnswer,
        description='One of the choices: `{"choice": "<key>"}`.',
    ),
    QuestionType(
        "multiple",
        "多选 Multiple choice",
        settings=MultipleSettings,
        answer=MultipleAnswer,
        description='Some of the choices: `{"choices": ["<key>", ...]}`.',
    ),
    QuestionType(
        "rating",
        "评分 Rating",
        settings=RatingSettings,
        answer=ScoreAnswer,
        score=_score,
        description='1 to `max` (5 by default): `{"score": 4}`.',
    ),
    QuestionType(
        "nps",
        "推荐意愿 NPS",
        settings=NpsSettings,
        answer=NpsAnswer,
        score=_score,
        description='How likely to recommend us, 0-10: `{"score": 9}`. Results give the NPS.',
    ),
    QuestionType(
        "text",
        "填空 Free text",
        settings=TextSettings,
        answer=TextAnswer,
        description='`{"text": "..."}`, at most `max_length` characters; exported as CSV.',
    ),
)
