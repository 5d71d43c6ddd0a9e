"""OpenAPI schemas of pydantic models that state every constraint the validators enforce.

Litestar builds a model's OpenAPI schema itself and drops the constraints it cannot place: a
pattern or length on an optional field (``Name | None``), the pattern of a list's items, a
list's maximum length. The schema then promises less than the API enforces, and a client
(or schemathesis) sends values the API rejects. This plugin keeps Litestar's component
schemas and references, but takes each property that refers to no other model from
pydantic's own JSON schema, which is what the validators check, and says when a model
forbids unknown fields (``extra="forbid"``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from litestar.plugins.pydantic import PydanticSchemaPlugin
from pydantic import BaseModel
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticUserError

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition


class PydanticConstraintsSchemaPlugin(PydanticSchemaPlugin):
    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        model = field_definition.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel) and schema.properties):
            return schema
        try:
            own = model.model_json_schema(by_alias=schema_creator.prefer_alias)
        except (PydanticInvalidForJsonSchema, PydanticUserError):
            return schema  # a type pydantic cannot describe: keep Litestar's schema
        for name, prop in own.get("properties", {}).items():
            if name in schema.properties and "$ref" not in json.dumps(prop):
                schema.properties[name] = _without_titles(prop)
        if own.get("additionalProperties") is False:  # extra="forbid"
            schema.additional_properties = False
        return schema


def _without_titles(schema: Any) -> Any:
    """Pydantic titles every property after its name; Litestar's schemas do not."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    schema = _key_pattern_as_property_names(schema)
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):  # keys here are field names
            cleaned[key] = {name: _without_titles(prop) for name, prop in value.items()}
        else:
            cleaned[key] = _without_titles(value)
    return cleaned


def _key_pattern_as_property_names(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic states a dict's key pattern as ``patternProperties``, which constrains only
    the keys that match: a key that does not match would be valid with any value. The API
    refuses such keys, so the pattern goes to ``propertyNames`` and the value schema to
    ``additionalProperties``."""
    patterns = schema.get("patternProperties")
    if not isinstance(patterns, dict) or len(patterns) != 1 or "additionalProperties" in schema:
        return schema
    ((pattern, values),) = patterns.items()
    rest = {k: v for k, v in schema.items() if k != "patternProperties"}
    return rest | {
        "propertyNames": {**rest.get("propertyNames", {}), "pattern": pattern},
        "additionalProperties": values,
    }
