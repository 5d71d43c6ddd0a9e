"""API shapes of imports: the request (a file, base64 in JSON), the preview and the job."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from nestpoint.schemas import Strict
from nestpoint.text import optional, required

Kind = Literal["members", "children", "balances", "orders", "tags"]
Format = Literal["csv", "xlsx"]
Status = Literal["queued", "running", "done", "invalid", "failed"]

# A file sent through the API: 48 MiB at most (base64 makes it a third longer). Larger
# files go through `nestpoint import`, which reads them from disk.
MAX_API_FILE_BYTES = 48 * 1024 * 1024
MAX_CONTENT_CHARS = (MAX_API_FILE_BYTES + 2) // 3 * 4
Base64Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT_CHARS)]
Header = Annotated[str, required(100)]
Mapping = Annotated[dict[Annotated[str, required(40)], Header], Field(max_length=40)]


class ImportPreviewIn(Strict):
    """A file to look at before importing it: its header, the mapping and the first rows."""

    kind: Kind
    format: Format = "csv"
    content: Base64Text = Field(description="The file, base64.")
    mapping: Mapping | None = Field(
        default=None,
        description="Our field → the file's column header; fields left out are found by "
        "their usual header names (docs/imports.md).",
    )


class ImportIn(ImportPreviewIn):
    """Import a file (all rows or none); idempotent by ``idempotency_key``."""

    file_name: Annotated[str, optional(200)] = ""
    idempotency_key: Annotated[str, required(120)]


class RowProblem(BaseModel):
    row: int = Field(description="The row's number in the file (the header is row 1).")
    field: str
    problem: str


class PreviewRow(BaseModel):
    row: int
    values: dict[str, str | None]


class ImportPreview(BaseModel):
    kind: Kind
    header: list[str] = Field(description="The file's columns, as written.")
    mapping: dict[str, str] = Field(description="Our field → the file's column.")
    unmapped: list[str] = Field(description="Columns of the file no field reads.")
    rows: list[PreviewRow] = Field(description="The first rows, as mapped.")
    problems: list[RowProblem] = Field(
        description="What is wrong with those rows (checks against the chain's data run "
        "when the import runs)."
    )


class ImportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: Kind
    format: Format
    file_name: str
    mapping: dict[str, str]
    status: Status
    requested_by: str
    size_bytes: int
    sha256: str
    rows_total: int = Field(description="Rows in the file (counted when the job starts).")
    rows_done: int = Field(description="Rows read and checked so far (progress).")
    rows_imported: int = Field(description="Rows written, once done.")
    rows_skipped: int = Field(description="Rows already there (an earlier run), once done.")
    rows_bad: int = Field(description="Rows refused; any makes the import `invalid`.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ImportList(BaseModel):
    items: list[ImportRead]
    next_cursor: str | None = None
