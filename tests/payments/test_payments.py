"""Payments through Stripe (``localstripe``, a local fake, for the API): a payment charged
once by the worker, settled once whether the answer or the webhook comes first, declined
cards, a crash between Stripe's call and our write, refunds; webhooks verified (forged,
stale and replayed deliveries refused), stored once, applied once and in any order."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import pytest
import stripe
from sqlalchemy import select, update

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.payments import service, stripe_api, webhooks, worker
from nestpoint.payments.models import Payment, PaymentRefund, StripeEvent
from nestpoint.payments.registry import PaymentHandlers, register_purpose
from stripe_fake import CARD_DECLINED, TEST_KEY, LocalStripe, event, signed_event

WEBHOOK_SECRET = "whsec_nestpointtests"
PURPOSE = "test_purchase"
calls: Counter[tuple[str, uuid.UUID]] = Counter()


async def _succeeded(session: Any, payment: Payment) -> None:
    calls["succeeded", payment.subject_id] += 1


async def _failed(session: Any, payment: Payment) -> None:
    calls["failed", payment.subject_id] += 1


async def _refunded(session: Any, payment: Payment, refund: PaymentRefund) -> None:
    calls["refunded", refund.id] += 1


register_purpose(PURPOSE, PaymentHandlers(succeeded=_succeeded, failed=_failed, refunded=_refunded))


@pytest.fixture
async def chain(client, make_tenant, localstripe: LocalStripe) -> Any:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    body = {
        "secret_key": TEST_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "publishable_key": "pk_test_x",
    }
    r = await client.put("/api/v1/payments/stripe", json=body, headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.json()["configured"] is True
    assert "secret_key" not in r.json()
    return t


async def in_tenant(tenant_id: uuid.UUID, work: Any) -> Any:
    with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
        async with scoped_session() as session:
            return await work(session)


async def member_id(client: Any, t: Any) -> uuid.UUID:
    r = await client.post(
        "/api/v1/members",
        json={"phone": f"1390000{uuid.uuid4().int % 10**4:04d}", "name": "李娜"},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


async def ask(
    t: Any, member: uuid.UUID | None, method: str | None, amount: int = 12_300
) -> Payment:
    subject = uuid.uuid4()

    async def work(session: Any) -> Payment:
        return await service.request_payment(
            session,
            purpose=PURPOSE,
            subject_id=subject,
            amount_fen=amount,
            currency="CNY",
            member_id=member,
            payment_method=method,
            description="a test purchase",
        )

    return await in_tenant(t.id, work)


async def payment(t: Any, payment_id: uuid.UUID) -> Payment:
    return await in_tenant(t.id, lambda s: service.get_payment(s, payment_id))


async def _all_events(session: Any) -> list[StripeEvent]:
    return list(
        (await session.scalars(select(StripeEvent).order_by(StripeEvent.received_at))).all()
    )


async def deliver(client: Any, t: Any, body: bytes, headers: dict[str, str]) -> Any:
    return await client.post(f"/webhooks/stripe/chains/{t.slug}", content=body, headers=headers)


async def apply_all(t: Any) -> list[str]:
    rows = await in_tenant(t.id, webhooks.due_chain_events)
    return [await in_tenant(t.id, lambda s, r=r: webhooks.apply_chain_event(s, r)) for r in rows]


# ------------------------------------------------------------------ the account


async def test_the_account_keys_are_write_only_and_need_the_right_shape(
    client, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    r = await client.get("/api/v1/payments/stripe", headers=t.hq())
    assert r.status_code == 200
    assert r.json()["configured"] is False
    r = await client.put(
        "/api/v1/payments/stripe",
        json={"secret_key": "pk_test_wrongkind", "webhook_secret": WEBHOOK_SECRET},
        headers=t.hq(),
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "secret_key"
    r = await client.get("/api/v1/payments/stripe", headers=t.store("S1"))
    assert r.status_code == 403


async def test_a_payment_needs_a_configured_account(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    with pytest.raises(stripe_api.StripeNotConfigured):
        await ask(t, None, None)


# ------------------------------------------------------------------ charging


async def test_the_worker_charges_once_and_the_purpose_hears_once(
    client, chain, localstripe
) -> None:  # type: ignore[no-untyped-def]
    member = await member_id(client, chain)
    asked = await ask(chain, member, localstripe.payment_method())
    assert asked.status == "pending"
    await worker.submit_payment(chain.id, asked.id)
    await worker.submit_payment(chain.id, asked.id)  # a second delivery of the job
    paid = await payment(chain, asked.id)
    assert paid.status == "succeeded"
    assert paid.stripe_payment_intent is not None
    intent = localstripe.payment_intent(paid.stripe_payment_intent)
    assert (intent["amount"], intent["currency"], intent["status"]) == (12_300, "cny", "succeeded")
    assert intent["metadata"]["nestpoint_payment"] == str(asked.id)
    assert calls["succeeded", asked.subject_id] == 1
    made = [
        i
        for i in localstripe.payment_intents()
        if i["metadata"].get("nestpoint_payment") == str(asked.id)
    ]
    assert len(made) == 1
    r = await client.get(f"/api/v1/payments/{asked.id}", headers=chain.hq())
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded"
    assert r.json()["amount_fen"] == 12_300


async def test_asking_twice_for_one_subject_is_one_payment(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    subject = uuid.uuid4()

    async def work(session: Any) -> Payment:
        return await service.request_payment(
            session,
            purpose=PURPOSE,
            subject_id=subject,
            amount_fen=500,
            currency="CNY",
            member_id=None,
            payment_method=localstripe.payment_method(),
        )

    first, second = await in_tenant(chain.id, work), await in_tenant(chain.id, work)
    assert first.id == second.id


async def test_a_declined_card_fails_the_payment_once(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    member = await member_id(client, chain)
    asked = await ask(chain, member, localstripe.payment_method(CARD_DECLINED))
    await worker.submit_payment(chain.id, asked.id)
    failed = await payment(chain, asked.id)
    assert failed.status == "failed"
    assert failed.failure != ""
    assert calls["failed", asked.subject_id] == 1
    assert calls["succeeded", asked.subject_id] == 0


async def test_racing_workers_make_one_intent(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    member = await member_id(client, chain)
    asked = await ask(chain, member, localstripe.payment_method())
    await asyncio.gather(*(worker.submit_payment(chain.id, asked.id) for _ in range(3)))
    made = [
        i
        for i in localstripe.payment_intents()
        if i["metadata"].get("nestpoint_payment") == str(asked.id)
    ]
    assert len(made) == 1
    assert calls["succeeded", asked.subject_id] == 1


async def test_a_crash_after_stripe_charged_is_recovered_without_a_second_charge(  # type: ignore[no-untyped-def]
    client, chain, localstripe
) -> None:
    member = await member_id(client, chain)
    method = localstripe.payment_method()
    asked = await ask(chain, member, method)

    # The dead worker: it took the lease, made and confirmed the intent, and died before
    # writing anything back.
    async def took(session: Any) -> None:
        await session.execute(
            update(Payment).where(Payment.id == asked.id).values(attempts=1, lease_until=None)
        )

    await in_tenant(chain.id, took)
    client_ = stripe_api.client_for_key(TEST_KEY)
    made = stripe_api.create_payment_intent(
        client_,
        amount=asked.amount_fen,
        currency="CNY",
        customer=None,
        payment_method=method,
        metadata={"nestpoint_payment": str(asked.id)},
        idempotency_key=f"nestpoint-payment-{asked.id}",
    )
    stripe_api.confirm_payment_intent(client_, made.id, idempotency_key="x")
    # The sweep finds the payment free and the next worker takes over.
    due, _ = await in_tenant(chain.id, worker.due)
    assert asked.id in due
    await worker.submit_payment(chain.id, asked.id)
    recovered = await payment(chain, asked.id)
    assert recovered.status == "succeeded"
    assert recovered.stripe_payment_intent == made.id
    intents = [
        i
        for i in localstripe.payment_intents()
        if i["metadata"].get("nestpoint_payment") == str(asked.id)
    ]
    assert len(intents) == 1
    assert calls["succeeded", asked.subject_id] == 1


# ------------------------------------------------------------------ webhooks


async def _charged(client: Any, chain: Any, localstripe: Any) -> tuple[Payment, dict[str, Any]]:
    member = await member_id(client, chain)
    asked = await ask(chain, member, localstripe.payment_method())
    await worker.submit_payment(chain.id, asked.id)
    paid = await payment(chain, asked.id)
    assert paid.stripe_payment_intent is not None
    return paid, localstripe.payment_intent(paid.stripe_payment_intent)


async def test_a_webhook_delivered_twice_is_stored_and_applied_once(
    client, chain, localstripe
) -> None:  # type: ignore[no-untyped-def]
    paid, intent = await _charged(client, chain, localstripe)
    body, headers = signed_event(event("payment_intent.succeeded", intent), WEBHOOK_SECRET)
    first = await deliver(client, chain, body, headers)
    again = await deliver(client, chain, body, headers)
    assert (first.status_code, first.json()["duplicate"]) == (200, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert await apply_all(chain) == ["applied"]
    assert await apply_all(chain) == []
    stored = await _events(chain)
    assert len(stored) == 1
    assert stored[0].payload == body.decode()  # the raw event, kept for audit
    assert calls["succeeded", paid.subject_id] == 1


async def _events(t: Any) -> list[StripeEvent]:
    return await in_tenant(t.id, _all_events)


@pytest.mark.parametrize(
    "forge",
    ["wrong secret", "stale", "no signature", "body changed"],
)
async def test_forged_and_stale_webhooks_are_refused(client, chain, localstripe, forge) -> None:  # type: ignore[no-untyped-def]
    _, intent = await _charged(client, chain, localstripe)
    the_event = event("payment_intent.succeeded", intent)
    if forge == "wrong secret":
        body, headers = signed_event(the_event, "whsec_someoneelse")
    elif forge == "stale":  # a replay of a delivery captured more than 300 s ago
        body, headers = signed_event(the_event, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    elif forge == "no signature":
        body, headers = signed_event(the_event, WEBHOOK_SECRET)
        headers.pop("Stripe-Signature")
    else:
        body, headers = signed_event(the_event, WEBHOOK_SECRET)
        body = body.replace(b'"succeeded"', b'"canceled"', 1)
    r = await deliver(client, chain, body, headers)
    assert r.status_code == 401, r.text
    assert await _events(chain) == []


async def test_a_webhook_for_an_unknown_chain_is_404(client) -> None:  # type: ignore[no-untyped-def]
    body, headers = signed_event(event("payment_intent.succeeded", {"id": "pi_x"}), WEBHOOK_SECRET)
    r = await client.post("/webhooks/stripe/chains/no-such-chain", content=body, headers=headers)
    assert r.status_code == 404


async def test_a_signed_body_that_is_no_event_is_a_clear_400(client, chain) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"hello": "world"}).encode()
    _, headers = signed_event({}, WEBHOOK_SECRET)
    t = int(time.time())
    import hashlib
    import hmac

    sig = hmac.new(WEBHOOK_SECRET.encode(), b"%d.%s" % (t, body), hashlib.sha256).hexdigest()
    headers["Stripe-Signature"] = f"t={t},v1={sig}"
    r = await deliver(client, chain, body, headers)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "body"


async def test_an_event_before_our_record_is_held_then_applied_once(
    client, chain, localstripe
) -> None:  # type: ignore[no-untyped-def]
    """Stripe's news can arrive before the worker wrote down the intent (or the payment):
    the event is held, not lost, and applied when the record appears."""
    future_id = uuid.uuid4()
    intent = {
        "id": f"pi_early{future_id.hex[:10]}",
        "object": "payment_intent",
        "status": "succeeded",
        "metadata": {"nestpoint_payment": str(future_id)},
    }
    body, headers = signed_event(event("payment_intent.succeeded", intent), WEBHOOK_SECRET)
    assert (await deliver(client, chain, body, headers)).status_code == 200
    assert await apply_all(chain) == ["held"]
    assert await apply_all(chain) == ["held"]  # the sweep tries again; still nothing to apply
    subject = uuid.uuid4()

    async def recorded(session: Any) -> None:
        session.add(
            Payment(
                id=future_id,
                purpose=PURPOSE,
                subject_id=subject,
                amount_fen=900,
                currency="CNY",
                status="submitted",
            )
        )
        await session.flush()
        await worker.conclude_payment(session, future_id, intent["id"], "processing")

    await in_tenant(chain.id, recorded)
    assert await apply_all(chain) == ["applied"]
    done = await payment(chain, future_id)
    assert done.status == "succeeded"
    assert calls["succeeded", subject] == 1


async def test_events_out_of_order_never_undo_a_success(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    paid, intent = await _charged(client, chain, localstripe)
    late_failure = dict(
        intent,
        status="requires_payment_method",
        last_payment_error={"message": "an earlier attempt"},
    )
    for the_event in (
        event("payment_intent.payment_failed", late_failure, created=intent["created"] - 5),
        event("payment_intent.succeeded", intent),
    ):
        body, headers = signed_event(the_event, WEBHOOK_SECRET)
        assert (await deliver(client, chain, body, headers)).status_code == 200
    assert sorted(await apply_all(chain)) == ["applied", "applied"]
    after = await payment(chain, paid.id)
    assert after.status == "succeeded"
    assert calls["failed", paid.subject_id] == 0
    assert calls["succeeded", paid.subject_id] == 1


async def test_localstripes_own_deliveries_verify(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    """The fake signs as Stripe does: capture what it sends and hand it to our route."""
    import http.server
    import threading

    captured: list[tuple[bytes, dict[str, str]]] = []

    class Catch(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            captured.append((self.rfile.read(length), dict(self.headers)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Catch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        localstripe.send_webhooks_to(f"http://127.0.0.1:{server.server_port}/", WEBHOOK_SECRET)
        paid, _ = await _charged(client, chain, localstripe)
        deadline = time.monotonic() + 15
        wanted = None
        while time.monotonic() < deadline and wanted is None:
            for body, headers in captured:
                sent = json.loads(body)
                if (
                    sent["type"] == "payment_intent.succeeded"
                    and sent["data"]["object"]["id"] == paid.stripe_payment_intent
                ):
                    wanted = (body, headers)
            await asyncio.sleep(0.1)
    finally:
        server.shutdown()
    assert wanted is not None, "localstripe sent no payment_intent.succeeded"
    body, headers = wanted
    r = await deliver(
        client,
        chain,
        body,
        {"Stripe-Signature": headers["Stripe-Signature"], "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert await apply_all(chain) == ["applied"]
    assert calls["succeeded", paid.subject_id] == 1


# ------------------------------------------------------------------ refunds


async def test_a_refund_is_made_once_and_never_beyond_the_payment(
    client, chain, localstripe
) -> None:  # type: ignore[no-untyped-def]
    paid, _ = await _charged(client, chain, localstripe)

    async def refund(session: Any, amount: int, cause: str) -> PaymentRefund:
        return await service.request_refund(
            session, payment_id=paid.id, amount_fen=amount, cause=cause, reason="returned"
        )

    first = await in_tenant(chain.id, lambda s: refund(s, 5_000, "return-1"))
    same = await in_tenant(chain.id, lambda s: refund(s, 5_000, "return-1"))
    assert same.id == first.id
    from nestpoint.errors import Invalid

    with pytest.raises(Invalid) as too_much:
        await in_tenant(chain.id, lambda s: refund(s, 7_301, "return-2"))
    assert too_much.value.errors[0].field == "amount_fen"
    await worker.submit_refund(chain.id, first.id)
    await worker.submit_refund(chain.id, first.id)
    done = await in_tenant(chain.id, lambda s: service.refunds_of(s, paid.id))
    assert [(r.status, r.amount_fen) for r in done] == [("succeeded", 5_000)]
    assert calls["refunded", first.id] == 1
    listed = localstripe.get(f"/v1/refunds/{done[0].stripe_refund}")
    assert listed.status_code == 200
    assert listed.json()["amount"] == 5_000
    rest = await in_tenant(chain.id, lambda s: refund(s, 7_300, "return-2"))
    assert rest.amount_fen == 7_300


async def test_only_a_paid_payment_refunds(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    asked = await ask(chain, None, localstripe.payment_method())
    from nestpoint.errors import Conflict

    with pytest.raises(Conflict):
        await in_tenant(
            chain.id,
            lambda s: service.request_refund(s, payment_id=asked.id, amount_fen=100, cause="c"),
        )


async def test_the_sweep_finds_a_payment_whose_message_was_lost(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    asked = await ask(chain, None, localstripe.payment_method())
    due, _ = await in_tenant(chain.id, worker.due)
    assert asked.id in due
    await worker.submit_payment(chain.id, asked.id)
    due, _ = await in_tenant(chain.id, worker.due)
    assert asked.id not in due


def test_retryable_errors_are_told_from_answers() -> None:
    assert stripe_api.is_retryable(stripe.APIConnectionError("down"))
    assert stripe_api.is_retryable(stripe.APIError("Stripe's own failure", http_status=502))
    assert not stripe_api.is_retryable(
        stripe.CardError("declined", None, "card_declined", http_status=402)
    )
    assert not stripe_api.is_retryable(stripe.InvalidRequestError("no such", None, http_status=400))


async def test_the_cli_lists_payments_and_events_and_sweeps(client, chain, localstripe) -> None:  # type: ignore[no-untyped-def]
    from commands import nestpoint

    asked = await ask(chain, None, localstripe.payment_method())  # its message is "lost"
    intent = {"id": "pi_clinever", "object": "payment_intent", "status": "succeeded",
              "metadata": {"nestpoint_payment": str(uuid.uuid4())}}  # fmt: skip
    body, headers = signed_event(event("payment_intent.succeeded", intent), WEBHOOK_SECRET)
    assert (await deliver(client, chain, body, headers)).status_code == 200
    done = await nestpoint("payments", "sweep", "--tenant", chain.slug)
    assert done.returncode == 0, done.stderr
    assert "payments 1, refunds 0, events 1" in done.stdout
    assert (await payment(chain, asked.id)).status == "succeeded"
    listed = await nestpoint("payments", "list", "--tenant", chain.slug)
    assert listed.returncode == 0, listed.stderr
    assert str(asked.id) in listed.stdout
    assert "succeeded" in listed.stdout
    held = await nestpoint("payments", "events", "--tenant", chain.slug, "--held")
    assert "payment_intent.succeeded" in held.stdout  # names no payment here: still held
    unknown = await nestpoint("payments", "list", "--tenant", "no-such-chain")
    assert unknown.returncode == 2
