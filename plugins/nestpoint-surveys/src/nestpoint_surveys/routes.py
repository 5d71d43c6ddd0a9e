"""The plugin's routes.

Staff routes, under ``/api/v1/plugins/surveys/`` (an HQ key; a store's key gets 403):
question types, surveys, rounds, results and the free-text export. Public routes, under
``/public/<tenant-slug>/surveys/`` (no key, limited per client address): a member's
personal link, as JSON for an app and as an HTML form for a browser.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post, put
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from nestpoint.plugins.api import (
    Conflict,
    Db,
    Invalid,
    NotFound,
    Plugin,
    PluginContext,
    problems,
    question_types,
)
from nestpoint_surveys import form, service
from nestpoint_surveys.answers import json_schema
from nestpoint_surveys.openapi import CSV, FORM, HTML, operation
from nestpoint_surveys.schemas import (
    AnswersIn,
    QuestionTypeRead,
    ReceiptRead,
    ResultsRead,
    RoundIn,
    RoundRead,
    SurveyIn,
    SurveyPage,
    SurveyRead,
)
from nestpoint_surveys.service import RoundClosed

log = logging.getLogger("nestpoint.plugins.surveys")

REPLAYED_HEADER = "Idempotent-Replayed"
CodePath = Annotated[
    str,
    PathParameter(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="The survey's code (lower-case letters, digits, - and _).",
    ),
]
NumberPath = Annotated[int, PathParameter(ge=1, le=1_000_000, description="The round's number.")]
TokenPath = Annotated[
    str, PathParameter(max_length=64, description="The token of the member's personal link.")
]
HQ = "HQ key (a store's key: 403)."
GONE = "The round has closed (by HQ, by a newer round or after its `open_days`)."


def _gone_and(*statuses: int) -> dict[int, Any]:
    """A public route's own problem statuses, 410 described (no 401/403: no key there)."""
    specs = problems(410, *statuses)
    specs[410] = dataclasses.replace(specs[410], description=GONE)
    return {code: spec for code, spec in specs.items() if code in (410, *statuses)}


def _hq(plugin: PluginContext) -> None:
    if plugin.store_id is not None:
        raise PermissionDeniedException("surveys are the chain's: use an HQ key")


def _csv(text: str, filename: str) -> Response[str]:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ------------------------------------------------------------------ question types


@get(
    "/question-types",
    summary="The question types a survey may use here",
    operation_id="listSurveyQuestionTypes",
    description=(
        "HQ and store keys. The built-in types (`surveys.single`, `surveys.multiple`, "
        "`surveys.rating`, `surveys.nps`, `surveys.text`) and those of the other plugins "
        "enabled in the chain, each with the JSON schemas of its settings and answers."
    ),
)
async def list_question_types(plugin: Plugin) -> list[QuestionTypeRead]:
    found = await question_types(plugin)
    return [
        QuestionTypeRead(
            type=key,
            title=qt.title,
            description=qt.description,
            scored=qt.score is not None,
            settings_schema=_schema(qt.settings),
            answer_schema=_schema(qt.answer),
        )
        for key, qt in sorted(found.items())
    ]


