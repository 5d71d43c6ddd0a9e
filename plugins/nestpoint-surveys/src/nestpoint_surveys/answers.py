"""Question types at work: checking a question's settings and a member's answer against its
type, scoring an answer, and the tags an answer earns. Another plugin's type is used
exactly like a built-in one; a type's own code failing is that type's refusal, never a 500.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from nestpoint.plugins.api import FieldError, PluginContext, QuestionType

log = logging.getLogger("nestpoint.plugins.surveys")

BUILT_IN_KINDS = ("single", "multiple", "rating", "nps", "text")
RULE_PREFIX = "Value error, "


class Refused(Exception):
    """A type refused settings or an answer: one :class:`FieldError` per problem."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def built_in_kind(plugin: PluginContext, type_key: str) -> str | None:
    """``single``... for this plugin's own types (``surveys.single``), else ``None``."""
    owner, _, kind = type_key.partition(".")
    return kind if owner == plugin.plugin_id and kind in BUILT_IN_KINDS else None


_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    """One adapter per model (types are registered once, at start-up)."""
    found = _adapters.get(model)
    if found is None:
        found = _adapters[model] = TypeAdapter(model)
    return found


def json_schema(model: Any) -> dict[str, Any]:
    """The JSON schema of a type's settings or answer model."""
    return _adapter(model).json_schema()


def _errors(exc: ValidationError, field: str) -> list[FieldError]:
    found = []
    for error in exc.errors()[:20]:
        path = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix(RULE_PREFIX)
        found.append(FieldError(f"{field}.{path}" if path else field, message))
    return found or [FieldError(field, "invalid")]


def check_settings(qt: QuestionType, raw: Mapping[str, Any], field: str) -> dict[str, Any]:
    """The question's settings validated by its type (strictly, as JSON), as stored."""
    if qt.settings is None:
        if raw:
            raise Refused([FieldError(field, "this question type takes no settings")])
        return {}
    adapter = _adapter(qt.settings)
    try:
        value = adapter.validate_json(json.dumps(dict(raw)), strict=True)
        dumped = adapter.dump_python(value, mode="json")
    except ValidationError as exc:
        raise Refused(_errors(exc, field)) from exc
    except Exception as exc:  # the type's own code failed: its refusal, not our 500
        log.warning("question type %s failed on settings: %r", qt.key, exc)
        raise Refused([FieldError(field, "the question type refused these settings")]) from exc
    return dumped if isinstance(dumped, dict) else {"value": dumped}


def check_answer(
    qt: QuestionType,
    settings: Mapping[str, Any],
    raw: Mapping[str, Any],
    field: str,
    *,
    strict: bool = True,
) -> tuple[Any, Any]:
    """``(value, stored)``: the answer validated by its type's answer model, with the
    question's settings in the context (``info.context["settings"]``); strictly as JSON
    from the API, leniently from an HTML form (whose values are all text)."""
    if not isinstance(raw, Mapping):
        raise Refused([FieldError(field, "an object, in the question type's shape")])
    if qt.answer is None:
        return dict(raw), dict(raw)
    adapter = _adapter(qt.answer)
    context = {"settings": dict(settings)}
    try:
        value = adapter.validate_json(json.dumps(dict(raw)), strict=strict, context=context)
        stored = adapter.dump_python(value, mode="json")
    except ValidationError as exc:
        raise Refused(_errors(exc, field)) from exc
    except Exception as exc:
        log.warning("question type %s failed on an answer: %r", qt.key, exc)
        raise Refused([FieldError(field, "the question type refused this answer")]) from exc
    return value, stored


def parse_stored(qt: QuestionType, settings: Mapping[str, Any], stored: Any) -> Any:
    """A stored answer read back through its type (``None`` when it no longer validates)."""
    if qt.answer is None:
        return stored
    try:
        return _adapter(qt.answer).validate_json(
            json.dumps(stored), context={"settings": dict(settings)}
        )
    except Exception:
        return None


def score(qt: QuestionType, value: Any, settings: Mapping[str, Any]) -> float | None:
    """The type's score of an answer: a finite number, or ``None``."""
    if qt.score is None or value is None:
        return None
    try:
        result = qt.score(value, dict(settings))
    except Exception as exc:
        log.warning("question type %s failed to score: %r", qt.key, exc)
        return None
    if isinstance(result, bool) or not isinstance(result, int | float):
        return None
    return float(result) if math.isfinite(result) else None


def single_value(stored: Any) -> str | None:
    """The one value of an answer with one field (``{"stage": "0-6m"}``), as text: how
    another plugin's unscored type is counted in the results."""
    if isinstance(stored, Mapping) and len(stored) == 1:
        (value,) = stored.values()
        if isinstance(value, str | int | float | bool):
            return str(value)
    return None


def tags_earned(question: Mapping[str, Any], stored: Any, scored: float | None) -> list[str]:
    """The tags a question's rules give this answer."""
    picked: list[Any] = []
    if isinstance(stored, Mapping):
        choices = stored.get("choices")
        picked = list(choices) if isinstance(choices, list) else [stored.get("choice")]
    earned = []
    for rule in question.get("tags", []):
        if rule.get("choice") is not None:
            if rule["choice"] in picked:
                earned.append(str(rule["tag"]))
        elif scored is not None:
            low, high = rule.get("min_score"), rule.get("max_score")
            if (low is None or scored >= low) and (high is None or scored <= high):
                earned.append(str(rule["tag"]))
    return earned


def number(value: float) -> str:
    """A score as a bucket's value: ``9``, ``2.5``."""
    return str(int(value)) if value.is_integer() else repr(value)
