"""Domain errors. Services raise these; the API turns them into RFC 9457 problem details."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class NestpointError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class Malformed(NestpointError):
    """The request does not match the API's schema (not JSON, a wrong type, a bad pattern)."""

    status = 400
    title = "Invalid request"
    slug = "validation"

    @classmethod
    def field(cls, field: str, message: str) -> Malformed:
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])


class Invalid(NestpointError):
    """The request matches the schema but breaks a rule (a validator, the tenant's data)."""

    status = 422
    title = "Invalid input"
    slug = "invalid"

    @classmethod
    def field(cls, field: str, message: str) -> Invalid:
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])


class Unauthorized(NestpointError):
    status = 401
    title = "Authentication required"
    slug = "unauthorized"


class RateLimited(NestpointError):
    """Over the rate limit of the API key (``Retry-After`` says when to try again)."""

    status = 429
    title = "Too many requests"
    slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Forbidden(NestpointError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(NestpointError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(NestpointError):
    status = 409
    title = "Conflict"
    slug = "conflict"
