"""Assembles the Litestar application: routes, dependencies, errors, OpenAPI, lifecycle."""

from __future__ import annotations

import asyncio

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

import nestpoint
from nestpoint.analytics.routes import AnalyticsController
from nestpoint.api.deps import provide_session
from nestpoint.api.health import cachez, healthz, readyz
from nestpoint.api.input import JsonRequest, StrictJsonBodies
from nestpoint.api.logs import configure_logging
from nestpoint.api.metrics import http_metrics, metrics
from nestpoint.api.middleware import RequestContextMiddleware, RequestIdMiddleware
from nestpoint.api.openapi import PydanticConstraintsSchemaPlugin
from nestpoint.api.problems import EXCEPTION_HANDLERS
from nestpoint.api.tracing import http_tracing
from nestpoint.audit.routes import AuditController
from nestpoint.benefits.routes import (
    BenefitCatalogController,
    BenefitReversalController,
    BenefitTypeController,
    BundleController,
    MemberBenefitController,
)
from nestpoint.billing.routes import (
    PlatformBillingController,
    PlatformTenantBillingController,
    TenantBillingController,
)
from nestpoint.campaigns.routes import CampaignController
from nestpoint.console.router import CONSOLE_ROUTER
from nestpoint.console.routes import ConsoleUserController
from nestpoint.console.web import template_config
from nestpoint.coupons.routes import (
    CouponController,
    CouponTemplateController,
    MemberCouponController,
)
from nestpoint.db import get_database
from nestpoint.db.pagination import use_signing_key
from nestpoint.events.routes import EventController
from nestpoint.events.service import install_session_hooks
from nestpoint.exports.routes import ExportController, MemberDataExportController
from nestpoint.imports.routes import ImportController
from nestpoint.jobs.broker import flush_enqueued
from nestpoint.limits import MAX_BODY_BYTES
from nestpoint.loyalty.routes import LoyaltyController
from nestpoint.memberapi.routes import PUBLIC_ROUTES as MEMBER_AUTH_ROUTES
from nestpoint.memberapi.routes import (
    MeController,
    MemberCodeController,
    MemberTokenController,
    WechatAppController,
)
from nestpoint.members import pii
from nestpoint.members.routes import MemberController
from nestpoint.membership.routes import (
    MemberPaidMembershipController,
    PaidMembershipController,
    PaidPlanController,
)
from nestpoint.messaging.routes import MessageController, MessagingController, receive_receipts
from nestpoint.observability import tracing
from nestpoint.orders.routes import OrderController, RefundController
from nestpoint.payments.routes import WEBHOOK_ROUTES, PaymentController
from nestpoint.plugins.enablement import install_session_hooks as install_plugin_session_hooks
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.routes import PluginFailureController, TenantPluginController
from nestpoint.plugins.routing import (
    member_plugin_routers,
    plugin_routers,
    public_plugin_routers,
)
from nestpoint.points.routes import HoldController
from nestpoint.privacy.routes import ErasureController, PrivacyController
from nestpoint.referrals.routes import (
    AssistController,
    MemberReferralController,
    ReferralController,
)
from nestpoint.segments.routes import SegmentController
from nestpoint.settings import Settings, get_settings
from nestpoint.settlement.routes import SettlementController
from nestpoint.tenancy.routes import (
    ApiKeyController,
    CurrentTenantController,
    PlatformTenantController,
    StoreController,
)
from nestpoint.wallet.routes import MemberWalletController, WalletController

API_CONTROLLERS = [
    PlatformTenantController,
    CurrentTenantController,
    StoreController,
    ApiKeyController,
    EventController,
    AuditController,
    MemberController,
    OrderController,
    RefundController,
    HoldController,
    CouponTemplateController,
    CouponController,
    MemberCouponController,
    ReferralController,
    MemberReferralController,
    AssistController,
    LoyaltyController,
    BenefitCatalogController,
    BenefitTypeController,
    BundleController,
    MemberBenefitController,
    BenefitReversalController,
    TenantPluginController,
    PluginFailureController,
    MessagingController,
    MessageController,
    ExportController,
    MemberDataExportController,
    ErasureController,
    PrivacyController,
    SegmentController,
    CampaignController,
    ImportController,
    WalletController,
    MemberWalletController,
    SettlementController,
    PaidPlanController,
    PaidMembershipController,
    MemberPaidMembershipController,
    PaymentController,
    PlatformBillingController,
    PlatformTenantBillingController,
    TenantBillingController,
    AnalyticsController,
    MemberTokenController,
    WechatAppController,
    MemberCodeController,
    MeController,
    ConsoleUserController,
]


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Litestar:
    settings = settings or get_settings()
    # Refuse to start without the personal-data keys every process of a database shares;
    # cursors are signed with a key derived from them unless NESTPOINT_CURSOR_KEY is set.
    use_signing_key(pii.derived_key(b"nestpoint cursors", settings))
    if configure_logs:
        configure_logging(settings.log_level, json=settings.log_json)
    install_session_hooks()
    install_plugin_session_hooks()

    async def close_database() -> None:
        # Relay messages accepted in the sender's last coalescing pause leave first (the
        # outbox sweep would deliver them otherwise, later).
        await asyncio.to_thread(flush_enqueued, 1.0)
        # Plugin failures still being written in the background land before the pool closes.
        await get_plugin_host().drain()
        await get_database(settings).dispose()

    api = Router(
        path="/api/v1",
        # Each plugin's own routes, under /api/v1/plugins/<plugin-id>/; its member routes
        # (member tokens only) under /api/v1/me/plugins/<plugin-id>/.
        route_handlers=[
            *API_CONTROLLERS,
            *plugin_routers(get_plugin_host()),
            *member_plugin_routers(get_plugin_host()),
        ],
        security=[{"ApiKey": []}],
    )
    # Plugins' public routes (no key; per-client-address limit), at /public/<slug>/<id>/.
    public = public_plugin_routers(get_plugin_host())
    counted = [http_metrics()] if settings.metrics_enabled else []
    traced = [http_tracing(provider)] if (provider := tracing.configure("api")) else []
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            cachez,
            *([metrics] if settings.metrics_enabled else []),
            api,
            *public,
            receive_receipts,
            *WEBHOOK_ROUTES,
            *MEMBER_AUTH_ROUTES,
            # The HQ and store console (HTML pages, sessions, CSRF): docs/console.md.
            CONSOLE_ROUTER,
        ],
        template_config=template_config(),
        dependencies={"db": Provide(provide_session)},
        # Tracing and metrics outermost: requests refused for their key are seen too.
        middleware=[*traced, *counted, RequestContextMiddleware],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JsonRequest,
        request_max_body_size=MAX_BODY_BYTES,
        plugins=[
            # Request bodies: strict JSON validation ("2" is no integer); see api/input.py.
            StrictJsonBodies(),
            PydanticConstraintsSchemaPlugin(),
        ],
        on_shutdown=[close_database],
        openapi_config=OpenAPIConfig(
            title="Nestpoint API",
            version=nestpoint.__version__,
            description=(
                "Membership platform for mother-and-baby store chains. Authenticate with "
                "`Authorization: Bearer <key>`: a platform key, an HQ (tenant) key or a store key; "
                "the member API (`/api/v1/me`) takes a member token instead."
            ),
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(path="/swagger"), ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(
                        type="http", scheme="bearer", description="A Nestpoint API key."
                    )
                }
            ),
        ),
        logging_config=None,
        debug=False,
    )
    # Route middleware never sees the router's own 404 and 405: the request id layer wraps
    # the whole application, so every response carries an x-request-id.
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler)
    return app
