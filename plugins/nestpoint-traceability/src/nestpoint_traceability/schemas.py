"""The plugin's configuration, and the shapes of its routes."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
CodeText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,40}$")]
Kind = Literal["unit", "batch"]
Source = Literal["public", "member"]
Verdict = Literal["genuine", "scanned_before", "counterfeit_warning"]

MAX_CSV_CHARS = 1_000_000  # the API's body limit is 1 MiB: about 5,000 rows
MAX_UNIT_CODES = 1_000  # codes made by one request (one print run)
_URL = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/?#\[\]-]*)?$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TraceabilityConfig(Strict):
    """Every field has a default: the plugin works as soon as it is enabled."""

    counterfeit_warning_scans: int = Field(
        3,
        ge=1,
        le=10_000,
        description="A unit code already scanned this many times warns of a possible "
        "counterfeit (a genuine tin is scanned by its buyer once or twice; a copied code "
        "by everyone who bought a copy).",
    )
    public_base_url: str = Field(
        "",
        max_length=200,
        description="The service's public address (`https://api.example.com`), put in front "
        "of the links the plugin answers (a code's scan URL, a report's link). Empty: the "
        "links are paths (`/public/<chain>/traceability/...`).",
    )
    scan_url_template: str = Field(
        "",
        max_length=300,
        description="What a printed code's QR encodes when the chain has its own page for it "
        "(a mini-program or H5 page that calls the public look-up): a URL with `{code}` in it, "
        "e.g. `https://m.example.com/trace?c={code}`. Empty: the public look-up's own URL.",
    )

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value and not re.match(_URL, value):
            raise ValueError("an http(s) URL without spaces, e.g. https://api.example.com")
        return value.rstrip("/")

    @field_validator("scan_url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if not value:
            return value
        if value.count("{code}") != 1 or value.replace("{code}", "").count("{"):
            raise ValueError("exactly one {code} placeholder, and no other braces")
        if not re.match(_URL, value.replace("{code}", "CODE")):
            raise ValueError("an http(s) URL without spaces, e.g. https://m.example.com/t?c={code}")
        return value


# ------------------------------------------------------------------ imports


class ImportIn(Strict):
    idempotency_key: Key
    csv: str = Field(
        max_length=MAX_CSV_CHARS,
        description="The CSV text: a header row (`sku,batch_no,product_name,production_date,"
        "expiry_date,origin`; the Chinese names 商品编码, 批次号, 品名, 生产日期, 有效期至, 产地 "
        "are understood too), then one batch per row; dates as YYYY-MM-DD.",
    )


class CheckIn(Strict):
    csv: str = Field(max_length=MAX_CSV_CHARS, description="The CSV text, as for an import.")


class ImportedBatch(BaseModel):
    id: uuid.UUID
    sku: str
    batch_no: str
    scan_code: str
    scan_url: str


class ImportRead(BaseModel):
    import_id: uuid.UUID
    rows: int = Field(description="Batches imported (every row of the file).")
    batches: list[ImportedBatch]


# ------------------------------------------------------------------ batches and reports


class ReportInfo(BaseModel):
    content_type: str
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="Hex SHA-256 of the document, to check a copy against.")
    uploaded_at: datetime


class BatchRead(BaseModel):
    id: uuid.UUID
    sku: str
    batch_no: str
    product_name: str
    production_date: date
    expiry_date: date
    origin: str
    scan_code: str
    scan_url: str
    import_id: uuid.UUID
    created_at: datetime
    report: ReportInfo | None
    unit_codes: int = Field(description="Unit codes made for the batch so far.")


class BatchPage(BaseModel):
    items: list[BatchRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


# ------------------------------------------------------------------ unit codes


class UnitCodesIn(Strict):
    idempotency_key: Key
    count: int = Field(ge=1, le=MAX_UNIT_CODES, description="Codes to make (one print run).")


class UnitCode(BaseModel):
    code: str
    url: str = Field(description="What to print as the unit's QR code.")


class UnitCodesRead(BaseModel):
    batch_id: uuid.UUID
    print_run_id: uuid.UUID
    count: int
    codes: list[UnitCode]


# ------------------------------------------------------------------ scans


class Authenticity(BaseModel):
    """The counterfeit hint of a unit code: how often it was scanned before this scan."""

    verdict: Verdict = Field(
        description="`genuine`: the first scan of this code; `scanned_before`: scanned "
        "before, fewer times than the chain's warning threshold; `counterfeit_warning`: "
        "scanned at least that often: the code may have been copied."
    )
    first_scan: bool
    scans_before: int
    first_scanned_at: datetime | None
    last_scanned_at: datetime | None
    warning: bool
    message: str = Field(description="What to show the person who scanned (zh-CN, en).")


class ReportLink(ReportInfo):
    url: str = Field(description="The public link to the document (no key needed).")


class LookupRead(BaseModel):
    """What anyone who scans a code may see: the batch's facts, never a member's data."""

    code: str
    kind: Kind
    product_name: str
    sku: str
    batch_no: str
    production_date: date
    expiry_date: date
    expired: bool = Field(description="The expiry date has passed (the chain's calendar).")
    origin: str
    has_report: bool
    report: ReportLink | None
    authenticity: Authenticity | None = Field(
        description="For a unit code; `null` for a batch code (printed on every package)."
    )
    scanned_at: datetime


class MemberScanIn(Strict):
    idempotency_key: Key
    member_id: uuid.UUID
    code: CodeText


class MemberScanRead(LookupRead):
    scan_id: uuid.UUID
    batch_id: uuid.UUID
    member_id: uuid.UUID


class ScanRead(BaseModel):
    id: uuid.UUID
    code: str
    kind: Kind
    batch_id: uuid.UUID
    scanned_at: datetime
    source: Source
    member_id: uuid.UUID | None
    store_id: uuid.UUID | None
