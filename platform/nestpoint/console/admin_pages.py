"""The console's chain administration (HQ): making and editing stores, a plugin for the whole
chain and its secrets, and the programme (tier ladder, earn rules, points policy).

As every page, each handler calls the service the API's route calls, as the signed-in user's
actor, so the rules and the audit trail are the API's: ``store.created`` and
``store.updated`` (tenancy), ``plugin.chain_set``, ``plugin.disabled``, ``plugin.secret_set``
and ``plugin.secret_cleared`` (plugins), ``loyalty.updated`` (loyalty). HQ's admin changes;
HQ's analyst reads; store roles get 403. A refused value is shown beside its field, and the
request's transaction is rolled back first, so nothing of a refused change is kept.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import Db
from nestpoint.console import forms
from nestpoint.console.pages import (
    _may_set_plugins,
    _programme_page,
    _stores_page,
    _typed_back,
    allow,
    allow_admin,
    form_of,
    render,
    validated,
)
from nestpoint.console.service import user_store_codes
from nestpoint.console.web import Me, _, environment, me_of
from nestpoint.context import current_actor, require_tenant
from nestpoint.db.sql import lock_job
from nestpoint.errors import Conflict, Forbidden, Invalid, NestpointError, NotFound
from nestpoint.loyalty.schemas import ProgramSpec
from nestpoint.loyalty.service import load_program, put_program, to_spec
from nestpoint.plugins import secrets
from nestpoint.plugins import service as plugin_service
from nestpoint.plugins.manager import PluginHost, get_plugin_host
from nestpoint.plugins.schemas import ChainSettingUpdate, SecretWrite
from nestpoint.tenancy import service as tenancy
from nestpoint.tenancy.schemas import STORE_KINDS, StoreCreate, StoreUpdate

STORE_FIELDS = ("code", "name", "kind", "format", "region", "address")


def errors_of(exc: NestpointError) -> dict[str, str]:
    """A refusal's messages by the form field they name (``form`` when it names none)."""
    return {e.field: e.message for e in exc.errors} or {"form": exc.detail}


# ------------------------------------------------------------------ stores (HQ)


def store_kind_label(kind: str) -> str:
    return {"direct": _("Direct"), "franchise": _("Franchise")}.get(kind, kind)


environment().globals["store_kind_label"] = store_kind_label


def _may_change_stores(me: Me) -> None:
    allow_admin(me, "stores", "stores:write", _("Your role cannot change stores."))


@post("/stores", name="console:stores-add", status_code=200)
async def stores_add(request: Request[Any, Any, Any], db: Db) -> Template:
    """A new store through the tenancy service (audited as ``store.created``); it trades at
    once. A code already taken is a 409 naming ``code``, so a double submit makes one."""
    me = me_of(request.scope)
    _may_change_stores(me)
    form = await form_of(request)
    typed = {name: form.get(name, "")[:500] for name in STORE_FIELDS}
    try:
        data = validated(StoreCreate, {k: v.strip() for k, v in typed.items() if v.strip()})
        store = await tenancy.create_store(db, data)
    except (Invalid, Conflict) as exc:
        await db.rollback()
        return await _stores_page(db, me, exc.status, store_form=typed, store_errors=errors_of(exc))
    return await _stores_page(db, me, store_created=store.code)


async def _store_page(
    db: AsyncSession, me: Me, code: str, status: int = 200, **extra: Any
) -> Template:
    store = await tenancy.get_store(db, code)
    return render(
        "store.html",
        me,
        status,
        store=store,
        kinds=STORE_KINDS,
        form=extra.pop("form", None) or {n: getattr(store, n) for n in STORE_FIELDS},
        errors=extra.pop("errors", {}),
        may_change=me.role == "hq_admin" and current_actor().has("stores:write"),
        **extra,
    )


