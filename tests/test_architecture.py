"""The core's imports point one way (docs/architecture.md, "Layers").

import-linter (`make lint`) keeps the layer contracts; these two checks keep what its
contract types cannot say: no import circle between the core's modules, and no import
inside a function that would hide one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import nestpoint

CORE = Path(nestpoint.__file__).parent

# Commands import what they run when they run (see the note in each): `nestpoint --help`
# starts without the app. The pytest plugin is loaded before a suite sets its environment.
LAZY_BY_DESIGN = {
    "cli.py",
    "jobs/cli.py",
    "messaging/cli.py",
    "exports/cli.py",
    "imports/cli.py",
    "privacy/cli.py",
    "coupons/cli.py",
    "payments/cli.py",
    "campaigns/cli.py",
    "console/cli.py",
    "billing/cli.py",
    "membership/cli.py",
    "memberapi/cli.py",
    "analytics/cli.py",
    "settlement/cli.py",
    "testing.py",
}


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] == "nestpoint")
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index and imported.split(".")[0] == "nestpoint":
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_in_the_core() -> None:
    # Every import counts, including those inside functions and under TYPE_CHECKING.
    graph = grimp.build_graph("nestpoint", cache_dir=None)
    assert _cycles(graph) == []


def _function_local_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith(
                    "nestpoint"
                ):
                    found.append(f"{path.relative_to(CORE)}:{inner.lineno} {inner.module}")
                elif isinstance(inner, ast.Import):
                    found += [
                        f"{path.relative_to(CORE)}:{inner.lineno} {alias.name}"
                        for alias in inner.names
                        if alias.name.startswith("nestpoint")
                    ]
    return found


def test_no_function_local_import_of_the_core() -> None:
    found = [
        line
        for path in sorted(CORE.rglob("*.py"))
        if path.relative_to(CORE).as_posix() not in LAZY_BY_DESIGN
        for line in _function_local_imports(path)
    ]
    assert found == []
