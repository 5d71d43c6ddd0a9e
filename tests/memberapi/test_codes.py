"""The card's rotating code as pure functions: made, read back, refused when old, from the
future, altered or of another chain."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from nestpoint.memberapi.codes import CODE_PATTERN, CodeExpired, CodeInvalid, make_code, read_code

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
TENANT, MEMBER = uuid.uuid4(), uuid.uuid4()


@pytest.fixture(autouse=True)
def _keys(database_env: dict[str, str]) -> None:
    """The codes' key is derived from the personal-data hash key of the test database."""


def test_a_code_names_its_member_for_its_lifetime() -> None:
    made = make_code(TENANT, MEMBER, NOW)
    assert made.issued_at == NOW
    assert made.expires_at == NOW + timedelta(seconds=60)
    assert re.match(CODE_PATTERN, made.code)
    for after in (0, 1, 59, 60):
        assert read_code(TENANT, made.code, NOW + timedelta(seconds=after)) == MEMBER
    with pytest.raises(CodeExpired) as expired:
        read_code(TENANT, made.code, NOW + timedelta(seconds=61))
    assert expired.value.errors[0].field == "code"
    assert expired.value.slug == "member-code-expired"
    # Another instance's clock a little behind accepts it; a code from far ahead is refused.
    assert read_code(TENANT, made.code, NOW - timedelta(seconds=30)) == MEMBER
    with pytest.raises(CodeInvalid):
        read_code(TENANT, made.code, NOW - timedelta(seconds=31))


def test_codes_change_every_second_and_differ_per_member() -> None:
    codes = {make_code(TENANT, MEMBER, NOW + timedelta(seconds=s)).code for s in range(5)}
    assert len(codes) == 5
    assert make_code(TENANT, uuid.uuid4(), NOW).code != make_code(TENANT, MEMBER, NOW).code


def test_any_altered_byte_or_another_chain_is_refused() -> None:
    made = make_code(TENANT, MEMBER, NOW)
    raw = bytearray(base64.b32decode(made.code[4:]))
    for index in range(len(raw)):  # the member, the time, the mac: each byte matters
        altered = bytearray(raw)
        altered[index] ^= 0x01
        code = "NPM1" + base64.b32encode(bytes(altered)).decode()
        with pytest.raises(CodeInvalid):
            read_code(TENANT, code, NOW)
    with pytest.raises(CodeInvalid):
        read_code(uuid.uuid4(), made.code, NOW)
    for junk in ("", "NPM1", made.code.lower(), made.code + "A", "NPM2" + made.code[4:]):
        with pytest.raises(CodeInvalid) as invalid:
            read_code(TENANT, junk, NOW, field="code")
        assert invalid.value.slug == "member-code-invalid"