@get("/store/{code:str}", name="console:store")
async def store_page(request: Request[Any, Any, Any], db: Db, code: FromPath[str]) -> Template:
    me = me_of(request.scope)
    allow(me, "stores")
    return await _store_page(db, me, code)


@post("/store/{code:str}", name="console:store-change", status_code=200)
async def store_change(request: Request[Any, Any, Any], db: Db, code: FromPath[str]) -> Template:
    """Save a store's name, kind, format, region and address, or close or reopen it (a
    closed store stays readable and takes no new business), through the tenancy service
    (audited as ``store.updated`` with what changed; saving unchanged values changes
    nothing)."""
    me = me_of(request.scope)
    _may_change_stores(me)
    await tenancy.get_store(db, code)  # 404 before anything else
    form = await form_of(request)
    action = form.get("action", "")
    typed = {name: form.get(name, "")[:500] for name in STORE_FIELDS[1:]}
    wanted: dict[str, Any]
    if action == "save":
        wanted = {k: v.strip() for k, v in typed.items()}
    elif action in ("close", "reopen"):
        wanted = {"active": action == "reopen"}
    else:
        raise Invalid.field("action", _("Choose what to change"))
    try:
        store, diff = await tenancy.update_store(db, code, validated(StoreUpdate, wanted))
    except (Invalid, Conflict) as exc:
        await db.rollback()
        return await _store_page(
            db, me, code, exc.status, form={"code": code, **typed}, errors=errors_of(exc)
        )
    return await _store_page(db, me, store.code, saved=bool(diff))


# ------------------------------------------------------------------ a plugin for the chain


def _chain_reader(me: Me) -> None:
    """HQ's pages: a store manager sees their store's setting only (its own page)."""
    allow(me, "plugins")
    if not me.is_hq:
        raise Forbidden(_("Only HQ sets a plugin for the whole chain."))


async def _plugin_chain_page(
    db: AsyncSession, me: Me, plugin_id: str, status: int = 200, **extra: Any
) -> Template:
    host = get_plugin_host()
    if plugin_id not in host.loaded:
        raise NotFound(_("No such plugin"))
    plugin = (await plugin_service.describe(db, host, plugin_id))[0]
    values = {**plugin.effective_config, **extra.pop("values", {})}
    fields = forms.inputs(plugin.config_schema, values)
    errors: dict[str, str] = extra.pop("errors", {})
    inputs = {forms.PREFIX + f.name for f in fields if f.kind != "shown"}
    return render(
        "plugin_chain.html",
        me,
        status,
        plugin=plugin,
        fields=fields,
        mark=forms.MARK,
        secrets=await secrets.describe(db, host, plugin_id),
        errors=errors,
        # Refusals of what no input shows (a nested field): listed under the form.
        unshown_errors={
            k: v for k, v in errors.items() if k.startswith(forms.PREFIX) and k not in inputs
        },
        may_change=me.role == "hq_admin" and current_actor().has("plugins:write"),
        **extra,
    )


@get("/plugins/{plugin_id:str}", name="console:plugin-chain")
async def plugin_chain_page(
    request: Request[Any, Any, Any], db: Db, plugin_id: FromPath[str]
) -> Template:
    """A plugin for the whole chain: on or off, whether stores may set it, its configuration
    and its secrets (whether and when each was set; never a value)."""
    me = me_of(request.scope)
    _chain_reader(me)
    return await _plugin_chain_page(db, me, plugin_id)


# The chain page's switches: what each asks the plugins service to change.
CHAIN_SWITCHES = {
    "enable": ChainSettingUpdate(enabled=True),
    "disable": ChainSettingUpdate(enabled=False),
    "allow_stores": ChainSettingUpdate(allow_store_opt_in=True),
    "forbid_stores": ChainSettingUpdate(allow_store_opt_in=False),
}


