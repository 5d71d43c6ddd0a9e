"""RFC 9457 problem details for every error the API returns.

Every error body is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, the ``request_id``, and, for bad input, ``errors``: one entry per bad field, with
the field's path (``body.code``, ``query.limit``) and a message.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from pydantic import BaseModel, Field

from nestpoint.context import TenantContextMissing, request_id
from nestpoint.db.pagination import InvalidCursor
from nestpoint.errors import NestpointError

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://nestpoint.dev/problems/"

log = logging.getLogger("nestpoint.api")


class ProblemField(BaseModel):
    field: str = Field(description="Where the bad value is, e.g. body.code or query.limit.")
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


def _validation_errors(exc: ValidationException) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        source = item.get("source") or "body"
        source = getattr(source, "value", source)  # a ParamType enum: "query", "path", ...
        key = item.get("key") or ""
        field = f"{source}.{key}" if key else str(source)
        errors.append({"field": field, "message": str(item.get("message", "invalid"))})
    return errors


def handle_nestpoint_error(request: Request[Any, Any, Any], exc: NestpointError) -> Response[Any]:
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        slug=exc.slug,
        errors=[{"field": e.field, "message": e.message} for e in exc.errors],
        instance=request.url.path,
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or exc.detail
        return problem_response(
            400,
            "Invalid request",
            detail,
            slug="validation",
            errors=errors,
            instance=request.url.path,
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
    Exception: handle_unexpected,
}

_DESCRIPTIONS = {
    400: "The request is malformed; `errors` names each bad field.",
    401: "No API key, or one that is unknown or revoked.",
    403: "The key lacks the scope this operation needs.",
    404: "No such resource for this key (other tenants' resources are never revealed).",
    409: "Conflicts with an existing resource.",
    422: "The request is well-formed but breaks a rule; `errors` names each field.",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for a route's error statuses (400, 401, 403 are always possible)."""
    codes = sorted({400, 401, 403, *statuses})
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
