"""The surveys' rules: surveys and their questions, rounds, invitations, responses, tags.

* A survey's questions are checked against their types when HQ writes it (the settings by
  the type's settings model, the tag rules against the choices or the type's score).
* A round copies the survey as it is (title, questions, anonymity, audience), so changing a
  survey changes only later rounds. A survey has one round open at a time: opening the
  next closes the last. Opening takes the survey's row as its lock, so round numbers and
  the month's scheduled round are never taken twice.
* Invitations go out in batches (``invite_batch``), each in its own transaction, after the
  round is committed: the round's row is the batch's lock and ``invite_cursor`` the last
  member invited, so a batch run twice (a retried job, the periodic sweep beside the
  request's own run) invites nobody twice; each message is keyed by round and member too.
* A personal link carries a random token (192 bits); only its SHA-256 is stored. Answering
  locks the invitation's row: one response per link, a second is a 409. An anonymous
  round's response keeps no member and only its day, and sets no tags.

The question types offered here (``question_types``) are read before a transaction's first
statement: the host may read the chain's plugin settings through a session of its own,
which must not wait on this one's locks (SQLite has one writer at a time).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.plugins.api import (
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    PluginContext,
    QuestionType,
    add_member_tags,
    chain_now,
    emit_event,
    member_ids,
    public_path,
    question_types,
    remember,
    replayed,
    send_message,
    utcnow,
)
from nestpoint_surveys import answers as types_at_work
from nestpoint_surveys.answers import Refused, built_in_kind
from nestpoint_surveys.models import Survey, SurveyInvitation, SurveyResponse, SurveyRound
from nestpoint_surveys.schemas import (
    Audience,
    Bucket,
    NpsRead,
    PublicQuestion,
    QuestionRead,
    QuestionResult,
    ReceiptRead,
    ResultsRead,
    RoundIn,
    RoundRead,
    Schedule,
    SurveyIn,
    SurveyPage,
    SurveyRead,
    SurveysConfig,
    TagRule,
)

log = logging.getLogger("nestpoint.plugins.surveys")

PURPOSE = "survey"
TEMPLATE = "survey_invite"
BATCH = 200  # members invited per transaction
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class RoundClosed(Conflict):
    """410: the link is right, but its round has closed (or its time is over)."""

    status = 410
    title = "Gone"
    slug = "gone"


def config_of(plugin: PluginContext) -> SurveysConfig:
    return SurveysConfig.model_validate(plugin.config)


def _refusal(errors: list[FieldError]) -> Invalid:
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return Invalid(detail + ("; ..." if len(errors) > 5 else ""), errors=errors)


# ------------------------------------------------------------------ surveys


async def put_survey(
    db: AsyncSession, plugin: PluginContext, code: str, data: SurveyIn
) -> SurveyRead:
    """Create or change a survey (HQ). Every question is checked against its type; the
    errors name the field (``questions.2.settings.choices``) and nothing is written."""
    questions = await _checked_questions(plugin, data)
    row = await find_survey(db, code, lock=True)
    now = utcnow()
    if row is None:
        row = Survey(id=uuid.uuid4(), code=code, created_at=now, schedule=None)
        db.add(row)
    schedule = data.schedule.model_dump() if data.schedule is not None else None
    if schedule != row.schedule:  # a new schedule holds from now (not for a past moment)
        row.schedule, row.schedule_since = schedule, now if schedule is not None else None
    row.title, row.description = data.title, data.description
    row.questions = questions
    row.anonymous, row.audience = data.anonymous, data.audience.model_dump()
    row.open_days, row.active, row.updated_at = data.open_days, data.active, now
    try:
        await db.flush()
    except IntegrityError as exc:  # created by a request at the same moment
        raise Conflict(
            f"survey {code!r} was created at the same time: retry",
            errors=[FieldError("code", "taken meanwhile")],
        ) from exc
    return await survey_read(db, row)


async def _checked_questions(plugin: PluginContext, data: SurveyIn) -> list[dict[str, Any]]:
    available = await question_types(plugin)
    errors: list[FieldError] = []
    questions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, question in enumerate(data.questions):
        field = f"questions.{i}"
        if question.key in seen:
            errors.append(FieldError(f"{field}.key", f"{question.key!r} is used twice"))
        seen.add(question.key)
        qt = available.get(question.type)
        if qt is None:
            offered = ", ".join(sorted(available)) or "none"
            message = f"no question type {question.type!r} here (offered: {offered})"
            errors.append(FieldError(f"{field}.type", message))
            continue
        try:
            settings = types_at_work.check_settings(qt, question.settings, f"{field}.settings")
        except Refused as refused:
            errors += refused.errors
            continue
        if data.anonymous and question.tags:
            errors.append(FieldError(f"{field}.tags", "an anonymous survey sets no tags"))
        errors += _rule_errors(plugin, question.type, qt, settings, question.tags, field)
        questions.append(
            {
                "key": question.key,
                "type": question.type,
                "title": question.title,
                "help": question.help,
                "required": question.required,
                "settings": settings,
                "tags": [rule.model_dump() for rule in question.tags],
            }
        )
    if errors:
        raise _refusal(errors)
    return questions


def _rule_errors(
    plugin: PluginContext,
    type_key: str,
    qt: QuestionType,
    settings: Mapping[str, Any],
    rules: list[TagRule],
    field: str,
) -> list[FieldError]:
    errors = []
    kind = built_in_kind(plugin, type_key)
    choices = (
        [c["key"] for c in settings.get("choices", [])] if kind in ("single", "multiple") else None
    )
    for j, rule in enumerate(rules):
        name = f"{field}.tags.{j}"
        if rule.choice is not None:
            if choices is None:
                errors.append(FieldError(f"{name}.choice", "only a choice question has choices"))
            elif rule.choice not in choices:
                errors.append(FieldError(f"{name}.choice", "not one of the question's choices"))
        elif qt.score is None:
            errors.append(FieldError(name, "this question type has no score: tag by choice"))
    return errors


async def find_survey(db: AsyncSession, code: str, *, lock: bool = False) -> Survey | None:
    stmt = select(Survey).where(Survey.code == code)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return await db.scalar(stmt)


async def _survey(db: AsyncSession, code: str, *, lock: bool = False) -> Survey:
    row = await find_survey(db, code, lock=lock)
    if row is None:
        raise NotFound(f"no survey {code!r}")
    return row


async def survey_read(db: AsyncSession, row: Survey) -> SurveyRead:
    rounds = await db.scalar(select(func.count()).where(SurveyRound.survey_id == row.id))
    return SurveyRead(
        code=row.code,
        title=row.title,
        description=row.description,
        questions=[QuestionRead.model_validate(q) for q in row.questions],
        anonymous=row.anonymous,
        audience=Audience.model_validate(row.audience),
        schedule=Schedule.model_validate(row.schedule) if row.schedule else None,
        open_days=row.open_days,
        active=row.active,
        rounds=int(rounds or 0),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def get_survey(db: AsyncSession, code: str) -> SurveyRead:
    return await survey_read(db, await _survey(db, code))


async def list_surveys(db: AsyncSession) -> list[SurveyRead]:
    rows = (await db.scalars(select(Survey).order_by(Survey.code).limit(500))).all()
    return [await survey_read(db, row) for row in rows]


# ------------------------------------------------------------------ rounds


async def open_round(
    db: AsyncSession, plugin: PluginContext, code: str, data: RoundIn
) -> tuple[int, dict[str, Any], bool, uuid.UUID | None]:
    """Open the survey's next round now (HQ): ``(status, body, replayed, round id)``; the
    round id is ``None`` for a replay. Invitations go out after the commit."""
    available = await question_types(plugin)
    survey = await _survey(db, code, lock=True)
    request = {"survey": code, "open_days": data.open_days}
    earlier = await replayed(db, plugin, data.idempotency_key, request)
    if earlier is not None:
        return *earlier, True, None
    if not survey.active:
        raise Invalid.field("code", "the survey is not active: set active to open rounds")
    days = data.open_days or survey.open_days
    row = await _new_round(db, plugin, available, survey, period=None, days=days, now=utcnow())
    body = await round_read(db, survey, row)
    await remember(db, plugin, data.idempotency_key, request, 201, body)
    return 201, body.model_dump(mode="json"), False, row.id


async def _new_round(
    db: AsyncSession,
    plugin: PluginContext,
    available: Mapping[str, QuestionType],
    survey: Survey,
    *,
    period: str | None,
    days: int,
    now: datetime,
) -> SurveyRound:
    """The survey's next round (the survey's row locked by the caller)."""
    missing = [
        FieldError(f"questions.{i}.type", f"question type {q['type']!r} is not offered here now")
        for i, q in enumerate(survey.questions)
        if q["type"] not in available
    ]
    if missing:
        raise _refusal(missing)
    still_open = (
        await db.scalars(
            select(SurveyRound)
            .where(SurveyRound.survey_id == survey.id, SurveyRound.status != "closed")
            .with_for_update()
        )
    ).all()
    for earlier in still_open:  # one round open at a time: the next closes the last
        earlier.status, earlier.closed_at = "closed", min(now, earlier.closes_at)
    last = await db.scalar(
        select(func.max(SurveyRound.number)).where(SurveyRound.survey_id == survey.id)
    )
    row = SurveyRound(
        id=uuid.uuid4(),
        survey_id=survey.id,
        number=int(last or 0) + 1,
        period=period,
        title=survey.title,
        description=survey.description,
        questions=list(survey.questions),
        anonymous=survey.anonymous,
        audience=dict(survey.audience),
        status="inviting",
        opened_at=now,
        closes_at=now + timedelta(days=days),
        invited=0,
    )
    db.add(row)
    await db.flush()
    payload = {"survey_code": survey.code, "round": row.number, "period": period}
    emit_event(db, plugin, "round_opened", "survey", survey.id, payload)
    return row


def _status(row: SurveyRound, now: datetime) -> str:
    return "closed" if row.status == "closed" or row.closes_at <= now else row.status


async def _responded(db: AsyncSession, round_id: uuid.UUID) -> int:
    found = await db.scalar(select(func.count()).where(SurveyResponse.round_id == round_id))
    return int(found or 0)


async def round_read(db: AsyncSession, survey: Survey, row: SurveyRound) -> RoundRead:
    now = utcnow()
    return RoundRead(
        survey_code=survey.code,
        number=row.number,
        period=row.period,
        status=_status(row, now),
        title=row.title,
        anonymous=row.anonymous,
        opened_at=row.opened_at,
        closes_at=row.closes_at,
        closed_at=row.closed_at or (row.closes_at if row.closes_at <= now else None),
        invited=row.invited,
        responded=await _responded(db, row.id),
    )


async def _round(
    db: AsyncSession, survey: Survey, number: int, *, lock: bool = False
) -> SurveyRound:
    stmt = select(SurveyRound).where(
        SurveyRound.survey_id == survey.id, SurveyRound.number == number
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await db.scalar(stmt)
    if row is None:
        raise NotFound(f"survey {survey.code!r} has no round {number}")
    return row


async def list_rounds(db: AsyncSession, code: str) -> list[RoundRead]:
    survey = await _survey(db, code)
    rows = (
        await db.scalars(
            select(SurveyRound)
            .where(SurveyRound.survey_id == survey.id)
            .order_by(SurveyRound.number.desc())
            .limit(200)
        )
    ).all()
    return [await round_read(db, survey, row) for row in rows]


async def close_round(db: AsyncSession, code: str, number: int) -> RoundRead:
    """Close a round now (again: a no-op): its links answer 410 from then on."""
    survey = await _survey(db, code)
    row = await _round(db, survey, number, lock=True)
    if row.status != "closed":
        now = utcnow()
        row.status, row.closed_at = "closed", min(now, row.closes_at)
        await db.flush()
    return await round_read(db, survey, row)


# ------------------------------------------------------------------ invitations


async def _link_prefix(db: AsyncSession, plugin: PluginContext) -> str:
    return config_of(plugin).public_base_url + await public_path(db, plugin)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def invite_batch(
    db: AsyncSession, plugin: PluginContext, round_id: uuid.UUID, size: int = BATCH
) -> bool:
    """Invite the round's next ``size`` members (one personal link and one queued message
    each), in the caller's transaction; ``True`` when the round has nobody left to invite."""
    row = await db.scalar(
        select(SurveyRound)
        .where(SurveyRound.id == round_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.status != "inviting":
        return True
    if row.closes_at <= utcnow():  # its time is over before everyone was invited
        row.status, row.closed_at = "closed", row.closes_at
        return True
    tags = list(row.audience.get("tags") or [])
    audience = await member_ids(db, tags=tags or None, after=row.invite_cursor, limit=size)
    prefix = await _link_prefix(db, plugin)
    invited = set(
        (
            await db.scalars(
                select(SurveyInvitation.member_id).where(
                    SurveyInvitation.round_id == row.id, SurveyInvitation.member_id.in_(audience)
                )
            )
        ).all()
    )  # none, unless the cursor was lost: never invite a member twice anyway
    for member_id in (m for m in audience if m not in invited):
        token = secrets.token_urlsafe(24)
        db.add(
            SurveyInvitation(
                id=uuid.uuid4(), round_id=row.id, member_id=member_id, token_hash=_hash(token)
            )
        )
        await send_message(
            db,
            plugin,
            member_id,
            key=f"round:{row.id}:{member_id}",
            purpose=PURPOSE,
            template=TEMPLATE,
            params={"survey_title": row.title, "survey_link": f"{prefix}/links/{token}/form"},
        )
    row.invited += len([m for m in audience if m not in invited])
    if audience:
        row.invite_cursor = audience[-1]
    if len(audience) < size:
        row.status = "open"
    await db.flush()
    return row.status != "inviting"


async def invite_all(plugin: PluginContext, round_id: uuid.UUID) -> None:
    """Invite the round's audience, one batch per transaction, to the end."""
    while True:
        async with plugin.session() as db:
            if await invite_batch(db, plugin, round_id):
                return


async def rounds_inviting(db: AsyncSession) -> list[uuid.UUID]:
    rows = await db.scalars(select(SurveyRound.id).where(SurveyRound.status == "inviting"))
    return list(rows.all())


async def close_expired(db: AsyncSession, now: datetime) -> int:
    """Rounds whose time is over become closed (as of their ``closes_at``)."""
    rows = (
        await db.scalars(
            select(SurveyRound)
            .where(SurveyRound.status != "closed", SurveyRound.closes_at <= now)
            .with_for_update()
        )
    ).all()
    for row in rows:
        row.status, row.closed_at = "closed", row.closes_at
    return len(rows)


# ------------------------------------------------------------------ the schedule


async def local_now(db: AsyncSession) -> datetime:
    """Now in the chain's time zone (the schedule's clock)."""
    return await chain_now(db)


async def open_scheduled_rounds(
    db: AsyncSession, plugin: PluginContext, now: datetime | None = None
) -> list[uuid.UUID]:
    """Open the month's round of each scheduled survey whose moment (day and hour of
    ``now``'s month, in ``now``'s zone: the chain's) has come, once per month: the round's
    ``period`` (``2026-12``) is unique per survey. A schedule set after this month's moment
    starts next month. ``now`` defaults to the chain's clock."""
    available = await question_types(plugin)
    now = now or await local_now(db)
    period = f"{now.year:04d}-{now.month:02d}"
    opened: list[uuid.UUID] = []
    surveys = (await db.scalars(select(Survey).where(Survey.active.is_(True)))).all()
    for survey in surveys:
        if not survey.schedule or survey.schedule_since is None:
            continue
        schedule = Schedule.model_validate(survey.schedule)
        moment = now.replace(
            day=schedule.day, hour=schedule.hour, minute=0, second=0, microsecond=0
        )
        if now < moment or moment < survey.schedule_since:
            continue
        locked = await _survey(db, survey.code, lock=True)
        taken = await db.scalar(
            select(SurveyRound.id).where(
                SurveyRound.survey_id == locked.id, SurveyRound.period == period
            )
        )
        if taken is not None:
            continue
        try:
            row = await _new_round(
                db,
                plugin,
                available,
                locked,
                period=period,
                days=locked.open_days,
                now=now.astimezone(UTC),
            )
        except Invalid as exc:  # a question's type is no longer offered: HQ must fix it
            log.warning("scheduled survey %s not opened: %s", survey.code, exc.detail)
            continue
        opened.append(row.id)
    return opened


# ------------------------------------------------------------------ answering (public)


async def _invitation(
    db: AsyncSession, token: str, *, lock: bool = False
) -> tuple[SurveyInvitation, SurveyRound]:
    if not TOKEN.match(token):
        raise NotFound("no such survey link")
    stmt = select(SurveyInvitation).where(SurveyInvitation.token_hash == _hash(token))
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    invitation = await db.scalar(stmt)
    if invitation is None:
        raise NotFound("no such survey link")
    row = await db.scalar(select(SurveyRound).where(SurveyRound.id == invitation.round_id))
    if row is None:
        raise NotFound("no such survey link")
    return invitation, row


def _check_open(row: SurveyRound) -> None:
    if _status(row, utcnow()) == "closed":
        raise RoundClosed("this survey round has closed", errors=[FieldError("token", "closed")])


def offered_questions(
    row: SurveyRound, available: Mapping[str, QuestionType]
) -> list[dict[str, Any]]:
    """The round's questions whose type is offered here now (a type whose plugin was
    switched off is left out)."""
    return [q for q in row.questions if q["type"] in available]


async def survey_page(db: AsyncSession, plugin: PluginContext, token: str) -> SurveyPage:
    available = await question_types(plugin)
    invitation, row = await _invitation(db, token)
    _check_open(row)
    questions = offered_questions(row, available)
    return SurveyPage(
        title=row.title,
        description=row.description,
        anonymous=row.anonymous,
        status="answered" if invitation.responded else "open",
        closes_at=row.closes_at,
        questions=[PublicQuestion.model_validate(q) for q in questions],
    )


async def page_of(
    db: AsyncSession, available: Mapping[str, QuestionType], token: str
) -> tuple[SurveyRound, bool, list[dict[str, Any]]]:
    """What the HTML form shows: the round, whether it was answered, its questions."""
    invitation, row = await _invitation(db, token)
    _check_open(row)
    return row, invitation.responded, offered_questions(row, available)


async def answer(
    db: AsyncSession,
    plugin: PluginContext,
    token: str,
    raw: Mapping[str, Any],
    *,
    strict: bool = True,
) -> ReceiptRead:
    """A member's answers through their personal link: 404 unknown link, 410 closed round,
    409 answered before, 422 naming ``answers.<question>`` for a wrong answer."""
    available = await question_types(plugin)
    invitation, row = await _invitation(db, token, lock=True)
    _check_open(row)
    if invitation.responded:
        raise Conflict(
            "this link was answered already: one response per member and round",
            errors=[FieldError("token", "answered already")],
        )
    await _record(db, plugin, available, invitation, row, raw, strict=strict)
    return ReceiptRead(title=row.title, round=row.number, anonymous=row.anonymous)


async def _record(
    db: AsyncSession,
    plugin: PluginContext,
    available: Mapping[str, QuestionType],
    invitation: SurveyInvitation,
    row: SurveyRound,
    raw: Mapping[str, Any],
    *,
    strict: bool = True,
) -> None:
    stored, tags = _checked_answers(available, row, raw, strict=strict)
    now = utcnow()
    invitation.responded = True
    member_id = None if row.anonymous else invitation.member_id
    set_tags: list[str] = []
    if member_id is not None and tags:
        try:
            await add_member_tags(db, plugin, member_id, tags)
            set_tags = tags
        except (Invalid, NotFound) as exc:  # a member at the tag limit still answers
            log.warning("survey tags not set on a member: %s", exc)
    db.add(
        SurveyResponse(
            id=uuid.uuid4(),
            round_id=row.id,
            member_id=member_id,
            answers=stored,
            tags=set_tags,
            # An anonymous response keeps only its day, so it cannot be matched to a link.
            submitted_at=now.replace(hour=0, minute=0, second=0, microsecond=0)
            if row.anonymous
            else now,
        )
    )
    code = await db.scalar(select(Survey.code).where(Survey.id == row.survey_id))
    payload = {
        "survey_code": code,
        "round": row.number,
        "member_id": str(member_id) if member_id else None,
        "tags": set_tags,
    }
    emit_event(db, plugin, "response_received", "survey", row.survey_id, payload)
    await db.flush()


def _checked_answers(
    available: Mapping[str, QuestionType],
    row: SurveyRound,
    raw: Mapping[str, Any],
    *,
    strict: bool,
) -> tuple[dict[str, Any], list[str]]:
    questions = offered_questions(row, available)
    known = {q["key"] for q in questions}
    errors = [FieldError(f"answers.{key}", "no such question") for key in raw if key not in known]
    stored: dict[str, Any] = {}
    tags: list[str] = []
    for question in questions:
        field = f"answers.{question['key']}"
        given = raw.get(question["key"])
        if given is None:
            if question["required"]:
                errors.append(FieldError(field, "required"))
            continue
        qt, settings = available[question["type"]], question["settings"]
        try:
            value, kept = types_at_work.check_answer(qt, settings, given, field, strict=strict)
        except Refused as refused:
            errors += refused.errors
            continue
        stored[question["key"]] = kept
        scored = types_at_work.score(qt, value, settings)
        tags += types_at_work.tags_earned(question, kept, scored)
    if errors:
        raise _refusal(errors)
    if not stored:
        raise Invalid.field("answers", "answer at least one question")
    return stored, sorted(set(tags))


async def answer_for_member(
    db: AsyncSession,
    plugin: PluginContext,
    round_id: uuid.UUID,
    member_id: uuid.UUID,
    raw: Mapping[str, Any],
) -> bool:
    """Record a member's answers to a round they were invited to (the demo's members);
    ``False`` when they answered before or were not invited."""
    available = await question_types(plugin)
    invitation = await db.scalar(
        select(SurveyInvitation)
        .where(SurveyInvitation.round_id == round_id, SurveyInvitation.member_id == member_id)
        .with_for_update()
    )
    row = await db.scalar(select(SurveyRound).where(SurveyRound.id == round_id))
    if invitation is None or row is None or invitation.responded:
        return False
    await _record(db, plugin, available, invitation, row, raw)
    return True


# ------------------------------------------------------------------ results


async def results(db: AsyncSession, plugin: PluginContext, code: str, number: int) -> ResultsRead:
    """Invited, responded, the rate, and per question its distribution, average and NPS."""
    available = await question_types(plugin)
    survey = await _survey(db, code)
    row = await _round(db, survey, number)
    answers = list(
        await db.scalars(select(SurveyResponse.answers).where(SurveyResponse.round_id == row.id))
    )
    responded = len(answers)
    return ResultsRead(
        survey_code=survey.code,
        round=row.number,
        status=_status(row, utcnow()),
        anonymous=row.anonymous,
        invited=row.invited,
        responded=responded,
        response_rate=round(responded / row.invited, 4) if row.invited else 0.0,
        questions=[
            _question_result(plugin, available, question, answers) for question in row.questions
        ],
    )


def _question_result(
    plugin: PluginContext,
    available: Mapping[str, QuestionType],
    question: Mapping[str, Any],
    responses: list[dict[str, Any]],
) -> QuestionResult:
    given = [r[question["key"]] for r in responses if question["key"] in r]
    settings = question["settings"]
    kind = built_in_kind(plugin, question["type"])
    result = QuestionResult(
        key=question["key"],
        type=question["type"],
        title=question["title"],
        answered=len(given),
        distribution=[],
        average=None,
    )
    if kind in ("single", "multiple"):
        counts: Counter[str] = Counter()
        for answer in given:
            picked = answer.get("choices") if kind == "multiple" else [answer.get("choice")]
            counts.update(str(c) for c in picked or [])
        result.distribution = [
            Bucket(value=c["key"], label=c["label"], count=counts[c["key"]])
            for c in settings.get("choices", [])
        ]
    elif kind in ("rating", "nps"):
        scores = [int(a["score"]) for a in given if isinstance(a.get("score"), int)]
        scale = range(0, 11) if kind == "nps" else range(1, int(settings.get("max", 5)) + 1)
        counted = Counter(scores)
        result.distribution = [Bucket(value=str(n), label=str(n), count=counted[n]) for n in scale]
        result.average = round(sum(scores) / len(scores), 2) if scores else None
        if kind == "nps":
            result.nps = _nps(scores)
    elif kind is None and question["type"] in available:
        _other_type(available[question["type"]], settings, given, result)
    return result


def _nps(scores: list[int]) -> NpsRead:
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    passives = len(scores) - promoters - detractors
    score = round((promoters - detractors) * 100 / len(scores), 1) if scores else 0.0
    return NpsRead(promoters=promoters, passives=passives, detractors=detractors, score=score)


def _other_type(
    qt: QuestionType, settings: Mapping[str, Any], given: list[Any], result: QuestionResult
) -> None:
    """Another plugin's type: by score when it scores answers, else by its one value."""
    if qt.score is not None:
        scores = [
            s
            for s in (
                types_at_work.score(qt, types_at_work.parse_stored(qt, settings, a), settings)
                for a in given
            )
            if s is not None
        ]
        counted = Counter(scores)
        result.distribution = [
            Bucket(value=types_at_work.number(s), label=types_at_work.number(s), count=n)
            for s, n in sorted(counted.items())
        ]
        result.average = round(sum(scores) / len(scores), 2) if scores else None
        return
    values = Counter(v for v in (types_at_work.single_value(a) for a in given) if v is not None)
    result.distribution = [Bucket(value=v, label=v, count=n) for v, n in sorted(values.items())]


async def text_export(
    db: AsyncSession, plugin: PluginContext, code: str, number: int
) -> tuple[str, str]:
    """The round's free-text answers as CSV (``text``, filename); with the member's id
    unless the round is anonymous."""
    survey = await _survey(db, code)
    row = await _round(db, survey, number)
    texts = [q for q in row.questions if built_in_kind(plugin, q["type"]) == "text"]
    responses = (
        await db.scalars(
            select(SurveyResponse)
            .where(SurveyResponse.round_id == row.id)
            .order_by(SurveyResponse.submitted_at, SurveyResponse.id)
        )
    ).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = ["survey", "round", "question", "question_title", "answer", "submitted_at"]
    writer.writerow([*header, *([] if row.anonymous else ["member_id"])])
    for response in responses:
        for question in texts:
            given = response.answers.get(question["key"])
            if not isinstance(given, Mapping) or not given.get("text"):
                continue
            cells = [
                survey.code,
                str(row.number),
                question["key"],
                question["title"],
                str(given["text"]),
                response.submitted_at.isoformat(),
            ]
            if not row.anonymous:
                cells.append(str(response.member_id))
            writer.writerow([_cell(c) for c in cells])
    return out.getvalue(), f"survey-{survey.code}-{row.number}-text.csv"


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value


# ------------------------------------------------------------------ a member's answers (console)

MEMBER_RESPONSES_SHOWN = 20


async def member_responses(
    db: AsyncSession, member_id: uuid.UUID, limit: int = MEMBER_RESPONSES_SHOWN
) -> list[tuple[SurveyResponse, SurveyRound]]:
    """The member's latest named responses with their rounds (the questions as they were
    asked), newest first. Anonymous responses keep no member: never among them."""
    rows = (
        await db.execute(
            select(SurveyResponse, SurveyRound)
            .join(SurveyRound, SurveyRound.id == SurveyResponse.round_id)
            .where(SurveyResponse.member_id == member_id)
            .order_by(SurveyResponse.submitted_at.desc(), SurveyResponse.id.desc())
            .limit(limit)
        )
    ).all()
    return [(response, row) for response, row in rows]


# ------------------------------------------------------------------ a member's data export


async def member_data(db: AsyncSession, member_id: uuid.UUID) -> dict[str, Any]:
    """What the plugin keeps about one member, for their data export: the invitations they
    got (round, survey, whether answered; never the link's token, whose hash only is kept)
    and their responses with the answers and the tags they set. An anonymous round's
    response keeps no member: it cannot be told apart from the others' and is not included
    (its invitation is, with ``responded``)."""
    rounds = {
        row.id: row
        for row in (
            await db.scalars(
                select(SurveyRound).where(
                    SurveyRound.id.in_(
                        select(SurveyInvitation.round_id).where(
                            SurveyInvitation.member_id == member_id
                        )
                    )
                    | SurveyRound.id.in_(
                        select(SurveyResponse.round_id).where(SurveyResponse.member_id == member_id)
                    )
                )
            )
        ).all()
    }
    codes = dict((await db.execute(select(Survey.id, Survey.code))).all())

    def round_of(round_id: uuid.UUID) -> dict[str, Any]:
        row = rounds[round_id]
        return {
            "survey_code": codes.get(row.survey_id),
            "round": row.number,
            "title": row.title,
            "anonymous": row.anonymous,
        }

    invitations = (
        await db.scalars(
            select(SurveyInvitation)
            .where(SurveyInvitation.member_id == member_id)
            .order_by(SurveyInvitation.created_at, SurveyInvitation.id)
        )
    ).all()
    responses = (
        await db.scalars(
            select(SurveyResponse)
            .where(SurveyResponse.member_id == member_id)
            .order_by(SurveyResponse.submitted_at, SurveyResponse.id)
        )
    ).all()
    return {
        "invitations": [
            {**round_of(i.round_id), "responded": i.responded, "invited_at": i.created_at}
            for i in invitations
        ],
        "responses": [
            {
                **round_of(r.round_id),
                "answers": r.answers,
                "tags": list(r.tags),
                "submitted_at": r.submitted_at,
            }
            for r in responses
        ],
        "note": "Answers to anonymous surveys keep no member and are not included.",
    }


async def erase_member(db: AsyncSession, member_id: uuid.UUID) -> dict[str, int]:
    """An erased member: their invitations and named responses are deleted (answers may be
    free text that identifies them). Anonymous responses never carried the member."""
    responses = await db.execute(
        delete(SurveyResponse).where(SurveyResponse.member_id == member_id)
    )
    invitations = await db.execute(
        delete(SurveyInvitation).where(SurveyInvitation.member_id == member_id)
    )
    return {
        "responses": int(getattr(responses, "rowcount", 0) or 0),
        "invitations": int(getattr(invitations, "rowcount", 0) or 0),
    }
