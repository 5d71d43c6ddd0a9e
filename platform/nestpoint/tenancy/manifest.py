"""Tenants as code: a TOML manifest describes a chain; ``apply`` makes the database match.

``plan`` compares the manifest with the database and lists the changes; ``apply`` makes
them in one transaction. Applying the same manifest twice changes nothing the second time.
An invalid manifest is rejected with every error listed, and nothing is applied.

Stores in the database but not in the manifest are deactivated, never deleted (orders and
members refer to them). See ``docs/tenants.md`` for the format.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits import service as benefits
from nestpoint.benefits.schemas import MAX_CATALOG, BenefitSpec, BundleSpec
from nestpoint.campaigns import service as campaigns
from nestpoint.campaigns.schemas import MAX_CAMPAIGNS, CampaignSpec
from nestpoint.context import tenant_context
from nestpoint.coupons import service as coupons
from nestpoint.coupons.schemas import MAX_TEMPLATES, TemplateIn, TemplateSpec
from nestpoint.db.session import rebind_tenant
from nestpoint.errors import FieldError, Invalid
from nestpoint.loyalty import service as loyalty
from nestpoint.loyalty.schemas import ProgramSpec
from nestpoint.membership import service as membership
from nestpoint.membership.schemas import (
    MAX_PAID_PLANS,
    PaidMembershipSettings,
    PaidPlanManifest,
    PaidPlanSpec,
)
from nestpoint.messaging import service as messaging
from nestpoint.messaging.schemas import MessagingSettings
from nestpoint.plugins import manifest as plugin_manifest
from nestpoint.plugins.schemas import MAX_PLUGINS, PluginManifest
from nestpoint.privacy import service as privacy
from nestpoint.privacy.schemas import PolicyIn
from nestpoint.referrals import service as referrals
from nestpoint.referrals.schemas import ReferralSettings
from nestpoint.schemas import Strict
from nestpoint.segments import rules as segment_rules
from nestpoint.segments import service as segments
from nestpoint.segments.schemas import MAX_SEGMENTS, SegmentIn, SegmentSpec
from nestpoint.settlement import service as settlement
from nestpoint.settlement.schemas import SettlementRules
from nestpoint.tenancy import service
from nestpoint.tenancy.changes import Change
from nestpoint.tenancy.models import Store, Tenant
from nestpoint.tenancy.schemas import (
    MAX_STORES,
    StoreCreate,
    StoreUpdate,
    TenantCreate,
    TenantUpdate,
)
from nestpoint.wallet import service as wallet
from nestpoint.wallet.schemas import WalletRules


class TenantManifest(Strict):
    tenant: TenantCreate
    stores: list[StoreCreate] = Field([], max_length=MAX_STORES)
    # Plugin settings of the chain and its stores (see docs/plugins/howto.md).
    plugins: list[PluginManifest] = Field([], max_length=MAX_PLUGINS)
    # The loyalty programme: points policy, earn rules, tier ladder (see docs/loyalty.md).
    program: ProgramSpec | None = None
    # The benefit catalog and bundles (see docs/benefits.md). Benefits in the database but
    # not in the manifest are deactivated, never deleted (members' history refers to them).
    benefits: list[BenefitSpec] | None = Field(None, max_length=MAX_CATALOG)
    bundles: list[BundleSpec] = Field([], max_length=MAX_CATALOG)
    # How the chain reaches its members: channel order, quiet hours, frequency cap and the
    # transactional messages it sends (see docs/messaging.md).
    messaging: MessagingSettings | None = None
    # The chain's retention rules (see docs/privacy.md); absent: left as they are.
    privacy: PolicyIn | None = None
    # Saved segments (see docs/segments.md), created or replaced by code; segments in the
    # database but not in the manifest are left as they are (HQ makes its own too).
    segments: list[SegmentSpec] = Field([], max_length=MAX_SEGMENTS)
    # Coupon templates (see docs/coupons.md), created or replaced by code; templates not in
    # the manifest are left as they are (their coupons are members' own).
    coupon_templates: list[TemplateSpec] = Field([], max_length=MAX_TEMPLATES)
    # The chain's referral and friend-assist rules (see docs/referrals.md); absent: left as
    # they are.
    referrals: ReferralSettings | None = None
    # The chain's campaign calendar (see docs/campaigns.md): a campaign is created when its
    # code is new and activated when ``active``; one that exists is left as it is (it may
    # have granted under its terms).
    campaigns: list[CampaignSpec] = Field([], max_length=MAX_CAMPAIGNS)
    # Stored value's bonus rules (see docs/wallet.md); absent: left as they are.
    wallet: WalletRules | None = None
    # Paid cards (see docs/paid-membership.md), created or replaced by code (their benefits
    # from the catalog); plans not in the manifest are left as they are (members hold them).
    paid_plans: list[PaidPlanManifest] = Field([], max_length=MAX_PAID_PLANS)
    # The chain's paid-membership rules (grace, reminders, refunds); absent: left as they are.
    paid_membership: PaidMembershipSettings | None = None
    # The franchise settlement rule (see docs/settlement.md); absent: left as it is.
    settlement: SettlementRules | None = None

    @model_validator(mode="after")
    def _unique_store_codes(self) -> TenantManifest:
        codes = [s.code for s in self.stores]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise PydanticCustomError(
                DUPLICATE_STORE_CODE,
                "store codes appear more than once: {codes}",
                {"codes": duplicates},
            )
        return self


# A model validator runs only when every field is valid, and its error has no field path;
# ``load_manifest`` therefore checks duplicates on the raw data and names each repeat.
DUPLICATE_STORE_CODE = "duplicate_store_code"


def _duplicate_store_codes(raw: Any) -> list[FieldError]:
    stores = raw.get("stores") if isinstance(raw, dict) else None
    if not isinstance(stores, list):
        return []
    first: dict[str, int] = {}
    errors: list[FieldError] = []
    for index, store in enumerate(stores):
        code = store.get("code") if isinstance(store, dict) else None
        if not isinstance(code, str):
            continue
        if code in first:
            errors.append(
                FieldError(
                    f"stores.{index}.code",
                    f"store code {code!r} appears more than once"
                    f" (first at stores.{first[code]}.code)",
                )
            )
        else:
            first.setdefault(code, index)
    return errors


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest file's TOML, not yet validated."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(
            f"{path}: not valid TOML: {exc}", errors=[FieldError("(file)", str(exc))]
        ) from exc


def load_manifest(path: Path) -> TenantManifest:
    """Parse and validate a manifest; every problem becomes one ``FieldError``."""
    return validate_manifest(read_manifest(path), str(path))


def validate_manifest(raw: dict[str, Any], source: str) -> TenantManifest:
    """Validate a manifest's TOML (``source`` names it in the error)."""
    errors: list[FieldError] = []
    try:
        manifest = TenantManifest.model_validate(raw)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in err["loc"]) or "(manifest)", err["msg"])
            for err in exc.errors()
            if err["type"] != DUPLICATE_STORE_CODE  # named per field just below
        ]
    errors += _duplicate_store_codes(raw)
    if not errors:
        errors += plugin_manifest.check(manifest.plugins, {s.code for s in manifest.stores})
        errors += _check_segments(manifest)
        errors += _check_coupon_templates(manifest)
        errors += _check_referral_coupons(manifest)
        errors += _check_paid_plans(manifest)
    if errors:
        raise Invalid(f"{source}: {len(errors)} error(s) in the manifest", errors=errors)
    return manifest


