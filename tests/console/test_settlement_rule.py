"""The settlement rule in the console (in process, PostgreSQL and SQLite): HQ's admin sets
it through the settlement service, as ``PUT /api/v1/settlements/rules`` does (audited as
``settlement.rules_put`` with the admin as its author); a refused value is 422 beside its
field and saves nothing; the analyst reads it; a store role does not see it; no CSRF, 403."""

from __future__ import annotations

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

from .test_users_and_sessions import add_user, login_token, sign_in

SETTLEMENT = "/console/settlement"
RULES_API = "/api/v1/settlements/rules"
DEFAULT = {"point_value_fen": 1, "benefit_fee_fen": 0, "benefit_fees": {}}


def rule_form(csrf: str, **values: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "point_value_fen": "1", "benefit_fee_fen": "0", "benefit_fees": ""}
    return {**form, **values}


async def test_hq_admin_sets_the_rule_as_the_api_does(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "admin", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "admin")).status_code == 303
        page = await c.get(SETTLEMENT)
        assert page.status_code == 200
        assert 'data-testid="rule-form"' in page.text
        csrf = login_token(page.text)
        form = rule_form(
            csrf, point_value_fen="2", benefit_fee_fen="300", benefit_fees="free_bath=500, gift=0"
        )
        r = await c.post(f"{SETTLEMENT}/rules", data=form)
        assert r.status_code == 200, r.text
        assert 'data-testid="notice"' in r.text
        assert 'value="free_bath=500, gift=0"' in r.text  # the saved rule, shown back
        saved = {
            "point_value_fen": 2,
            "benefit_fee_fen": 300,
            "benefit_fees": {"free_bath": 500, "gift": 0},
        }
        assert (await client.get(RULES_API, headers=t.hq())).json() == saved

        again = await c.post(f"{SETTLEMENT}/rules", data=form)  # the same rule: no new audit
        assert again.status_code == 200
    with tenant_context(t.id):
        async with scoped_session() as session:
            entries = list(
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "settlement.rules_put")
                )
            )
    assert [e.actor_id for e in entries] == [admin["id"]]
    assert entries[0].changes["point_value_fen"] == [1, 2]


async def test_a_refused_value_is_beside_its_field_and_saves_nothing(
    app, client, make_tenant
) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "admin", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "admin")).status_code == 303
        csrf = login_token((await c.get(SETTLEMENT)).text)
        for values, field in (
            ({"point_value_fen": "10001"}, "point_value_fen"),  # above the API's 10,000
            ({"point_value_fen": "1.5"}, "point_value_fen"),
            ({"benefit_fee_fen": "-1"}, "benefit_fee_fen"),
            ({"benefit_fees": "free_bath"}, "benefit_fees"),
            ({"benefit_fees": "free_bath=-5"}, "benefit_fees"),
            ({"benefit_fees": "bad code!=5"}, "benefit_fees"),
        ):
            r = await c.post(f"{SETTLEMENT}/rules", data=rule_form(csrf, **values))
            assert r.status_code == 422, (values, r.text)
            assert f'data-testid="error-rule-{field}"' in r.text, values
            assert 'data-testid="notice"' not in r.text
        assert (await client.get(RULES_API, headers=t.hq())).json() == DEFAULT

        no_csrf = rule_form("", point_value_fen="3")
        del no_csrf["csrf_token"]
        assert (await c.post(f"{SETTLEMENT}/rules", data=no_csrf)).status_code == 403
        wrong = rule_form("not-the-token", point_value_fen="3")
        assert (await c.post(f"{SETTLEMENT}/rules", data=wrong)).status_code == 403
    assert (await client.get(RULES_API, headers=t.hq())).json() == DEFAULT


async def test_the_analyst_reads_and_stores_do_not_see_the_rule(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    body = {"point_value_fen": 3, "benefit_fee_fen": 200, "benefit_fees": {"free_bath": 450}}
    assert (await client.put(RULES_API, json=body, headers=t.hq())).status_code == 200
    await add_user(client, t, "analyst", "hq_analyst")
    await add_user(client, t, "boss", "store_manager", "S1")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "analyst")).status_code == 303
        page = await c.get(SETTLEMENT)
        assert page.status_code == 200
        assert 'data-testid="rule-form"' not in page.text
        assert 'data-testid="rule-point_value_fen">3<' in page.text
        assert 'data-testid="rule-benefit_fee_fen">200<' in page.text
        assert 'data-testid="rule-benefit_fees">free_bath=450<' in page.text
        form = rule_form(login_token(page.text), point_value_fen="9")
        assert (await c.post(f"{SETTLEMENT}/rules", data=form)).status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "boss")).status_code == 303
        page = await c.get(SETTLEMENT)
        assert page.status_code == 200
        assert 'data-testid="rule"' not in page.text
        form = rule_form(login_token(page.text), point_value_fen="9")
        assert (await c.post(f"{SETTLEMENT}/rules", data=form)).status_code == 403
    assert (await client.get(RULES_API, headers=t.hq())).json() == body
