"""The console's pages (HTML under ``/console/``): sign-in, dashboard, members, the till.

Each page calls the same services the API's routes call, as the signed-in user's actor
(``console.web.ConsoleMiddleware`` set it), so the services' checks, the reach rules and
the audit trail apply unchanged. Which role may open which page is :data:`PAGES`' business;
what a role may do inside a page is the scopes' (``console.service.ROLE_SCOPES``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.analytics import service as analytics
from nestpoint.api.deps import Db
from nestpoint.benefits import service as benefits
from nestpoint.benefits.schemas import UseIn
from nestpoint.console import export, forms, service
from nestpoint.console.schemas import ConsoleUserCreate, ConsoleUserUpdate
from nestpoint.console.web import (
    CATALOGUES,
    CSRF_FIELD,
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    Me,
    _,
    catalogue_of,
    client_of,
    environment,
    is_https,
    language,
    me_of,
    new_login_csrf,
    set_language,
    sign_in_throttle,
)
from nestpoint.context import acting_as, current_actor, tenant_context
from nestpoint.db import utcnow
from nestpoint.db.session import rebind_tenant
from nestpoint.errors import Conflict, FieldError, Forbidden, Invalid, NestpointError, NotFound
from nestpoint.loyalty import rules
from nestpoint.loyalty.service import get_program
from nestpoint.memberapi.codes import CODE_PREFIX
from nestpoint.memberapi.service import member_by_code
from nestpoint.members import service as members
from nestpoint.members.schemas import MemberCreate, MemberRead
from nestpoint.orders import service as orders
from nestpoint.orders.schemas import OrderIn
from nestpoint.plugins import service as plugin_service
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.schemas import PluginRead, StoreSettingUpdate
from nestpoint.settings import get_settings
from nestpoint.tenancy import keys
from nestpoint.tenancy import service as tenancy
from nestpoint.tenancy.schemas import STORE_KINDS, ApiKeyCreate
from nestpoint.tenancy.service import get_tenant_by_slug

HQ = ("hq_admin", "hq_analyst")
# Which roles open which pages (a clerk has the till only).
PAGES = {
    "dashboard": (*HQ, "store_manager"),
    "analytics": (*HQ, "store_manager"),  # aggregates: no personal data
    "settlement": (*HQ, "store_manager"),  # a manager: their own store's lines
    "members": (*HQ, "store_manager"),
    "till": ("store_manager", "store_clerk"),
    "users": HQ,
    "programme": HQ,
    "plugins": (*HQ, "store_manager"),
    "stores": HQ,
    "exports": HQ,  # a job exports the whole chain (the service has no store scope)
}
HOME = {
    "hq_admin": "dashboard",
    "hq_analyst": "dashboard",
    "store_manager": "dashboard",
    "store_clerk": "till",
}
ANALYTICS_DAYS = 30  # the dashboard's period: the last 30 days, today included
PURPOSE = "console"  # the audit's purpose of an unmasked read through the console
ModelT = TypeVar("ModelT", bound=BaseModel)


def allow(me: Me, page: str) -> None:
    if me.role not in PAGES[page]:
        raise Forbidden(_("Your role cannot open this page."))


def allow_admin(me: Me, page: str, scope: str, refusal: str) -> None:
    """Changes on ``page``: HQ's admin holding ``scope``; any other role gets 403."""
    allow(me, page)
    if me.role != "hq_admin" or not current_actor().has(scope):
        raise Forbidden(refusal)


