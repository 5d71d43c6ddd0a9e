"""Every table of the console as CSV: ``?export=<table>`` on the page that shows it.

The page is rendered as usual, for the same user (so with the same masking, reach and audit
of unmasked reads), and the table whose ``data-export`` names it is written out as CSV:
each cell's text, an input's value, never a button's label or a form's hidden fields.
Cells that a spreadsheet would run as a formula are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
from contextvars import ContextVar
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

from litestar import Request

PARAM = "export"
_query: ContextVar[dict[str, str] | None] = ContextVar("console_query", default=None)
SKIPPED = {"button", "select", "script", "form"}


async def remember_query(request: Request[Any, Any, Any]) -> None:
    """The ``before_request`` hook: the page's query, for :func:`wanted` and links."""
    _query.set({k: v for k, v in request.query_params.items() if isinstance(v, str)})


def wanted() -> str | None:
    return (_query.get() or {}).get(PARAM) or None


def href(table: str) -> str:
    """The link that exports ``table`` from the page as it is (its query kept)."""
    query = {k: v for k, v in (_query.get() or {}).items() if k != PARAM}
    return "?" + urlencode({**query, PARAM: table})


class _Table(HTMLParser):
    def __init__(self, name: str) -> None:
        super().__init__(convert_charrefs=True)
        self.name = name
        self.depth = 0  # nesting of tables inside the wanted one (0: outside)
        self.skip = 0
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            if self.depth or found.get("data-export") == self.name:
                self.depth += 1
            return
        if not self.depth:
            return
        if tag in SKIPPED:
            self.skip += 1
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.cell = []
        elif tag == "input" and self.cell is not None and found.get("type") != "hidden":
            if found.get("type") == "checkbox":
                self.cell.append("true" if "checked" in found else "false")
            else:
                self.cell.append(found.get("value") or "")
        elif tag == "br" and self.cell is not None:
            self.cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "table":
            self.depth -= 1
        elif tag in SKIPPED:
            self.skip = max(0, self.skip - 1)
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.depth and self.cell is not None and not self.skip:
            self.cell.append(data)


def _safe(cell: str) -> str:
    try:
        float(cell)
        return cell  # a number, negative ones too (points taken)
    except ValueError:
        pass
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def table_csv(html: str, name: str) -> str | None:
    """The table ``name`` of a rendered page as CSV (None: the page has no such table)."""
    parser = _Table(name)
    parser.feed(html)
    parser.close()
    if not parser.rows:
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in parser.rows:
        if any(row):
            writer.writerow([_safe(c) for c in row])
    return "\ufeff" + out.getvalue()  # a BOM, so spreadsheet programs read UTF-8 (Chinese)