def _check_segments(manifest: TenantManifest) -> list[FieldError]:
    """Each segment's rule, checked as the API checks it (a bad node named by its path,
    ``segments.0.rule.all.1.value``), its stores among the manifest's, its code unique."""
    errors: list[FieldError] = []
    stores = {s.code for s in manifest.stores}
    codes = [s.code for s in manifest.segments]
    for i, spec in enumerate(manifest.segments):
        where = f"segments.{i}"
        if codes.count(spec.code) > 1:
            errors.append(FieldError(f"{where}.code", f"segment {spec.code!r} appears twice"))
        try:
            rule = segment_rules.parse_rule(spec.rule, f"{where}.rule")
        except Invalid as exc:
            errors += exc.errors
            continue
        for code in sorted(segment_rules.store_codes(rule) - stores):
            errors.append(FieldError(f"{where}.rule", f"no store with code {code!r}"))
    return errors


def _check_coupon_templates(manifest: TenantManifest) -> list[FieldError]:
    """Each template's code unique, its stores among the manifest's."""
    errors: list[FieldError] = []
    stores = {s.code for s in manifest.stores}
    codes = [t.code for t in manifest.coupon_templates]
    for i, spec in enumerate(manifest.coupon_templates):
        where = f"coupon_templates.{i}"
        if codes.count(spec.code) > 1:
            errors.append(FieldError(f"{where}.code", f"template {spec.code!r} appears twice"))
        for code in sorted(set(spec.store_codes) - stores):
            errors.append(FieldError(f"{where}.store_codes", f"no store with code {code!r}"))
    return errors


