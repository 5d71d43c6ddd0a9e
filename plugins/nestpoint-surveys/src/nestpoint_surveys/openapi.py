"""OpenAPI descriptions of the routes whose bodies are not JSON (the HTML form and the CSV
export): Litestar describes a body from a ``data`` argument and an answer from a return
type; for raw text it cannot, so these operation classes say what the route takes and
answers."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

CSV = Schema(type=OpenAPIType.STRING, description="CSV text (UTF-8), a header row first.")
HTML = Schema(type=OpenAPIType.STRING, description="An HTML page.")
FORM = Schema(
    type=OpenAPIType.OBJECT,
    additional_properties=Schema(type=OpenAPIType.STRING),
    description="One field per question, named by its key: a choice's key (one per ticked "
    "box for a multiple choice), a score, or the text.",
)


def operation(
    *,
    status: str = "200",
    request: dict[str, Schema] | None = None,
    request_description: str = "",
    answer: dict[str, Schema] | None = None,
    answer_description: str = "",
    errors_as: dict[str, Schema] | None = None,
) -> type[Operation]:
    """An operation class whose request body and ``status`` answer are the given media
    types; with ``errors_as``, its problem statuses answer those media types too."""

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            if request is not None:
                self.request_body = RequestBody(
                    content={t: OpenAPIMediaType(schema=s) for t, s in request.items()},
                    description=request_description or None,
                    required=True,
                )
            if self.responses is None:
                return
            if answer is not None:
                self.responses[status] = OpenAPIResponse(
                    description=answer_description,
                    content={t: OpenAPIMediaType(schema=s) for t, s in answer.items()},
                )
            if errors_as is not None:
                for code in ("404", "409", "410", "422"):
                    found = self.responses.get(code)
                    if isinstance(found, OpenAPIResponse):
                        content = {t: OpenAPIMediaType(schema=s) for t, s in errors_as.items()}
                        self.responses[code] = OpenAPIResponse(
                            description=found.description, content=content
                        )

    return _Operation
