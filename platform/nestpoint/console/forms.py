"""Forms generated from a JSON schema (a plugin's configuration schema).

Each top-level property becomes one input by its JSON-schema type: ``string`` (text),
``integer`` and ``number`` (a number), ``boolean`` (checkbox), an ``enum`` (select), an
array of strings (comma-separated text). Anything else is shown, not edited. The submitted
form is turned back into values of those types; the plugin host validates them
(``validate_config``), so its errors name the fields the inputs are named after
(``config.<field>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nestpoint.console.web import _
from nestpoint.errors import FieldError, Invalid

PREFIX = "config."  # an input's name: config.<field>, as the host's errors name it
MARK = "config_fields"  # a hidden input listing the fields the form showed (for checkboxes)


@dataclass(frozen=True, slots=True)
class Input:
    name: str  # the property
    kind: str  # "string", "integer", "number", "boolean", "enum", "list", "shown"
    title: str
    description: str
    value: Any
    options: list[str] = field(default_factory=list)
    nullable: bool = False

    @property
    def text(self) -> str:
        """The value as the input shows it."""
        if self.value is None:
            return ""
        if self.kind == "list":
            return ", ".join(str(v) for v in self.value)
        return str(self.value)


def _resolved(schema: dict[str, Any], prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property's own schema (a ``$ref`` followed, ``X | None`` unwrapped)."""
    nullable = False
    options = prop.get("anyOf") or prop.get("oneOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        nullable = len(rest) < len(options)
        if len(rest) == 1:
            prop = {**prop, **rest[0]}
    ref = prop.get("$ref", "")
    if ref.startswith("#/$defs/"):
        prop = {**prop, **schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})}
    return prop, nullable


def inputs(schema: dict[str, Any] | None, values: dict[str, Any]) -> list[Input]:
    """One input per property of ``schema``, filled with ``values``."""
    if not schema:
        return []
    made = []
    for name, raw in schema.get("properties", {}).items():
        prop, nullable = _resolved(schema, raw)
        kind = "shown"
        if "enum" in prop:
            kind = "enum"
        elif prop.get("type") in ("string", "integer", "number", "boolean"):
            kind = str(prop["type"])
        elif prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
            kind = "list"
        made.append(
            Input(
                name=name,
                kind=kind,
                title=str(prop.get("title") or name),
                description=str(prop.get("description") or ""),
                value=values.get(name, prop.get("default")),
                options=[str(o) for o in prop.get("enum", [])],
                nullable=nullable,
            )
        )
    return made


def submitted(schema: dict[str, Any] | None, form: dict[str, str]) -> dict[str, Any]:
    """The configuration a form sent, typed by ``schema``; :class:`Invalid` naming each
    field that is not of its type (the host checks the rest)."""
    shown = set(form.get(MARK, "").split(","))
    config: dict[str, Any] = {}
    errors: list[FieldError] = []
    for made in inputs(schema, {}):
        if made.name not in shown or made.kind == "shown":
            continue
        key = PREFIX + made.name
        text = form.get(key, "").strip()
        if made.kind == "boolean":
            config[made.name] = key in form
        elif text == "" and made.nullable:
            config[made.name] = None
        elif made.kind == "integer":
            try:
                config[made.name] = int(text)
            except ValueError:
                errors.append(FieldError(key, _("Enter a whole number")))
        elif made.kind == "number":
            number = _finite(text)
            if number is None:
                errors.append(FieldError(key, _("Enter a number")))
            else:
                config[made.name] = number
        elif made.kind == "list":
            config[made.name] = [part.strip() for part in text.split(",") if part.strip()]
        else:
            config[made.name] = text
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return config


def _finite(text: str) -> float | None:
    """``text`` as a finite number (no NaN or infinity: JSON has none), else None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
