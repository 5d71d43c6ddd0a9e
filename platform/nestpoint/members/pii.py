"""Personal data at rest: AES-GCM encryption with rotatable keys, and a keyed hash for lookup.

Ciphertexts are ``<key id>:<base64(nonce || ciphertext)>``, so rows written under an old key
stay readable after a new key is put first; ``nestpoint members rotate-keys`` re-encrypts
them. A member's own data (phone, name, children's nicknames, identity values) is sealed
under the member's *data key* instead (``@m:<base64>``, see :class:`MemberCipher`): a random
key kept on the member row wrapped by the keyring, so erasing a member deletes that one key
and every ciphertext sealed with it becomes noise (crypto-shredding). The phone's lookup
hash is an HMAC-SHA256 under a separate key: equal phones give equal hashes (exact lookup,
uniqueness per tenant) while a dump reveals neither phone nor name.

Every process sharing a database must hold the same keys, so outside the embedded SQLite
default they come only from settings, and a process without them refuses to start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import phonenumbers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nestpoint.settings import Settings, get_settings

log = logging.getLogger("nestpoint.pii")

DEV_KEY_FILE_NAME = "pii-keys.json"


class InvalidPhone(ValueError):
    """Not a valid phone number for the region."""


@dataclass(frozen=True)
class Keyring:
    active_id: str
    keys: dict[str, AESGCM]
    hash_key: bytes

    def encrypt(self, plaintext: str, *, context: bytes = b"") -> str:
        nonce = os.urandom(12)
        sealed = self.keys[self.active_id].encrypt(nonce, plaintext.encode(), context)
        return f"{self.active_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: bytes = b"") -> str:
        key_id, _, payload = token.partition(":")
        raw = base64.b64decode(payload)
        return self.keys[key_id].decrypt(raw[:12], raw[12:], context).decode()

    def key_id_of(self, token: str) -> str:
        return token.partition(":")[0]

    def lookup_hash(self, value: str) -> str:
        return hmac.new(self.hash_key, value.encode(), hashlib.sha256).hexdigest()


KEYS_VARIABLE = "NESTPOINT_PII_KEYS"
HASH_KEY_VARIABLE = "NESTPOINT_PII_HASH_KEY"
KEY_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class PiiKeyError(RuntimeError):
    """Personal-data keys are missing or malformed: the process must not start."""


def _missing_message(key_file: Path | None) -> str:
    if key_file is not None:
        return (
            f"set both {KEYS_VARIABLE} and {HASH_KEY_VARIABLE}, or neither (the embedded"
            f" default then keeps development keys in {key_file})"
        )
    return (
        f"personal-data keys are not configured: set {KEYS_VARIABLE} and {HASH_KEY_VARIABLE}"
        " to the same values in every API and worker process sharing the database"
        " (`nestpoint members new-key` generates them; see docs/members.md)."
        f" Only the embedded SQLite default may keep development keys (in {DEV_KEY_FILE_NAME}"
        " of NESTPOINT_DATA_DIR)."
    )


def uses_key_file(settings: Settings) -> bool:
    """Only the embedded default (one SQLite file on one machine) may make its own keys: on a
    shared server database each process would make different ones and could not read, find or
    deduplicate the others' members."""
    return settings.database_url.startswith("sqlite")


def dev_key_file(settings: Settings) -> Path:
    """Where the embedded default keeps its development keys: in ``data_dir``."""
    return settings.data_dir.absolute() / DEV_KEY_FILE_NAME


def _allowed_key_file(settings: Settings) -> Path | None:
    return dev_key_file(settings) if uses_key_file(settings) else None