def _check_referral_coupons(manifest: TenantManifest) -> list[FieldError]:
    """The coupons the referral rules give are among the manifest's templates."""
    if manifest.referrals is None:
        return []
    templates = {t.code for t in manifest.coupon_templates}
    return [
        FieldError(f"referrals.{field}", f"no coupon template {code!r} in the manifest")
        for field in ("inviter_coupon", "invitee_coupon", "assist_coupon")
        if (code := getattr(manifest.referrals, field)) is not None and code not in templates
    ]


def _check_paid_plans(manifest: TenantManifest) -> list[FieldError]:
    """Each plan's code unique; its benefits among the manifest's catalog when it has one
    (otherwise the database's catalog is checked when the manifest is applied)."""
    errors: list[FieldError] = []
    codes = [p.code for p in manifest.paid_plans]
    catalog = None if manifest.benefits is None else {b.code for b in manifest.benefits}
    for i, spec in enumerate(manifest.paid_plans):
        where = f"paid_plans.{i}"
        if codes.count(spec.code) > 1:
            errors.append(FieldError(f"{where}.code", f"plan {spec.code!r} appears twice"))
        for j, code in enumerate(spec.benefits):
            if catalog is not None and code not in catalog:
                errors.append(FieldError(f"{where}.benefits.{j}", f"no benefit {code!r}"))
    return errors


def _plan_body(spec: PaidPlanManifest) -> PaidPlanSpec:
    return PaidPlanSpec(**spec.model_dump(exclude={"code"}))


def _template_body(spec: TemplateSpec) -> TemplateIn:
    return TemplateIn(**spec.model_dump(exclude={"code"}))


def _diff(current: Any, desired: dict[str, Any]) -> dict[str, Any]:
    return {k: [getattr(current, k), v] for k, v in desired.items() if getattr(current, k) != v}


