"""Reading an import's file: CSV or XLSX, its header mapped to a kind's fields, each row's
values checked on their own (phones, dates, numbers, lengths)."""

from __future__ import annotations

import codecs
import csv
import io
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from nestpoint.errors import FieldError, Invalid
from nestpoint.members import pii
from nestpoint.members.schemas import MAX_TAGS

CHUNK_SIZE = 1024 * 1024  # bytes of one import_chunks row; reading counts lines by it
MAX_COLUMNS = 200
MAX_FIELD_CHARS = 65_536  # one CSV cell; a longer one makes the file unreadable
KINDS = ("members", "children", "balances", "orders", "tags")
GENDERS = {
    "": "unknown",
    "unknown": "unknown",
    "u": "unknown",
    "未知": "unknown",
    "female": "female",
    "f": "female",
    "女": "female",
    "male": "male",
    "m": "male",
    "男": "male",
}
TAG_SEPARATORS = re.compile(r"[;,|；，、]")


# ---------------------------------------------------------------------------- fields


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field of a kind's rows, and the column headers that map to it by default."""

    name: str
    required: bool = False
    aliases: tuple[str, ...] = ()


MEMBER_REF = (
    FieldSpec("member_legacy_id", aliases=("member_ref", "member_no", "会员编号", "会员卡号")),
    FieldSpec("member_phone", aliases=("phone", "mobile", "手机号", "手机")),
)
FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "members": (
        FieldSpec("phone", True, ("mobile", "phone_number", "手机号", "手机", "电话")),
        FieldSpec("name", aliases=("姓名", "会员姓名")),
        FieldSpec("gender", aliases=("sex", "性别")),
        FieldSpec("birthday", aliases=("birth_date", "生日")),
        FieldSpec("home_store", aliases=("home_store_code", "store", "store_code", "门店")),
        FieldSpec("joined_at", aliases=("join_date", "joined", "入会时间", "注册时间")),
        FieldSpec("tags", aliases=("标签",)),
        FieldSpec(
            "guardian_consent_at",
            aliases=("child_data_consent_at", "guardian_consent", "监护人同意时间"),
        ),
        FieldSpec("legacy_id", aliases=("id", "member_no", "会员编号")),
        # The member's ids in other channels (members.models.IDENTITY_KINDS).
        FieldSpec("pos_card", aliases=("card_no", "card", "会员卡号", "卡号")),
        FieldSpec("mall_user", aliases=("mall_user_id", "商城账号")),
        FieldSpec("mp_openid", aliases=("openid", "小程序openid")),
        FieldSpec("mp_unionid", aliases=("unionid",)),
        FieldSpec("app_user", aliases=("app_user_id",)),
        FieldSpec("email", aliases=("邮箱",)),
        FieldSpec("wecom_userid", aliases=("企业微信",)),
    ),
    "children": (
        *MEMBER_REF,
        FieldSpec("legacy_id", True, ("id", "child_id", "child_no", "宝宝编号")),
        FieldSpec("nickname", aliases=("name", "小名", "宝宝昵称")),
        FieldSpec("gender", aliases=("sex", "性别")),
        FieldSpec("birth_date", aliases=("birthday", "出生日期")),
        FieldSpec("due_date", aliases=("预产期",)),
    ),
    "balances": (
        *MEMBER_REF,
        FieldSpec("legacy_id", True, ("id", "lot_id", "reference", "ref")),
        FieldSpec("points", True, ("balance", "积分")),
        FieldSpec("expires_at", True, ("expiry", "expires", "expiry_date", "过期时间")),
        FieldSpec("earned_at", aliases=("earned", "获得时间")),
    ),
    "orders": (
        FieldSpec("external_id", True, ("order_no", "receipt", "reference", "订单号")),
        FieldSpec("channel", aliases=("渠道",)),
        FieldSpec("store", True, ("store_code", "门店")),
        *MEMBER_REF,
        FieldSpec("paid_at", True, ("paid", "order_time", "支付时间", "下单时间")),
        FieldSpec("total_fen", True, ("total", "金额")),
        FieldSpec("cash_fen", aliases=("cash",)),
        FieldSpec("discount_fen", aliases=("discount",)),
        FieldSpec("points_used", aliases=()),
        FieldSpec("refunded_fen", aliases=("refunded",)),
    ),
    "tags": (*MEMBER_REF, FieldSpec("tags", True, ("tag", "标签"))),
}