def render(name: str, me: Me | None, status: int = 200, **context: Any) -> Template:
    full = {"me": me, "csrf": me.csrf if me else "", "pages": PAGES, **context}
    table = export.wanted()
    if table and status == 200 and me is not None:  # ?export=<table>: that table as CSV
        text = export.table_csv(environment().get_template(name).render(full), table)
        if text is None:
            raise NotFound(_("No such table"))
        filename = "".join(c for c in f"{name.split('.')[0]}-{table}" if c.isalnum() or c == "-")
        return Template(
            template_name="export.csv",
            context={"csv": text},
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return Template(template_name=name, context=full, status_code=status)


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form, as text (no NUL: no database takes it)."""
    form = await request.form()
    return {k: str(v).replace("\x00", "") for k, v in form.items() if isinstance(v, str)}


def validated(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """``data`` as ``model``, or :class:`Invalid` naming each field (a form's mistakes)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "form", e["msg"]) for e in exc.errors()
        ]
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None


def fen_of(text: str, field: str) -> int:
    try:
        value = Decimal(text.strip() or "0")
    except InvalidOperation:
        raise Invalid.field(field, _("Enter an amount such as 128.00")) from None
    if value < 0 or value > 10**8 or value != value.quantize(Decimal("0.01")):
        raise Invalid.field(field, _("Enter an amount such as 128.00"))
    return int(value * 100)


def int_of(text: str, field: str) -> int:
    try:
        value = int(text.strip() or "0")
    except ValueError:
        raise Invalid.field(field, _("Enter a whole number")) from None
    if value < 0 or value > 10**9:
        raise Invalid.field(field, _("Enter a whole number"))
    return value


def new_reference() -> str:
    """A fresh idempotency key for a form: submitting the same form twice does it once."""
    return f"console-{uuid.uuid4().hex}"


def safe_next(target: str | None, me_role: str) -> str:
    if target and target.startswith(f"{PREFIX}/") and "//" not in target and "\\" not in target:
        return target
    return f"{PREFIX}/{HOME[me_role]}"


# ------------------------------------------------------------------ signing in and out


@get("/login", name="console:login")
async def login_page(
    request: Request[Any, Any, Any],
    next: FromQuery[str | None] = None,
    lang: FromQuery[str | None] = None,
) -> Response[Any]:
    if lang in CATALOGUES:
        set_language(lang)
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_login_csrf()
    response = _login_form(request, token, next=next)
    return _with_login_cookies(request, response, token, lang)


def _login_form(
    request: Request[Any, Any, Any],
    token: str,
    *,
    next: str | None = None,
    error: str | None = None,
    status: int = 200,
    chain: str = "",
    login: str = "",
) -> Template:
    return render(
        "login.html",
        None,
        status,
        login_csrf=token,
        next=next or "",
        error=error,
        chain=chain or request.cookies.get("np_chain", ""),
        login=login,
    )


def _with_login_cookies(
    request: Request[Any, Any, Any], response: Response[Any], token: str, lang: str | None = None
) -> Response[Any]:
    secure = is_https(request.scope)
    cookies = [
        Cookie(
            key=LOGIN_CSRF_COOKIE,
            value=token,
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=secure,
        )
    ]
    if lang in CATALOGUES:
        cookies.append(
            Cookie(
                key=LANG_COOKIE,
                value=lang,
                path=PREFIX,
                httponly=True,
                samesite="lax",
                secure=secure,
            )
        )
    response.cookies.extend(cookies)
    return response


@post("/login", name="console:sign-in", status_code=303)
async def sign_in(request: Request[Any, Any, Any], db: Db) -> Response[Any]:
    form = await form_of(request)
    chain = form.get("chain", "").strip().lower()[:63]
    login = form.get("login", "").strip().lower()[:64]
    password = form.get("password", "")[:200]
    target = form.get("next") or None
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    client = client_of(request.scope)
    settings = get_settings()
    throttle = sign_in_throttle()

    def refused(message: str, status: int) -> Template:
        return _login_form(
            request, token, next=target, error=message, status=status, chain=chain, login=login
        )

    tenant = await get_tenant_by_slug(db, chain) if chain and login else None
    tenant_id = tenant.id if tenant is not None and tenant.active else None
    if not await throttle.allowed(tenant_id, login, client):
        if tenant_id is not None:
            with tenant_context(tenant_id):
                await rebind_tenant(db)
                user_id = await service.find_login(db, login)
                service.record_login_failure(db, login, user_id, client, "throttled")
                await db.flush()  # while the chain is in context
        return refused(_("Too many failed sign-ins. Wait a few minutes, then try again."), 429)
    if tenant_id is None:
        await throttle.failed(None, login, client)
        return refused(_("Wrong chain, login or password."), 401)
    with tenant_context(tenant_id):
        await rebind_tenant(db)
        user = await service.check_password(db, login, password)
        if user is None:
            await throttle.failed(tenant_id, login, client)
            user_id = await service.find_login(db, login)
            service.record_login_failure(db, login, user_id, client, "wrong credentials")
            await db.flush()
            return refused(_("Wrong chain, login or password."), 401)
        _ctx, actor = service.acting(user, tenant_id)
        with acting_as(actor):
            cookie, _row = await service.start_session(
                db, user, client, timedelta(hours=settings.console_session_hours)
            )
            await db.flush()
    secure = is_https(request.scope)
    response: Response[Any] = Redirect(safe_next(target, user.role), status_code=303)
    response.cookies.extend(
        [
            Cookie(
                key=SESSION_COOKIE,
                value=cookie,
                path=PREFIX,
                httponly=True,
                samesite="lax",
                secure=secure,
                max_age=int(settings.console_session_hours * 3600),
            ),
            Cookie(
                key=LOGIN_CSRF_COOKIE,
                value="",
                path=PREFIX,
                max_age=0,
                httponly=True,
                samesite="lax",
            ),
            Cookie(
                key="np_chain",
                value=chain,
                path=PREFIX,
                httponly=True,
                samesite="lax",
                secure=secure,
                max_age=90 * 86400,
            ),
        ]
    )
    return response


@post("/logout", name="console:logout", status_code=303)
async def sign_out(request: Request[Any, Any, Any], db: Db) -> Response[Any]:
    me = me_of(request.scope)
    await service.end_session(db, me.signed.session_id)
    response: Response[Any] = Redirect(f"{PREFIX}/login", status_code=303)
    response.cookies.append(
        Cookie(key=SESSION_COOKIE, value="", path=PREFIX, max_age=0, httponly=True, samesite="lax")
    )
    return response


@post("/me/locale", name="console:locale", status_code=303)
async def switch_language(request: Request[Any, Any, Any], db: Db) -> Response[Any]:
    me = me_of(request.scope)
    form = await form_of(request)
    locale = {"en": "en", "zh_CN": "zh-CN"}.get(form.get("locale", ""))
    if locale is None:
        raise Invalid.field("locale", _("Choose a language"))
    await service.set_own_locale(db, me.signed.user_id, locale)
    return Redirect(safe_next(form.get("next"), me.role), status_code=303)


# ------------------------------------------------------------------ pages


@get(["/", ""], name="console:home")
async def home(request: Request[Any, Any, Any]) -> Redirect:
    return Redirect(f"{PREFIX}/{HOME[me_of(request.scope).role]}", status_code=303)


@get("/dashboard", name="console:dashboard")
async def dashboard(request: Request[Any, Any, Any], db: Db) -> Template:
    me = me_of(request.scope)
    allow(me, "dashboard")
    program = await get_program(db)
    now = utcnow().astimezone(program.zone)
    since = now.replace(hour=0, minute=0, second=0, microsecond=0)
    store_id = None if me.is_hq else me.signed.store_id
    counts = await service.dashboard_counts(db, store_id, since)
    names = await service.store_names(db)
    figures = hourly = None
    if current_actor().has("analytics:read"):  # the API's figures, by the same function
        end = await analytics.today(db)
        start = end - timedelta(days=ANALYTICS_DAYS - 1)
        figures = await analytics.summary(db, start=start, end=end, store_id=store_id)
        hourly = await analytics.hourly_sales(db, start=start, end=end, store_id=store_id)
    return render(
        "dashboard.html",
        me,
        counts=counts,
        store=names.get(store_id) if store_id else None,
        figures=figures,
        hourly=hourly,
    )


async def _find(db: AsyncSession, q: str) -> MemberRead | None:
    """A member by phone (the till's lookup), the QR code of their card in the member's app,
    or a card number; shown as the role may see."""
    q = q.strip()[:200]
    if not q:
        return None
    if q.startswith(CODE_PREFIX):  # scanned from the member's app; 422 when expired
        scanned = await member_by_code(db, q)
        await members.audit_unmasked(db, [scanned], PURPOSE, "console.lookup")
        return await members.member_read(db, scanned)
    if (q.isdigit() and len(q) >= 11) or q.startswith("+"):
        try:
            found = await members.lookup_by_phone(q)
        except Invalid:
            found = None
        if found is not None:
            if current_actor().has("members:pii"):
                await members.audit_unmasked(db, [found], PURPOSE, "console.lookup")
            return found
    member = await members.find_by_identity(db, "pos_card", q)
    if member is None:
        return None
    await members.audit_unmasked(db, [member], PURPOSE, "console.lookup")
    return await members.member_read(db, member)


@get("/members", name="console:members")
async def member_search(
    request: Request[Any, Any, Any], db: Db, q: FromQuery[str] = ""
) -> Template:
    me = me_of(request.scope)
    allow(me, "members")
    found = await _find(db, q) if q else None
    return render("members.html", me, q=q[:64], found=found, searched=bool(q.strip()))


# The member's page: member_pages.py.


# ------------------------------------------------------------------ console users (HQ)


async def _users_page(db: AsyncSession, me: Me, status: int = 200, **extra: Any) -> Template:
    page = await service.list_users(db, cursor=None, limit=200)
    codes = await service.user_store_codes(db)
    return render(
        "users.html",
        me,
        status,
        users=page.items,
        codes=codes,
        stores=sorted(codes.values()),
        may_change=current_actor().has("console:write"),
        **extra,
    )


@get("/users", name="console:users")
async def users_page(request: Request[Any, Any, Any], db: Db) -> Template:
    me = me_of(request.scope)
    allow(me, "users")
    return await _users_page(db, me)


def _may_change_users(me: Me) -> None:
    allow(me, "users")
    if not current_actor().has("console:write"):
        raise Forbidden(_("Your role cannot change users."))


@post("/users", name="console:users-add", status_code=200)
async def users_add(request: Request[Any, Any, Any], db: Db) -> Template:
    me = me_of(request.scope)
    _may_change_users(me)
    form = await form_of(request)
    data = validated(
        ConsoleUserCreate,
        {
            "login": form.get("login", "").strip().lower(),
            "role": form.get("role", ""),
            "store_code": form.get("store_code") or None,
            "locale": form.get("locale") or None,
            "password": form.get("password") or None,
        },
    )
    user, made = await service.create_user(db, data)
    return await _users_page(db, me, shown=(user.login, made))


@post("/users/{user_id:str}", name="console:users-change", status_code=200)
async def users_change(request: Request[Any, Any, Any], db: Db, user_id: FromPath[str]) -> Template:
    me = me_of(request.scope)
    _may_change_users(me)
    form = await form_of(request)
    try:
        wanted = uuid.UUID(user_id)
    except ValueError:
        raise NotFound(_("No such user")) from None
    changes = _user_changes(form)
    try:
        data = validated(ConsoleUserUpdate, changes)
        user, made = await service.update_user(db, wanted, data, by=me.signed.user_id)
    except (Invalid, Conflict) as exc:  # beside the row, in the status the API answers
        errors = {e.field: e.message for e in exc.errors} or {"action": exc.detail}
        if isinstance(exc, Conflict):  # the last active hq_admin
            errors = dict.fromkeys(errors, _("You are the chain's last active HQ admin."))
        return await _users_page(db, me, exc.status, errors=errors, error_user=wanted)
    return await _users_page(db, me, shown=(user.login, made))


def _user_changes(form: dict[str, str]) -> dict[str, Any]:
    """What a row's form asks: a new role and store, disable, enable or a new password."""
    action = form.get("action", "")
    if action == "role":  # an HQ role has no store; a store role keeps its store if none given
        return {"role": form.get("role", ""), "store_code": form.get("store_code") or None}
    changes = {
        "disable": {"disabled": True},
        "enable": {"disabled": False},
        "reset": {"reset_password": True},
    }.get(action)
    if changes is None:
        raise Invalid.field("action", _("Choose what to change"))
    return changes


# ------------------------------------------------------------------ programme (HQ)


def _preview(program: rules.Program, form: dict[str, str]) -> dict[str, Any]:
    """What an order of ``amount`` (yuan) would earn, by the orders service's own rules."""
    tier = program.tier(form.get("tier") or None)
    store_code = form.get("store", "")[:32]
    category = form.get("category", "")[:64]
    fen = fen_of(form.get("amount", ""), "amount")
    used = int_of(form.get("points_used", ""), "points_used")
    most = rules.max_redeemable_points(program, tier, fen)
    if used > most:
        raise Invalid.field("points_used", _("At most %(n)s points on this order") % {"n": most})
    earned = rules.compute_earn(
        program,
        tier,
        store_code,
        [rules.Line("preview", category, fen)],
        points_value_fen=rules.points_value_fen(program.points, used),
    )
    return {
        "tier": tier,
        "amount_fen": fen,
        "points": sum(earned),
        "max_redeemable": most,
        "growth": rules.growth_for(fen),
        "used": used,
    }


async def _programme_page(db: AsyncSession, me: Me, status: int = 200, **extra: Any) -> Template:
    program = await get_program(db)
    return render(
        "programme.html",
        me,
        status,
        program=program,
        store_codes=sorted((await service.user_store_codes(db)).values()),
        benefit_codes=[b.code for b in await benefits.list_benefits(db)],  # a hint for tiers
        may_change=current_actor().has("loyalty:write"),
        form=extra.pop("form", {}),
        errors=extra.pop("errors", {}),
        **extra,
    )


@get("/programme", name="console:programme")
async def programme_page(
    request: Request[Any, Any, Any],
    db: Db,
    amount: FromQuery[str] = "",
    tier: FromQuery[str] = "",
    category: FromQuery[str] = "",
    store: FromQuery[str] = "",
    points_used: FromQuery[str] = "",
) -> Template:
    """The tier ladder and earn rules, and a preview of what an order would earn."""
    me = me_of(request.scope)
    allow(me, "programme")
    form = {
        "amount": amount[:32],
        "tier": tier[:64],
        "category": category[:64],
        "store": store[:32],
        "points_used": points_used[:16],
    }
    if not amount.strip():
        return await _programme_page(db, me, form=form)
    try:
        preview = _preview(await get_program(db), form)
    except Invalid as exc:
        errors = {e.field: e.message for e in exc.errors}
        return await _programme_page(db, me, 422, form=form, errors=errors)
    return await _programme_page(db, me, form=form, preview=preview)


# ------------------------------------------------------------------ plugins per store


def _may_set_plugins(me: Me) -> None:
    """HQ's admin sets plugins per store; a store manager sees their store's, read only."""
    allow_admin(me, "plugins", "plugins:write", _("Your role cannot change plugins."))


def _store_rows(plugin: PluginRead, codes: list[str]) -> list[dict[str, Any]]:
    """Each store the user sees, with whether the plugin is on there (its own setting, or
    the chain's) and its effective configuration."""
    own = {s.store_code: s for s in plugin.stores}
    rows = []
    for code in codes:
        setting = own.get(code)
        rows.append(
            {
                "code": code,
                "enabled": setting.enabled if setting else plugin.enabled,
                "own": setting is not None,
                "config": setting.effective_config if setting else plugin.effective_config,
            }
        )
    return rows


async def _visible_codes(db: AsyncSession, me: Me) -> list[str]:
    codes = await service.user_store_codes(db)
    if me.is_hq:
        return sorted(codes.values())
    return [codes[me.signed.store_id]] if me.signed.store_id in codes else []


@get("/plugins", name="console:plugins")
async def plugins_page(request: Request[Any, Any, Any], db: Db) -> Template:
    me = me_of(request.scope)
    allow(me, "plugins")
    codes = await _visible_codes(db, me)
    described = await plugin_service.describe(db, get_plugin_host())
    return render(
        "plugins.html",
        me,
        plugins=[(p, _store_rows(p, codes)) for p in described],
        may_change=me.role == "hq_admin",
    )


async def _plugin_store_page(
    db: AsyncSession, me: Me, plugin_id: str, code: str, status: int = 200, **extra: Any
) -> Template:
    if plugin_id not in get_plugin_host().loaded:
        raise NotFound(_("No such plugin"))
    codes = await _visible_codes(db, me)
    if code not in codes:
        raise NotFound(_("No such store"))
    plugin = (await plugin_service.describe(db, get_plugin_host(), plugin_id))[0]
    row = _store_rows(plugin, [code])[0]
    values = {**row["config"], **extra.pop("values", {})}
    return render(
        "plugin_store.html",
        me,
        status,
        plugin=plugin,
        store=row,
        fields=forms.inputs(plugin.config_schema, values),
        mark=forms.MARK,
        errors=extra.pop("errors", {}),
        may_change=me.role == "hq_admin",
        **extra,
    )


@get("/plugins/{plugin_id:str}/stores/{code:str}", name="console:plugin-store")
async def plugin_store_page(
    request: Request[Any, Any, Any], db: Db, plugin_id: FromPath[str], code: FromPath[str]
) -> Template:
    me = me_of(request.scope)
    allow(me, "plugins")
    return await _plugin_store_page(db, me, plugin_id, code)


@post(
    "/plugins/{plugin_id:str}/stores/{code:str}", name="console:plugin-store-set", status_code=200
)
async def plugin_store_set(
    request: Request[Any, Any, Any], db: Db, plugin_id: FromPath[str], code: FromPath[str]
) -> Template:
    """Enable, disable or configure a plugin at one store, through the plugins service
    (which checks the configuration against the plugin's schema and audits the change)."""
    me = me_of(request.scope)
    _may_set_plugins(me)
    host = get_plugin_host()
    if plugin_id not in host.loaded:
        raise NotFound(_("No such plugin"))
    form = await form_of(request)
    action = form.get("action", "")
    if action in ("enable", "disable"):
        data = StoreSettingUpdate(enabled=action == "enable")
    elif action == "configure":
        schema = host.config_schema(plugin_id)
        json_schema = schema.model_json_schema() if schema else None
        try:
            typed = forms.submitted(json_schema, form)
            config = {**await _own_config(db, plugin_id, code), **typed}
            data = StoreSettingUpdate(config=config)
            await plugin_service.set_store(db, host, plugin_id, code, data)
        except Invalid as exc:
            errors = {e.field: e.message for e in exc.errors} or {"form": exc.detail}
            return await _plugin_store_page(
                db, me, plugin_id, code, 422, errors=errors, values=_typed_back(form)
            )
        return await _plugin_store_page(db, me, plugin_id, code, saved=True)
    else:
        raise Invalid.field("action", _("Choose what to change"))
    await plugin_service.set_store(db, host, plugin_id, code, data)
    return await _plugin_store_page(db, me, plugin_id, code, saved=True)


async def _own_config(db: AsyncSession, plugin_id: str, code: str) -> dict[str, Any]:
    """The store's own configuration: the fields the form cannot show are kept."""
    plugin = (await plugin_service.describe(db, get_plugin_host(), plugin_id))[0]
    return next((s.config for s in plugin.stores if s.store_code == code), {})


def _typed_back(form: dict[str, str]) -> dict[str, Any]:
    """What the user typed, to show it again beside the errors."""
    return {k.removeprefix(forms.PREFIX): v for k, v in form.items() if k.startswith(forms.PREFIX)}


# ------------------------------------------------------------------ stores and API keys (HQ)


async def _stores_page(db: AsyncSession, me: Me, status: int = 200, **extra: Any) -> Template:
    stores = (await tenancy.list_stores(db, cursor=None, limit=200)).items
    api_keys = (await tenancy.list_api_keys(db, cursor=None, limit=200)).items
    return render(
        "stores.html",
        me,
        status,
        stores=stores,
        api_keys=sorted(api_keys, key=lambda k: (k.revoked_at is not None, k.created_at)),
        codes={s.id: s.code for s in stores},
        may_change=me.role == "hq_admin" and current_actor().has("keys:write"),
        may_change_stores=me.role == "hq_admin" and current_actor().has("stores:write"),
        scope_choices=scope_choices(),
        kinds=STORE_KINDS,
        form=extra.pop("form", {}),
        errors=extra.pop("errors", {}),
        store_form=extra.pop("store_form", {}),
        store_errors=extra.pop("store_errors", {}),
        **extra,
    )


def scope_choices() -> list[dict[str, Any]]:
    """The scopes a key may be given, each with the kinds that allow it and whether it is
    among each kind's defaults (the tenancy service's catalogue, ``tenancy/keys.py``)."""
    return [
        {
            "scope": scope,
            "store": scope in keys.ALLOWED_SCOPES["store"],
            "tenant_default": scope in keys.DEFAULT_SCOPES["tenant"],
            "store_default": scope in keys.DEFAULT_SCOPES["store"],
        }
        for scope in sorted(keys.ALLOWED_SCOPES["tenant"])
    ]


@get("/stores", name="console:stores")
async def stores_page(request: Request[Any, Any, Any], db: Db) -> Template:
    """The chain's stores and its API keys (never their secrets)."""
    me = me_of(request.scope)
    allow(me, "stores")
    return await _stores_page(db, me)


def _may_change_keys(me: Me) -> None:
    allow_admin(me, "stores", "keys:write", _("Your role cannot change API keys."))


@post("/stores/keys", name="console:keys-add", status_code=200)
async def keys_add(request: Request[Any, Any, Any], db: Db) -> Template:
    """A new key through the tenancy service (audited); its secret is shown once."""
    me = me_of(request.scope)
    _may_change_keys(me)
    form = await form_of(request)
    # The ticked scopes; none ticked: the kind's default scopes.
    chosen = [str(v)[:64] for v in (await request.form()).getall("scopes", [])][:100]
    kept: dict[str, Any] = {k: form.get(k, "")[:100] for k in ("name", "kind", "store_code")}
    kept["scopes"] = chosen
    try:
        data = validated(
            ApiKeyCreate,
            {
                "name": form.get("name", "").strip(),
                "kind": form.get("kind", "tenant"),
                "store_code": form.get("store_code") or None,
                "scopes": chosen or None,
            },
        )
        api_key, secret = await tenancy.create_api_key(db, data, str(current_actor().key_id))
    except (Invalid, Forbidden) as exc:  # Forbidden: a scope the admin does not hold
        errors = {e.field.split(".")[0]: e.message for e in exc.errors} or {"form": exc.detail}
        return await _stores_page(db, me, exc.status, form=kept, errors=errors)
    return await _stores_page(db, me, created=(api_key.name, secret))


@post("/stores/keys/{key_id:str}/revoke", name="console:keys-revoke", status_code=200)
async def keys_revoke(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Template:
    me = me_of(request.scope)
    _may_change_keys(me)
    try:
        wanted = uuid.UUID(key_id)
    except ValueError:
        raise NotFound(_("No such key")) from None
    api_key = await tenancy.revoke_api_key(db, wanted)
    return await _stores_page(db, me, revoked=api_key.name)


# ------------------------------------------------------------------ the till


@get("/till", name="console:till")
async def till(request: Request[Any, Any, Any], db: Db, q: FromQuery[str] = "") -> Template:
    me = me_of(request.scope)
    allow(me, "till")
    found = await _find(db, q) if q.strip() else None
    context = await _card_context(db, found) if found else {}
    return render("till.html", me, q=q[:64], searched=bool(q.strip()), **context)


async def _card_context(db: AsyncSession, found: MemberRead) -> dict[str, Any]:
    program = await get_program(db)
    held = await benefits.member_benefits(db, found.id, None)
    return {
        "m": found,
        "usable": [e for e in held.entitlements if e.usable_here and e.remaining > 0],
        "order_ref": new_reference(),
        "opened_at": utcnow().isoformat(timespec="seconds"),
        "use_ref": new_reference(),
        "points_per_yuan": program.points.cash_points_per_yuan,
    }


def _card(me: Me, context: dict[str, Any], **extra: Any) -> Template:
    return render("partials/till_member.html", me, **context, **extra)


async def _refreshed(db: AsyncSession, member_id: uuid.UUID) -> MemberRead:
    """The member after a change, read through the till's lookup view (masked by role)."""
    return await members.member_read(db, await members.get_active_member(db, member_id))


@get("/till/lookup", name="console:till-lookup")
async def till_lookup(request: Request[Any, Any, Any], db: Db, q: FromQuery[str] = "") -> Template:
    me = me_of(request.scope)
    allow(me, "till")
    found = await _find(db, q)
    if found is None:
        return render("partials/till_none.html", me, q=q[:64])
    return _card(me, await _card_context(db, found))


@post("/till/enrol", name="console:till-enrol", status_code=200)
async def till_enrol(request: Request[Any, Any, Any], db: Db) -> Template:
    me = me_of(request.scope)
    allow(me, "till")
    form = await form_of(request)
    data = validated(
        MemberCreate,
        {
            "phone": form.get("phone", ""),
            "name": form.get("name") or None,
            "join_channel": "pos",
        },
    )
    member = await members.create_member(db, data)
    found = await members.member_read(db, member)
    return _card(me, await _card_context(db, found), notice=_("Member enrolled."))


@post("/till/order", name="console:till-order", status_code=200)
async def till_order(request: Request[Any, Any, Any], db: Db) -> Template:
    """Record a paid order for the member, paying part with points if asked. The form's
    hidden reference is the order's external id: a double submit records it once."""
    me = me_of(request.scope)
    allow(me, "till")
    form = await form_of(request)
    member_id = _member_id(form)
    total = fen_of(form.get("amount", ""), "amount")
    used = int_of(form.get("points_used", ""), "points_used")
    program = await get_program(db)
    cash = total - rules.points_value_fen(program.points, used)
    if cash < 0:
        raise Invalid.field("points_used", _("The points are worth more than the order."))
    data = validated(
        OrderIn,
        {
            "channel": "pos",
            "external_id": form.get("reference", ""),
            "member": {"id": str(member_id)},
            "lines": [
                {
                    "sku": "TILL",
                    "name": form.get("item", "")[:200],
                    "category": form.get("category", "")[:64],
                    "quantity": 1,
                    "unit_price_fen": total,
                    "paid_fen": total,
                }
            ],
            "paid_at": _form_time(form.get("opened_at", "")).isoformat(),
            "payment": {"cash_fen": cash, "points_used": used},
        },
    )
    answer = await orders.create_order(db, data)
    found = await _refreshed(db, member_id)
    body = answer.body
    return _card(
        me,
        await _card_context(db, found),
        done={
            "total_fen": body.get("total_fen", total),
            "points_used": body.get("points_used", used),
            "points_earned": body.get("points_earned", 0),
            "replayed": answer.replayed,
            "reference": data.external_id,
        },
    )


@post("/till/benefit", name="console:till-benefit", status_code=200)
async def till_benefit(request: Request[Any, Any, Any], db: Db) -> Template:
    me = me_of(request.scope)
    allow(me, "till")
    form = await form_of(request)
    member_id = _member_id(form)
    code = form.get("code", "")
    if not code:
        raise Invalid.field("code", _("Choose a benefit"))
    data = validated(UseIn, {"idempotency_key": form.get("reference", ""), "quantity": 1})
    await benefits.use(db, member_id, code, data)
    found = await _refreshed(db, member_id)
    return _card(me, await _card_context(db, found), notice=_("Benefit used."))


FORM_LIFETIME = timedelta(hours=12)


def _form_time(text: str) -> datetime:
    """When the order form was opened: the order's ``paid_at``. Part of the form (with its
    reference), so a double submit sends the same order and is recorded once."""
    try:
        opened = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid.field("opened_at", _("Look the member up again")) from None
    if opened.tzinfo is None or not utcnow() - FORM_LIFETIME < opened <= utcnow():
        raise Invalid.field("opened_at", _("Look the member up again"))
    return opened


def _member_id(form: dict[str, str]) -> uuid.UUID:
    try:
        return uuid.UUID(form.get("member_id", ""))
    except ValueError:
        raise Invalid.field("member_id", _("Look the member up first")) from None


# ------------------------------------------------------------------ errors as pages


def _error_html(
    request: Request[Any, Any, Any], status: int, title: str, detail: str
) -> Response[Any]:
    state = request.scope.get("state", {})
    me = state.get("console_me")
    if request.headers.get("hx-request"):
        html = environment().get_template("partials/error.html").render(title=title, detail=detail)
        return Response(
            html,
            status_code=200,
            media_type="text/html",
            headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
        )
    html = environment().get_template("error.html").render(
        status=status, title=title, detail=detail, me=me, csrf=me.csrf if me else "",
        pages=PAGES,
    )  # fmt: skip
    return Response(html, status_code=status, media_type="text/html")


def console_error(request: Request[Any, Any, Any], exc: NestpointError) -> Response[Any]:
    titles = {
        403: _("Not allowed"),
        404: _("Not found"),
        409: _("Already there"),
        422: _("Could not do that"),
    }
    detail = exc.detail
    if exc.errors:
        detail = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
    return _error_html(request, exc.status, titles.get(exc.status, _("Could not do that")), detail)


def console_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    title = _("Not found") if status == 404 else _("Could not do that")
    return _error_html(request, status, title, str(exc.detail))


def role_labels() -> dict[str, str]:
    return {
        "hq_admin": _("HQ admin"),
        "hq_analyst": _("HQ analyst"),
        "store_manager": _("Store manager"),
        "store_clerk": _("Store clerk"),
    }


def language_choices() -> list[tuple[str, str]]:
    return [("zh_CN", "中文"), ("en", "English")]


environment().globals["language_choices"] = language_choices
environment().globals["role_labels"] = role_labels
environment().globals["catalogue_of"] = catalogue_of
environment().globals["current_language"] = language
environment().globals["quote"] = quote
environment().globals["CSRF_FIELD"] = CSRF_FIELD
environment().globals["export_href"] = export.href
environment().filters["yuan_number"] = lambda fen: fen / 100
