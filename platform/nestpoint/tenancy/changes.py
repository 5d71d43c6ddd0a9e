"""One change a manifest apply makes (or a plan shows): the shape the tenancy and plugin
sections of a manifest share, kept below both so neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Change:
    action: str  # create | update | deactivate
    subject: str  # "tenant" or "store <code>"
    changes: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        sign = {"create": "+", "update": "~", "deactivate": "-"}[self.action]
        if self.action == "update":
            details = ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in self.changes.items())
            return f"{sign} {self.subject}: {details}"
        return f"{sign} {self.action} {self.subject}"
