"""The thin adapter between Nestpoint and Stripe's API (the ``stripe`` library).

Every call Nestpoint makes to Stripe is here, with only the parameters both Stripe and the
local fake the tests run (``localstripe``) accept: customers, payment methods, payment
intents (created, then confirmed), refunds, products, plans and subscriptions; no
``/v1/prices``, no Checkout, no search. Rules for callers:

* Call Stripe only from workers, never while a database transaction is open (a slow or
  failed call must not hold row locks, and a rolled-back transaction cannot take back a
  charge): ``await call(fn, ...)`` runs the blocking call in a thread.
* Always pass an idempotency key derived from the local record, so a retried call makes
  nothing twice in Stripe.
* After a crash between a call and the local write, find what the call made by the
  ``nestpoint_*`` metadata every object carries (:func:`find_by_metadata`).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import stripe

from nestpoint.errors import Conflict
from nestpoint.settings import get_settings

T = TypeVar("T")
# Errors worth trying again later (the network, Stripe's load or its own failures); any
# other StripeError is an answer (a declined card, a bad request) and is final.
RETRYABLE = (stripe.APIConnectionError, stripe.RateLimitError)


class StripeNotConfigured(Conflict):
    """The chain (or the platform) has no Stripe key."""

    title = "Stripe is not configured"
    slug = "stripe-not-configured"


def _client(api_key: str) -> stripe.StripeClient:
    base = get_settings().stripe_api_base.rstrip("/")
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base},
        max_network_retries=0,  # retries are ours: the worker, with the same idempotency key
    )


@functools.lru_cache(maxsize=256)
def client_for_key(api_key: str) -> stripe.StripeClient:
    """A client for one secret key (cached: a client holds its HTTP connections)."""
    return _client(api_key)


def platform_client() -> stripe.StripeClient:
    """The platform's own account, which bills the chains
    (``NESTPOINT_STRIPE_PLATFORM_SECRET_KEY``)."""
    key = get_settings().stripe_platform_secret_key
    if not key:
        raise StripeNotConfigured(
            "the platform has no Stripe key (NESTPOINT_STRIPE_PLATFORM_SECRET_KEY)"
        )
    return client_for_key(key)


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, RETRYABLE):
        return True
    status = getattr(error, "http_status", None)
    return isinstance(error, stripe.StripeError) and status is not None and status >= 500


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one blocking Stripe call in a thread (never inside a database transaction)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _options(idempotency_key: str) -> dict[str, Any]:
    return {"idempotency_key": idempotency_key}


# ---- customers -------------------------------------------------------------------------


def create_customer(
    client: stripe.StripeClient, *, metadata: dict[str, str], idempotency_key: str, email: str = ""
) -> stripe.Customer:
    params: dict[str, Any] = {"metadata": metadata}
    if email:
        params["email"] = email
    return client.v1.customers.create(params=params, options=_options(idempotency_key))  # type: ignore[arg-type]


# ---- payment intents -------------------------------------------------------------------


def create_payment_intent(
    client: stripe.StripeClient,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    payment_method: str | None,
    metadata: dict[str, str],
    idempotency_key: str,
) -> stripe.PaymentIntent:
    params: dict[str, Any] = {"amount": amount, "currency": currency.lower(), "metadata": metadata}
    if customer:
        params["customer"] = customer
    if payment_method:
        params["payment_method"] = payment_method
    return client.v1.payment_intents.create(params=params, options=_options(idempotency_key))  # type: ignore[arg-type]


def confirm_payment_intent(
    client: stripe.StripeClient, intent_id: str, *, idempotency_key: str
) -> stripe.PaymentIntent:
    return client.v1.payment_intents.confirm(intent_id, options=_options(idempotency_key))  # type: ignore[arg-type]


def retrieve_payment_intent(client: stripe.StripeClient, intent_id: str) -> stripe.PaymentIntent:
    return client.v1.payment_intents.retrieve(intent_id)


def create_refund(
    client: stripe.StripeClient,
    *,
    payment_intent: str,
    amount: int,
    metadata: dict[str, str],
    idempotency_key: str,
) -> stripe.Refund:
    params = {"payment_intent": payment_intent, "amount": amount, "metadata": metadata}
    return client.v1.refunds.create(params=params, options=_options(idempotency_key))  # type: ignore[arg-type]


# ---- finding what a call made before a crash -------------------------------------------

PAGE = 100
MAX_PAGES = 50


def _listing(list_call: Callable[[dict[str, Any]], Any]) -> Iterable[Any]:
    """Every object of a listing, newest first, page after page (at most MAX_PAGES)."""
    params: dict[str, Any] = {"limit": PAGE}
    for _ in range(MAX_PAGES):
        page = list_call(params)
        yield from page.data
        if not page.has_more or not page.data:
            return
        params = {"limit": PAGE, "starting_after": page.data[-1].id}


def find_by_metadata(
    list_call: Callable[[dict[str, Any]], Any], key: str, value: str
) -> Any | None:
    """The object of a listing whose metadata ``key`` is ``value`` (Stripe's search API
    would be quicker; the local fake has none, and a crash is rare)."""
    for obj in _listing(list_call):
        metadata = obj.metadata.to_dict() if obj.metadata else {}
        if metadata.get(key) == value:
            return obj
    return None


def find_payment_intent(
    client: stripe.StripeClient, payment_id: str
) -> stripe.PaymentIntent | None:
    return find_by_metadata(
        lambda params: client.v1.payment_intents.list(params=params),  # type: ignore[arg-type]
        "nestpoint_payment",
        payment_id,
    )


def find_refund(client: stripe.StripeClient, refund_id: str) -> stripe.Refund | None:
    return find_by_metadata(
        lambda params: client.v1.refunds.list(params=params),  # type: ignore[arg-type]
        "nestpoint_refund",
        refund_id,
    )


# ---- webhooks --------------------------------------------------------------------------

TOLERANCE_SECONDS = 300


def verify_event(payload: bytes, signature: str, secret: str) -> dict[str, Any]:
    """The event in a webhook body, if its ``Stripe-Signature`` is the secret's and at
    most 300 s old; raises ``stripe.SignatureVerificationError`` otherwise."""
    stripe.WebhookSignature.verify_header(
        payload.decode("utf-8"), signature, secret, tolerance=TOLERANCE_SECONDS
    )
    event: dict[str, Any] = json.loads(payload)
    return event
