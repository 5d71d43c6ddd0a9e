"""Stored value topped up through Stripe (``localstripe``): pending until the payment
succeeds, then credited once with the bonus promised, however often Stripe tells us;
a declined card credits nothing; the tender's fields are checked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from nestpoint.payments import webhooks, worker
from payments.test_payments import WEBHOOK_SECRET, apply_all, chain, deliver, in_tenant
from stripe_fake import CARD_DECLINED, LocalStripe, event, signed_event
from wallet.test_wallet import TIERS, entries, set_rules, wallet

__all__ = ["chain"]  # the fixture, shared with the payments tests


async def stripe_top_up(client: Any, t: Any, member_id: str, amount: int, method: str) -> Any:
    body = {"amount_fen": amount, "tender": "stripe", "payment_method": method,
            "store_code": "S1", "idempotency_key": uuid.uuid4().hex}  # fmt: skip
    r = await client.post(f"/api/v1/members/{member_id}/wallet/topups", json=body,
                          headers=t.hq())  # fmt: skip
    return r, body


@pytest.fixture
async def member(client, chain, enrol) -> str:  # type: ignore[no-untyped-def]
    await set_rules(client, chain, TIERS)
    return str((await enrol(chain.hq()))["id"])


async def test_a_stripe_top_up_is_credited_once_when_paid(  # type: ignore[no-untyped-def]
    client, chain, member, localstripe: LocalStripe
) -> None:
    r, body = await stripe_top_up(client, chain, member, 100_000, localstripe.payment_method())
    assert r.status_code == 201, r.text
    pending = r.json()
    assert (pending["status"], pending["tender"], pending["bonus_fen"]) == (
        "pending",
        "stripe",
        10_000,
    )
    assert (await wallet(client, chain, member))["principal_fen"] == 0  # nothing before the money
    again = await client.post(f"/api/v1/members/{member}/wallet/topups", json=body,
                              headers=chain.hq())  # fmt: skip
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["payment_id"] == pending["payment_id"]

    await worker.submit_payment(chain.id, uuid.UUID(pending["payment_id"]))
    got = await client.get(f"/api/v1/members/{member}/wallet/topups/{pending['entry_id']}",
                           headers=chain.hq())  # fmt: skip
    assert got.status_code == 200
    assert got.json()["status"] == "credited"
    balance = await wallet(client, chain, member)
    assert (balance["principal_fen"], balance["bonus_fen"]) == (100_000, 10_000)
    rows = await entries(client, chain, member)
    assert sorted((e["kind"], e["tender"]) for e in rows) == [
        ("bonus", "stripe"),
        ("topup", "stripe"),
    ]
    assert next(e for e in rows if e["kind"] == "topup")["id"] == pending["entry_id"]

    # Stripe tells us again, twice: nothing more is credited.
    paid = await client.get(f"/api/v1/payments/{pending['payment_id']}", headers=chain.hq())
    intent = localstripe.payment_intent(paid.json()["stripe_payment_intent"])
    body_, headers = signed_event(event("payment_intent.succeeded", intent), WEBHOOK_SECRET)
    for _ in range(2):
        assert (await deliver(client, chain, body_, headers)).status_code == 200
    assert await apply_all(chain) == ["applied"]
    balance = await wallet(client, chain, member)
    assert (balance["principal_fen"], balance["bonus_fen"]) == (100_000, 10_000)


async def test_the_webhook_alone_credits_a_top_up(  # type: ignore[no-untyped-def]
    client, chain, member, localstripe: LocalStripe
) -> None:
    """The worker charged and died before it wrote back; Stripe's event credits the top-up."""
    r, _ = await stripe_top_up(client, chain, member, 30_000, localstripe.payment_method())
    payment_id = r.json()["payment_id"]
    intent = {"id": "pi_fromwebhookonly", "object": "payment_intent", "status": "succeeded",
              "amount": 30_000, "metadata": {"nestpoint_payment": payment_id}}  # fmt: skip
    body, headers = signed_event(event("payment_intent.succeeded", intent), WEBHOOK_SECRET)
    assert (await deliver(client, chain, body, headers)).status_code == 200
    assert await apply_all(chain) == ["applied"]
    assert (await wallet(client, chain, member))["principal_fen"] == 30_000
    due, _ = await in_tenant(chain.id, worker.due)
    assert uuid.UUID(payment_id) not in due  # settled: nothing left for the sweep


async def test_a_declined_card_credits_nothing(  # type: ignore[no-untyped-def]
    client, chain, member, localstripe: LocalStripe
) -> None:
    r, _ = await stripe_top_up(client, chain, member, 50_000,
                               localstripe.payment_method(CARD_DECLINED))  # fmt: skip
    assert r.status_code == 201
    await worker.submit_payment(chain.id, uuid.UUID(r.json()["payment_id"]))
    got = await client.get(f"/api/v1/members/{member}/wallet/topups/{r.json()['entry_id']}",
                           headers=chain.hq())  # fmt: skip
    assert got.json()["status"] == "failed"
    balance = await wallet(client, chain, member)
    assert (balance["principal_fen"], balance["bonus_fen"]) == (0, 0)
    assert await entries(client, chain, member) == []


async def test_the_tender_and_its_method_go_together(client, chain, member) -> None:  # type: ignore[no-untyped-def]
    for body in ({"tender": "stripe"}, {"tender": "cash", "payment_method": "pm_card_visa"}):
        r = await client.post(
            f"/api/v1/members/{member}/wallet/topups",
            json={"amount_fen": 1_000, "store_code": "S1", "idempotency_key": uuid.uuid4().hex}
            | body,
            headers=chain.hq(),
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "payment_method"


async def test_stripe_top_ups_need_the_chains_stripe_account(client, make_tenant, enrol) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    member = str((await enrol(t.hq()))["id"])
    r = await client.post(
        f"/api/v1/members/{member}/wallet/topups",
        json={
            "amount_fen": 1_000,
            "tender": "stripe",
            "payment_method": "pm_card_visa",
            "store_code": "S1",
            "idempotency_key": uuid.uuid4().hex,
        },
        headers=t.hq(),
    )
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("stripe-not-configured")
    assert (await wallet(client, t, member))["principal_fen"] == 0


async def test_a_top_up_of_another_member_is_404(client, chain, member, enrol, localstripe) -> None:  # type: ignore[no-untyped-def]
    r, _ = await stripe_top_up(client, chain, member, 1_000, localstripe.payment_method())
    other = str((await enrol(chain.hq()))["id"])
    got = await client.get(f"/api/v1/members/{other}/wallet/topups/{r.json()['entry_id']}",
                           headers=chain.hq())  # fmt: skip
    assert got.status_code == 404
    assert webhooks  # the module the credit goes through
