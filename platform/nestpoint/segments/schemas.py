"""API shapes of segments: a rule to preview, a segment to save, what is answered."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from nestpoint.members.schemas import MemberSummary
from nestpoint.schemas import Strict
from nestpoint.text import required

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Code = Annotated[str, Field(pattern=CODE_PATTERN, min_length=1, max_length=64)]
SAMPLE_SIZE = 20
MAX_SEGMENTS = 200  # in one tenant manifest

RULE_DESCRIPTION = (
    'A rule tree: {"all": [rules]}, {"any": [rules]}, {"not": rule} or a condition '
    '{"field", "op", "value"} (docs/segments.md). At most 50 conditions and 6 levels; a bad '
    "node, an unknown store or a passed limit is a 422 naming its path (`rule.all.1.value`)."
)
RULE_EXAMPLE: dict[str, Any] = {
    "all": [
        {"field": "child_stage", "op": "in", "value": ["pregnant"]},
        {"field": "due_within_weeks", "op": "lte", "value": 8},
    ]
}
Rule = Annotated[dict[str, Any], Field(description=RULE_DESCRIPTION, examples=[RULE_EXAMPLE])]


class PreviewIn(Strict):
    """A rule to count and sample (nothing is saved)."""

    rule: Rule


class SegmentIn(Strict):
    """A segment to create or replace under its code."""

    name: Annotated[str, required(200)]
    rule: Rule


class SegmentSpec(Strict):
    """A segment in a tenant manifest (``[[segments]]``)."""

    code: Code
    name: Annotated[str, required(200)]
    rule: Rule


class Preview(BaseModel):
    count: int = Field(description="Active members the rule holds for, now.")
    sample: list[MemberSummary] = Field(
        description=f"The first {SAMPLE_SIZE} of them (by id), masked without `members:pii`."
    )


class SegmentRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    rule: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    count: int | None = Field(
        default=None, description="Active members in it now (on `GET /segments/{code}`)."
    )


class SegmentList(BaseModel):
    items: list[SegmentRead]
    next_cursor: str | None = None


class BuiltinLabel(BaseModel):
    en: str
    zh: str


class BuiltinGroupRead(BaseModel):
    kind: str = Field(description="`rfm_group`, `value_circle` or `lifecycle`.")
    code: str = Field(description='What a rule names (`{"field": kind, "op": "in"}`).')
    label: BuiltinLabel
    count: int = Field(description="Active members in the group as of the last run.")


class BuiltinList(BaseModel):
    computed_on: date | None = Field(
        description="The chain's local date of the last recomputation (null: not yet run)."
    )
    items: list[BuiltinGroupRead]
