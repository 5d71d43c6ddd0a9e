"""Personal data at rest: AES-GCM encryption with rotatable keys, and a keyed hash for lookup.

Ciphertexts are ``<key id>:<base64(nonce || ciphertext)>``, so rows written under an old key
stay readable after a new key is put first; ``nestpoint members rotate-keys`` re-encrypts
them. The phone's lookup hash is an HMAC-SHA256 under a separate key: equal phones give equal
hashes (exact lookup, uniqueness per tenant) while a dump reveals neither phone nor name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nestpoint.settings import PROJECT_ROOT, get_settings

log = logging.getLogger("nestpoint.pii")

DEV_KEY_FILE = PROJECT_ROOT / "var" / "pii-keys.json"


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


def _parse_keys(spec: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for item in spec.split(","):
        key_id, _, b64 = item.strip().partition(":")
        key = base64.b64decode(b64)
        if not key_id or len(key) != 32:
            raise ValueError("NESTPOINT_PII_KEYS entries are '<id>:<base64 of 32 bytes>'")
        keys[key_id] = key
    return keys


def _dev_keys() -> tuple[str, str]:
    """Embedded default only: keys kept in a file under var/ (never in the repository)."""
    if DEV_KEY_FILE.exists():
        data = json.loads(DEV_KEY_FILE.read_text())
    else:
        DEV_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "pii_keys": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "pii_hash_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        DEV_KEY_FILE.write_text(json.dumps(data))
        DEV_KEY_FILE.chmod(0o600)
        log.warning("generated development PII keys", extra={"file": str(DEV_KEY_FILE)})
    return data["pii_keys"], data["pii_hash_key"]


@lru_cache
def keyring() -> Keyring:
    settings = get_settings()
    spec, hash_b64 = settings.pii_keys, settings.pii_hash_key
    if not spec or not hash_b64:
        dev_spec, dev_hash = _dev_keys()
        spec, hash_b64 = spec or dev_spec, hash_b64 or dev_hash
    keys = _parse_keys(spec)
    active = spec.split(",")[0].split(":")[0].strip()
    return Keyring(active, {k: AESGCM(v) for k, v in keys.items()}, base64.b64decode(hash_b64))


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
    """``+8613812345678`` → ``+86 138****5678``: enough for a clerk to confirm, no more."""
    number = phonenumbers.parse(e164)
    national = str(number.national_number)
    if len(national) <= 7:
        return f"+{number.country_code} " + "*" * (len(national) - 2) + national[-2:]
    return f"+{number.country_code} {national[:3]}{'*' * (len(national) - 7)}{national[-4:]}"