async def plan(session: AsyncSession, manifest: TenantManifest) -> list[Change]:
    changes: list[Change] = []
    tenant = await service.get_tenant_by_slug(session, manifest.tenant.slug)
    if tenant is None:
        changes.append(Change("create", f"tenant {manifest.tenant.slug}"))
        changes += [Change("create", f"store {s.code}") for s in manifest.stores]
        changes += await plugin_manifest.plan(None, manifest.plugins)
        if manifest.program is not None:
            changes.append(Change("create", "loyalty program"))
        if manifest.messaging is not None:
            changes.append(Change("create", "messaging settings"))
        if manifest.privacy is not None:
            changes.append(Change("create", "privacy policy"))
        changes += [Change("create", f"benefit {b.code}") for b in manifest.benefits or []]
        changes += [Change("create", f"bundle {b.code}") for b in manifest.bundles]
        changes += [Change("create", f"segment {s.code}") for s in manifest.segments]
        changes += [
            Change("create", f"coupon template {t.code}") for t in manifest.coupon_templates
        ]
        if manifest.referrals is not None:
            changes.append(Change("create", "referral settings"))
        changes += [Change("create", f"campaign {c.code}") for c in manifest.campaigns]
        if manifest.wallet is not None:
            changes.append(Change("create", "stored-value rules"))
        changes += [Change("create", f"paid plan {p.code}") for p in manifest.paid_plans]
        if manifest.paid_membership is not None:
            changes.append(Change("create", "paid-membership settings"))
        if manifest.settlement is not None:
            changes.append(Change("create", "settlement rule"))
        return changes
    tenant_diff = _diff(tenant, manifest.tenant.model_dump(exclude={"slug"}))
    if tenant_diff:
        changes.append(Change("update", f"tenant {tenant.slug}", tenant_diff))
    with tenant_context(tenant.id):
        await rebind_tenant(session)
        existing = {s.code: s for s in (await session.scalars(select(Store))).all()}
        plugin_changes = await plugin_manifest.plan(session, manifest.plugins)
        plugin_changes += await _plan_program(session, manifest.program)
        plugin_changes += await _plan_benefits(session, manifest)
        plugin_changes += await _plan_messaging(session, manifest.messaging)
        plugin_changes += await _plan_privacy(session, manifest.privacy)
        plugin_changes += await _plan_segments(session, manifest.segments)
        plugin_changes += await _plan_coupon_templates(session, manifest.coupon_templates)
        plugin_changes += await _plan_referrals(session, manifest.referrals)
        plugin_changes += await _plan_campaigns(session, manifest.campaigns)
        plugin_changes += await _plan_money(session, manifest)
    await rebind_tenant(session)
    for spec in manifest.stores:
        store = existing.pop(spec.code, None)
        if store is None:
            changes.append(Change("create", f"store {spec.code}"))
        elif diff := _diff(store, spec.model_dump(exclude={"code"})):
            changes.append(Change("update", f"store {spec.code}", diff))
    changes += [
        Change("deactivate", f"store {code}") for code, s in sorted(existing.items()) if s.active
    ]
    return changes + plugin_changes


async def apply(session: AsyncSession, manifest: TenantManifest) -> tuple[Tenant, list[Change]]:
    """Make the database match the manifest; returns the tenant and what changed."""
    changes = await plan(session, manifest)
    tenant = await service.get_tenant_by_slug(session, manifest.tenant.slug)
    if tenant is None:
        tenant = await service.create_tenant(session, manifest.tenant)
    else:
        await service.update_tenant(
            session, tenant.id, TenantUpdate(**manifest.tenant.model_dump(exclude={"slug"}))
        )
    with tenant_context(tenant.id):
        await rebind_tenant(session)
        existing = {s.code: s for s in (await session.scalars(select(Store))).all()}
        for spec in manifest.stores:
            if spec.code in existing:
                await service.update_store(
                    session, spec.code, StoreUpdate(**spec.model_dump(exclude={"code"}))
                )
            else:
                await service.create_store(session, spec)
        wanted = {s.code for s in manifest.stores}
        for code, store in existing.items():
            if code not in wanted and store.active:
                await service.update_store(session, code, StoreUpdate(active=False))
        await session.flush()
        await plugin_manifest.apply(session, manifest.plugins)
        if manifest.program is not None:
            await loyalty.put_program(session, manifest.program)
        if manifest.messaging is not None and manifest.messaging != (
            await messaging.stored_messaging_settings(session)
        ):
            await messaging.put_messaging_settings(session, manifest.messaging)
        if manifest.privacy is not None:
            await privacy.set_policy(session, manifest.privacy)  # audited when it changes
        await session.flush()
        await _apply_benefits(session, manifest)
        for segment in manifest.segments:  # audited when it changes
            body = SegmentIn(name=segment.name, rule=segment.rule)
            await segments.put_segment(session, segment.code, body)
        for template in manifest.coupon_templates:  # audited when it changes
            await coupons.put_template(session, template.code, _template_body(template))
        if manifest.referrals is not None:  # after the templates it names; audited if changed
            await referrals.put_settings(session, manifest.referrals)
        await session.flush()
        for campaign in manifest.campaigns:  # after what its audience and actions name
            await campaigns.apply_spec(session, campaign)
        if manifest.wallet is not None:  # audited when it changes
            await wallet.put_rules(session, manifest.wallet)
        for i, paid in enumerate(manifest.paid_plans):  # after the benefits; audited if changed
            await membership.put_plan(session, paid.code, _plan_body(paid), f"paid_plans.{i}.")
        if manifest.paid_membership is not None:  # audited when it changes
            await membership.put_settings(session, manifest.paid_membership)
        if manifest.settlement is not None:  # audited when it changes
            await settlement.put_rules(session, manifest.settlement)
        await session.flush()  # the audit entries, while the tenant is in context
    await rebind_tenant(session)
    return tenant, changes


