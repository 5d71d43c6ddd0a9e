"""OpenAPI descriptions of the routes whose bodies are not JSON: a file upload, a document
or a CSV answered. Litestar describes a handler's body from its ``data`` argument and its
answer from its return type; for raw bytes it cannot, so these operation classes say what
the route really takes and answers."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
CSV = Schema(type=OpenAPIType.STRING, description="CSV text (UTF-8), a header row first.")


def operation(
    *,
    request: dict[str, Schema] | None = None,
    request_description: str = "",
    answer: dict[str, Schema] | None = None,
    answer_description: str = "",
) -> type[Operation]:
    """An operation class whose request body and 200 answer are the given media types."""

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            if request is not None:
                self.request_body = RequestBody(
                    content={t: OpenAPIMediaType(schema=s) for t, s in request.items()},
                    description=request_description or None,
                    required=True,
                )
            if answer is not None and self.responses is not None:
                self.responses["200"] = OpenAPIResponse(
                    description=answer_description,
                    content={t: OpenAPIMediaType(schema=s) for t, s in answer.items()},
                )

    return _Operation


def csv_upload(key_pattern: str) -> Schema:
    """The multipart form of a CSV upload."""
    return Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "file": Schema(
                type=OpenAPIType.STRING,
                format=OpenAPIFormat.BINARY,
                description="The CSV file (at most 1 MiB).",
            ),
            "idempotency_key": Schema(type=OpenAPIType.STRING, pattern=key_pattern),
            "encoding": Schema(
                type=OpenAPIType.STRING,
                enum=["utf-8", "gb18030"],
                default="utf-8",
                description="The file's encoding: `gb18030` for a file Excel saved in Chinese.",
            ),
        },
        required=["file", "idempotency_key"],
    )