def _normal(header: str) -> str:
    return re.sub(r"[\s\-/.]+", "_", header.strip().lower()).strip("_")


# ---------------------------------------------------------------------------- reading


@dataclass
class Sheet:
    """A file's header and its data rows (numbered as a spreadsheet shows them)."""

    header: list[str]
    rows: Iterator[tuple[int, list[Any]]]


class FileProblem(Exception):
    """The file cannot be read past some point (bad encoding, a huge cell, a broken row)."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(problem)
        self.row, self.problem = row, problem


def _bad_file(message: str) -> Invalid:
    return Invalid.field("content", message)


def _sniff_encoding(sample: bytes) -> str:
    """UTF-8 (with or without a BOM) unless the sample is not UTF-8: then GB18030, the
    encoding of Chinese Excel and most legacy Chinese systems' exports."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)  # a character cut at the sample's end is fine
    except UnicodeDecodeError:
        try:
            codecs.getincrementaldecoder("gb18030")().decode(sample, final=False)
        except UnicodeDecodeError:
            raise _bad_file("not text in UTF-8 or GB18030") from None
        return "gb18030"
    return "utf-8-sig"


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _check_header(cells: Sequence[Any]) -> list[str]:
    header = [cell_text(c) for c in cells]
    while header and not header[-1]:
        header.pop()
    if not header:
        raise _bad_file("the first row (the header) is empty")
    if len(header) > MAX_COLUMNS:
        raise _bad_file(f"more than {MAX_COLUMNS} columns")
    seen: set[str] = set()
    for name in header:
        if name and _normal(name) in seen:
            raise _bad_file(f"the column {name[:100]!r} is in the header twice")
        seen.add(_normal(name))
    return header


def _csv_sheet(file: IO[bytes]) -> Sheet:
    sample = file.read(1024 * 1024)
    if not sample.strip():
        raise _bad_file("the file is empty")
    if sample.startswith(b"PK\x03\x04"):
        raise _bad_file("this is an XLSX workbook, not CSV: send it with format xlsx")
    if b"\x00" in sample:
        raise _bad_file("binary data, not a CSV text file")
    encoding = _sniff_encoding(sample)
    file.seek(0)
    text = io.TextIOWrapper(file, encoding=encoding, newline="", errors="strict")
    reader = csv.reader(text)
    csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        first = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _bad_file(f"the header cannot be read: {_reason(exc)}") from None
    if first is None:
        raise _bad_file("the file is empty")
    header = _check_header(first)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        row_no = 1
        try:
            for cells in reader:
                row_no += 1
                if any(c.strip() for c in cells):
                    yield row_no, cells
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileProblem(row_no + 1, f"the file cannot be read here: {_reason(exc)}") from None

    return Sheet(header, rows())


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid {exc.encoding} text"
    return str(exc)[:200]


