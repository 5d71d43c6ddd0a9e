"""A paid card end to end through ``localstripe``: the purchase charged by the payments
worker activates the card once (the job delivered twice), a declined card fails it, and
cancelling now refunds through Stripe."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from membership.test_membership import BLACK, CATALOG, card, in_tenant, paid_entitlements
from nestpoint.payments import worker
from nestpoint.payments.models import PaymentRefund
from stripe_fake import CARD_DECLINED, TEST_KEY


async def stripe_chain(client: Any, make_tenant: Any, set_program: Any) -> Any:
    t = await make_tenant()
    body = {"secret_key": TEST_KEY, "webhook_secret": "whsec_nestpointtests",
            "publishable_key": "pk_test_x"}  # fmt: skip
    r = await client.put("/api/v1/payments/stripe", json=body, headers=t.hq())
    assert r.status_code == 200, r.text
    await set_program(t.hq(), points={"pending_days": 0})
    for code, spec in CATALOG.items():
        r = await client.put(f"/api/v1/benefits/{code}", json=spec, headers=t.hq())
        assert r.status_code == 200, r.text
    r = await client.put("/api/v1/paid-plans/black", json=BLACK, headers=t.hq())
    assert r.status_code == 200, r.text
    return t


async def test_a_card_bought_through_stripe_is_active_once_and_refunded(
    client, make_tenant, set_program, enrol, localstripe
):
    t = await stripe_chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    body = {"plan": "black", "payment_method": localstripe.payment_method(),
            "idempotency_key": uuid.uuid4().hex}  # fmt: skip
    r = await client.post(f"/api/v1/members/{m['id']}/paid-memberships", json=body,
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    bought = r.json()
    payment_id = uuid.UUID(bought["charges"][0]["payment_id"])
    await worker.submit_payment(t.id, payment_id)
    await worker.submit_payment(t.id, payment_id)  # the job delivered twice
    got = await card(client, t, m["id"], bought["id"])
    assert (got["status"], got["charges"][0]["status"]) == ("active", "succeeded")
    assert len(await paid_entitlements(t, m["id"])) == 2
    intents = [i for i in localstripe.payment_intents()
               if i["metadata"].get("nestpoint_payment") == str(payment_id)]  # fmt: skip
    assert [(i["amount"], i["status"]) for i in intents] == [(29_900, "succeeded")]

    r = await client.put("/api/v1/paid-memberships/settings",
                         json={"refund_rule": "full_within"}, headers=t.hq())  # fmt: skip
    assert r.status_code == 200
    url = f"/api/v1/members/{m['id']}/paid-memberships/{got['id']}/cancel"
    r = await client.post(url, json={"when": "now", "idempotency_key": "cancel-e2e-1"},
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["refund_fen"] == 29_900
    refunds = await in_tenant(t, lambda s: s.scalars(select(PaymentRefund)))
    [refund] = list(refunds.all())
    await worker.submit_refund(t.id, refund.id)
    [done] = list((await in_tenant(t, lambda s: s.scalars(select(PaymentRefund)))).all())
    assert (done.status, done.amount_fen) == ("succeeded", 29_900)


async def test_a_declined_card_fails_the_purchase(
    client, make_tenant, set_program, enrol, localstripe
):
    t = await stripe_chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    body = {"plan": "black", "payment_method": localstripe.payment_method(CARD_DECLINED),
            "idempotency_key": uuid.uuid4().hex}  # fmt: skip
    r = await client.post(f"/api/v1/members/{m['id']}/paid-memberships", json=body,
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    await worker.submit_payment(t.id, uuid.UUID(r.json()["charges"][0]["payment_id"]))
    got = await card(client, t, m["id"], r.json()["id"])
    assert got["status"] == "failed"
    assert await paid_entitlements(t, m["id"]) == []