async def _chain_change(
    request: Request[Any, Any, Any], plugin_id: str
) -> tuple[Me, PluginHost, dict[str, str]]:
    """Who changes a loaded plugin for the whole chain (HQ's admin), and what they sent."""
    me = me_of(request.scope)
    _chain_reader(me)
    _may_set_plugins(me)
    host = get_plugin_host()
    if plugin_id not in host.loaded:
        raise NotFound(_("No such plugin"))
    return me, host, await form_of(request)


@post("/plugins/{plugin_id:str}", name="console:plugin-chain-set", status_code=200)
async def plugin_chain_set(
    request: Request[Any, Any, Any], db: Db, plugin_id: FromPath[str]
) -> Template:
    """Enable, disable, let stores set, or configure a plugin for the whole chain, or turn it
    off everywhere, through the plugins service (schema-checked, audited)."""
    me, host, form = await _chain_change(request, plugin_id)
    action = form.get("action", "")
    if action == "disable_everywhere":
        await plugin_service.disable_everywhere(db, host, plugin_id)
        return await _plugin_chain_page(db, me, plugin_id, saved=True)
    try:
        if action in CHAIN_SWITCHES:
            data = CHAIN_SWITCHES[action]
        else:
            data = await _chain_config(db, plugin_id, action, form)
        await plugin_service.set_chain(db, host, plugin_id, data)
    except (Invalid, Conflict) as exc:
        await db.rollback()
        return await _plugin_chain_page(
            db, me, plugin_id, exc.status, errors=errors_of(exc), values=_typed_back(form)
        )
    return await _plugin_chain_page(db, me, plugin_id, saved=True)


async def _chain_config(
    db: AsyncSession, plugin_id: str, action: str, form: dict[str, str]
) -> ChainSettingUpdate:
    """The chain's configuration the form sent, over the fields it could not show (kept)."""
    if action != "configure":
        raise Invalid.field("action", _("Choose what to change"))
    host = get_plugin_host()
    schema = host.config_schema(plugin_id)
    submitted = forms.submitted(schema.model_json_schema() if schema else None, form)
    kept = (await plugin_service.describe(db, host, plugin_id))[0].config
    return ChainSettingUpdate(config={**kept, **submitted})


@post(
    "/plugins/{plugin_id:str}/secrets/{name:str}",
    name="console:plugin-secret-set",
    status_code=200,
)
async def plugin_secret_set(
    request: Request[Any, Any, Any], db: Db, plugin_id: FromPath[str], name: FromPath[str]
) -> Template:
    """Set, replace or clear one of the plugin's secrets for the chain. The value is
    write-only: stored sealed, audited by its name only, never shown back on any page."""
    me, host, form = await _chain_change(request, plugin_id)
    action = form.get("action", "")
    try:
        if action == "set":
            value = validated(SecretWrite, {"value": form.get("value", "")}).value
            await secrets.put(db, host, plugin_id, name, value)
        elif action == "clear":
            await secrets.clear(db, host, plugin_id, name)
        else:
            raise Invalid.field("action", _("Choose what to change"))
    except Invalid as exc:
        await db.rollback()
        errors = {f"secret.{name}": e.message for e in exc.errors} or {"form": exc.detail}
        return await _plugin_chain_page(db, me, plugin_id, 422, errors=errors)
    return await _plugin_chain_page(db, me, plugin_id, secret_saved=name)


# ------------------------------------------------------------------ the tier ladder (HQ)

TIER_NUMBERS = ("threshold", "earn_rate_percent", "redeem_cap_percent", "protection_days")
CAPS = ("cap_per_order", "cap_per_day")
NEW_TIER = "new"  # the form's prefix of the tier being added


