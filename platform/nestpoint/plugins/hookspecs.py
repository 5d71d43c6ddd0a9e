"""Hook specifications: the whole contract between Nestpoint and its plugins.

The pluggy project name is ``nestpoint`` and every hook starts with ``nestpoint_``. Each
docstring is the hook's reference (``docs/plugins/reference.md`` is generated from them by
``nestpoint plugins reference``) and has the same parts: ``When``, ``Arguments``,
``Returns``, ``Async``, ``Results`` and ``Scope``.

The core never calls ``pm.hook`` itself: it goes through
:class:`nestpoint.plugins.manager.PluginHost`, which awaits async implementations, applies
first-result logic, isolates failing plugins and records metrics. An implementation may
accept fewer arguments than its specification (pluggy passes only those it names).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from nestpoint.plugins import PROJECT_NAME

if TYPE_CHECKING:
    from nestpoint.events.service import Event
    from nestpoint.plugins.registries import (
        BenefitTypeRegistry,
        ChannelRegistry,
        ConfigSchemaRegistry,
        ConsolePanelRegistry,
        JobRegistry,
        MigrationRegistry,
        RouteRegistry,
        SurveyTypeRegistry,
    )
    from nestpoint.plugins.types import (
        ChannelChoice,
        EarnAdjustment,
        EarnContext,
        PluginContext,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

F = TypeVar("F", bound=Callable[..., Any])

FIRST_RESULT_SENTENCE = (
    "This hook is firstresult: the first non-None result wins and the remaining "
    "implementations are not called."
)

# Sections every hook's docstring has, in this order.
DOC_SECTIONS = ("When:", "Arguments:", "Returns:", "Async:", "Results:", "Scope:")

# Every domain event type the core emits, in catalogue order. Event hooks are named
# ``nestpoint_on_<type with dots as underscores>``; other types reach only
# ``nestpoint_on_event``.
EVENT_TYPES: tuple[str, ...] = (
    "tenant.created",
    "tenant.updated",
    "store.created",
    "store.updated",
    "api_key.created",
    "api_key.revoked",
    "member.joined",
    "member.updated",
    "member.merged",
    "child.born",
    "order.paid",
    "order.refunded",
    "points.earned",
    "points.redeemed",
    "points.expiring",
    "points.expired",
    "points.adjusted",
    "tier.changed",
    "benefit.granted",
    "benefit.used",
    "benefit.use_reversed",
    "benefit.expired",
    "settlement.period_closed",
)


def event_hook_name(event_type: str) -> str:
    return "nestpoint_on_" + event_type.replace(".", "_")


_EVENT_TAIL = """
When: {when} Called by the ``events.relay`` actor after the transaction that wrote the
event has committed, in the order events occurred within a tenant. Delivery is at least
once: deduplicate on ``event.id``.

Arguments:
    event: the serialisable event: ``id``, ``type`` (``{type}``), ``tenant_id``,
        ``store_id`` (``None`` for a chain-level event), ``subject_type``, ``subject_id``,
        ``occurred_at`` (ISO-8601, UTC) and ``payload`` (ids and values only).
    plugin: the plugin's :class:`PluginContext` for the event's tenant and store: its
        merged ``config``, and ``session()`` for a database session bound to the tenant.

Returns: nothing; the return value is ignored.

Async: may be async (the coroutine is awaited, within ``plugins_event_timeout_seconds``).

Results: every implementation is called; results are not used. An exception or a timeout
is recorded for the plugin and tenant and the plugin alone gets the event again later,
with back-off; plugins that succeeded are not called again for the same event.

