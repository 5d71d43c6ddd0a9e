"""The surveys plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from nestpoint.plugins.api import (
    ConfigSchemaRegistry,
    Conflict,
    ConsolePanel,
    ConsolePanelRegistry,
    Invalid,
    JobRegistry,
    MigrationRegistry,
    NotFound,
    PluginContext,
    RouteRegistry,
    SurveyTypeRegistry,
    hookimpl,
    utcnow,
)
from nestpoint_surveys import service
from nestpoint_surveys.console import PANEL_TITLE, member_answers
from nestpoint_surveys.questions import BUILT_IN
from nestpoint_surveys.routes import HANDLERS, PUBLIC_HANDLERS
from nestpoint_surveys.schemas import RoundIn, SurveyIn, SurveysConfig

log = logging.getLogger("nestpoint.plugins.surveys")

SCHEDULE_SECONDS = 600


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(SurveysConfig)


@hookimpl
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    registry.add(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    registry.add(*HANDLERS)
    registry.add_public(*PUBLIC_HANDLERS)


@hookimpl
def nestpoint_register_survey_types(registry: SurveyTypeRegistry) -> None:
    """The built-in types, through the same hook as any other plugin's."""
    for question_type in BUILT_IN:
        registry.add(question_type)


@hookimpl
def nestpoint_register_console_panels(registry: ConsolePanelRegistry) -> None:
    """The member's survey answers on their page in the console (HQ)."""
    registry.add(ConsolePanel("answers", PANEL_TITLE, "member", render=member_answers, order=60))


@hookimpl
async def nestpoint_collect_member_data(member_id: str, plugin: PluginContext) -> dict[str, Any]:
    """The member's survey invitations and responses (anonymous responses excluded)."""
    async with plugin.session() as db:
        return await service.member_data(db, uuid.UUID(member_id))


@hookimpl
async def nestpoint_erase_member_data(member_id: str, plugin: PluginContext) -> dict[str, int]:
    """The member's invitations and named responses are deleted."""
    async with plugin.session() as db:
        return await service.erase_member(db, uuid.UUID(member_id))


async def schedule(plugin: PluginContext, **_: Any) -> None:
    """Periodic, per chain: close the rounds whose time is over, open the month's round of
    each scheduled survey once its day and hour have come (the chain's clock), and finish
    any invitations a request's run left half-way."""
    async with plugin.session() as db:
        await service.close_expired(db, utcnow())
    async with plugin.session() as db:
        await service.open_scheduled_rounds(db, plugin)
    async with plugin.session() as db:
        pending = await service.rounds_inviting(db)
    for round_id in pending:
        await service.invite_all(plugin, round_id)


@hookimpl
def nestpoint_register_jobs(registry: JobRegistry) -> None:
    registry.periodic(schedule, seconds=SCHEDULE_SECONDS, name="schedule")


# ------------------------------------------------------------------ the demo

DEMO_CODE = "needs-monthly"
STAGES = [
    {"key": "pregnant", "label": "孕期"},
    {"key": "0-6m", "label": "0-6 个月"},
    {"key": "6-12m", "label": "6-12 个月"},
    {"key": "1-3y", "label": "1-3 岁"},
    {"key": "3-6y", "label": "3-6 岁"},
]
NEEDS = [
    {"key": "feeding", "label": "奶粉辅食"},
    {"key": "diapers", "label": "纸尿裤"},
    {"key": "care", "label": "洗护用品"},
    {"key": "toys", "label": "玩具绘本"},
    {"key": "advice", "label": "育儿咨询"},
]
DEMO_SURVEY = SurveyIn.model_validate(
    {
        "title": "需求调研问卷",
        "description": "每月一期，了解宝宝这个阶段您最需要什么，约 1 分钟。",
        "questions": [
            {
                "key": "stage",
                "type": "surveys.single",
                "title": "宝宝目前处于哪个阶段？",
                "settings": {"choices": STAGES},
            },
            {
                "key": "needs",
                "type": "surveys.multiple",
                "title": "这个阶段您最需要哪些商品或服务？（可多选）",
                "settings": {"choices": NEEDS, "max_choices": 3},
            },
            {
                "key": "early_education",
                "type": "surveys.single",
                "title": "您对亲子早教课程感兴趣吗？",
                "settings": {
                    "choices": [
                        {"key": "yes", "label": "很感兴趣"},
                        {"key": "maybe", "label": "可以了解一下"},
                        {"key": "no", "label": "暂不需要"},
                    ]
                },
                "tags": [{"choice": "yes", "tag": "interested_early_education"}],
            },
            {
                "key": "nps",
                "type": "surveys.nps",
                "title": "您有多大可能把我们推荐给亲友？",
                "settings": {"low_label": "完全不可能", "high_label": "非常愿意"},
            },
            {
                "key": "wishes",
                "type": "surveys.text",
                "title": "您还希望我们增加哪些商品或服务？",
                "required": False,
                "settings": {"max_length": 300},
            },
        ],
        "schedule": {"every": "month", "day": 1, "hour": 10},
        "open_days": 14,
    }
)
DEMO_ANSWERS: list[dict[str, Any]] = [
    {"stage": {"choice": "0-6m"}, "needs": {"choices": ["feeding", "diapers"]},
     "early_education": {"choice": "yes"}, "nps": {"score": 10},
     "wishes": {"text": "希望有夜间配送"}},
    {"stage": {"choice": "1-3y"}, "needs": {"choices": ["toys", "advice"]},
     "early_education": {"choice": "yes"}, "nps": {"score": 9}},
    {"stage": {"choice": "pregnant"}, "needs": {"choices": ["advice"]},
     "early_education": {"choice": "maybe"}, "nps": {"score": 8},
     "wishes": {"text": "孕期营养讲座"}},
    {"stage": {"choice": "6-12m"}, "needs": {"choices": ["feeding", "care"]},
     "early_education": {"choice": "no"}, "nps": {"score": 6}},
]  # fmt: skip


@hookimpl
async def nestpoint_seed_demo(plugin: PluginContext, member_ids: list[str]) -> None:
    """The monthly needs survey (需求调研问卷), its first round sent to the chain's members,
    and a few of them answering. Idempotent: the survey is written only when missing, the
    round is opened with a fixed key, and a member answers once."""
    chain = PluginContext(plugin.plugin_id, plugin.tenant_id, None, plugin.config)
    try:
        async with chain.session() as db:
            if await service.find_survey(db, DEMO_CODE) is None:
                await service.put_survey(db, chain, DEMO_CODE, DEMO_SURVEY)
        async with chain.session() as db:
            first = RoundIn(idempotency_key="demo-surveys-needs-round-1")
            _, _, _, round_id = await service.open_round(db, chain, DEMO_CODE, first)
        if round_id is None:  # seeded before
            return
        await service.invite_all(chain, round_id)
        for member, answers in zip(member_ids, DEMO_ANSWERS, strict=False):
            async with chain.session() as db:
                await service.answer_for_member(db, chain, round_id, uuid.UUID(member), answers)
    except (Invalid, Conflict, NotFound) as exc:  # a chain that changed the survey by hand
        log.info("surveys demo not seeded: %s", exc)