def _xlsx_sheet(file: IO[bytes]) -> Sheet:
    head = file.read(4)
    file.seek(0)
    if head != b"PK\x03\x04":
        raise _bad_file("not an XLSX workbook")
    try:
        book = load_workbook(file, read_only=True, data_only=True)
        sheet = book.worksheets[0]
        rows_iter = sheet.iter_rows(values_only=True)
        first = next(rows_iter, None)
    except Exception as exc:  # openpyxl raises many kinds on a broken workbook
        raise _bad_file(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    if first is None:
        raise _bad_file("the workbook's first sheet is empty")
    header = _check_header(first)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        row_no = 1
        try:
            for cells in rows_iter:
                row_no += 1
                if any(c is not None and cell_text(c) for c in cells):
                    yield row_no, list(cells)
        except Exception as exc:
            raise FileProblem(row_no + 1, f"the workbook cannot be read here: {exc}") from None
        finally:
            book.close()

    return Sheet(header, rows())


def open_sheet(file: IO[bytes], fmt: str) -> Sheet:
    """The header and rows of a CSV or XLSX file; :class:`Invalid` naming ``content`` when it
    is not one (empty, binary, another format, an encoding that is not text)."""
    return _csv_sheet(file) if fmt == "csv" else _xlsx_sheet(file)


def count_rows(file: IO[bytes], fmt: str) -> int:
    """About how many data rows there are, cheaply (for progress; the end sets the truth)."""
    if fmt == "xlsx":
        try:
            book = load_workbook(file, read_only=True)
            try:
                return max((book.worksheets[0].max_row or 1) - 1, 0)
            finally:
                book.close()
        except Exception:
            return 0
    lines, last = 0, b""
    while data := file.read(CHUNK_SIZE):
        lines += data.count(b"\n")
        last = data
    if last and not last.endswith(b"\n"):
        lines += 1
    return max(lines - 1, 0)


# ---------------------------------------------------------------------------- mapping


def resolve_mapping(kind: str, header: list[str], mapping: dict[str, str] | None) -> dict[str, int]:
    """Our field → the index of the file's column that holds it: the mapping given first,
    then each field's usual header names. Invalid naming ``mapping.<field>`` when a given
    field or column does not exist or a required field has no column."""
    specs = {spec.name: spec for spec in FIELDS[kind]}
    by_name = {_normal(h): i for i, h in enumerate(header) if h}
    found: dict[str, int] = {}
    errors: list[FieldError] = []
    for name, column in (mapping or {}).items():
        if name not in specs:
            errors.append(
                FieldError(f"mapping.{name}", f"not a field of {kind}: {', '.join(specs)}")
            )
        elif _normal(column) not in by_name:
            errors.append(FieldError(f"mapping.{name}", f"no column {column[:100]!r} in the file"))
        else:
            found[name] = by_name[_normal(column)]
    taken = set(found.values())
    for spec in specs.values():
        if spec.name in found:
            continue
        for candidate in (spec.name, *spec.aliases):
            index = by_name.get(_normal(candidate))
            if index is not None and index not in taken:
                found[spec.name] = index
                taken.add(index)
                break
        if spec.required and spec.name not in found:
            errors.append(
                FieldError(f"mapping.{spec.name}", "required: no column of the file maps to it")
            )
    needs_member = kind in ("children", "balances", "tags")
    if needs_member and not {"member_phone", "member_legacy_id"} & found.keys():
        errors.append(
            FieldError(
                "mapping.member_phone", "a member_phone or member_legacy_id column is needed"
            )
        )
    if errors:
        raise Invalid("the file's columns do not match the import's fields", errors=errors)
    return found


def mapped(cells: list[Any], columns: dict[str, int]) -> dict[str, Any]:
    return {name: cells[i] if i < len(cells) else None for name, i in columns.items()}


# ---------------------------------------------------------------------------- values


@dataclass
class Facts:
    """What every row of one import is checked and written with."""

    tenant_id: uuid.UUID
    import_id: uuid.UUID
    zone: ZoneInfo
    today: date
    now: datetime
    stores: dict[str, uuid.UUID]
    entry_tier: str
    requested_by: str


class Row:
    """One row's values, read field by field; each problem is kept (field, problem)."""

    def __init__(self, values: dict[str, Any], facts: Facts) -> None:
        self.values, self.facts = values, facts
        self.problems: list[tuple[str, str]] = []

    def bad(self, name: str, problem: str) -> None:
        self.problems.append((name, problem))

    def text(self, name: str, max_length: int, *, required: bool = False) -> str | None:
        value = cell_text(self.values.get(name))
        if "\x00" in value:
            self.bad(name, "holds a NUL character")
            return None
        if not value:
            if required:
                self.bad(name, "required")
            return None
        if len(value) > max_length:
            self.bad(name, f"longer than {max_length} characters")
            return None
        return value

    def phone(self, name: str, *, required: bool = False) -> str | None:
        """The phone's E.164 form."""
        value = self.text(name, 40, required=required)
        if value is None:
            return None
        try:
            return pii.normalize_phone(value)
        except pii.InvalidPhone as exc:
            self.bad(name, str(exc))
            return None

    def gender(self, name: str) -> str:
        value = cell_text(self.values.get(name)).lower()
        if value not in GENDERS:
            self.bad(name, "one of female, male, unknown (or 女, 男)")
            return "unknown"
        return GENDERS[value]

    def day(self, name: str, *, required: bool = False) -> date | None:
        raw = self.values.get(name)
        if isinstance(raw, datetime):
            return raw.date()
        if isinstance(raw, date):
            return raw
        value = cell_text(raw)
        if not value:
            if required:
                self.bad(name, "required")
            return None
        text = value.replace("/", "-").replace(".", "-")
        try:
            if re.fullmatch(r"\d{8}", text):
                return date(int(text[:4]), int(text[4:6]), int(text[6:]))
            return date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
        except ValueError:
            self.bad(name, "not a date (YYYY-MM-DD)")
            return None

    def moment(
        self, name: str, *, required: bool = False, end_of_day: bool = False
    ) -> datetime | None:
        """A time (ISO 8601; without a zone, the chain's local time); a bare date is that
        day's start, or with ``end_of_day`` the start of the next day (an expiry date is
        the last day the points are valid)."""
        raw = self.values.get(name)
        value = raw if isinstance(raw, datetime) else None
        if value is None and not isinstance(raw, date):
            text = cell_text(raw)
            if not text:
                if required:
                    self.bad(name, "required")
                return None
            if len(text) > 10 or "T" in text:
                try:
                    value = datetime.fromisoformat(text.replace("/", "-"))
                except ValueError:
                    self.bad(name, "not a time (ISO 8601, e.g. 2025-03-01T10:30:00+08:00)")
                    return None
        if value is None:
            day = self.day(name)
            if day is None:
                return None
            value = datetime.combine(day + timedelta(days=1) if end_of_day else day, time())
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.facts.zone)
        return value.astimezone(UTC)

    def number(self, name: str, low: int, high: int, *, required: bool = False) -> int | None:
        raw = self.values.get(name)
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        value = cell_text(raw)
        if not value:
            if required:
                self.bad(name, "required")
            return None
        if not re.fullmatch(r"[+-]?\d{1,20}", value):
            self.bad(name, "not a whole number")
            return None
        number = int(value)
        if not low <= number <= high:
            self.bad(name, f"must be between {low} and {high}")
            return None
        return number

    def tags(self, name: str, *, required: bool = False) -> list[str]:
        value = self.text(name, 2000, required=required)
        if value is None:
            return []
        tags = sorted({t.strip() for t in TAG_SEPARATORS.split(value) if t.strip()})
        if any(len(t) > 32 for t in tags):
            self.bad(name, "a tag is longer than 32 characters")
        if len(tags) > MAX_TAGS:
            self.bad(name, f"more than {MAX_TAGS} tags")
        if required and not tags:
            self.bad(name, "required")
        return tags

    def check(self, name: str, test: Callable[[], None]) -> None:
        """Run one of the members context's date rules, keeping its message."""
        try:
            test()
        except Invalid as exc:
            self.bad(name, exc.errors[0].message if exc.errors else str(exc))

    def not_after_now(self, name: str, value: datetime | None) -> None:
        if value is not None and value > self.facts.now:
            self.bad(name, "cannot be in the future")

    def member_ref(self, *, required: bool = True) -> tuple[str | None, str | None]:
        """(legacy id, phone lookup hash) naming a member; one of them is needed."""
        ref = self.text("member_legacy_id", 100)
        phone = self.phone("member_phone")
        if ref is None and phone is None and required and not self.problems:
            self.bad("member_phone", "required: a member_phone or member_legacy_id")
        return ref, pii.keyring().lookup_hash(phone) if phone else None