def _schema(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    try:
        return json_schema(model)
    except Exception:  # a type whose model has no JSON schema: say nothing rather than fail
        return None


# ------------------------------------------------------------------ surveys


@put(
    "/surveys/{code:str}",
    status_code=HTTP_200_OK,
    summary="Create or change a survey: questions, audience, schedule",
    operation_id="putSurvey",
    responses=problems(409),
    description=(
        f"{HQ} Each question names its type (`GET /question-types`); its `settings` are "
        "checked by the type (a 422 names the field, `questions.2.settings.choices`), its "
        "tag rules against its choices or the type's score. A change applies to the rounds "
        "opened after it. An anonymous survey takes no tag rules."
    ),
)
async def put_survey(
    plugin: Plugin, db: Db, code: CodePath, data: JSONBody[SurveyIn]
) -> SurveyRead:
    _hq(plugin)
    return await service.put_survey(db, plugin, code, data)


@get(
    "/surveys",
    summary="The chain's surveys, by code",
    operation_id="listSurveys",
    description=f"{HQ} With how many rounds each has had.",
)
async def list_surveys(plugin: Plugin, db: Db) -> list[SurveyRead]:
    _hq(plugin)
    return await service.list_surveys(db)


@get(
    "/surveys/{code:str}",
    summary="One survey",
    operation_id="getSurvey",
    description=f"{HQ} Its questions (with their tag rules), audience and schedule.",
)
async def get_survey(plugin: Plugin, db: Db, code: CodePath) -> SurveyRead:
    _hq(plugin)
    return await service.get_survey(db, code)


# ------------------------------------------------------------------ rounds


async def _invite(plugin: PluginContext, round_id: uuid.UUID) -> None:
    """After the answer: invite the round's audience (the periodic job finishes a run that
    stops half-way)."""
    try:
        await service.invite_all(plugin, round_id)
    except Exception:
        log.exception("survey invitations stopped; the periodic job resumes them")


@post(
    "/surveys/{code:str}/rounds",
    summary="Open the survey's next round now: invitations go out",
    operation_id="openSurveyRound",
    responses=problems(409),
    response_description="Created; a retry with the same `idempotency_key` answers the same "
    f"body with `{REPLAYED_HEADER}: true`.",
    description=(
        f"{HQ} Copies the survey (title, questions, anonymity, audience) into round N, "
        "closes the round still open, and invites the audience (every active member, or "
        "those holding one of its tags): one personal link and one queued message each "
        "(`survey_invite`, purpose `survey`), in batches after the answer (`status` "
        "`inviting`, then `open`). The round closes after `open_days`. 422 naming `code` "
        "for an inactive survey, `questions.N.type` for a type no longer offered. "
        "Idempotent by `idempotency_key`."
    ),
)
async def open_round(
    plugin: Plugin, db: Db, code: CodePath, data: JSONBody[RoundIn]
) -> Response[RoundRead]:
    _hq(plugin)
    status, body, replayed, round_id = await service.open_round(db, plugin, code, data)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    background = BackgroundTask(_invite, plugin, round_id) if round_id is not None else None
    return Response(
        RoundRead.model_validate(body), status_code=status, headers=headers, background=background
    )


@get(
    "/surveys/{code:str}/rounds",
    summary="The survey's rounds, newest first",
    operation_id="listSurveyRounds",
    description=f"{HQ} Each with its status, dates, members invited and responses.",
)
async def list_rounds(plugin: Plugin, db: Db, code: CodePath) -> list[RoundRead]:
    _hq(plugin)
    return await service.list_rounds(db, code)


@post(
    "/surveys/{code:str}/rounds/{number:int}/close",
    status_code=HTTP_200_OK,
    summary="Close a round now",
    operation_id="closeSurveyRound",
    description=f"{HQ} Its links answer 410 from then on; closing again changes nothing.",
)
async def close_round(plugin: Plugin, db: Db, code: CodePath, number: NumberPath) -> RoundRead:
    _hq(plugin)
    return await service.close_round(db, code, number)


@get(
    "/surveys/{code:str}/rounds/{number:int}/results",
    summary="A round's results: response rate, distributions, averages, NPS",
    operation_id="getSurveyResults",
    description=(
        f"{HQ} `invited`, `responded`, `response_rate` (responded / invited); per question "
        "the answers' distribution (each choice, each score, or another type's values), "
        "the average of a rating, and for an NPS question the promoters (9-10), passives "
        "(7-8), detractors (0-6) and the NPS (% promoters - % detractors)."
    ),
)
async def results(plugin: Plugin, db: Db, code: CodePath, number: NumberPath) -> ResultsRead:
    _hq(plugin)
    return await service.results(db, plugin, code, number)


@get(
    "/surveys/{code:str}/rounds/{number:int}/export.csv",
    summary="A round's free-text answers as CSV",
    operation_id="exportSurveyText",
    operation_class=operation(
        answer={"text/csv": CSV},
        answer_description="`survey,round,question,question_title,answer,submitted_at` and, "
        "unless the round is anonymous, `member_id`; one answer a row.",
    ),
    description=(
        f"{HQ} Every answer to the round's free-text questions, oldest first; a cell that "
        "a spreadsheet would run as a formula starts with `'`."
    ),
)
async def export_text(plugin: Plugin, db: Db, code: CodePath, number: NumberPath) -> Response[str]:
    _hq(plugin)
    return _csv(*await service.text_export(db, plugin, code, number))


# ------------------------------------------------------------------ public: the personal link


@get(
    "/links/{token:str}",
    summary="The survey behind a member's personal link",
    operation_id="getSurveyLink",
    responses=_gone_and(),
    description=(
        "No API key: what the member's personal link shows, for an app or H5 page "
        "(`/public/<chain>/surveys/links/<token>`). The questions with their settings "
        "(choices, scales), never the tag rules; `status` `answered` once the link was "
        "used. 404 for an unknown link (another chain's too), 410 for a closed round."
    ),
)
async def survey_link(plugin: Plugin, db: Db, token: TokenPath) -> SurveyPage:
    return await service.survey_page(db, plugin, token)


@post(
    "/links/{token:str}",
    summary="Answer the survey through a member's personal link (once)",
    operation_id="answerSurvey",
    responses=_gone_and(409),
    description=(
        "No API key. `answers` by question key, each in its type's shape. One response per "
        "link: again is a 409. A wrong answer is a 422 naming it (`answers.q2`, "
        "`answers.q2.score`), as are a required question left out and an unknown key; 410 "
        "for a closed round, 404 for an unknown link. The answers' tag rules tag the member, "
        "unless the survey is anonymous (then the response keeps no member)."
    ),
)
async def answer(
    plugin: Plugin, db: Db, token: TokenPath, data: JSONBody[AnswersIn]
) -> Response[ReceiptRead]:
    receipt = await service.answer(db, plugin, token, data.answers)
    return Response(receipt, status_code=HTTP_201_CREATED)


def _html(status: int, page: str) -> Response[str]:
    return Response(page, status_code=status, media_type="text/html", headers=form.HEADERS)


NOT_FOUND_PAGE = (
    "链接无效 Link not found",
    "这个问卷链接不存在。 This survey link does not exist.",
)
CLOSED_PAGE = (
    "问卷已结束 Survey closed",
    "这一期问卷已结束，感谢关注。 This survey round has closed.",
)
THANKS = "已收到您的回答，感谢参与！ Thank you: your answers were received."
ANSWERED = "您已提交过这份问卷，感谢参与！ You have answered this survey: thank you."


def _notice(plugin: PluginContext, status: int, title: str, message: str) -> Response[str]:
    return _html(status, form.render(plugin, title, "", [], message=message, failed=status >= 400))


@get(
    "/links/{token:str}/form",
    summary="The personal link's HTML form (what the message links to)",
    operation_id="getSurveyForm",
    responses=_gone_and(),
    operation_class=operation(
        answer={"text/html": HTML},
        answer_description="The survey as a form, or a thank-you when it was answered.",
        errors_as={"text/html": HTML},
    ),
    description=(
        "No API key: the page the invitation's link opens in a browser (autoescaped HTML, "
        "no script, not framed, not cached, no referrer). 404 and 410 as pages too."
    ),
)
async def survey_form(plugin: Plugin, db: Db, token: TokenPath) -> Response[str]:
    available = await question_types(plugin)  # before the transaction (see the service)
    try:
        row, answered, questions = await service.page_of(db, available, token)
    except RoundClosed:
        return _notice(plugin, 410, *CLOSED_PAGE)
    except NotFound:
        return _notice(plugin, 404, *NOT_FOUND_PAGE)
    if answered:
        return _html(200, form.render(plugin, row.title, row.description, [], message=ANSWERED))
    return _html(200, form.render(plugin, row.title, row.description, questions))


@post(
    "/links/{token:str}/form",
    status_code=HTTP_201_CREATED,
    summary="Answer through the HTML form",
    operation_id="postSurveyForm",
    responses=_gone_and(409, 422),
    operation_class=operation(
        status="201",
        request={"application/x-www-form-urlencoded": FORM},
        request_description="The form's fields, one per question key.",
        answer={"text/html": HTML},
        answer_description="Thanks: the answers were recorded.",
        errors_as={"text/html": HTML},
    ),
    description=(
        "No API key. The same rules as `POST /links/{token}`, with the answers as form "
        "fields; a wrong answer shows the form again with its message (422), an answered "
        "link a notice (409), a closed round a notice (410)."
    ),
)
async def submit_form(
    plugin: Plugin, db: Db, token: TokenPath, request: Request[Any, Any, Any]
) -> Response[str]:
    try:
        fields = form.parse(await request.body())
    except ValueError as exc:  # not UTF-8, or too many fields: a problem, like a bad body
        raise ClientException("body: not a URL-encoded form of UTF-8 text") from exc
    available = await question_types(plugin)  # before the transaction (see the service)
    try:
        row, _, questions = await service.page_of(db, available, token)
    except RoundClosed:
        return _notice(plugin, 410, *CLOSED_PAGE)
    except NotFound:
        return _notice(plugin, 404, *NOT_FOUND_PAGE)
    title, description = row.title, row.description  # the row expires on a rollback
    raw = form.answers_from(plugin, questions, available, fields)
    try:
        await service.answer(db, plugin, token, raw, strict=False)
    except RoundClosed:  # closed meanwhile
        await db.rollback()
        return _notice(plugin, 410, *CLOSED_PAGE)
    except Conflict:
        await db.rollback()
        return _notice(plugin, 409, title, ANSWERED)
    except Invalid as refused:
        await db.rollback()
        unplaced = [e.message for e in refused.errors if not e.field.startswith("answers.")]
        page = form.render(
            plugin,
            title,
            description,
            questions,
            message="；".join(unplaced) or "请检查标出的问题。 Please check the questions marked.",
            failed=True,
            form=fields,
            errors=refused.errors,
        )
        return _html(422, page)
    return _html(201, form.render(plugin, title, description, [], message=THANKS))


HANDLERS = (
    list_question_types,
    put_survey,
    list_surveys,
    get_survey,
    open_round,
    list_rounds,
    close_round,
    results,
    export_text,
)
PUBLIC_HANDLERS = (survey_link, answer, survey_form, submit_form)