@post("/programme", name="console:programme-change", status_code=200)
async def programme_change(request: Request[Any, Any, Any], db: Db) -> Template:
    """HQ's admin edits the ladder (each tier's name, numbers and benefits), adds a tier,
    removes one, and sets the caps, the earn rules' multipliers and exclusions and the points
    policy's shown fields (a store multiplier needs a store of the chain); the loyalty
    service replaces the programme (audited as ``loyalty.updated``; members of a removed
    tier move one rung down). The ladder is kept in the order of its thresholds, so changing
    thresholds reorders it. Fields the form leaves out keep their value. The form carries
    the programme's version: one saved on an older version (another admin saved since, or
    the same form sent twice) is a 409 and changes nothing, so a tier's row never receives
    another tier's values."""
    me = me_of(request.scope)
    allow(me, "programme")
    if not current_actor().has("loyalty:write"):
        raise Forbidden(_("Your role cannot change the programme."))
    form = await form_of(request)
    await lock_job(db, "console.programme", require_tenant().tenant_id)  # one save at a time
    program = await load_program(db)
    if form.get("version", str(program.version)) != str(program.version):
        stale = _("The programme changed since you opened this page: look at it again.")
        await db.rollback()
        return await _programme_page(db, me, 409, errors={"form": stale})
    spec = to_spec(program).model_dump()
    errors: dict[str, str] = {}
    origins = _ladder(spec, form, errors)
    _caps(spec, form, errors)
    rows = _multipliers(spec, form, errors, set((await user_store_codes(db)).values()))
    _exclusions(spec, form)
    _points(spec, form, errors)
    if not errors:
        try:
            data = ProgramSpec.model_validate(spec)
        except ValidationError as exc:
            errors = _spec_errors(exc, origins, rows)
    if errors:
        await db.rollback()
        return await _programme_page(db, me, 422, errors=errors, edited=form)
    changed = (await put_program(db, data))[1]
    return await _programme_page(db, me, saved=changed)


def _ladder(spec: dict[str, Any], form: dict[str, str], errors: dict[str, str]) -> list[str]:
    """Apply the form to ``spec["tiers"]``: edits, the removed tier (the ``remove`` button's
    code), the new tier; sorted by threshold. Returns each tier's form prefix, in order."""
    rows = [
        (f"tiers.{i}", _edited(tier, form, f"tiers.{i}", errors))
        for i, tier in enumerate(spec["tiers"])
        if tier["code"] != form.get("remove")
    ]
    if any(v.strip() for k, v in form.items() if k.startswith(f"{NEW_TIER}.")):
        code = form.get(f"{NEW_TIER}.code", "").strip()
        added = {"code": code} if code else {}  # none: "Field required" beside the code
        rows.append((NEW_TIER, _edited(added, form, NEW_TIER, errors)))
    rows.sort(key=lambda row: int(row[1].get("threshold", 0)))
    spec["tiers"] = [tier for _prefix, tier in rows]
    return [prefix for prefix, _tier in rows]


def _edited(
    tier: dict[str, Any], form: dict[str, str], prefix: str, errors: dict[str, str]
) -> dict[str, Any]:
    """``tier`` with the values the form sent under ``prefix`` (an empty number of a new
    tier: its default)."""
    for name in TIER_NUMBERS:
        text = form.get(f"{prefix}.{name}", "").strip()
        if f"{prefix}.{name}" not in form or (prefix == NEW_TIER and not text):
            continue
        try:
            tier[name] = int(text)
        except ValueError:
            errors[f"{prefix}.{name}"] = _("Enter a whole number")
    if f"{prefix}.name" in form:
        tier["name"] = form[f"{prefix}.name"].strip()
    if f"{prefix}.benefits" in form:
        tier["benefits"] = [b.strip() for b in form[f"{prefix}.benefits"].split(",") if b.strip()]
    return tier


def _caps(spec: dict[str, Any], form: dict[str, str], errors: dict[str, str]) -> None:
    for name in CAPS:
        key = f"earn_rules.{name}"
        if key in form:
            text = form[key].strip()
            try:
                spec["earn_rules"][name] = int(text) if text else None
            except ValueError:
                errors[key] = _("Enter a whole number")


