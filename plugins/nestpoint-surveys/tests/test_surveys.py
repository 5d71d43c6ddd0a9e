"""The surveys plugin, tested with Nestpoint's test kit (``nestpoint.testing``): a round goes
out through the core's message pipeline, members answer through their personal links, tags
are set, results add up."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nestpoint_surveys import service
from nestpoint_surveys.console import PANEL_TITLE, member_answers
from nestpoint_surveys.models import Survey, SurveyResponse, SurveyRound
from sqlalchemy import select, update

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.exports.service import run_export
from nestpoint.messaging import pipeline
from nestpoint.plugins.api import ConsolePanel, ConsoleViewer, PluginContext
from nestpoint.testing import next_local_time

PLUGIN = "surveys"
BASE = "/api/v1/plugins/surveys"
SITE = "https://np.example.com"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CHOICES = [{"key": k, "label": f"选项 {k}"} for k in ("a", "b", "c")]
NEEDS = [{"key": k, "label": f"需求 {k}"} for k in ("x", "y", "z")]
EARLY = [
    {"key": "yes", "label": "感兴趣"},
    {"key": "maybe", "label": "了解"},
    {"key": "no", "label": "不"},
]


def _questions() -> list[dict[str, Any]]:
    return [
        {
            "key": "q1",
            "type": "surveys.single",
            "title": "宝宝阶段",
            "settings": {"choices": CHOICES},
        },
        {
            "key": "q2",
            "type": "surveys.multiple",
            "title": "需要什么（可多选）",
            "settings": {"choices": NEEDS, "max_choices": 2},
        },
        {
            "key": "q3",
            "type": "surveys.single",
            "title": "对早教课感兴趣吗？",
            "settings": {"choices": EARLY},
            "tags": [{"choice": "yes", "tag": "interested_early_education"}],
        },
        {
            "key": "q4",
            "type": "surveys.nps",
            "title": "推荐给亲友的可能性",
            "tags": [{"min_score": 9, "tag": "promoter"}],
        },
        {"key": "q5", "type": "surveys.rating", "title": "门店服务评分", "settings": {"max": 5}},
        {"key": "q6", "type": "surveys.text", "title": "其他建议", "required": False},
    ]


def _survey(**overrides: Any) -> dict[str, Any]:
    return {"title": "需求调研问卷", "questions": _questions(), **overrides}


async def _set_up(client: Any, t: Any, enable: Any) -> None:
    await enable(t, PLUGIN, config={"public_base_url": SITE})
    await enable(t, "kept")
    r = await client.put(
        "/api/v1/messaging/settings", json={"channel_order": ["kept"]}, headers=t.hq()
    )
    assert r.status_code == 200, r.text


async def _member(client: Any, t: Any, *, tags: list[str] | None = None) -> str:
    body = {
        "phone": f"139{uuid.uuid4().int % 100_000_000:08d}",
        "name": "王芳",
        "consents": [{"channel": "sms", "granted": True, "source": "app"}],
        "tags": tags or [],
    }
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _put(client: Any, t: Any, code: str, body: dict[str, Any]) -> Any:
    return await client.put(f"{BASE}/surveys/{code}", json=body, headers=t.hq())


async def _open(client: Any, t: Any, code: str, key: str | None = None) -> Any:
    body = {"idempotency_key": key or uuid.uuid4().hex}
    return await client.post(f"{BASE}/surveys/{code}/rounds", json=body, headers=t.hq())


async def _survey_messages(client: Any, t: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/messages", params={"purpose": "survey"}, headers=t.hq())
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _links(client: Any, t: Any, outbox: Any) -> dict[str, str]:
    """Send the queued invitations through the pipeline; each member's link as received."""
    outbox.sent.clear()
    for message in await _survey_messages(client, t):
        while (await pipeline.step(t.id, uuid.UUID(message["id"]), next_local_time(10))) == 0:
            pass
    links = {m.member_id: m.params["survey_link"] for m in outbox.sent}
    assert all(link.startswith(SITE) and link.endswith("/form") for link in links.values())
    return {member: link.removeprefix(SITE).removesuffix("/form") for member, link in links.items()}


async def _tags(client: Any, t: Any, member: str) -> list[str]:
    r = await client.get(f"/api/v1/members/{member}", headers=t.hq())
    assert r.status_code == 200, r.text
    return list(r.json()["tags"])


# ------------------------------------------------------------------ a round, end to end


