"""What the API accepts as input, checked before any handler runs.

- A request body is JSON: sent as ``application/json`` (or ``application/*+json``), valid
  UTF-8, at most :data:`MAX_JSON_DEPTH` levels deep. Anything else is a 400 naming
  ``header.content-type`` or ``body``, never a 500.
- Request bodies are validated as JSON in pydantic's strict mode: ``"2"`` is not an integer
  and ``true`` is not ``1``, while UUIDs and dates are read from their JSON strings. As in
  JSON Schema, ``2.0`` is the integer 2.
- Query parameters are valid UTF-8 without NUL (PostgreSQL text cannot hold NUL), else a 400
  naming ``query.<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request
from litestar._signature.types import ExtendedMsgSpecValidationError
from litestar.plugins.pydantic import PydanticInitPlugin
from litestar.plugins.pydantic.plugins.init import is_pydantic_v2_model_class
from litestar.utils.empty import value_or_default
from pydantic import BaseModel, ValidationError

from nestpoint.errors import Malformed
from nestpoint.limits import MAX_JSON_DEPTH, json_depth

_JSON_MEDIA_TYPE = re.compile(r"^application/(?:[a-z0-9.+-]+\+)?json$")


class JsonRequest(Request[Any, Any, Any]):
    """A request whose ``json()`` refuses what is not a sane JSON body, with a 400."""

    async def json(self) -> Any:
        cached = value_or_default(self._connection_state.json, None)
        if cached is not None:
            return cached
        body = await self.body()
        if body:
            _check_media_type(self.headers.get("content-type"))
        value = decode_body(body or b"null")
        self._json = self._connection_state.json = value
        return value


def _check_media_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not _JSON_MEDIA_TYPE.match(media_type):
        raise Malformed.field(
            "header.content-type",
            f"send the body as application/json (got {media_type[:100] or 'no content type'})",
        )


def decode_body(body: bytes) -> Any:
    """The JSON value of ``body``, or :class:`Malformed` naming ``body``."""
    try:
        value = msgspec.json.decode(body)
    except UnicodeDecodeError:
        raise Malformed.field("body", "the body is not valid UTF-8") from None
    except RecursionError:
        raise Malformed.field("body", f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except msgspec.DecodeError as exc:
        raise Malformed.field("body", f"not valid JSON: {exc}") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise Malformed.field("body", f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _json_numbers(value: Any) -> Any:
    """JSON has one number type: 2.0 is the integer 2 (as in JSON Schema), 2.5 is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_json_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    return value


def _strict_from_json(model_type: type[BaseModel], value: Any) -> BaseModel:
    # The body was decoded to Python values; validating them again as JSON keeps pydantic's
    # JSON rules (a UUID or a date from its string) with strict types (no "2" for 2).
    try:
        raw = msgspec.json.encode(_json_numbers(value))
        return model_type.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        # "data" first: Litestar then places each error in the body, even when a path
        # parameter has the field's name (a refund's external_id).
        errors = [
            {**error, "loc": ("data", *error["loc"])} for error in exc.errors(include_input=False)
        ]
        raise ExtendedMsgSpecValidationError(errors=errors) from exc


class StrictJsonBodies(PydanticInitPlugin):
    """Pydantic models in requests are validated as strict JSON (see the module doc)."""

    @classmethod
    def decoders(
        cls, validate_strict: bool = False
    ) -> list[tuple[Callable[[Any], bool], Callable[[Any, Any], Any]]]:
        return [
            (is_pydantic_v2_model_class, _strict_from_json),
            *super().decoders(validate_strict=validate_strict),
        ]


def path_problem(path: str) -> Malformed | None:
    """A 400 for a path holding NUL (``%00``, decoded by the server): no database takes it
    as text, so it must never reach one as a path parameter."""
    return Malformed.field("path", "holds NUL") if "\x00" in path else None


def query_problem(query_string: bytes) -> Malformed | None:
    """A 400 for the first query parameter that is not valid UTF-8 or holds NUL."""
    for pair in query_string.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = _text(raw_name)
        value = _text(raw_value)
        if name is None:
            return Malformed.field("query", "a parameter name is not valid UTF-8 or holds NUL")
        if value is None:
            return Malformed.field(f"query.{name[:100]}", "not valid UTF-8, or holds NUL")
    return None


def _text(raw: bytes) -> str | None:
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text