def _decode_key(value: str, what: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise PiiKeyError(f"{what} is not base64") from exc
    if len(key) != KEY_BYTES:
        raise PiiKeyError(f"{what} must be the base64 of {KEY_BYTES} bytes, not {len(key)}")
    return key


def parse_keys(spec: str) -> dict[str, bytes]:
    """``<id>:<base64 of 32 bytes>,...`` in order (the first encrypts)."""
    keys: dict[str, bytes] = {}
    for item in spec.split(","):
        key_id, _, b64 = item.strip().partition(":")
        if not KEY_ID_PATTERN.match(key_id):
            raise PiiKeyError(f"{KEYS_VARIABLE} entries are '<id>:<base64 of 32 bytes>'")
        if key_id in keys:
            raise PiiKeyError(f"{KEYS_VARIABLE} names key {key_id!r} twice")
        keys[key_id] = _decode_key(b64.strip(), f"{KEYS_VARIABLE} key {key_id!r}")
    return keys


def new_key() -> str:
    """A fresh 32-byte key, base64 (for either variable)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _dev_keys(path: Path) -> tuple[str, str]:
    """Embedded default only: keys kept in a file in ``data_dir`` (never in the repository).

    Two processes starting at once must end with the same keys: each writes its candidate to
    a private file and links it into place, which fails if another process got there first;
    every process then reads the one file that won.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"pii_keys": "dev1:" + new_key(), "pii_hash_key": new_key()}
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(candidate, path)
            log.warning("generated development PII keys", extra={"file": str(path)})
        except FileExistsError:
            pass  # another process won the race: use its keys
        finally:
            candidate.unlink()
    data = json.loads(path.read_text())
    return data["pii_keys"], data["pii_hash_key"]


MEMBER_SEALED = "@m"  # never a keyring key id (KEY_ID_PATTERN has no "@")


class KeyShredded(LookupError):
    """The member's data key was deleted (the member was erased): nothing of theirs opens."""


@dataclass(frozen=True)
class MemberCipher:
    """Seals and opens one member's personal data under the member's data key.

    Ciphertexts written before members had data keys (``<key id>:...``, under the keyring
    itself) still open; ``nestpoint members rotate-keys`` reseals them under the member's key.
    """

    ring: Keyring
    data_key: AESGCM | None  # None: the member has no key (yet, or no more: erased)

    def encrypt(self, plaintext: str, *, context: bytes) -> str:
        if self.data_key is None:
            raise KeyShredded("the member has no data key")
        nonce = os.urandom(12)
        sealed = self.data_key.encrypt(nonce, plaintext.encode(), context)
        return f"{MEMBER_SEALED}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: bytes) -> str:
        key_id, _, payload = token.partition(":")
        if key_id != MEMBER_SEALED:
            return self.ring.decrypt(token, context=context)
        if self.data_key is None:
            raise KeyShredded("the member's data key was deleted")
        raw = base64.b64decode(payload)
        return self.data_key.decrypt(raw[:12], raw[12:], context).decode()


def data_key_context(tenant_id: object, member_id: object) -> bytes:
    """Associated data of a wrapped data key: bound to its tenant and member."""
    return row_context(tenant_id, "members", member_id)


def new_data_key(tenant_id: object, member_id: object) -> str:
    """A fresh random data key for a member, wrapped by the keyring (for ``members.data_key``)."""
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    return keyring().encrypt(key, context=data_key_context(tenant_id, member_id))


def member_cipher(tenant_id: object, member_id: object, wrapped: str | None) -> MemberCipher:
    """The cipher of one member's data, from the wrapped key on the member row."""
    ring = keyring()
    if wrapped is None:
        return MemberCipher(ring, None)
    key = ring.decrypt(wrapped, context=data_key_context(tenant_id, member_id))
    return MemberCipher(ring, AESGCM(base64.b64decode(key)))


def derived_key(purpose: bytes, settings: Settings | None = None) -> bytes:
    """A secret for ``purpose`` derived from the hash key (HMAC-SHA256): shared by every
    process of a database as the keys are, and unrelated to any other purpose's."""
    return hmac.new(keyring(settings).hash_key, purpose, hashlib.sha256).digest()


def keyring(settings: Settings | None = None) -> Keyring:
    """The process's keys: from settings, or (embedded default only) the development file.
    Raises :class:`PiiKeyError` saying what to set; processes call it at start-up."""
    settings = settings or get_settings()
    return _keyring(settings.pii_keys, settings.pii_hash_key, _allowed_key_file(settings))


@lru_cache(maxsize=8)
def _keyring(spec: str | None, hash_b64: str | None, key_file: Path | None) -> Keyring:
    if not spec and not hash_b64 and key_file is not None:
        spec, hash_b64 = _dev_keys(key_file)
    if not spec or not hash_b64:
        raise PiiKeyError(_missing_message(key_file))
    keys = parse_keys(spec)
    active = spec.split(",")[0].split(":")[0].strip()
    hash_key = _decode_key(hash_b64.strip(), HASH_KEY_VARIABLE)
    return Keyring(active, {k: AESGCM(v) for k, v in keys.items()}, hash_key)


