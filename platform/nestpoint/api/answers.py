"""Idempotent writes answer through here: the stored status and body, marked on a replay."""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Response
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel

from nestpoint.idempotency.service import Answer

REPLAYED_HEADER = "Idempotent-Replayed"

ModelT = TypeVar("ModelT", bound=BaseModel)


def answered(answer: Answer[ModelT], model: type[ModelT]) -> Response[ModelT]:
    """The answer as first given (same status, same body), typed as ``model``; a replay
    (its body read back from the store) is validated into ``model`` and says so in a header.
    """
    headers = {REPLAYED_HEADER: "true"} if answer.replayed else {}
    result = answer.result if answer.result is not None else model.model_validate(answer.body)
    return Response(result, status_code=answer.status_code, headers=headers)


def created_spec(model: type[Any]) -> dict[int, ResponseSpec]:
    """OpenAPI for an idempotent create: 201 with ``model``, first time and on replay."""
    return {
        201: ResponseSpec(
            data_container=model,
            description=(
                "Created. A retry with the same key gets the same status and body, with the"
                f" `{REPLAYED_HEADER}: true` header."
            ),
        )
    }
