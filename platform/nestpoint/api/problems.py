"""RFC 9457 problem details for every error the API returns.

Every error body is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, the ``request_id``, and, for bad input, ``errors``: one entry per bad field, with
the field's name and a message. A body field is named by its path in the body
(``code``, ``lines.0.quantity``, ``config.colour``), a parameter by where it is
(``query.limit``, ``path.code``, ``header.content-type``), the body as a whole ``body``.

400: the request does not match the OpenAPI schema (not JSON, a wrong type, a missing or
unknown field, a pattern or a limit). 422: it matches the schema but breaks a rule, a
validator's (``exactly one of``, a duplicate channel) or the tenant's data's.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from nestpoint.context import TenantContextMissing, request_id
from nestpoint.db.outage import database_unavailable
from nestpoint.db.pagination import InvalidCursor
from nestpoint.errors import Invalid, Malformed, NestpointError, RateLimited
from nestpoint.limits import MAX_BODY_BYTES

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://nestpoint.dev/problems/"

log = logging.getLogger("nestpoint.api")


class ProblemField(BaseModel):
    field: str = Field(
        description="The bad value: a body field by its path (code, lines.0.quantity), a "
        "parameter by where it is (query.limit, path.code, header.content-type), or body."
    )
    message: str


class ProblemDetails(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[ProblemField] = Field(default_factory=list)


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    errors: list[dict[str, str]] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id.get(),
        "errors": errors or [],
    }
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


RULE_PREFIX = "Value error, "  # pydantic's prefix for a validator's own ValueError


def _validation_errors(exc: ValidationException) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        source = item.get("source") or "body"
        source = getattr(source, "value", source)  # a ParamType enum: "query", "path", ...
        key = item.get("key") or ""
        message = str(item.get("message", "invalid"))
        if source == "body" and key == "data":  # the handler's body argument: the whole body
            key = ""
            if message == "'data'":  # a KeyError's text: there was no body at all
                message = "a JSON body is required"
        field = _field_name(str(source), key)
        errors.append({"field": field, "message": message})
    return errors


def _field_name(source: str, key: str) -> str:
    """A body field by its path in the body, as services name it too (``lines.0.quantity``);
    a parameter by where it is (``query.limit``, ``path.code``); ``body`` for the whole."""
    if source == "body":
        return key or "body"
    return f"{source}.{key}" if key else source


def _breaks_rules_only(errors: list[dict[str, str]]) -> bool:
    """Every error comes from a validator's rule, none from the shape: a 422, not a 400."""
    return bool(errors) and all(e["message"].startswith(RULE_PREFIX) for e in errors)


def handle_nestpoint_error(request: Request[Any, Any, Any], exc: NestpointError) -> Response[Any]:
    errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    # A service's own limit (codes sent per member) says when to try again, like the key's.
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        slug=exc.slug,
        errors=errors,
        instance=request.url.path,
        headers=headers,
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, RequestEntityTooLarge):  # a limit, like a string's length: a 400
        limit = _body_limit(request)
        too_large = Malformed.field("body", f"larger than {limit} bytes")
        return handle_nestpoint_error(request, too_large)
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        if _breaks_rules_only(errors):
            errors = [{**e, "message": e["message"].removeprefix(RULE_PREFIX)} for e in errors]
            status, title, slug = Invalid.status, Invalid.title, Invalid.slug
        else:
            status, title, slug = Malformed.status, Malformed.title, Malformed.slug
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or exc.detail
        return problem_response(
            status, title, detail, slug=slug, errors=errors, instance=request.url.path
        )
    status = exc.status_code
    if status >= 500:
        log.error("server error", exc_info=exc)
    return problem_response(
        status,
        _title(status),
        str(exc.detail),
        slug=_title(status).lower().replace(" ", "-"),
        instance=request.url.path,
        headers=dict(exc.headers or {}),
    )


def _body_limit(request: Request[Any, Any, Any]) -> int:
    """The body limit of the request's route (a plugin's upload may allow more)."""
    try:
        return request.route_handler.resolve_request_max_body_size() or MAX_BODY_BYTES
    except (KeyError, AttributeError):  # no route matched: the application's limit
        return MAX_BODY_BYTES


def handle_invalid_cursor(request: Request[Any, Any, Any], exc: InvalidCursor) -> Response[Any]:
    return problem_response(
        400,
        "Invalid request",
        f"query.cursor: {exc}",
        slug="validation",
        errors=[{"field": "query.cursor", "message": str(exc)}],
        instance=request.url.path,
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if database_unavailable(exc):  # an outage in a shape SQLAlchemy did not wrap
        return handle_database_error(request, exc)
    if isinstance(exc, TenantContextMissing):
        log.error("tenant context missing", exc_info=exc)
    else:
        log.exception("unhandled error", exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal server error",
        "The server failed to handle the request; it has been logged with its request id.",
        slug="internal",
        instance=request.url.path,
    )


RETRY_AFTER_SECONDS = 5


def handle_database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The database does not answer (refused, dropped, pool exhausted): 503 with
    ``Retry-After``, so a till retries (with the same key: idempotent) rather than giving up.
    Any other database error is a defect: 500."""
    if not database_unavailable(exc):
        return handle_unexpected(request, exc)
    log.error("database unavailable", exc_info=exc)
    return problem_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        "Service unavailable",
        "The database does not answer; retry shortly (with the same idempotency key).",
        slug="unavailable",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


EXCEPTION_HANDLERS: dict[Any, Any] = {
    NestpointError: handle_nestpoint_error,
    HTTPException: handle_http_exception,
    InvalidCursor: handle_invalid_cursor,
    SQLAlchemyError: handle_database_error,
    OSError: handle_database_error,
    Exception: handle_unexpected,
}

_DESCRIPTIONS = {
    400: "The request does not match this schema (not JSON, a wrong type, a missing or "
    "unknown field, a bad pattern or length); `errors` names each bad field.",
    401: "No API key, or one that is unknown or revoked.",
    403: "The key lacks the scope this operation needs.",
    404: "No such resource for this key, or the body names one that does not exist "
    "(other tenants' resources are never revealed).",
    409: "Conflicts with an existing resource.",
    422: "The request matches the schema but breaks a rule (of the API or of the tenant's "
    "data and configuration); `errors` names each field.",
    429: "Over this API key's rate limit (`NESTPOINT_RATE_LIMIT`): retry after `Retry-After` "
    "seconds.",
    503: "The database does not answer: retry after `Retry-After` seconds, with the same "
    "idempotency key.",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for a route's error statuses (400, 401, 403, 429 and 503 are
    always possible)."""
    codes = sorted({400, 401, 403, 429, 503, *statuses})
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            description=_DESCRIPTIONS.get(code, "Error"),
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in codes
    }


__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "ProblemDetails", "problems"]
