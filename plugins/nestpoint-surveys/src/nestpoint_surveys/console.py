"""The member's survey answers as a panel on their console page.

Surveys are the chain's (a store's key is refused their routes), so the panel shows at HQ
only. Free text may say who the member is (erasure deletes it): it is shown only to a user
who sees the member's personal data (``PluginContext.viewer.personal_data``), never to the
HQ analyst; choices and scores are shown to both. Everything the member or HQ wrote is
escaped.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping
from typing import Any

from nestpoint.plugins.api import PluginContext
from nestpoint_surveys import service
from nestpoint_surveys.answers import built_in_kind
from nestpoint_surveys.models import SurveyResponse, SurveyRound

PANEL_TITLE = {"zh_CN": "问卷回答", "en": "Survey answers"}
EXPORT = "survey-answers"
WORDS = {
    "zh_CN": {
        "heads": ("问卷", "提交时间", "问题", "回答"),
        "round": "第 {n} 期",
        "hidden": "（文字回答：无权查看个人信息）",
        "csv": "导出 CSV",
    },
    "en": {
        "heads": ("Survey", "Answered", "Question", "Answer"),
        "round": "round {n}",
        "hidden": "(free text: not shown without access to personal data)",
        "csv": "CSV",
    },
}


async def member_answers(plugin: PluginContext, subject_id: str | None) -> str:
    """A table of the member's latest answers, one row per answered question, newest
    response first; empty (no panel) at a store."""
    if subject_id is None or plugin.store_id is not None:
        return ""
    async with plugin.session() as db:
        responses = await service.member_responses(db, uuid.UUID(subject_id))
    if not responses:
        return '<p class="muted">—</p>'
    viewer = plugin.viewer
    words = WORDS[viewer.locale if viewer and viewer.locale in WORDS else "en"]
    personal = viewer is not None and viewer.personal_data
    rows = "".join(
        _response_rows(plugin, response, asked, words, personal) for response, asked in responses
    )
    head = "".join(f"<th>{h}</th>" for h in words["heads"])
    return (  # the console exports a table it shows by its data-export name
        f'<a class="export" href="?export={EXPORT}">{words["csv"]}</a>'
        f'<table class="list" data-export="{EXPORT}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _response_rows(
    plugin: PluginContext,
    response: SurveyResponse,
    asked: SurveyRound,
    words: Mapping[str, Any],
    personal: bool,
) -> str:
    survey = f"{asked.title} · {words['round'].format(n=asked.number)}"
    when = response.submitted_at.strftime("%Y-%m-%d %H:%M")
    out = []
    for question in asked.questions:
        given = response.answers.get(question["key"])
        if given is None:
            continue
        answer = _answer_text(plugin, question, given, personal)
        shown = words["hidden"] if answer is None else answer
        cells = (survey, when, question.get("title", question["key"]), shown)
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "".join(out)


def _answer_text(
    plugin: PluginContext, question: Mapping[str, Any], given: Any, personal: bool
) -> str | None:
    """The answer as text; ``None`` when the viewer may not see it (free text, or another
    plugin's answer that is not a number, without access to personal data)."""
    kind = built_in_kind(plugin, question["type"])
    labels = {c["key"]: c["label"] for c in question.get("settings", {}).get("choices", [])}
    if not isinstance(given, Mapping):
        return str(given) if personal else None
    if kind == "single":
        return str(labels.get(given.get("choice"), given.get("choice")))
    if kind == "multiple":
        return "、".join(str(labels.get(c, c)) for c in given.get("choices", []))
    if kind in ("rating", "nps"):
        return str(given.get("score", ""))
    if kind == "text":
        return str(given.get("text", "")) if personal else None
    values = list(given.values())
    if len(values) == 1 and isinstance(values[0], int | float) and not isinstance(values[0], bool):
        return str(values[0])  # another plugin's number
    if not personal:
        return None
    return ", ".join(f"{k}: {v}" for k, v in given.items())
