"""The console's web plumbing: sessions, CSRF, sign-in throttling, templates, translations.

**Sessions.** :class:`ConsoleMiddleware` (route middleware of the console's router) reads
the session cookie (``np_console``: ``<tenant id hex>.<token>``, HttpOnly, SameSite=Lax,
Secure over https), binds the tenant from it and looks the session up under that tenant
(so under row-level security, as API keys are), then puts the user's tenant context and
actor (``console.service.acting``) in the context variables for the rest of the request.
No live session: a page is redirected to the sign-in page (an HTMX request gets
``HX-Redirect``).

**CSRF.** Our own, not Litestar's ``CSRFConfig`` (a double-submit cookie): the session row
holds a random token, every form carries it (``csrf_token``) and HTMX sends it in the
``X-CSRF-Token`` header (``hx-headers`` on the page's body). The middleware refuses any
state-changing request (not GET, HEAD or OPTIONS) whose token does not match the
session's with 403, before a handler runs. The token dies with the session, so a stolen
page is worth nothing after sign-out. The sign-in form, before any session, uses a
double-submit cookie (``np_login_csrf``) of its own.

**Throttling.** Failed sign-ins are counted with the ``limits`` library per chain and
login (``NESTPOINT_CONSOLE_LOGIN_LIMIT``) and per client address
(``NESTPOINT_CONSOLE_LOGIN_CLIENT_LIMIT``), where the API's rate-limit counters live
(Redis when there is one). Over either, sign-in is refused with 429 and a clear message
before the password is checked; each refusal and each failure is audited in the chain.
Successful sign-ins do not count, so a store's clerks behind one address are not locked
out by each other.

**Languages.** Templates hold English msgids (``{% trans %}``, ``_()``); catalogues
``locale/<zh_CN|en>/LC_MESSAGES/messages.po`` are compiled in memory when first used (no
``.mo`` files to build or commit). A request's language: the user's choice (stored on the
user), else the chain's locale; before sign-in the ``np_lang`` cookie or the browser's
``Accept-Language``.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import secrets
import uuid
import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from gettext import NullTranslations
from pathlib import Path
from urllib.parse import parse_qs, quote

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape
from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter
from litestar.enums import ScopeType
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.types import (
    ASGIApp,
    HTTPDisconnectEvent,
    HTTPRequestEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)
from sqlalchemy import select

from nestpoint.api.ratelimit import storage_for
from nestpoint.console import service
from nestpoint.console.service import SignedIn
from nestpoint.context import _actor, _tenant, tenant_context
from nestpoint.db import get_database, scoped_session
from nestpoint.settings import Settings, get_settings
from nestpoint.tenancy.models import Tenant

log = logging.getLogger("nestpoint.console")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LOCALES = HERE / "locale"
CATALOGUES = ("zh_CN", "en")

PREFIX = "/console"
SESSION_COOKIE = "np_console"
LOGIN_CSRF_COOKIE = "np_login_csrf"
LANG_COOKIE = "np_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 64 * 1024
# Reachable without a session.
OPEN_PATHS = (f"{PREFIX}/login", f"{PREFIX}/static/")


# ------------------------------------------------------------------ languages


def catalogue_of(locale: str | None) -> str:
    """The catalogue for a locale (``zh-CN``, ``en``, ``en-GB``...): ``zh_CN`` or ``en``."""
    return "en" if (locale or "").lower().startswith("en") else "zh_CN"


@lru_cache
def translations(catalogue: str) -> NullTranslations:
    """A catalogue compiled in memory from its ``.po`` file (once per process)."""
    path = LOCALES / catalogue / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=catalogue)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


_language: ContextVar[str] = ContextVar("nestpoint_console_language", default="zh_CN")


def gettext(message: str) -> str:
    return translations(_language.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_language.get()).ngettext(singular, plural, n)


_ = gettext


def language() -> str:
    return _language.get()


def set_language(catalogue: str) -> None:
    _language.set(catalogue)


def yuan(fen: int | None) -> str:
    return "" if fen is None else f"¥{fen / 100:,.2f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


@lru_cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["yuan"] = yuan
    env.filters["when"] = when
    env.filters["percent"] = percent
    env.globals["language"] = language
    env.globals["PREFIX"] = PREFIX
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))


# ------------------------------------------------------------------ the signed-in user


@dataclass(frozen=True, slots=True)
class Me:
    """The signed-in user as a page sees them."""

    signed: SignedIn
    tenant_name: str
    tenant_locale: str

    @property
    def role(self) -> str:
        return self.signed.role

    @property
    def is_hq(self) -> bool:
        return self.signed.role in ("hq_admin", "hq_analyst")

    @property
    def csrf(self) -> str:
        return self.signed.csrf_token


def me_of(scope: Scope) -> Me:
    found: Me = scope["state"]["console_me"]
    return found


def cookie_header(
    name: str, value: str, *, secure: bool, max_age: int | None = None, path: str = PREFIX
) -> tuple[bytes, bytes]:
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def cookies_of(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                found.setdefault(name, val)
    return found


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_https(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


async def _send_plain(
    send: Send, status: int, body: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data, "more_body": False})


def refusal_page(status: int, title: str, detail: str) -> str:
    return (
        environment()
        .get_template("error.html")
        .render(status=status, title=title, detail=detail, me=None)
    )


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body (up to :data:`MAX_FORM_BYTES`); whether it was too large."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def replaying(body: bytes) -> Receive:
    sent = False

    async def receive() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            message: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return message
        gone: HTTPDisconnectEvent = {"type": "http.disconnect"}
        return gone

    return receive


def form_value(body: bytes, name: str) -> str | None:
    values = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).get(name)
    return values[0] if values else None


def tokens_match(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


class ConsoleMiddleware:
    """Sessions and CSRF for everything under ``/console/`` (see the module's doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        cookies = cookies_of(scope)
        if path.startswith(OPEN_PATHS):
            set_language(
                catalogue_of(cookies.get(LANG_COOKIE) or _header(scope, b"accept-language"))
            )
            if method not in SAFE_METHODS:
                body, too_large = await read_body(receive)
                given = form_value(body, CSRF_FIELD)
                expected = cookies.get(LOGIN_CSRF_COOKIE, "")
                if too_large or not expected or not tokens_match(given, expected):
                    await self._refuse_csrf(send)
                    return
                receive = replaying(body)
            await self.app(scope, receive, send)
            return
        me = await self._signed_in(cookies.get(SESSION_COOKIE))
        if me is None:
            await self._to_sign_in(scope, send)
            return
        set_language(catalogue_of(me.signed.locale or me.tenant_locale))
        _tenant.set(me.signed.tenant)
        _actor.set(me.signed.actor)
        scope.setdefault("state", {})["console_me"] = me
        if method not in SAFE_METHODS:
            given = _header(scope, CSRF_HEADER)
            body = b""
            if given is None:
                body, too_large = await read_body(receive)
                if too_large:
                    await self._refuse_csrf(send)
                    return
                given = form_value(body, CSRF_FIELD)
                receive = replaying(body)
            if not tokens_match(given, me.csrf):
                await self._refuse_csrf(send)
                return
        await self.app(scope, receive, send)

    async def _signed_in(self, raw: str | None) -> Me | None:
        parsed = service.parse_cookie(raw) if raw else None
        if parsed is None:
            return None
        tenant_id, token_hash = parsed
        settings = get_settings()
        idle = timedelta(minutes=settings.console_idle_minutes)
        with tenant_context(tenant_id):
            async with scoped_session(get_database()) as session:
                tenant = (
                    await session.execute(
                        select(Tenant.name, Tenant.locale).where(
                            Tenant.id == tenant_id, Tenant.active.is_(True)
                        )
                    )
                ).one_or_none()
                if tenant is None:
                    return None
                signed = await service.resolve_session(session, token_hash, idle)
        if signed is None:
            return None
        return Me(signed, tenant.name, tenant.locale)

    async def _to_sign_in(self, scope: Scope, send: Send) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + (f"?{query}" if query else "")
        location = f"{PREFIX}/login?next={quote(target, safe='')}"
        if _header(scope, b"hx-request"):
            await _send_plain(send, 200, "", [(b"hx-redirect", location.encode())])
            return
        await _send_plain(send, 303, "", [(b"location", location.encode())])

    async def _refuse_csrf(self, send: Send) -> None:
        await _send_plain(
            send,
            403,
            refusal_page(
                403,
                _("Refused"),
                _("This form has expired or did not come from this console. Reload the page."),
            ),
        )


# ------------------------------------------------------------------ sign-in throttling


class SignInThrottle:
    """Failed sign-ins per chain and login, and per client address (see the module doc)."""

    def __init__(self, settings: Settings) -> None:
        url = settings.rate_limit_storage_url or settings.redis_url or "memory://"
        self.limiter = FixedWindowRateLimiter(storage_for(url))
        self.per_login: list[RateLimitItem] = _parsed(settings.console_login_limit)
        self.per_client: list[RateLimitItem] = _parsed(settings.console_login_client_limit)

    async def allowed(self, tenant_id: uuid.UUID | None, login: str, client: str) -> bool:
        try:
            for item in self.per_login:
                if not await self.limiter.test(item, "console-login", str(tenant_id), login):
                    return False
            for item in self.per_client:
                if not await self.limiter.test(item, "console-client", client):
                    return False
        except Exception as exc:  # the counters' store is down: do not lock everyone out
            log.warning("sign-in throttle not checked", extra={"error": type(exc).__name__})
        return True

    async def failed(self, tenant_id: uuid.UUID | None, login: str, client: str) -> None:
        try:
            for item in self.per_login:
                await self.limiter.hit(item, "console-login", str(tenant_id), login)
            for item in self.per_client:
                await self.limiter.hit(item, "console-client", client)
        except Exception as exc:
            log.warning("sign-in failure not counted", extra={"error": type(exc).__name__})


def _parsed(spec: str) -> list[RateLimitItem]:
    spec = spec.strip()
    return parse_many(spec) if spec else []


# One per event loop: an asynchronous Redis client belongs to the loop that made it (a
# server has one loop; a test suite's clients may each run their own).
_throttles: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SignInThrottle] = (
    weakref.WeakKeyDictionary()
)


def sign_in_throttle() -> SignInThrottle:
    loop = asyncio.get_running_loop()
    throttle = _throttles.get(loop)
    if throttle is None:
        throttle = _throttles[loop] = SignInThrottle(get_settings())
    return throttle


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