# The earn rules' multipliers: each is rows of a code and a percent (100 = x1) on the form.
MULTIPLIERS = ("category_multipliers", "store_multipliers")
EXCLUSIONS = ("excluded_categories", "excluded_skus")
POINTS_NUMBERS = ("cash_points_per_yuan", "pending_days", "expiry_months")


def _multipliers(
    spec: dict[str, Any], form: dict[str, str], errors: dict[str, str], stores: set[str]
) -> dict[str, str]:
    """Apply the multiplier rows (``earn_rules.<kind>.<i>.code|percent|remove``; an empty
    row is none, a ticked ``remove`` drops it). Returns each code's row prefix, so the
    programme's refusal of a code or a percent lands beside its row."""
    origins: dict[str, str] = {}
    for kind in MULTIPLIERS:
        base = f"earn_rules.{kind}"
        indexes = sorted({int(k.split(".")[2]) for k in form if _row_key(k, base)})
        if not indexes:
            continue  # a form without the rows (removing a tier): the multipliers stay
        chosen: dict[str, Any] = {}
        for i in indexes:
            prefix = f"{base}.{i}"
            code = form.get(f"{prefix}.code", "").strip()
            text = form.get(f"{prefix}.percent", "").strip()
            if form.get(f"{prefix}.remove") or not (code or text):
                continue
            if not code:
                errors[f"{prefix}.code"] = _("Enter a code")
            elif code in chosen:
                errors[f"{prefix}.code"] = _("This code is already in the list")
            elif kind == "store_multipliers" and code not in stores:
                errors[f"{prefix}.code"] = _("No store has this code")
            try:
                chosen[code] = int(text)
            except ValueError:
                errors[f"{prefix}.percent"] = _("Enter a whole number")
            origins[f"{kind}.{code}"] = prefix
        spec["earn_rules"][kind] = chosen
    return origins


def _row_key(key: str, base: str) -> bool:
    parts = key.split(".")
    return key.startswith(base + ".") and len(parts) == 4 and parts[2].isdigit()


def _exclusions(spec: dict[str, Any], form: dict[str, str]) -> None:
    for kind in EXCLUSIONS:
        key = f"earn_rules.{kind}"
        if key in form:
            spec["earn_rules"][kind] = [c.strip() for c in form[key].split(",") if c.strip()]


def _points(spec: dict[str, Any], form: dict[str, str], errors: dict[str, str]) -> None:
    """The points policy's fields the page shows (the others keep their value)."""
    for name in POINTS_NUMBERS:
        key = f"points.{name}"
        if key in form:
            try:
                spec["points"][name] = int(form[key].strip())
            except ValueError:
                errors[key] = _("Enter a whole number")
    if "points.expiry" in form:
        spec["points"]["expiry"] = form["points.expiry"].strip()


def _spec_errors(
    exc: ValidationError, origins: list[str], rows: dict[str, str] | None = None
) -> dict[str, str]:
    """The programme's refusals by the form's field names (``tiers.<i>.<field>`` as the
    page numbered the tiers, ``new.<field>`` for the tier being added, a multiplier's row,
    an exclusion list's field)."""
    errors: dict[str, str] = {}
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if len(loc) >= 2 and loc[0] == "tiers" and loc[1].isdigit() and int(loc[1]) < len(origins):
            loc = [origins[int(loc[1])], *loc[2:3]]  # a benefit's error: the benefits field
        elif len(loc) >= 3 and loc[0] == "earn_rules" and loc[1] in MULTIPLIERS:
            prefix = (rows or {}).get(f"{loc[1]}.{loc[2]}")
            field = "code" if loc[3:4] == ["[key]"] else "percent"
            loc = [prefix, field] if prefix else loc[:2]
        elif len(loc) >= 3 and loc[0] == "earn_rules" and loc[1] in EXCLUSIONS:
            loc = loc[:2]  # one list's item: the list's field
        errors[".".join(loc) or "form"] = e["msg"]
    return errors
