"""Imports every model so ``Base.metadata`` is complete (Alembic and tests use this)."""

from nestpoint.audit.models import AuditEntry
from nestpoint.benefits.models import (
    Benefit,
    BenefitBundle,
    BenefitUse,
    BundleGrant,
    Entitlement,
)
from nestpoint.billing.models import BillingPlan, BillingSubscription, BillingUsage, BillingWarning
from nestpoint.campaigns.models import Campaign, CampaignEventCursor, CampaignGrant
from nestpoint.console.models import ConsoleSession, ConsoleUser
from nestpoint.coupons.models import Coupon, CouponEvent, CouponTemplate
from nestpoint.db.base import Base
from nestpoint.events.models import OutboxEvent
from nestpoint.exports.models import Export, ExportChunk
from nestpoint.idempotency.models import IdempotencyKey
from nestpoint.imports.models import Import, ImportChunk, ImportKey
from nestpoint.jobs.models import DailyRun
from nestpoint.loyalty.models import LoyaltyProgram, TierDefinition
from nestpoint.memberapi.models import MemberToken, WechatApp
from nestpoint.members.models import (
    Child,
    Member,
    MemberConsent,
    MemberIdentity,
    MemberPhoneChange,
)
from nestpoint.membership.models import (
    PaidMembership,
    PaidMembershipCharge,
    PaidMembershipSettingsRow,
    PaidPlan,
)
from nestpoint.messaging.models import (
    Message,
    MessageAttempt,
    MessageTemplate,
    MessagingSettingsRow,
)
from nestpoint.orders.models import Order, OrderLine, Refund
from nestpoint.payments.models import (
    Payment,
    PaymentRefund,
    PlatformStripeEvent,
    StripeAccount,
    StripeCustomer,
    StripeEvent,
)
from nestpoint.plugins.models import PluginDelivery, PluginEnablement, PluginFailure, PluginSecret
from nestpoint.points.models import (
    PointAccount,
    PointEntry,
    PointHold,
    PointHoldAllocation,
    PointLot,
)
from nestpoint.privacy.models import MemberErasure, PrivacyPolicy, RetentionRun
from nestpoint.referrals.models import (
    Assist,
    AssistHelper,
    Referral,
    ReferralCode,
    ReferralSettingsRow,
)
from nestpoint.segments.models import MemberSegment, Segment, SegmentThresholdsRow
from nestpoint.settlement.models import SettlementLine, SettlementPeriod, SettlementRulesRow
from nestpoint.tenancy.models import ApiKey, PlatformKey, Store, Tenant
from nestpoint.tiers.models import GrowthEntry, TierChange
from nestpoint.wallet.models import (
    WalletAccount,
    WalletEntry,
    WalletLot,
    WalletRulesRow,
    WalletTopup,
)

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Assist",
    "AssistHelper",
    "AuditEntry",
    "Benefit",
    "BenefitBundle",
    "BenefitUse",
    "BillingPlan",
    "BillingSubscription",
    "BillingUsage",
    "BillingWarning",
    "BundleGrant",
    "Campaign",
    "CampaignEventCursor",
    "CampaignGrant",
    "Child",
    "ConsoleSession",
    "ConsoleUser",
    "Coupon",
    "CouponEvent",
    "CouponTemplate",
    "DailyRun",
    "Entitlement",
    "Export",
    "ExportChunk",
    "GrowthEntry",
    "IdempotencyKey",
    "Import",
    "ImportChunk",
    "ImportKey",
    "LoyaltyProgram",
    "Member",
    "MemberConsent",
    "MemberErasure",
    "MemberIdentity",
    "MemberPhoneChange",
    "MemberSegment",
    "MemberToken",
    "Message",
    "MessageAttempt",
    "MessageTemplate",
    "MessagingSettingsRow",
    "Order",
    "OrderLine",
    "OutboxEvent",
    "PaidMembership",
    "PaidMembershipCharge",
    "PaidMembershipSettingsRow",
    "PaidPlan",
    "Payment",
    "PaymentRefund",
    "PlatformKey",
    "PlatformStripeEvent",
    "PluginDelivery",
    "PluginEnablement",
    "PluginFailure",
    "PluginSecret",
    "PointAccount",
    "PointEntry",
    "PointHold",
    "PointHoldAllocation",
    "PointLot",
    "PrivacyPolicy",
    "Referral",
    "ReferralCode",
    "ReferralSettingsRow",
    "Refund",
    "RetentionRun",
    "Segment",
    "SegmentThresholdsRow",
    "SettlementLine",
    "SettlementPeriod",
    "SettlementRulesRow",
    "Store",
    "StripeAccount",
    "StripeCustomer",
    "StripeEvent",
    "Tenant",
    "TierChange",
    "TierDefinition",
    "WalletAccount",
    "WalletEntry",
    "WalletLot",
    "WalletRulesRow",
    "WalletTopup",
    "WechatApp",
    "metadata",
]
