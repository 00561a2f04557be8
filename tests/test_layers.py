"""The import graph of statestore, imports inside functions included: no cycle, and no layer imports one above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "statestore"

# The layers, top to bottom (docs/design.md draws them). A module may import its own layer and the layers below
# it, never one above. The package root (the public names) and the test kit sit above all of them.
LAYERS = [
    ["statestore.cli"],
    ["statestore.copying"],
    ["statestore.sync", "statestore.api"],
    ["statestore.core"],
    ["statestore.telemetry"],
    ["statestore.config", "statestore.check"],
    ["statestore.codec"],
    ["statestore.keys"],
    ["statestore.backends"],
    ["statestore.util"],
    ["statestore.errors"],
]


def _layer(module: str) -> int | None:
    """The index of ``module``'s layer (0 is the top), or None for the root package and the test kit."""
    for index, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return index
    return None


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, source: str, is_package: bool = False) -> set[str]:
    """Every statestore name module ``name`` imports, wherever in ``source`` (``TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse(source)
    base = name.split(".") if is_package else name.split(".")[:-1]
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*anchor, node.module] if node.module else anchor)
            targets.update(f"{module}.{a.name}" for a in node.names)
            targets.add(module)
    return {t for t in targets if t.startswith("statestore")}


def _resolve(target: str, modules: dict[str, Path]) -> str:
    while target not in modules:
        target = target.rpartition(".")[0]
    return target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {
            _resolve(t, modules) for t in _imports(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")
        }
        - {name, "statestore"}
        for name, path in modules.items()
    }


def test_no_module_imports_a_layer_above_it() -> None:
    wrong = []
    for name, targets in sorted(_graph().items()):
        mine = _layer(name)
        for target in sorted(targets):
            theirs = _layer(target)
            if target.startswith("statestore.testing") and not name.startswith("statestore.testing"):
                wrong.append(f"{name} -> {target} (the library never imports its test kit)")
            elif mine is not None and theirs is not None and theirs < mine:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_every_module_has_a_layer() -> None:
    unplaced = [n for n, t in _graph().items() if _layer(n) is None and t and not n.startswith("statestore.testing")]
    assert unplaced == ["statestore"]


def test_no_import_cycle() -> None:
    graph = _graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    cycles = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if reaches(b, a))
    assert cycles == []


def test_imports_inside_functions_count_and_typing_only_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .errors import InvalidInputError\n"
        "if TYPE_CHECKING:\n"
        "    from .store import Store\n"
        "def f():\n"
        "    from .config import Settings\n"
        "    from ..facade import build_store\n"
    )
    found = _imports("statestore.backends.x", source)
    assert "statestore.backends.errors" in found and "statestore.config" not in found
    assert {"statestore.backends.config", "statestore.facade.build_store"} <= found
    assert not any("store.Store" in t or t.endswith(".store") for t in found)
    assert {"statestore.errors", "statestore.config"} <= _imports("statestore.paths", source)
