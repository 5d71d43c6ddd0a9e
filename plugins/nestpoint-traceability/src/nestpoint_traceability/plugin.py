"""The traceability plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from nestpoint.plugins.api import (
    ConfigSchemaRegistry,
    Conflict,
    Invalid,
    MigrationRegistry,
    NotFound,
    PluginContext,
    RouteRegistry,
    hookimpl,
)
from nestpoint_traceability import service
from nestpoint_traceability.routes import HANDLERS, PUBLIC_HANDLERS
from nestpoint_traceability.schemas import MemberScanIn, TraceabilityConfig, UnitCodesIn

# The demo's batches: fixed dates, so every start imports the same file (a replay).
DEMO_CSV = """sku,batch_no,product_name,production_date,expiry_date,origin
FM-A2-900,A2-20260315,a2 至初 婴儿配方奶粉 1段 900g,2026-03-15,2028-03-14,新西兰 New Zealand
FM-A2-900,A2-20260610,a2 至初 婴儿配方奶粉 1段 900g,2026-06-10,2028-06-09,新西兰 New Zealand
DP-NB-84,HG-2604-07,好奇 心钻装 纸尿裤 NB 84片,2026-04-07,2029-04-06,中国 天津 Tianjin
RC-OR-200,RC-2401-02,有机米粉 200g,2024-01-02,2025-07-01,中国 黑龙江 Heilongjiang
"""
# A one-page PDF: the demo's inspection report of the first batch.
DEMO_REPORT = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 120]/Contents 4 0 R"
    b"/Resources<</Font<</F1 5 0 R>>>>>>endobj\n"
    b"4 0 obj<</Length 55>>stream\nBT /F1 14 Tf 20 60 Td (Inspection report: passed) Tj ET\n"
    b"endstream endobj\n5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(TraceabilityConfig)


@hookimpl
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    registry.add(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    registry.add(*HANDLERS)
    registry.add_public(*PUBLIC_HANDLERS)


@hookimpl
async def nestpoint_collect_member_data(member_id: str, plugin: PluginContext) -> dict[str, Any]:
    """The member's scans, for their data export."""
    async with plugin.session() as db:
        return await service.member_data(db, uuid.UUID(member_id))


@hookimpl
async def nestpoint_erase_member_data(member_id: str, plugin: PluginContext) -> dict[str, int]:
    """The member's scans lose the member (they stay as anonymous look-ups)."""
    async with plugin.session() as db:
        return await service.erase_member(db, uuid.UUID(member_id))


@hookimpl
async def nestpoint_seed_demo(plugin: PluginContext, member_ids: list[str]) -> None:
    """Four batches (one expired), a report, five unit codes of the first batch, and the
    first members' scans of one code: scanned often enough to show the warning. Every step
    is idempotent by key, so each store's call after the first changes nothing."""
    chain = PluginContext(plugin.plugin_id, plugin.tenant_id, None, plugin.config)
    try:
        async with chain.session() as db:
            _, imported, _ = await service.import_csv(db, chain, "demo-traceability-0", DEMO_CSV)
        first = uuid.UUID(imported["batches"][0]["id"])
        async with chain.session() as db:
            await service.put_report(db, chain, first, "application/pdf", DEMO_REPORT)
        async with chain.session() as db:
            units = UnitCodesIn(idempotency_key="demo-traceability-units-0", count=5)
            _, made, _ = await service.make_unit_codes(db, chain, first, units)
    except (Invalid, Conflict, NotFound):  # a chain that imported other batches by hand
        return
    code = made["codes"][1]["code"]
    for n, member in enumerate(member_ids[:4]):
        data = MemberScanIn(
            idempotency_key=f"demo-traceability-scan-{n}", member_id=uuid.UUID(member), code=code
        )
        try:
            async with plugin.session() as db:
                await service.member_scan(db, plugin, data)
        except (Invalid, Conflict, NotFound):
            continue
