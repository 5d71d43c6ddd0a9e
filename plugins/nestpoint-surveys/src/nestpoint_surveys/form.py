"""The personal link's page: a plain HTML form (for links opened from an SMS or an e-mail),
rendered by Jinja2 with autoescaping, posted back as a URL-encoded form.

The page loads nothing from elsewhere and runs no script; its headers keep it out of
frames and caches and keep the link (its token) out of ``Referer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment

from nestpoint.plugins.api import FieldError, PluginContext, QuestionType
from nestpoint_surveys.answers import built_in_kind

MAX_FIELDS = 500
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
PAGE = _env.from_string(
    """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;
line-height:1.5}fieldset{border:0;margin:0 0 1.5rem;padding:0}legend{font-weight:600}
label{display:block;margin:.25rem 0}.scale label{display:inline-block;margin-right:.6rem}
.error{color:#b00020}.notice{background:#eef6ee;padding:.6rem}textarea{width:100%}
button{font-size:1rem;padding:.5rem 1.5rem}
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% if description %}<p>{{ description }}</p>{% endif %}
{% if message %}<p class="{{ 'error' if failed else 'notice' }}">{{ message }}</p>{% endif %}
{% if questions %}
<form method="post">
{% for q in questions %}
<fieldset>
<legend>{{ loop.index }}. {{ q.title }}{% if q.required %} *{% endif %}</legend>
{% if q.help %}<p>{{ q.help }}</p>{% endif %}
{% if q.error %}<p class="error">{{ q.error }}</p>{% endif %}
{% if q.kind == "single" or q.kind == "multiple" %}
{% for c in q.choices %}
<label><input type="{{ 'radio' if q.kind == 'single' else 'checkbox' }}" name="{{ q.key }}"
 value="{{ c.key }}"{% if c.key in q.given %} checked{% endif %}> {{ c.label }}</label>
{% endfor %}
{% elif q.kind == "rating" or q.kind == "nps" %}
<div class="scale">{% if q.low %}<span>{{ q.low }}</span> {% endif %}
{% for n in q.scale %}<label><input type="radio" name="{{ q.key }}" value="{{ n }}"
{%- if n|string in q.given %} checked{% endif %}> {{ n }}</label>{% endfor %}
{% if q.high %} <span>{{ q.high }}</span>{% endif %}</div>
{% elif q.kind == "text" %}
<textarea name="{{ q.key }}" rows="4" maxlength="{{ q.max_length }}">
{{- q.given[0] if q.given else "" }}</textarea>
{% else %}
<input type="text" name="{{ q.key }}" maxlength="200" value="{{ q.given[0] if q.given else '' }}">
{% endif %}
</fieldset>
{% endfor %}
<button type="submit">提交 Submit</button>
</form>
{% endif %}
</body>
</html>
"""
)


def parse(body: bytes) -> dict[str, list[str]]:
    """A URL-encoded form's fields (``ValueError`` when it is not UTF-8 or too large)."""
    text = body.decode("utf-8")
    return parse_qs(text, keep_blank_values=False, max_num_fields=MAX_FIELDS)


def answers_from(
    plugin: PluginContext,
    questions: Sequence[Mapping[str, Any]],
    available: Mapping[str, QuestionType],
    form: Mapping[str, list[str]],
) -> dict[str, Any]:
    """The answers in the API's shape, from the form's fields (empty fields: unanswered)."""
    answers: dict[str, Any] = {}
    for question in questions:
        values = [v for v in form.get(question["key"], []) if v.strip()]
        if not values:
            continue
        kind = built_in_kind(plugin, question["type"])
        if kind == "single":
            answers[question["key"]] = {"choice": values[0]}
        elif kind == "multiple":
            answers[question["key"]] = {"choices": values}
        elif kind in ("rating", "nps"):
            answers[question["key"]] = {"score": values[0]}
        elif kind == "text":
            answers[question["key"]] = {"text": values[0]}
        else:  # another plugin's type: its answer model's one field, if it has one
            answer = available[question["type"]].answer
            fields = list(getattr(answer, "model_fields", {}))
            answers[question["key"]] = {fields[0]: values[0]} if len(fields) == 1 else {}
    return answers


def _scale(kind: str | None, settings: Mapping[str, Any]) -> range:
    return range(0, 11) if kind == "nps" else range(1, int(settings.get("max", 5)) + 1)


def render(
    plugin: PluginContext,
    title: str,
    description: str,
    questions: Sequence[Mapping[str, Any]],
    *,
    message: str = "",
    failed: bool = False,
    form: Mapping[str, list[str]] | None = None,
    errors: Sequence[FieldError] = (),
) -> str:
    """The page: the questions (none after an answer, or for a closed round), a message."""
    shown = []
    for question in questions:
        settings = question["settings"]
        kind = built_in_kind(plugin, question["type"])
        error = next(
            (e.message for e in errors if e.field.startswith(f"answers.{question['key']}")), ""
        )
        shown.append(
            {
                "key": question["key"],
                "title": question["title"],
                "help": question.get("help", ""),
                "required": question["required"],
                "kind": kind,
                "choices": settings.get("choices", []),
                "scale": range(0, 11)
                if kind == "nps"
                else range(1, int(settings.get("max", 5)) + 1),
                "low": settings.get("low_label", ""),
                "high": settings.get("high_label", ""),
                "max_length": settings.get("max_length", 500),
                "given": (form or {}).get(question["key"], []),
                "error": error,
            }
        )
    return PAGE.render(
        title=title, description=description, questions=shown, message=message, failed=failed
    )