def new_key_plan(settings: Settings, key_id: str | None = None) -> list[str]:
    """What ``nestpoint members new-key`` prints: variables to set, ``#`` lines to explain.

    With no keys configured: a first key and a hash key. With keys: a new key and the two
    rolling steps of a rotation (learn it everywhere, then encrypt with it everywhere), so
    no process ever meets a ciphertext under a key it does not hold.
    """
    if bool(settings.pii_keys) != bool(settings.pii_hash_key):
        raise PiiKeyError(_missing_message(dev_key_file(settings)))
    current = parse_keys(settings.pii_keys) if settings.pii_keys else {}
    key_id = key_id or _free_key_id(current)
    if not KEY_ID_PATTERN.match(key_id) or key_id in current:
        raise PiiKeyError(f"key id {key_id!r} is taken or not [A-Za-z0-9_.-]{{1,32}}")
    entry = f"{key_id}:{new_key()}"
    if not current:
        lines = [
            "# Personal-data keys: set both, identically, in every API and worker process",
            "# sharing the database. Keep them in a secret store, never in the repository;",
            "# losing them loses every member's phone and name.",
            f"{KEYS_VARIABLE}={entry}",
            f"{HASH_KEY_VARIABLE}={new_key()}",
        ]
        key_file = _allowed_key_file(settings)
        if key_file is not None and key_file.exists():
            lines.insert(
                0,
                f"# Members already in the embedded database are encrypted under {key_file}:"
                " to keep them readable, set that file's two values instead.",
            )
        return lines
    old = ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in current.items())
    return [
        f"# Rotation to key {key_id!r}; {HASH_KEY_VARIABLE} stays as it is.",
        "# Step 1: every process learns the new key (it still encrypts with the current one):",
        f"{KEYS_VARIABLE}={old},{entry}",
        "# Step 2: once every process runs step 1, every process encrypts with the new key:",
        f"{KEYS_VARIABLE}={entry},{old}",
        "# Step 3: `nestpoint members rotate-keys` re-encrypts older rows; when it reports 0",
        "# everywhere, drop the old keys from the list.",
    ]


def _free_key_id(taken: dict[str, bytes]) -> str:
    base = f"k{datetime.now(UTC):%Y%m%d}"
    candidates = (base, *(f"{base}-{n}" for n in range(2, 100)))
    return next(c for c in candidates if c not in taken)


def row_context(tenant_id: object, table: str, row_id: object) -> bytes:
    """Associated data binding a ciphertext to its tenant, table and row (not to the member:
    a merge moves children and identities to another member and they must stay readable)."""
    return f"{tenant_id}:{table}:{row_id}".encode()


def identity_hash(kind: str, value: str) -> str:
    """The keyed lookup hash of a channel identity (card number, openid, ...).

    The kind is part of the hashed text, so equal values of two kinds (or a phone) never
    share a hash."""
    return keyring().lookup_hash(f"identity:{kind}:{value}")


def mask_identity(value: str) -> str:
    """``6222020012345678`` → ``****5678``: the last four characters of a long value only."""
    return "****" + value[-4:] if len(value) >= 8 else "****"


def mask_name(name: str) -> str:
    """``王芳`` → ``王*``: the first character only."""
    return name[:1] + "*" * max(len(name) - 1, 1)


def normalize_phone(raw: str, region: str = "CN") -> str:
    """E.164 form of a valid number (region CN by default), else :class:`InvalidPhone`."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:  # its text is the library's, not ours
        raise InvalidPhone(f"not a valid phone number for region {region}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"not a valid phone number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """``+8613812345678`` → ``+86 138****5678``: enough for a clerk to confirm, no more.

    It runs on every lookup: the country code is read off the E.164 digits (country codes
    are prefix-free, one to three digits) rather than by parsing the number again."""
    digits = e164.removeprefix("+")
    size = next(n for n in (1, 2, 3) if int(digits[:n]) in COUNTRY_CODES)
    code, national = digits[:size], digits[size:]
    if len(national) <= 7:
        return f"+{code} " + "*" * (len(national) - 2) + national[-2:]
    return f"+{code} {national[:3]}{'*' * (len(national) - 7)}{national[-4:]}"


COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