Scope: per tenant and store: only plugins enabled for the event's tenant (and for its
store, when ``store_id`` is set; chain-wide enablement for a chain-level event) receive it,
with the tenant's context set.
"""


def _event(event_type: str, when: str) -> Callable[[F], F]:
    """Mark an event hook and complete its docstring with the delivery rules they share."""

    def mark(function: F) -> F:
        assert function.__name__ == event_hook_name(event_type), function.__name__
        function.__doc__ = (
            (function.__doc__ or "").rstrip()
            + "\n"
            + _EVENT_TAIL.format(when=when, type=event_type)
        )
        function.event_type = event_type  # type: ignore[attr-defined]
        return hookspec(function)

    return mark


# ---------------------------------------------------------------------------------------
# Registration: called once per plugin at start-up, before any tenant is served.
# What a plugin registers exists for every tenant, and is active only where the plugin is
# enabled (routes answer 404, jobs skip the tenant, types are not offered elsewhere).
# ---------------------------------------------------------------------------------------


@hookspec
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    """Declare the plugin's configuration schema.

    When: once at start-up, when the plugin is loaded.

    Arguments:
        registry: call ``registry.use(Model)`` with a pydantic model whose every field has
            a default. Configuration given by HQ (for the chain) or a store is validated
            against it; errors name the field (``config.<field>``). A store's
            configuration overrides the chain's field by field.

    Returns: nothing.

    Async: must be synchronous.

    Results: called for every plugin; a plugin without this hook takes no configuration.

    Scope: global, once per process; the values are per tenant and store.
    """


@hookspec
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    """Add HTTP routes of the plugin's own.

    When: once at start-up, when the application is assembled.

    Arguments:
        registry: call ``registry.add(*handlers)`` with Litestar route handlers,
            controllers or routers. They are mounted under ``/api/v1/plugins/<plugin-id>/``
            and authenticated like every API route. A handler may take ``plugin: Plugin`` (the
            caller's :class:`PluginContext`: tenant, store and merged config) and ``db: Db``
            (the request's session, scoped to the tenant, committed after the handler
            succeeds); both types are in the public API.
            Give each handler an ``operation_id`` unique across the whole API (camelCase,
            with the plugin's name in it, e.g. ``getBirthdayBonusHello``) and a
            ``description``, as the core routes have.
            ``registry.add_public(*handlers)`` adds public routes, which take no API key
            (a page a QR code on a product opens): mounted under
            ``/public/<tenant-slug>/<plugin-id>/``, limited per client address
            (``NESTPOINT_PUBLIC_RATE_LIMIT``, 429 over it), run in the chain's tenant
            context with ``plugin.store_id`` ``None``; ``public_path(db, plugin, path)``
            from the public API gives a route's path for the plugin's chain.
            ``registry.add_member(*handlers)`` adds member routes, for one member with a
            member token (the chain's mini-program or app): mounted under
            ``/api/v1/me/plugins/<plugin-id>/``, refused to API keys (403), 404 where the
            plugin is not enabled for the chain or any of its stores, limited per member
            (``NESTPOINT_MEMBER_RATE_LIMIT``), run in the member's chain with
            ``plugin.store_id`` ``None``; ``current_member_id()`` is the caller, and
            ``plugin_at_store`` / ``acting_at_store`` act at the store a row belongs to.

    Returns: nothing.

    Async: must be synchronous (the handlers themselves are usually async).

    Results: called for every plugin; each plugin gets its own prefix.

    Scope: global; a request reaches the routes only when the plugin is enabled for the
        caller's tenant and, for a store key, for its store; otherwise it gets 404. A
        public route answers for a chain (found by its slug, active) where the plugin is
        enabled for the chain or any of its stores; elsewhere 404.
    """


@hookspec
def nestpoint_register_jobs(registry: JobRegistry) -> None:
    """Declare Dramatiq actors and periodic jobs.

    When: once at start-up, in API and worker processes alike.

    Arguments:
        registry: ``registry.actor(fn, name=...)`` declares an actor named
            ``plugins.<plugin-id>.<name>`` and returns a job whose ``send(plugin,
            **kwargs)`` enqueues it; ``registry.periodic(fn, seconds=...)`` also runs it on
            a schedule. ``fn`` is ``async def fn(plugin: PluginContext, **kwargs)``; it runs
            in the tenant's context and must be idempotent.

    Returns: nothing.

    Async: must be synchronous (the job functions are async).

    Results: called for every plugin.

    Scope: global declaration; a periodic job runs once per tenant where the plugin is
        enabled (chain-wide or for any store), with the chain's configuration.
    """


@hookspec
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    """Give the plugin's own Alembic version location.

    When: once at start-up, and by ``nestpoint migrate`` before it upgrades to ``heads``.

    Arguments:
        registry: ``registry.add(path)`` with the folder of the plugin's revision files.
            The plugin's first revision has ``down_revision = None``, ``branch_labels =
            ("<plugin-id>",)`` and ``depends_on = "0001_foundation"``. Its tables carry
            ``tenant_id`` leading every key, and get row-level security with
            ``rls.isolate_and_grant`` (or ``rls.isolate_tenant_table`` and ``rls.grant``) from
            the public API.

    Returns: nothing.

    Async: must be synchronous.

    Results: called for every plugin; each location becomes one branch of the tree.

    Scope: global (tables are shared by tenants and isolated by ``tenant_id`` and RLS).
    """


@hookspec
def nestpoint_register_benefit_types(registry: BenefitTypeRegistry) -> None:
    """Add member benefit types (a consultation, a class seat, a home delivery...).

    When: once at start-up.

    Arguments:
        registry: ``registry.add(BenefitType(key, title, options=Model))``. The type is
            known as ``<plugin-id>.<key>``; ``options`` (a pydantic model) validates the
            settings of each benefit HQ defines with it. The core keeps the catalog, grants
            entitlements and counts quotas; the plugin learns of grants and uses from the
            ``benefit.*`` events and uses a benefit for a member with
            ``nestpoint.plugins.api.use_benefit`` (see ``docs/benefits.md``).

    Returns: nothing.

    Async: must be synchronous.

    Results: called for every plugin.

    Scope: global declaration; HQ can define benefits of the type only where the plugin is
        enabled (chain-wide or at a store), and a member can use one only at a store where
        the plugin is enabled.
    """


@hookspec
def nestpoint_register_channel_connectors(registry: ChannelRegistry) -> None:
    """Add channel connectors: ways to reach members (SMS, WeCom, e-mail...).

    When: once at start-up. The message pipeline (``docs/messaging.md``) calls ``send``
    from its workers, one message and one attempt at a time, after it checked the member's
    consent for the connector's ``consent`` channel, quiet hours and the frequency cap.

    Arguments:
        registry: ``registry.add(ChannelConnector(key, title, send=..., address="phone",
            consent="sms", receipts=...))``; ``send`` is ``async def send(message:
            OutboundMessage, plugin: PluginContext) -> DeliveryReceipt`` (see
            :class:`ChannelConnector` for the retry, idempotency and receipt rules).
            Credentials come from ``plugin_secret(plugin, name)``, never from the config.

    Returns: nothing.

    Async: must be synchronous (``send`` is async).

    Results: called for every plugin.

    Scope: global declaration; a connector is used only where its plugin is enabled.
    """


@hookspec
def nestpoint_register_survey_types(registry: SurveyTypeRegistry) -> None:
    """Add survey question types (a rating, a baby-stage picker, an NPS question...).

    When: once at start-up. The surveys plugin (``docs/plugins/surveys.md``) offers a type,
    as ``<plugin-id>.<key>``, in the surveys of a chain where its plugin is enabled (its own
    built-in types come through this hook too); ``question_types(plugin)`` lists them.

    Arguments:
        registry: ``registry.add(QuestionType(key, title, settings=Model, answer=Model,
            score=...))``: HQ's settings of a question are validated by ``settings``, a
            member's answer by ``answer`` with the question's settings in the validation
            context (``info.context["settings"]``); ``score(answer, settings)`` is a number
            for averages and tag rules, or ``None`` (see :class:`QuestionType`).

    Returns: nothing.

    Async: must be synchronous.

    Results: called for every plugin.

    Scope: global declaration; offered in surveys only where the plugin is enabled.
    """


@hookspec
def nestpoint_register_console_panels(registry: ConsolePanelRegistry) -> None:
    """Add panels to console pages (the dashboard, a member's page, a store's page).

    When: once at start-up. The console shows ``member`` panels on a member's page (the
    subject is the member's id), below the core's sections, in ``order``; ``dashboard`` and
    ``store`` panels are kept for those pages.

    Arguments:
        registry: ``registry.add(ConsolePanel(key, title, page, render=...))``; ``title``
            is a text or one per console language (``{"zh_CN": "预约", "en":
            "Bookings"}``: the user's language, else ``en``, else the first). ``render``
            is ``async def render(plugin: PluginContext, subject_id: str | None) -> str``
            and returns an HTML fragment the plugin has escaped (empty: the panel is left
            out). It reads through ``plugin.session()`` (the user's tenant and store) and
            has 2 s: a panel that fails or takes longer is left out of the page and
            recorded as the plugin's failure (hook ``console_panel:<key>``).
            ``plugin.store_id`` is the user's store (``None`` for HQ): show a store only
            what its key would see. ``plugin.viewer`` (a ``ConsoleViewer``) is the user:
            ``role``, ``locale`` (``zh_CN`` or ``en``, for the panel's own words) and
            ``personal_data`` (false: the HQ analyst, or a store role on another store's
            member; leave out names, free text and the like).

    Returns: nothing.

    Async: must be synchronous (``render`` is async).

    Results: called for every plugin.

    Scope: global declaration; a panel shows only where its plugin is enabled.
    """


# ---------------------------------------------------------------------------------------
# Points and channels: the core asks, plugins answer, inside a request.
# ---------------------------------------------------------------------------------------


@hookspec
def nestpoint_adjust_earned_points(context: EarnContext) -> EarnAdjustment | None:
    """Adjust the points a paid order earns (double points in a child's birthday month...).

    When: while an order is being paid, after the tier's earn rules computed
    ``context.base_points``, before the points are written. It sits on the till's hot path:
    do no I/O, and answer from the context.

    Arguments:
        context: an :class:`EarnContext`: ``tenant_id``, ``store_id``, ``member_id``;
            ``member_birthday`` and ``children_birth_dates`` (recorded births only);
            ``tier_code`` (before any upgrade the order brings); ``paid_at``, an aware
            datetime in the chain's time zone whatever offset the till sent, and
            ``time_zone``, that zone's IANA name (so ``paid_at.month`` is the chain's
            month); ``lines`` (each ``EarnLine``: ``sku``, ``category``, ``quantity``,
            ``paid_fen`` after discounts, ``base_points``); ``base_points``, their sum; and
            ``config``, the plugin's merged configuration for that tenant and store.

    Returns: an :class:`EarnAdjustment` (extra points, negative to deduct, a reason the
        member sees, and optionally ``lines``: the 1-based positions in ``context.lines`` it
        belongs to, so that a refund of such a line takes its share back and the reason is
        recorded on those lines only; none named: the whole order, the bonus going to the
        line that earned most) or ``None`` for no change.

    Async: may be async (awaited within ``plugins_earn_timeout_seconds``).

    Results: collected from every implementation; the core applies each to its lines in
        turn, never taking a line below zero (an adjustment naming a line the order does
        not have is ignored and logged). A failing or slow implementation is skipped, logged and
        recorded; the order never fails because of it.

    Scope: per tenant and store: only plugins enabled for the order's store are asked.
    """


@hookspec(firstresult=True)
def nestpoint_choose_channel(choice: ChannelChoice) -> str | None:
    """Choose the channel that reaches a member for a purpose (WeCom first, then SMS...).

    When: before the pipeline sends a member a message, once per message.

    Arguments:
        choice: a :class:`ChannelChoice`: tenant, store, member, the message's purpose and
            the keys of the connectors that may reach this member now (enabled, consented,
            with an address), in the tenant's fallback order.

    Returns: one of ``choice.available`` to try first (the rest follow in the tenant's
        order if it fails), or ``None`` to leave the choice to others (the core then uses
        the tenant's order).

    Async: may be async.

    Results: This hook is firstresult: the first non-None result wins and the remaining
        implementations are not called.

    Scope: per tenant and store: only plugins enabled there are asked.
    """


@hookspec
def nestpoint_seed_demo(plugin: PluginContext, member_ids: list[str]) -> None:
    """Seed a little of the plugin's own data for the demo (a few bookings, a delivery).

    When: by ``nestpoint demo`` (``make run``), on every start, after a chain's members,
    orders and benefits are seeded: once per store where the plugin is enabled.

    Arguments:
        plugin: the plugin's :class:`PluginContext` for the chain and that store (merged
            ``config``; ``session()`` is bound to them, as a store key's request is).
        member_ids: the ids (strings) of some of the chain's members, oldest first.

    Returns: nothing.

    Async: may be async (awaited within 60 seconds).

    Results: every implementation is called; a failure is logged and the demo goes on.

    Scope: per tenant and store, where the plugin is enabled. Must be idempotent: use
        idempotency keys of your own (``demo-...``) so a second start adds nothing.
    """


# ---------------------------------------------------------------------------------------
# Members' rights: the core asks each plugin for what it keeps about one member.
# ---------------------------------------------------------------------------------------


@hookspec
def nestpoint_collect_member_data(member_id: str, plugin: PluginContext) -> dict[str, Any] | None:
    """Contribute what the plugin keeps about one member to their data export (the right of
    access and copy: PIPL art. 45; ``docs/exports.md``).

    When: while a worker writes a ``member_data`` export, which HQ requested with
    ``POST /api/v1/members/{member_id}/data-exports``, once per export, after the core read
    its own sections.

    Arguments:
        member_id: the member's id (a string).
        plugin: the plugin's :class:`PluginContext` for the member's chain (``store_id``
            ``None``, the chain's merged ``config``; ``session()`` is bound to the tenant).

    Returns: a JSON-serialisable ``dict`` of everything the plugin stores about this
        member and no one else (str, numbers, booleans, ``None``, lists and dicts; dates,
        times and UUIDs are written as ISO 8601 text and strings). Personal data in full:
        the file is the member's copy. Leave out what cannot be linked to the member (an
        anonymous answer) and say so in the plugin's documentation. ``None`` when the
        plugin keeps nothing about members: the plugin is then left out of the file.

    Async: may be async (awaited within 60 seconds).

    Results: collected from every implementation into the file's ``plugins`` section as
        ``{plugin id: result}``. A plugin that raises, times out or returns something that
        is not a JSON-serialisable dict is recorded (``GET /api/v1/tenant/plugin-failures``)
        and its part reads ``{"error": "unavailable"}``: the export still completes.

    Scope: per tenant: plugins enabled for the chain or for any of its stores are asked,
        with the tenant's context set.
    """


@hookspec
def nestpoint_erase_member_data(member_id: str, plugin: PluginContext) -> dict[str, int] | None:
    """Erase what the plugin keeps about one member whose personal data the chain erased
    (the right of deletion: PIPL art. 47; ``docs/privacy.md``).

    When: in a worker after the erasure committed (the member row is already pseudonymous:
    status ``erased``, no phone, name or data key), once per erasure and again until every
    plugin answered: a plugin that raises or times out is asked again later, with back-off.

    Arguments:
        member_id: the erased member's id (a string). Members merged into it were erased
            with it; a plugin that keeps data under a merged-away id moved it on
            ``member.merged``.
        plugin: the plugin's :class:`PluginContext` for the member's chain (``store_id``
            ``None``, the chain's merged ``config``; ``session()`` is bound to the tenant).

    Returns: a ``dict`` counting what was erased (e.g. ``{"answers": 3}``) for the
        erasure's record, or ``None`` when the plugin keeps nothing about members. Delete
        or blank personal data (free text, contact details, anything identifying); keep
        what the books need under the member's id (amounts, dates). Idempotent: asked again,
        erase what is left and answer the same way.

    Async: may be async (awaited within 60 seconds).

    Results: every answer is kept in the erasure's ``plugins``
        (``GET /api/v1/members/{member_id}/erasure``); failures are recorded
        (``GET /api/v1/tenant/plugin-failures``) and the plugin is asked again.

    Scope: per tenant: plugins enabled for the chain or for any of its stores are asked,
        with the tenant's context set.
    """


# ---------------------------------------------------------------------------------------
# Events: every domain event, delivered from the outbox after its change committed.
# ---------------------------------------------------------------------------------------


@hookspec
def nestpoint_on_event(event: Event, plugin: PluginContext) -> None:
    """Receive every domain event, whatever its type (a generic consumer: a webhook relay,
    an audit copy, a data export).

    When: for each event of the catalogue (and any type added later), after its specific
    hook. Called by the ``events.relay`` actor after the transaction that wrote the event
    has committed, in the order events occurred within a tenant. Delivery is at least once:
    deduplicate on ``event.id``.

    Arguments:
        event: the serialisable event: ``id``, ``type``, ``tenant_id``, ``store_id``
            (``None`` for a chain-level event), ``subject_type``, ``subject_id``,
            ``occurred_at`` (ISO-8601, UTC) and ``payload`` (ids and values only).
        plugin: the plugin's :class:`PluginContext` for the event's tenant and store.

    Returns: nothing; the return value is ignored.

    Async: may be async (the coroutine is awaited, within ``plugins_event_timeout_seconds``).

    Results: every implementation is called; results are not used. An exception or a timeout
        is recorded for the plugin and tenant and the plugin alone gets the event again
        later, with back-off.

    Scope: per tenant and store, like the specific event hooks.
    """


# ---- tenant and store lifecycle


@_event("tenant.created", "a chain was registered by the platform operator.")
def nestpoint_on_tenant_created(event: Event, plugin: PluginContext) -> None:
    """A tenant (store chain) was created. Payload: ``slug``."""


@_event("tenant.updated", "a chain's name, currency, time zone, locale or state changed.")
def nestpoint_on_tenant_updated(event: Event, plugin: PluginContext) -> None:
    """A tenant's settings changed. Payload: ``changes`` (``{field: [old, new]}``)."""


@_event("store.created", "HQ opened a store (through the API or a manifest).")
def nestpoint_on_store_created(event: Event, plugin: PluginContext) -> None:
    """A store was created. Payload: ``code``; ``store_id`` is the new store."""


@_event("store.updated", "a store's details changed, including (de)activation.")
def nestpoint_on_store_updated(event: Event, plugin: PluginContext) -> None:
    """A store changed. Payload: ``code`` and ``changes`` (``{field: [old, new]}``)."""


@_event("api_key.created", "HQ or the operator created an API key.")
def nestpoint_on_api_key_created(event: Event, plugin: PluginContext) -> None:
    """An API key was created. Payload: ``kind`` (``tenant`` or ``store``); never the key."""


@_event("api_key.revoked", "an API key was revoked.")
def nestpoint_on_api_key_revoked(event: Event, plugin: PluginContext) -> None:
    """An API key was revoked. ``subject_id`` is the key's id; the payload is empty."""


# ---- members and children


@_event("member.joined", "a member enrolled (at the till, online, or by referral).")
def nestpoint_on_member_joined(event: Event, plugin: PluginContext) -> None:
    """A member joined. Payload: ``member_id`` (also ``subject_id``), ``join_channel``,
    ``tier_code`` and ``home_store_id`` (``None`` when not enrolled at a store)."""


@_event("member.updated", "a member's profile changed.")
def nestpoint_on_member_updated(event: Event, plugin: PluginContext) -> None:
    """A member's profile changed. Payload: ``member_id`` and ``fields``, the names of the
    changed fields (never their values: they may be personal data)."""


@_event("member.merged", "two member records of one person were merged into one.")
def nestpoint_on_member_merged(event: Event, plugin: PluginContext) -> None:
    """Two members were merged. Payload: ``member_id`` (the surviving member, also
    ``subject_id``), ``source_member_id`` (merged away: move anything the plugin keeps under
    it) and ``points_moved``."""


@_event("member.erased", "a member's personal data was erased (deletion request or retention).")
def nestpoint_on_member_erased(event: Event, plugin: PluginContext) -> None:
    """A member's personal data was erased. Payload: ``member_id`` (also ``subject_id``)
    and ``source`` (``request`` or ``retention``). Plugins erase their own data through
    ``nestpoint_erase_member_data``; this event is for systems outside (a webhook tells the
    chain's CRM to erase too)."""


@_event("child.born", "a member's child was recorded as born (or a due date became a birth).")
def nestpoint_on_child_born(event: Event, plugin: PluginContext) -> None:
    """A child was born. Payload: ``member_id``, ``child_id`` and ``birth_date`` (ISO date):
    the start of the 0-6 month stage."""


# ---- orders and points


@_event("order.paid", "an order was paid and its points were computed.")
def nestpoint_on_order_paid(event: Event, plugin: PluginContext) -> None:
    """An order was paid. Payload: ``order_id``, ``channel``, ``external_id`` (the till's or
    mall's own id), ``member_id`` (``None`` for a guest), ``total_fen``, ``points_used``,
    ``points_earned`` and ``paid_at``."""


@_event("order.refunded", "an order was refunded, fully or in part.")
def nestpoint_on_order_refunded(event: Event, plugin: PluginContext) -> None:
    """An order was refunded. Payload: ``order_id``, ``refund_id``, ``amount_fen``,
    ``member_id``, ``points_reversed``, ``points_returned`` and ``fully_refunded``."""


@_event("points.earned", "points were credited to a member (an order, a campaign...).")
def nestpoint_on_points_earned(event: Event, plugin: PluginContext) -> None:
    """Points were earned. Payload: ``member_id``, ``order_id`` (when an order earned them),
    ``points`` (plugin adjustments included) and ``balance`` after."""


@_event("points.redeemed", "a member spent points (as cash or for a reward).")
def nestpoint_on_points_redeemed(event: Event, plugin: PluginContext) -> None:
    """Points were redeemed. Payload: ``member_id``, ``order_id`` (when spent on an order)
    and ``points`` spent."""


@_event(
    "points.expiring",
    "a member's points will expire soon: raised by the daily job once per member and day, as"
    " lots enter the programme's expiring-soon horizon (``points.expiring_soon_days``).",
)
def nestpoint_on_points_expiring(event: Event, plugin: PluginContext) -> None:
    """Points will expire. Payload: ``member_id``, ``points`` (the points entering the
    horizon that day) and ``expires_by`` (ISO-8601: they expire before then). A reminder is
    usually sent from here."""


@_event("points.expired", "a member's points expired (积分清零).")
def nestpoint_on_points_expired(event: Event, plugin: PluginContext) -> None:
    """Points expired. Payload: ``member_id`` and ``points`` (the points removed, positive),
    one event per member and expiry run."""


@_event("points.adjusted", "staff adjusted a member's points by hand.")
def nestpoint_on_points_adjusted(event: Event, plugin: PluginContext) -> None:
    """Points were adjusted. Payload: ``member_id``, ``points`` (the signed change),
    ``balance`` (after it) and ``reason``."""


@_event("tier.changed", "a member moved up or down the tier ladder.")
def nestpoint_on_tier_changed(event: Event, plugin: PluginContext) -> None:
    """A member's tier changed. Payload: ``member_id``, ``from_tier`` and ``to_tier`` (tier
    codes; ``from_tier`` is ``None`` for a member's first tier), ``reason`` (``join``;
    ``upgrade``, when growth from an order, a bonus or the periodic evaluation moved them
    up; ``evaluation``, when the evaluation moved them down; ``tier_removed``, when HQ
    removed their tier from the ladder) and ``growth_value`` (the member's
    growth when it changed)."""


# ---- benefits


@_event(
    "benefit.granted",
    "a member was granted a benefit: they reached its tier or a child its stage (seen at the"
    " member's next benefits look-up or use, or by the periodic sync), a bundle was given for"
    " a birth, or they exchanged points for it.",
)
def nestpoint_on_benefit_granted(event: Event, plugin: PluginContext) -> None:
    """A benefit was granted. Payload: ``member_id``, ``benefit_code``, ``benefit_type``
    (``core.<key>`` or ``<plugin-id>.<key>``: a plugin acts on its own types),
    ``entitlement_id`` and ``source`` (``tier``, ``stage``, ``bundle`` or ``exchange``)."""


@_event("benefit.used", "a member used a benefit at a till, a booking or a delivery.")
def nestpoint_on_benefit_used(event: Event, plugin: PluginContext) -> None:
    """A benefit was used. Payload: ``member_id``, ``benefit_code``, ``benefit_type``,
    ``entitlement_id``, ``use_id``, ``quantity``, ``reference`` (what the use was for, as
    the caller named it) and ``store_id`` (``None`` when used at no store)."""


@_event("benefit.use_reversed", "a use was given back (a cancelled booking, a refund).")
def nestpoint_on_benefit_use_reversed(event: Event, plugin: PluginContext) -> None:
    """A use was reversed. Payload: ``member_id``, ``benefit_code``, ``benefit_type``,
    ``entitlement_id``, ``use_id`` (the use given back), ``quantity`` and ``reason``."""


@_event("benefit.expired", "a member's entitlement ended.")
def nestpoint_on_benefit_expired(event: Event, plugin: PluginContext) -> None:
    """An entitlement ended. Payload: ``member_id``, ``benefit_code``, ``benefit_type``,
    ``entitlement_id`` and ``reason``: ``expired`` (its validity or its run-out period
    ended), ``revoked`` (the member stopped qualifying and the benefit's rule revokes at
    once) or ``exchange_reversed`` (the points came back)."""


# ---- settlement


@_event(
    "settlement.period_closed",
    "a month of franchise settlement was closed (by HQ, in the console or the API, or by the"
    " operator's command; ``docs/settlement.md``): once per month, however often the close"
    " was retried or raced.",
)
def nestpoint_on_settlement_period_closed(event: Event, plugin: PluginContext) -> None:
    """A settlement month was closed; its figures are final. A chain-level event
    (``store_id`` ``None``); ``subject_id`` is the period's id. Payload: ``month``
    (``2026-11``), ``period_id``, ``point_value_fen``, ``closed_at``, the totals of every
    line it settles (``points_issued``, ``points_redeemed``, ``points_expired``,
    ``benefit_uses``), ``net_fen`` (``{store code or "HQ": fen}``: what each party
    receives, negative when it pays; the nets add up to zero) and ``carried_months``
    (earlier closed months whose late entries it settles)."""
