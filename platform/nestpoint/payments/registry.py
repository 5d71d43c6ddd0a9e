"""What a payment or a Stripe event means is the business of the domain that asked for it.

Payments never import the domains that use them (stored value, paid membership, tenant
billing); each registers its handlers here when its service module is imported:

* :func:`register_purpose`: what to do when a payment of that purpose succeeds, fails or is
  refunded. Each handler runs exactly once per transition, however often Stripe delivers
  the event, inside a tenant transaction holding the payment's row lock.
* :func:`register_event`: other Stripe events (subscriptions, invoices), by a prefix of the
  event type and the account that sent them (``"platform"``: the platform's own account;
  ``"chain"``: a chain's). A handler answers what applying it did: ``"applied"``,
  ``"ignored"`` or ``"held"`` (it names a record that does not exist here yet: the event is
  kept and applied again by the sweep, or at once by ``webhooks.retry_held``). Events come
  in any order: a handler compares the object's own timestamps or periods, never arrival.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from nestpoint.payments.models import Payment, PaymentRefund

EventOutcome = Literal["applied", "ignored", "held"]
Account = Literal["platform", "chain"]
PaymentHandler = Callable[[AsyncSession, "Payment"], Awaitable[None]]
RefundHandler = Callable[[AsyncSession, "Payment", "PaymentRefund"], Awaitable[None]]
EventHandler = Callable[[AsyncSession, dict[str, Any]], Awaitable[EventOutcome]]


async def _nothing(*_: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class PaymentHandlers:
    """A purpose's handlers; each ``async (session, payment[, refund]) -> None``."""

    succeeded: PaymentHandler
    failed: PaymentHandler = _nothing
    refunded: RefundHandler = _nothing


_purposes: dict[str, PaymentHandlers] = {}
_events: list[tuple[Account, str, EventHandler]] = []


def register_purpose(purpose: str, handlers: PaymentHandlers) -> None:
    """Declare a purpose of payments (``"wallet_topup"``); registering it again replaces
    its handlers (a module imported twice)."""
    _purposes[purpose] = handlers


def handlers_for(purpose: str) -> PaymentHandlers:
    try:
        return _purposes[purpose]
    except KeyError:
        raise LookupError(f"no handlers for payments of purpose {purpose!r}") from None


def known_purposes() -> list[str]:
    return sorted(_purposes)


def register_event(type_prefix: str, handler: EventHandler, *, account: Account) -> None:
    """Handle Stripe events whose type starts with ``type_prefix`` from that account (the
    first registered match handles an event; registering the same handler again is a
    no-op)."""
    entry = (account, type_prefix, handler)
    if entry not in _events:
        _events.append(entry)


def event_handler(account: Account, event_type: str) -> EventHandler | None:
    for registered_account, prefix, handler in _events:
        if registered_account == account and event_type.startswith(prefix):
            return handler
    return None
