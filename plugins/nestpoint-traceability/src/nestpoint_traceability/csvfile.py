"""Reading and checking a CSV of batches: every row is checked before anything is written.

Pure functions, no database: :func:`check` returns the rows it could read and every
problem it found, each with its row (the file's row as a spreadsheet numbers it: the header
is row 1, the first batch row 2), its column and a reason. Duplicates against the batches
already imported are checked by the service, which has the database.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

COLUMNS = ("sku", "batch_no", "product_name", "production_date", "expiry_date", "origin")
# Header names understood besides the English ones (a chain's own Excel template).
ALIASES = {
    "商品编码": "sku",
    "商品编号": "sku",
    "货号": "sku",
    "批次号": "batch_no",
    "批号": "batch_no",
    "品名": "product_name",
    "商品名称": "product_name",
    "产品名称": "product_name",
    "生产日期": "production_date",
    "有效期至": "expiry_date",
    "到期日期": "expiry_date",
    "失效日期": "expiry_date",
    "产地": "origin",
    "原产地": "origin",
}
MAX_ROWS = 5_000
MAX_LENGTH = {"sku": 64, "batch_no": 64, "product_name": 200, "origin": 200}
PATTERNS = {
    "sku": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), "letters, digits, '.', '_' and '-'"),
    "batch_no": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"),
        "letters, digits, '.', '_', '/' and '-'",
    ),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$|^(\d{4})(\d{2})(\d{2})$")


@dataclass(frozen=True, slots=True)
class BatchRow:
    row: int
    sku: str
    batch_no: str
    product_name: str
    production_date: date
    expiry_date: date
    origin: str


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in the file: ``row`` 1 is the header, ``None`` the file as a whole;
    ``column`` ``None`` is the whole row."""

    row: int | None
    column: str | None
    message: str

    def field(self, prefix: str) -> str:
        """The problem's name in an API error: ``csv.row.4.expiry_date``, ``csv.row.4``,
        ``csv.header`` or ``csv`` (``prefix`` is the body field that held the file)."""
        if self.row is None:
            return prefix
        if self.row == 1:
            return f"{prefix}.header"
        return f"{prefix}.row.{self.row}" + (f".{self.column}" if self.column else "")


def parse_date(text: str) -> date | None:
    """``2026-03-01``, ``2026/3/1``, ``2026.03.01`` or ``20260301``; ``None`` otherwise."""
    found = _DATE.match(text)
    if found is None:
        return None
    parts = [int(p) for p in found.groups() if p is not None]
    try:
        return date(parts[0], parts[1], parts[2])
    except ValueError:
        return None


def _records(text: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(row, cells, error) for each record; cells ``None`` when the record is unreadable."""
    reader = csv.reader(io.StringIO(text, newline=""))
    row = 0
    while True:
        row += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield row, None, f"not readable as CSV: {exc}"
            return  # (a field over the csv module's size limit): the rest is unreadable
        yield row, cells, ""


def _header(cells: list[str]) -> tuple[list[str], list[Problem]]:
    names: list[str] = []
    problems: list[Problem] = []
    for raw in cells:
        cleaned = raw.strip().lstrip("\ufeff").strip()
        name = ALIASES.get(cleaned, cleaned.lower())
        if name not in COLUMNS:
            problems.append(Problem(1, None, f"unknown column {cleaned[:50]!r}"))
        elif name in names:
            problems.append(Problem(1, None, f"column {name!r} appears twice"))
        names.append(name)
    problems.extend(
        Problem(1, None, f"missing column {name!r}") for name in COLUMNS if name not in names
    )
    return names, problems


def _text(row: int, column: str, value: str, problems: list[Problem]) -> str:
    value = value.strip()
    if not value:
        problems.append(Problem(row, column, "required"))
    elif _CONTROL.search(value):
        problems.append(Problem(row, column, "holds a control character"))
    elif len(value) > MAX_LENGTH[column]:
        problems.append(Problem(row, column, f"longer than {MAX_LENGTH[column]} characters"))
    elif column in PATTERNS and not PATTERNS[column][0].match(value):
        problems.append(Problem(row, column, f"only {PATTERNS[column][1]}"))
    else:
        return value
    return ""


def _date(row: int, column: str, value: str, problems: list[Problem]) -> date | None:
    value = value.strip()
    if not value:
        problems.append(Problem(row, column, "required"))
        return None
    parsed = parse_date(value)
    if parsed is None:
        problems.append(Problem(row, column, f"not a date (YYYY-MM-DD): {value[:30]!r}"))
    return parsed


def _row(row: int, cells: dict[str, str], today: date, problems: list[Problem]) -> BatchRow | None:
    before = len(problems)
    texts = {c: _text(row, c, cells[c], problems) for c in MAX_LENGTH}
    made = _date(row, "production_date", cells["production_date"], problems)
    expires = _date(row, "expiry_date", cells["expiry_date"], problems)
    if made is not None and made > today:
        problems.append(Problem(row, "production_date", f"in the future (today is {today})"))
    if made is not None and expires is not None and expires <= made:
        problems.append(Problem(row, "expiry_date", f"not after the production date {made}"))
    if len(problems) > before or made is None or expires is None:
        return None
    return BatchRow(
        row,
        texts["sku"],
        texts["batch_no"],
        texts["product_name"],
        made,
        expires,
        texts["origin"],
    )


def check(text: str, today: date) -> tuple[list[BatchRow], list[Problem]]:
    """The batches of a CSV file and every problem in it (rows with a problem are not in
    the first list). ``today`` is the chain's date: a batch is not made in the future."""
    rows: list[BatchRow] = []
    problems: list[Problem] = []
    names: list[str] | None = None
    seen: dict[tuple[str, str], int] = {}
    count = 0
    for row, cells, error in _records(text):
        if cells is None:
            problems.append(Problem(row, None, error))
            break
        if not any(cell.strip() for cell in cells):
            continue  # a blank line (spreadsheets leave some at the end)
        if names is None:
            names, header_problems = _header(cells)
            if header_problems:
                return [], header_problems  # the rows cannot be read without their columns
            continue
        count += 1
        if count > MAX_ROWS:
            problems.append(Problem(None, None, f"more than {MAX_ROWS} rows: split the file"))
            break
        if len(cells) != len(names):
            problems.append(
                Problem(row, None, f"{len(cells)} cells, but the header has {len(names)}")
            )
            continue
        batch = _row(row, dict(zip(names, cells, strict=True)), today, problems)
        if batch is None:
            continue
        first = seen.setdefault((batch.sku, batch.batch_no), row)
        if first != row:
            problems.append(
                Problem(
                    row, "batch_no", f"sku {batch.sku} batch {batch.batch_no} is also row {first}"
                )
            )
            continue
        rows.append(batch)
    if names is None and not problems:
        problems.append(Problem(None, None, "the file is empty: a header and one row at least"))
    elif names is not None and count == 0 and not problems:
        problems.append(Problem(None, None, "no batch rows after the header"))
    return rows, ordered(problems)


def ordered(problems: list[Problem]) -> list[Problem]:
    """By row, then by the column's place in the file's format (the whole row first)."""
    return sorted(
        problems, key=lambda p: (p.row or 0, COLUMNS.index(p.column) + 1 if p.column else 0)
    )


def report(problems: list[Problem]) -> str:
    """The problems as a CSV a spreadsheet opens: ``row,column,problem``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["row", "column", "problem"])
    for problem in problems:
        writer.writerow([problem.row or "", problem.column or "", _safe_cell(problem.message)])
    return out.getvalue()


def _safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
