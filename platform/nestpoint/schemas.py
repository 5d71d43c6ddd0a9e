"""The one base of every request body and manifest shape: unknown fields are refused.

A typo'd field (``"point_used"``) is a 422 naming it, never silently ignored; the OpenAPI
document says so (``additionalProperties: false``, see ``api/openapi.py``). Response shapes
derive from pydantic's ``BaseModel`` directly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