async def _plan_messaging(
    session: AsyncSession, settings: MessagingSettings | None
) -> list[Change]:
    if settings is None:
        return []
    stored = await messaging.stored_messaging_settings(session)
    if stored is None:
        return [Change("create", "messaging settings")]
    before, after = stored.model_dump(mode="json"), settings.model_dump(mode="json")
    diff = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    return [Change("update", "messaging settings", diff)] if diff else []


async def _plan_privacy(session: AsyncSession, policy: PolicyIn | None) -> list[Change]:
    if policy is None:
        return []
    stored = await privacy.get_policy(session)
    after = policy.model_dump()
    diff = {k: [getattr(stored, k), v] for k, v in after.items() if getattr(stored, k) != v}
    return [Change("update", "privacy policy", diff)] if diff else []


async def _plan_segments(session: AsyncSession, specs: list[SegmentSpec]) -> list[Change]:
    changes: list[Change] = []
    for spec in specs:
        stored = await segments.find_segment(session, spec.code)
        if stored is None:
            changes.append(Change("create", f"segment {spec.code}"))
            continue
        after = {
            "name": spec.name,
            "rule": segment_rules.dump_rule(segment_rules.parse_rule(spec.rule)),
        }
        before = {"name": stored.name, "rule": stored.rule}
        diff = {k: [before[k], v] for k, v in after.items() if before[k] != v}
        if diff:
            changes.append(Change("update", f"segment {spec.code}", diff))
    return changes


async def _plan_coupon_templates(session: AsyncSession, specs: list[TemplateSpec]) -> list[Change]:
    changes: list[Change] = []
    for spec in specs:
        stored = await coupons.find_template(session, spec.code)
        if stored is None:
            changes.append(Change("create", f"coupon template {spec.code}"))
        elif diff := coupons.template_diff(stored, _template_body(spec)):
            changes.append(Change("update", f"coupon template {spec.code}", diff))
    return changes


async def _plan_referrals(session: AsyncSession, settings: ReferralSettings | None) -> list[Change]:
    if settings is None:
        return []
    stored = await referrals.get_settings(session)
    before, after = stored.model_dump(), settings.model_dump()
    diff = {k: [before[k], v] for k, v in after.items() if before[k] != v}
    return [Change("update", "referral settings", diff)] if diff else []


async def _plan_campaigns(session: AsyncSession, specs: list[CampaignSpec]) -> list[Change]:
    """New campaigns are created; a draft the manifest wants active is activated."""
    changes: list[Change] = []
    for spec in specs:
        found = await campaigns.find_campaign(session, spec.code)
        if found is None:
            changes.append(Change("create", f"campaign {spec.code}"))
        elif spec.active and found.status == "draft":
            status = {"status": ["draft", "scheduled"]}
            changes.append(Change("update", f"campaign {spec.code}", status))
    return changes