async def test_a_round_goes_out_members_answer_tags_are_set_and_results_add_up(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    members = [await _member(client, t) for _ in range(5)]
    r = await _put(client, t, "needs", _survey())
    assert r.status_code == 200, r.text
    assert r.json()["questions"][3]["settings"]["low_label"]  # the type's defaults filled in

    r = await _open(client, t, "needs", key="round-one-please")
    assert r.status_code == 201, r.text
    assert (r.json()["number"], r.json()["period"]) == (1, None)
    again = await _open(client, t, "needs", key="round-one-please")  # a retry: the same round
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == r.json()
    r = await client.get(f"{BASE}/surveys/needs/rounds", headers=t.hq())
    assert [(x["number"], x["status"], x["invited"]) for x in r.json()] == [(1, "open", 5)]

    # One invitation per member, queued through the core's pipeline, each with its own link.
    messages = await _survey_messages(client, t)
    assert sorted(m["member_id"] for m in messages) == sorted(members)
    assert {m["template"] for m in messages} == {"survey_invite"}
    links = await _links(client, t, outbox)
    assert sorted(links) == sorted(members)
    assert len(set(links.values())) == 5
    assert all(link.startswith(f"/public/{t.slug}/surveys/links/") for link in links.values())
    assert "需求调研问卷" in outbox.sent[0].body

    page = await client.get(links[members[0]])
    assert page.status_code == 200, page.text
    assert page.json()["status"] == "open"
    assert [q["key"] for q in page.json()["questions"]] == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert "tags" not in page.json()["questions"][2]  # the rules are HQ's, not the public's

    answers = [
        {"q1": {"choice": "a"}, "q2": {"choices": ["x", "y"]}, "q3": {"choice": "yes"},
         "q4": {"score": 10}, "q5": {"score": 5}, "q6": {"text": "希望有夜间配送"}},
        {"q1": {"choice": "a"}, "q2": {"choices": ["y"]}, "q3": {"choice": "yes"},
         "q4": {"score": 9}, "q5": {"score": 4}},
        {"q1": {"choice": "b"}, "q2": {"choices": ["x"]}, "q3": {"choice": "no"},
         "q4": {"score": 7}, "q5": {"score": 3}, "q6": {"text": "=HYPERLINK(1)"}},
    ]  # fmt: skip
    for member, given in zip(members, answers, strict=False):
        r = await client.post(links[member], json={"answers": given})
        assert r.status_code == 201, r.text
        assert r.json() == {"title": "需求调研问卷", "round": 1, "anonymous": False}
    # The fourth answers in the HTML form the message links to (a browser's form post).
    form = "q1=c&q2=z&q3=maybe&q4=3&q5=4&q6="
    r = await client.post(
        links[members[3]] + "/form",
        content=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 201, r.text
    assert "感谢" in r.text

    # One response per member and round.
    r = await client.post(links[members[0]], json={"answers": answers[0]})
    assert r.status_code == 409, r.text
    assert r.json()["errors"] == [{"field": "token", "message": "answered already"}]
    assert (await client.get(links[members[0]])).json()["status"] == "answered"

    # The answers' rules tagged the members (and only them).
    assert set(await _tags(client, t, members[0])) == {"interested_early_education", "promoter"}
    assert set(await _tags(client, t, members[1])) == {"interested_early_education", "promoter"}
    assert await _tags(client, t, members[2]) == []
    assert await _tags(client, t, members[3]) == []
    assert await _tags(client, t, members[4]) == []

    r = await client.get(f"{BASE}/surveys/needs/rounds/1/results", headers=t.hq())
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["invited"], res["responded"], res["response_rate"]) == (5, 4, 0.8)
    by_key = {q["key"]: q for q in res["questions"]}

    def counts(key: str) -> dict[str, int]:
        return {b["value"]: b["count"] for b in by_key[key]["distribution"]}

    assert counts("q1") == {"a": 2, "b": 1, "c": 1}
    assert counts("q2") == {"x": 2, "y": 2, "z": 1}
    assert counts("q3") == {"yes": 2, "maybe": 1, "no": 1}
    # NPS over 10, 9, 7, 3: 2 promoters, 1 passive, 1 detractor: (2 - 1) / 4 = 25.
    assert by_key["q4"]["nps"] == {"promoters": 2, "passives": 1, "detractors": 1, "score": 25.0}
    assert by_key["q4"]["average"] == 7.25
    assert counts("q4") == {str(n): {10: 1, 9: 1, 7: 1, 3: 1}.get(n, 0) for n in range(11)}
    assert counts("q5") == {"1": 0, "2": 0, "3": 1, "4": 2, "5": 1}
    assert by_key["q5"]["average"] == 4.0  # (5 + 4 + 3 + 4) / 4
    assert (by_key["q6"]["answered"], by_key["q6"]["distribution"]) == (2, [])

    r = await client.get(f"{BASE}/surveys/needs/rounds/1/export.csv", headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted((row["member_id"], row["answer"]) for row in rows) == sorted(
        [(members[0], "希望有夜间配送"), (members[2], "'=HYPERLINK(1)")]
    )
    # The messages were keyed by round and member: a second sweep queues nothing more.
    async with PluginContext(PLUGIN, t.id, None, {"public_base_url": SITE}).session() as db:
        rounds = (await db.scalars(select(SurveyRound.id))).all()
        await db.execute(update(SurveyRound).values(status="inviting", invite_cursor=None))
    context = PluginContext(PLUGIN, t.id, None, {"public_base_url": SITE})
    await service.invite_all(context, rounds[0])
    assert len(await _survey_messages(client, t)) == 5


# ------------------------------------------------------------------ answers: once, and checked


async def _one_member_round(client: Any, t: Any, outbox: Any, code: str = "needs") -> str:
    """A member, a survey and its first round: the member's personal link (a path)."""
    member = await _member(client, t)
    assert (await _put(client, t, code, _survey())).status_code == 200
    assert (await _open(client, t, code)).status_code == 201
    links = await _links(client, t, outbox)
    return links[member]


async def test_bad_answers_are_422s_naming_the_field_and_leave_the_link_unused(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    link = await _one_member_round(client, t, outbox)
    good = {"q1": {"choice": "a"}, "q2": {"choices": ["x"]}, "q3": {"choice": "no"},
            "q4": {"score": 8}, "q5": {"score": 2}}  # fmt: skip
    cases = [
        ({k: v for k, v in good.items() if k != "q2"}, ["answers.q2"]),  # required
        ({**good, "q1": {"choice": "d"}}, ["answers.q1.choice"]),
        ({**good, "q2": {"choices": ["x", "y", "z"]}}, ["answers.q2.choices"]),  # max 2
        ({**good, "q4": {"score": 11}}, ["answers.q4.score"]),
        ({**good, "q4": {"score": "9"}}, ["answers.q4.score"]),  # JSON is strict: no "9"
        ({**good, "q5": {"score": 6}}, ["answers.q5.score"]),  # a 1-5 rating
        ({**good, "q5": {"stars": 5}}, ["answers.q5.score", "answers.q5.stars"]),
        ({**good, "q6": {"text": "x" * 501}}, ["answers.q6.text"]),
        ({**good, "zz": {"choice": "a"}}, ["answers.zz"]),
        ({}, ["answers.q1", "answers.q2", "answers.q3", "answers.q4", "answers.q5"]),
    ]
    for answers, fields in cases:
        r = await client.post(link, json={"answers": answers})
        assert r.status_code == 422, (answers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert sorted(e["field"] for e in r.json()["errors"]) == fields, r.text
    # Not the shape at all: the schema's 400, never a 500.
    for body in ({"answers": {"q1": "a"}}, {"answers": []}, {"q1": {}}, {"answers": {"q1": None}}):
        r = await client.post(link, json=body)
        assert r.status_code == 400, (body, r.text)
    r = await client.post(
        link, content=b"\xff\xfe not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    # None of it used the link: the right answers are taken, once.
    assert (await client.post(link, json={"answers": good})).status_code == 201
    assert (await client.post(link, json={"answers": good})).status_code == 409
    r = await client.get(link + "/form")
    assert (r.status_code, "您已提交" in r.text) == (200, True)


async def test_unknown_links_and_another_chains_links_are_404(
    nestpoint_make_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    client = nestpoint_client
    t, other = await nestpoint_make_tenant(), await nestpoint_make_tenant()
    await _set_up(client, t, nestpoint_enable_plugin)
    await nestpoint_enable_plugin(other, PLUGIN)
    link = await _one_member_round(client, t, outbox)
    token = link.rsplit("/", 1)[1]
    elsewhere = f"/public/{other.slug}/surveys/links/{token}"
    assert (await client.get(elsewhere)).status_code == 404
    assert (await client.post(elsewhere, json={"answers": {}})).status_code == 404
    assert (await client.get(elsewhere + "/form")).status_code == 404
    for bad in ("x" * 40, "short", "%2e%2e", token[:-1] + ("A" if token[-1] != "A" else "B")):
        r = await client.get(f"/public/{t.slug}/surveys/links/{bad}")
        assert r.status_code == 404, (bad, r.text)
    assert (await client.get(f"/public/{t.slug}/surveys/links/{'x' * 65}")).status_code == 400
    assert (await client.get(f"/public/no-such-chain/surveys/links/{token}")).status_code == 404
    assert (await client.get(link)).status_code == 200  # the right chain's link works


async def test_a_closed_round_answers_410_and_the_next_round_closes_the_last(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    link = await _one_member_round(client, t, outbox)
    r = await client.post(f"{BASE}/surveys/needs/rounds/1/close", headers=t.hq())
    assert (r.status_code, r.json()["status"]) == (200, "closed")
    assert (await client.post(f"{BASE}/surveys/needs/rounds/1/close", headers=t.hq())).json()[
        "closed_at"
    ] == r.json()["closed_at"]  # closing again changes nothing
    r = await client.get(link)
    assert (r.status_code, r.json()["type"]) == (410, "https://nestpoint.dev/problems/gone")
    assert (await client.post(link, json={"answers": {"q1": {"choice": "a"}}})).status_code == 410
    r = await client.get(link + "/form")
    assert (r.status_code, r.headers["content-type"].split(";")[0]) == (410, "text/html")
    # Round 2 goes to the same member with a new link; opening round 3 closes round 2.
    assert (await _open(client, t, "needs")).status_code == 201
    second = (await _links(client, t, outbox)).popitem()[1]
    assert second != link
    assert (await client.get(second)).status_code == 200
    assert (await _open(client, t, "needs")).status_code == 201
    assert (await client.get(second)).status_code == 410
    r = await client.get(f"{BASE}/surveys/needs/rounds", headers=t.hq())
    assert [(x["number"], x["status"]) for x in r.json()] == [
        (3, "open"),
        (2, "closed"),
        (1, "closed"),
    ]
    # A round past its open_days is closed too (the periodic job records it).
    context = PluginContext(PLUGIN, t.id, None, {})
    async with context.session() as db:
        closed = await service.close_expired(db, datetime.now(UTC) + timedelta(days=15))
    assert closed == 1
    r = await client.get(f"{BASE}/surveys/needs/rounds/3/results", headers=t.hq())
    assert (r.json()["status"], r.json()["invited"]) == ("closed", 1)


# ------------------------------------------------------------------ anonymous surveys, audiences


async def test_an_anonymous_survey_keeps_no_member_and_sets_no_tags(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    panel = [await _member(client, t, tags=["panel"]) for _ in range(3)]
    await _member(client, t)  # not in the audience
    r = await _put(client, t, "anon", _survey(anonymous=True))
    assert r.status_code == 422, r.text  # tag rules cannot apply to no one
    assert sorted(e["field"] for e in r.json()["errors"]) == [
        "questions.2.tags",
        "questions.3.tags",
    ]
    questions = [{**q, "tags": []} for q in _questions()]
    body = _survey(anonymous=True, questions=questions, audience={"tags": ["panel"]})
    r = await _put(client, t, "anon", body)
    assert r.status_code == 200, r.text
    # Even a rule added to the round's copy sets nothing: anonymity wins.
    assert (await _open(client, t, "anon")).status_code == 201
    links = await _links(client, t, outbox)
    assert sorted(links) == sorted(panel)  # only the members holding the audience's tag
    answers = {"q1": {"choice": "b"}, "q2": {"choices": ["z"]}, "q3": {"choice": "yes"},
               "q4": {"score": 10}, "q5": {"score": 5}, "q6": {"text": "匿名建议"}}  # fmt: skip
    for member in panel[:2]:
        r = await client.post(links[member], json={"answers": answers})
        assert (r.status_code, r.json()["anonymous"]) == (201, True)
    assert (await client.post(links[panel[0]], json={"answers": answers})).status_code == 409
    for member in panel:
        assert await _tags(client, t, member) == ["panel"]
    async with PluginContext(PLUGIN, t.id, None, {}).session() as db:
        kept = (
            await db.execute(select(SurveyResponse.member_id, SurveyResponse.submitted_at))
        ).all()
    assert [m for m, _ in kept] == [None, None]
    assert all((at.hour, at.minute, at.second) == (0, 0, 0) for _, at in kept)  # the day only
    r = await client.get(f"{BASE}/surveys/anon/rounds/1/results", headers=t.hq())
    assert (r.json()["anonymous"], r.json()["responded"], r.json()["invited"]) == (True, 2, 3)
    r = await client.get(f"{BASE}/surveys/anon/rounds/1/export.csv", headers=t.hq())
    header, *rows = list(csv.reader(io.StringIO(r.text)))
    assert "member_id" not in header
    assert [row[header.index("answer")] for row in rows] == ["匿名建议", "匿名建议"]


# ------------------------------------------------------------------ HQ's side: checked, typed


async def test_surveys_are_checked_against_their_types_and_are_hqs(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    q = _questions()
    settings, tags = "questions.1.settings", "questions.1.tags.0"
    cases = [
        ([q[0], {**q[0], "key": "q2", "settings": {"choices": CHOICES[:1]}}],
         f"{settings}.choices"),
        ([q[0], {**q[0], "key": "q2", "settings": {"choices": [*CHOICES, CHOICES[0]]}}],
         f"{settings}.choices"),
        ([q[0], {**q[0], "key": "q2", "settings": {"choices": CHOICES, "colour": "red"}}],
         f"{settings}.colour"),
        ([q[0], {**q[4], "settings": {"max": 11}}], f"{settings}.max"),
        ([q[0], {**q[4], "settings": {"max": "5"}}], f"{settings}.max"),
        ([q[0], {**q[1], "settings": {"choices": NEEDS, "min_choices": 3, "max_choices": 2}}],
         settings),
        ([q[0], {**q[2], "tags": [{"choice": "maybe-not", "tag": "t"}]}], f"{tags}.choice"),
        ([q[0], {**q[5], "tags": [{"min_score": 1, "tag": "t"}]}], tags),
        ([q[0], {**q[0], "title": "again"}], "questions.1.key"),
        ([{**q[0], "type": "nosuch.single"}], "questions.0.type"),
        ([{**q[0], "type": "babycare.baby_stage"}], "questions.0.type"),  # not enabled here
    ]  # fmt: skip
    for questions, field in cases:
        r = await _put(client, t, "checked", _survey(questions=questions))
        assert r.status_code == 422, (field, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    # The schema's own limits are 400s, never a 500.
    hostile = [
        _survey(questions=[]),
        _survey(questions=[{**q[0], "key": "Q 1"}]),
        _survey(questions=[{**q[0], "settings": {"x" * 65: 1}}]),
        _survey(questions=[{**q[0], "tags": [{"tag": "has space", "choice": "a"}]}]),
        _survey(title="\x00"),
        _survey(open_days=0),
        _survey(schedule={"every": "week"}),
        _survey(audience={"tags": ["ok"], "stores": ["S1"]}),
    ]
    for body in hostile:
        r = await _put(client, t, "checked", body)
        assert r.status_code == 400, (body, r.text)
    nested: Any = {"choices": CHOICES}
    for _ in range(200):
        nested = {"deeper": nested}
    r = await _put(client, t, "checked", _survey(questions=[{**q[0], "settings": nested}]))
    assert r.status_code in (400, 422), r.text
    assert (await _put(client, t, "BAD", _survey())).status_code == 400
    assert (await client.get(f"{BASE}/surveys/nosuch", headers=t.hq())).status_code == 404
    assert (
        await client.get(f"{BASE}/surveys/nosuch/rounds/1/results", headers=t.hq())
    ).status_code == 404
    r = await _put(client, t, "checked", _survey(active=False))
    assert r.status_code == 200, r.text
    r = await _open(client, t, "checked")
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "code")
    assert (
        await client.get(f"{BASE}/surveys/checked/rounds/1/results", headers=t.hq())
    ).status_code == 404
    # Surveys are the chain's: a store's key is refused.
    for method, path in (("get", "/surveys"), ("get", "/surveys/checked")):
        r = await getattr(client, method)(BASE + path, headers=t.store("S1"))
        assert r.status_code == 403, r.text
    r = await client.put(f"{BASE}/surveys/checked", json=_survey(), headers=t.store("S1"))
    assert r.status_code == 403, r.text
    r = await client.get(f"{BASE}/question-types", headers=t.hq())
    types = {x["type"]: x for x in r.json()}
    assert sorted(types) == ["surveys.multiple", "surveys.nps", "surveys.rating", "surveys.single",
                             "surveys.text"]  # fmt: skip
    assert types["surveys.nps"]["scored"]
    assert not types["surveys.single"]["scored"]
    assert "choices" in types["surveys.single"]["settings_schema"]["properties"]


# ------------------------------------------------------------------ another plugin's types


async def test_another_plugins_question_types_work_like_the_built_in_ones(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    await nestpoint_enable_plugin(t, "babycare")
    members = [await _member(client, t) for _ in range(3)]
    stage = {
        "key": "stage",
        "type": "babycare.baby_stage",
        "title": "宝宝阶段",
        "settings": {"stages": ["pregnant", "0-6m", "6-12m"]},
    }
    sleep = {
        "key": "sleep",
        "type": "babycare.sleep_hours",
        "title": "宝宝每天睡几个小时？",
        "tags": [{"max_score": 10, "tag": "sleep_advice"}],
    }
    r = await _put(
        client, t, "baby", _survey(questions=[{**stage, "settings": {"stages": ["old"]}}])
    )
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "questions.0.settings.stages.0")
    r = await _put(
        client, t, "baby", _survey(questions=[{**stage, "tags": [{"min_score": 1, "tag": "x"}]}])
    )
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "questions.0.tags.0")
    r = await _put(client, t, "baby", _survey(questions=[stage, sleep]))
    assert r.status_code == 200, r.text
    types = [x["type"] for x in (await client.get(f"{BASE}/question-types", headers=t.hq())).json()]
    assert {"babycare.baby_stage", "babycare.sleep_hours"} <= set(types)
    assert (await _open(client, t, "baby")).status_code == 201
    links = await _links(client, t, outbox)
    # The form a browser gets offers the other type too (a text field for its one value).
    assert 'name="stage"' in (await client.get(links[members[0]] + "/form")).text
    r = await client.post(
        links[members[0]], json={"answers": {"stage": {"stage": "1-3y"}, "sleep": {"hours": 9}}}
    )
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "answers.stage.stage")
    given = [("0-6m", 9.5), ("0-6m", 14), ("pregnant", 8)]
    for member, (st, hours) in zip(members, given, strict=True):
        r = await client.post(
            links[member], json={"answers": {"stage": {"stage": st}, "sleep": {"hours": hours}}}
        )
        assert r.status_code == 201, r.text
    assert await _tags(client, t, members[0]) == ["sleep_advice"]
    assert await _tags(client, t, members[1]) == []
    assert await _tags(client, t, members[2]) == ["sleep_advice"]
    r = await client.get(f"{BASE}/surveys/baby/rounds/1/results", headers=t.hq())
    by_key = {q["key"]: q for q in r.json()["questions"]}
    assert {b["value"]: b["count"] for b in by_key["stage"]["distribution"]} == {
        "0-6m": 2,
        "pregnant": 1,
    }
    assert {b["value"]: b["count"] for b in by_key["sleep"]["distribution"]} == {
        "8": 1,
        "9.5": 1,
        "14": 1,
    }
    assert by_key["sleep"]["average"] == round((9.5 + 14 + 8) / 3, 2)


# ------------------------------------------------------------------ the monthly schedule


async def test_the_monthly_job_opens_one_round_a_month_however_often_it_runs(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_run_jobs
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    members = [await _member(client, t) for _ in range(2)]
    schedule = {"every": "month", "day": 1, "hour": 0}
    assert (await _put(client, t, "monthly", _survey(schedule=schedule))).status_code == 200
    await nestpoint_run_jobs(t)
    # Set after this month's moment (the 1st, 00:00): the first round is next month's.
    assert (await client.get(f"{BASE}/surveys/monthly/rounds", headers=t.hq())).json() == []
    context = PluginContext(PLUGIN, t.id, None, {"public_base_url": SITE})
    async with context.session() as db:  # as if the schedule had been set 40 days ago
        await db.execute(
            update(Survey).values(schedule_since=datetime.now(UTC) - timedelta(days=40))
        )
    for _ in range(3):
        await nestpoint_run_jobs(t)
    rounds = (await client.get(f"{BASE}/surveys/monthly/rounds", headers=t.hq())).json()
    this_month = datetime.now(SHANGHAI).strftime("%Y-%m")
    assert [(r["number"], r["period"], r["status"], r["invited"]) for r in rounds] == [
        (1, this_month, "open", 2)
    ]
    assert sorted(m["member_id"] for m in await _survey_messages(client, t)) == sorted(members)
    # The chain's clock, years on: once a month from its moment, however often the job runs.
    feb = datetime(2031, 2, 1, 0, 0, tzinfo=SHANGHAI)
    mar = datetime(2031, 3, 1, 0, 0, tzinfo=SHANGHAI)
    moments = [feb, feb + timedelta(minutes=10), feb + timedelta(days=20)]
    moments += [
        mar - timedelta(minutes=1),
        mar,
        mar + timedelta(minutes=10),
        mar + timedelta(hours=10),
    ]
    assert await _opened(context, moments) == [1, 0, 0, 0, 1, 0, 0]
    # Moved to the 15th at 10:00 (the chain's): nothing before the moment, one from it.
    later = {"every": "month", "day": 15, "hour": 10}
    assert (await _put(client, t, "monthly", _survey(schedule=later))).status_code == 200
    apr = datetime(2031, 4, 15, 10, 0, tzinfo=SHANGHAI)
    moments = [apr - timedelta(days=14), apr - timedelta(minutes=1), apr, apr + timedelta(days=1)]
    assert await _opened(context, moments) == [0, 0, 1, 0]
    rounds = (await client.get(f"{BASE}/surveys/monthly/rounds", headers=t.hq())).json()
    assert [(r["number"], r["period"]) for r in rounds] == [
        (4, "2031-04"), (3, "2031-03"), (2, "2031-02"), (1, this_month)
    ]  # fmt: skip
    # A survey switched off is never opened by the job.
    await _put(client, t, "monthly", _survey(schedule=later, active=False))
    assert await _opened(context, [apr.replace(month=5)]) == [0]


async def _opened(context: PluginContext, moments: list[datetime]) -> list[int]:
    """How many rounds the schedule opens at each moment, in turn."""
    opened = []
    for moment in moments:
        async with context.session() as db:
            opened.append(len(await service.open_scheduled_rounds(db, context, moment)))
    return opened


# ------------------------------------------------------------------ the HTML form


async def test_the_form_escapes_what_it_shows_and_keeps_the_link_private(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member = await _member(client, t)
    questions = _questions()
    questions[0] = {**questions[0], "title": "<script>alert(1)</script>"}
    r = await _put(client, t, "html", _survey(title='<img src=x onerror="x">', questions=questions))
    assert r.status_code == 200, r.text
    assert (await _open(client, t, "html")).status_code == 201
    link = (await _links(client, t, outbox))[member] + "/form"
    r = await client.get(link)
    assert r.status_code == 200, r.text
    assert "<script>" not in r.text
    assert "&lt;script&gt;" in r.text
    assert "<img" not in r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    # A wrong answer shows the form again, with the member's choices and the message.
    bad = "q1=a&q2=x&q2=y&q2=z&q3=yes&q4=10&q5=9&q6=%3Cb%3Ehi%3C%2Fb%3E"
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await client.post(link, content=bad.encode(), headers=form_type)
    assert r.status_code == 422, r.text
    assert "&lt;b&gt;hi&lt;/b&gt;" in r.text
    assert "<b>hi" not in r.text
    assert 'value="a" checked' in r.text
    r = await client.post(link, content=b"\xff\xfe", headers=form_type)
    assert r.status_code == 400, r.text
    good = "q1=a&q2=x&q3=yes&q4=10&q5=5"
    assert (await client.post(link, content=good.encode(), headers=form_type)).status_code == 201
    assert (await client.post(link, content=good.encode(), headers=form_type)).status_code == 409
    assert await _tags(client, t, member) == ["interested_early_education", "promoter"]


async def test_answers_sent_at_once_through_one_link_record_one_response(
    nestpoint_tenant, nestpoint_client, nestpoint_concurrent_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    link = await _one_member_round(client, t, outbox)
    answers = {"q1": {"choice": "a"}, "q2": {"choices": ["x"]}, "q3": {"choice": "yes"},
               "q4": {"score": 9}, "q5": {"score": 4}}  # fmt: skip
    replies = await asyncio.gather(
        *(nestpoint_concurrent_client.post(link, json={"answers": answers}) for _ in range(5))
    )
    assert sorted(r.status_code for r in replies) == [201, 409, 409, 409, 409]
    r = await client.get(f"{BASE}/surveys/needs/rounds/1/results", headers=t.hq())
    assert (r.json()["responded"], r.json()["questions"][3]["nps"]["promoters"]) == (1, 1)


# ------------------------------------------------------------------ a member's data export


async def _member_data(client: Any, t: Any, member: str) -> dict[str, Any]:
    """The member's data export, run as the worker runs it; the file parsed."""
    body = {"reason": "PIPL access request #7", "idempotency_key": uuid.uuid4().hex}
    r = await client.post(f"/api/v1/members/{member}/data-exports", json=body, headers=t.hq())
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        await run_export(uuid.UUID(export_id))
    r = await client.get(f"/api/v1/exports/{export_id}/file", headers=t.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_members_data_export_holds_their_responses_but_no_anonymous_one(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member = await _member(client, t)
    other = await _member(client, t)
    questions = [{**q, "tags": []} for q in _questions()]
    assert (await _put(client, t, "needs", _survey())).status_code == 200
    assert (
        await _put(client, t, "anon", _survey(anonymous=True, questions=questions))
    ).status_code == 200
    answers = {"q1": {"choice": "a"}, "q2": {"choices": ["x"]}, "q3": {"choice": "yes"},
               "q4": {"score": 10}, "q5": {"score": 5}, "q6": {"text": "夜间配送"}}  # fmt: skip
    assert (await _open(client, t, "needs")).status_code == 201
    links = await _links(client, t, outbox)
    for who in (member, other):
        r = await client.post(links[who], json={"answers": answers})
        assert r.status_code == 201, r.text
    assert (await _open(client, t, "anon")).status_code == 201
    links = await _links(client, t, outbox)
    anonymous = {**answers, "q6": {"text": "匿名的话"}}
    r = await client.post(links[member], json={"answers": anonymous})
    assert r.status_code == 201, r.text

    part = (await _member_data(client, t, member))["plugins"]["surveys"]
    invited = sorted(
        (i["survey_code"], i["anonymous"], i["responded"]) for i in part["invitations"]
    )
    assert invited == [("anon", True, True), ("needs", False, True)]
    [response] = part["responses"]
    assert (response["survey_code"], response["round"]) == ("needs", 1)
    assert response["answers"]["q6"] == {"text": "夜间配送"}
    assert sorted(response["tags"]) == ["interested_early_education", "promoter"]
    assert "匿名的话" not in str(part)  # an anonymous answer is nobody's
    assert "anonymous" in part["note"]


async def test_an_erased_members_invitations_and_responses_go(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_erase_member, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member, other = await _member(client, t), await _member(client, t)
    assert (await _put(client, t, "needs", _survey())).status_code == 200
    answers = {"q1": {"choice": "a"}, "q2": {"choices": ["x"]}, "q3": {"choice": "yes"},
               "q4": {"score": 10}, "q5": {"score": 5}, "q6": {"text": "我叫王小芳"}}  # fmt: skip
    assert (await _open(client, t, "needs")).status_code == 201
    links = await _links(client, t, outbox)
    for who in (member, other):
        assert (await client.post(links[who], json={"answers": answers})).status_code == 201

    erasure = await nestpoint_erase_member(t, member)
    assert erasure["plugins"]["surveys"] == {"responses": 1, "invitations": 1}
    assert erasure["plugins_erased_at"] is not None
    with tenant_context(t.id):
        async with scoped_session() as session:
            left = (await session.scalars(select(SurveyResponse.member_id))).all()
    assert [str(m) for m in left] == [other]  # the other member's answer stays
    r = await client.get(f"{BASE}/surveys/needs/rounds/1/results", headers=t.hq())
    assert r.json()["responded"] == 1


async def test_the_members_console_panel_shows_their_answers_free_text_only_with_personal_data(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, outbox
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member, other = await _member(client, t), await _member(client, t)
    r = await _put(client, t, "needs", _survey(title="<b>需求</b>调研"))
    assert r.status_code == 200, r.text
    opened = await _open(client, t, "needs")
    assert opened.status_code == 201, opened.text
    answers: dict[str, Any] = {
        "q1": {"choice": "a"},
        "q2": {"choices": ["x", "y"]},
        "q3": {"choice": "yes"},
        "q4": {"score": 10},
        "q5": {"score": 5},
        "q6": {"text": "<i>我叫王芳</i>"},
    }
    chain = PluginContext(PLUGIN, t.id, None, {"public_base_url": SITE})
    async with chain.session() as db:  # as through the member's link (the invitation's)
        round_id = await db.scalar(select(SurveyRound.id))
        assert round_id is not None
        assert await service.answer_for_member(db, chain, round_id, uuid.UUID(member), answers)

    admin = ConsoleViewer("hq_admin", "en", personal_data=True)
    shown = await member_answers(PluginContext(PLUGIN, t.id, None, {}, admin), member)
    assert "<th>Question</th>" in shown
    assert "<td>&lt;b&gt;需求&lt;/b&gt;调研 · round 1</td>" in shown  # escaped, never markup
    assert "<td>宝宝阶段</td><td>选项 a</td>" in shown
    assert "<td>需求 x、需求 y</td>" in shown
    assert "<td>推荐给亲友的可能性</td><td>10</td>" in shown
    assert "<td>&lt;i&gt;我叫王芳&lt;/i&gt;</td>" in shown
    assert "<i>" not in shown
    assert "<b>" not in shown
    assert 'data-export="survey-answers"' in shown

    analyst = ConsoleViewer("hq_analyst", "zh_CN", personal_data=False)
    shown = await member_answers(PluginContext(PLUGIN, t.id, None, {}, analyst), member)
    assert "<th>问题</th>" in shown
    assert "<td>选项 a</td>" in shown
    assert "我叫王芳" not in shown  # free text may say who the member is
    assert "无权查看个人信息" in shown
    store = ConsoleViewer("store_manager", "zh_CN", personal_data=True)
    at_store = PluginContext(PLUGIN, t.id, t.stores["S1"], {}, store)
    assert await member_answers(at_store, member) == ""  # surveys are HQ's: no panel
    hq = PluginContext(PLUGIN, t.id, None, {}, admin)
    assert await member_answers(hq, other) == '<p class="muted">—</p>'
    panel = ConsolePanel("answers", PANEL_TITLE, "member", render=member_answers)
    assert (panel.title_in("zh_CN"), panel.title_in("en")) == ("问卷回答", "Survey answers")
