"""The hook reference (``docs/plugins/reference.md``), generated from the hookspec docstrings.

``nestpoint plugins reference --output docs/plugins/reference.md`` writes it; a test fails
when the file differs from what this module generates, or when a hook's docstring misses a
part (:func:`check_hook`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nestpoint.plugins import PROJECT_NAME, hookspecs

MEMBER_RIGHTS = frozenset({"nestpoint_collect_member_data", "nestpoint_erase_member_data"})
GROUPS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    (
        "Registration hooks",
        "Called once per plugin at start-up with a registry bound to the plugin. What a "
        "plugin registers exists for every tenant and is active only where the plugin is "
        "enabled.",
        lambda name: name.startswith("nestpoint_register_"),
    ),
    (
        "Points and channels",
        "Asked by the core inside a request, for the tenant and store at hand.",
        lambda name: (
            not name.startswith(("nestpoint_register_", "nestpoint_on_"))
            and name not in MEMBER_RIGHTS
        ),
    ),
    (
        "Members' rights",
        "Asked by a worker for one member's data export (the right of access and copy) "
        "and after a member's erasure (the right of deletion), for the member's chain.",
        lambda name: name in MEMBER_RIGHTS,
    ),
    (
        "Event hooks",
        "Delivered from the outbox after the change that raised the event has committed. "
        "``nestpoint_on_event`` receives every event; each event type also has a hook of "
        "its own.",
        lambda name: name.startswith("nestpoint_on_"),
    ),
)


@dataclass
class HookDoc:
    name: str
    parameters: list[str]
    firstresult: bool
    summary: str
    sections: dict[str, str] = field(default_factory=dict)
    arguments: list[tuple[str, str]] = field(default_factory=list)


def hookspec_functions() -> list[Callable[..., Any]]:
    """Every hook specification, in the order of the module."""
    marker = f"{PROJECT_NAME}_spec"
    functions = [
        value
        for name, value in vars(hookspecs).items()
        if name.startswith("nestpoint_") and hasattr(value, marker)
    ]
    return sorted(functions, key=lambda f: f.__code__.co_firstlineno)


def parse(function: Callable[..., Any]) -> HookDoc:
    marker = getattr(function, f"{PROJECT_NAME}_spec")
    doc = inspect.cleandoc(function.__doc__ or "")
    hook = HookDoc(
        name=function.__name__,
        parameters=list(inspect.signature(function).parameters),
        firstresult=bool(marker.get("firstresult")),
        summary="",
    )
    current: str | None = None
    buffer: list[str] = []

    def flush() -> None:
        text = "\n".join(buffer).strip("\n").rstrip()
        if current is None:
            hook.summary = text
        else:
            hook.sections[current] = text
        buffer.clear()

    for line in doc.splitlines():
        label = next((s for s in hookspecs.DOC_SECTIONS if line.startswith(s)), None)
        if label is not None:
            flush()
            current = label.rstrip(":")
            buffer.append(line[len(label) :].strip())
        else:
            buffer.append(line)
    flush()
    for line in hook.sections.get("Arguments", "").splitlines():
        if line.startswith("    ") and not line.startswith("     ") and ":" in line:
            name, _, text = line.strip().partition(":")
            hook.arguments.append((name.strip(), text.strip()))
        elif hook.arguments and line.strip():
            name, text = hook.arguments[-1]
            hook.arguments[-1] = (name, f"{text} {line.strip()}")
    return hook


def check_hook(hook: HookDoc) -> list[str]:
    """What is missing from a hook's docstring (empty when it is complete)."""
    problems: list[str] = []
    if not hook.summary:
        problems.append("no summary line")
    for section in hookspecs.DOC_SECTIONS:
        if not hook.sections.get(section.rstrip(":")):
            problems.append(f"no {section!r} section")
    documented = [name for name, _ in hook.arguments]
    if documented != hook.parameters:
        problems.append(f"arguments documented {documented}, signature has {hook.parameters}")
    results = hook.sections.get("Results", "")
    if hook.firstresult != (hookspecs.FIRST_RESULT_SENTENCE in " ".join(results.split())):
        problems.append("the firstresult sentence must appear exactly for firstresult hooks")
    async_text = hook.sections.get("Async", "")
    if not async_text.startswith(("may be async", "must be synchronous")):
        problems.append("'Async:' must say 'may be async' or 'must be synchronous'")
    return problems


def _text(value: str) -> str:
    """Docstring text as one markdown paragraph (reST double backticks become single)."""
    return " ".join(value.split()).replace("``", "`").replace(":class:`", "`")


def render() -> str:
    hooks = [parse(f) for f in hookspec_functions()]
    lines = [
        "# Hook reference",
        "",
        "<!-- Generated from platform/nestpoint/plugins/hookspecs.py by",
        "     `nestpoint plugins reference --output docs/plugins/reference.md`. Do not edit:",
        "     change the docstrings and regenerate (a test compares the two). -->",
        "",
        "Every hook Nestpoint calls, from its specification. Implement one with",
        "`@hookimpl` from `nestpoint.plugins.api`, in a module your package names in the",
        "`nestpoint` entry-point group; an implementation may take fewer arguments than the",
        "specification lists. The core calls hooks only through its plugin host, which calls",
        "each implementation on its own (a failure or timeout affects that plugin only),",
        "awaits async implementations, and calls only the plugins enabled for the tenant and",
        "store at hand.",
        "",
    ]
    for title, _intro, belongs in GROUPS:
        members = [h for h in hooks if belongs(h.name)]
        lines += [f"- [{title}](#{title.lower().replace(' ', '-')})"]
        lines += [f"  - [`{h.name}`](#{h.name})" for h in members]
    lines.append("")
    for title, intro, belongs in GROUPS:
        lines += [f"## {title}", "", _text(intro), ""]
        for hook in (h for h in hooks if belongs(h.name)):
            lines += [
                f'<a id="{hook.name}"></a>',
                "",
                f"### `{hook.name}({', '.join(hook.parameters)})`",
                "",
                _text(hook.summary),
                "",
                f"- **When:** {_text(hook.sections['When'])}",
                "- **Arguments:**",
            ]
            lines += [f"  - `{name}`: {_text(text)}" for name, text in hook.arguments]
            for section in ("Returns", "Async", "Results", "Scope"):
                lines.append(f"- **{section}:** {_text(hook.sections[section])}")
            lines.append("")
    lines += [
        "## Event catalogue",
        "",
        "| event type | hook |",
        "| --- | --- |",
    ]
    lines += [
        f"| `{t}` | [`{hookspecs.event_hook_name(t)}`](#{hookspecs.event_hook_name(t)}) |"
        for t in hookspecs.EVENT_TYPES
    ]
    lines.append("")
    return "\n".join(lines)