async def _plan_money(session: AsyncSession, manifest: TenantManifest) -> list[Change]:
    """Stored-value rules, paid plans, paid-membership settings and the settlement rule
    that differ."""
    changes: list[Change] = []
    if manifest.wallet is not None:
        before, after = (await wallet.get_rules(session)).model_dump(), manifest.wallet.model_dump()
        if before != after:
            changes.append(Change("update", "stored-value rules", {"bonus_tiers": [
                before["bonus_tiers"], after["bonus_tiers"]]}))  # fmt: skip
    stored = {p.code: p for p in await membership.list_plans(session)}
    for spec in manifest.paid_plans:
        current = stored.get(spec.code)
        if current is None:
            changes.append(Change("create", f"paid plan {spec.code}"))
            continue
        after = _plan_body(spec).model_dump()
        diff = {k: [getattr(current, k), v] for k, v in after.items() if getattr(current, k) != v}
        if diff:
            changes.append(Change("update", f"paid plan {spec.code}", diff))
    if manifest.paid_membership is not None:
        before = (await membership.get_settings(session)).model_dump()
        after = manifest.paid_membership.model_dump()
        diff = {k: [before[k], v] for k, v in after.items() if before[k] != v}
        if diff:
            changes.append(Change("update", "paid-membership settings", diff))
    if manifest.settlement is not None:
        before = (await settlement.get_rules(session)).model_dump()
        after = manifest.settlement.model_dump()
        diff = {k: [before[k], v] for k, v in after.items() if before[k] != v}
        if diff:
            changes.append(Change("update", "settlement rule", diff))
    return changes


async def _plan_program(session: AsyncSession, program: ProgramSpec | None) -> list[Change]:
    """The programme's sections that differ from the database (none when not in the file)."""
    if program is None:
        return []
    current = await loyalty.load_program(session)
    if current.version == 0:
        return [Change("create", "loyalty program")]
    before, after = loyalty.to_spec(current).model_dump(), program.model_dump()
    diff = {k: ["(current)", "(manifest)"] for k in after if before[k] != after[k]}
    return [Change("update", "loyalty program", diff)] if diff else []


async def _plan_benefits(session: AsyncSession, manifest: TenantManifest) -> list[Change]:
    """Benefits and bundles to create, update or deactivate (none when not in the file)."""
    if manifest.benefits is None:
        return []
    current = {b.code: b for b in await benefits.list_benefits(session)}
    changes: list[Change] = []
    for listed in manifest.benefits:
        spec = await benefits.normalised(session, listed)
        before = current.pop(spec.code, None)
        if before is None:
            changes.append(Change("create", f"benefit {spec.code}"))
        else:
            old = BenefitSpec.model_validate(before.model_dump(exclude={"id", "updated_at"}))
            diff = _spec_diff(old.model_dump(mode="json"), spec.model_dump(mode="json"))
            if diff:
                changes.append(Change("update", f"benefit {spec.code}", diff))
    changes += [
        Change("deactivate", f"benefit {code}") for code, b in sorted(current.items()) if b.active
    ]
    bundles = {b.code: b for b in await benefits.list_bundles(session)}
    for bundle in manifest.bundles:
        known = bundles.get(bundle.code)
        if known is None:
            changes.append(Change("create", f"bundle {bundle.code}"))
        elif diff := _spec_diff(
            BundleSpec(**known.model_dump(exclude={"id"})).model_dump(mode="json"),
            bundle.model_dump(mode="json"),
        ):
            changes.append(Change("update", f"bundle {bundle.code}", diff))
    return changes


def _spec_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: [before[k], v] for k, v in after.items() if before.get(k) != v}


async def _apply_benefits(session: AsyncSession, manifest: TenantManifest) -> None:
    """The catalog after the programme and plugins it refers to; errors name the entry
    (``benefits.<i>.<field>``)."""
    if manifest.benefits is None:
        return
    wanted = {spec.code for spec in manifest.benefits}
    for index, spec in enumerate(manifest.benefits):
        await benefits.put_benefit(session, spec, prefix=f"benefits.{index}.")
    for stale in await benefits.list_benefits(session):
        if stale.code not in wanted and stale.active:
            spec = BenefitSpec.model_validate(stale.model_dump(exclude={"id", "updated_at"}))
            await benefits.put_benefit(session, spec.model_copy(update={"active": False}))
    for index, bundle in enumerate(manifest.bundles):
        await benefits.put_bundle(session, bundle, prefix=f"bundles.{index}.")
