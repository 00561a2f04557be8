"""docs/temporal.md: each code block is a whole file that compiles, the recipe fences every write, the page is linked.

The files run on a real Temporal server in the Temporal tier (``tests/temporal/test_temporal_recipe.py``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TEMPORAL_MD = DOCS / "temporal.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
FILE_NAME = re.compile(r"# (\w+\.py)\n")
FILES = ("checkpoint_activities.py", "checkpoint_workflow.py", "checkpoint_worker.py", "sync_worker.py")
ACTIVITIES = {"checkpoint_activities.py": "process_with_checkpoint", "sync_worker.py": "process_with_checkpoint_sync"}
FENCED_WRITES = {"save_state", "save_state_object", "update_state", "replace_state", "delete_state"}


def doc_files() -> dict[str, str]:
    """The files docs/temporal.md shows, by the name on each block's first line."""
    files: dict[str, str] = {}
    for language, body in BLOCK.findall(TEMPORAL_MD.read_text(encoding="utf-8")):
        match = FILE_NAME.match(body)
        assert language == "python" and match, f"a block of docs/temporal.md is not a named Python file: {body[:80]!r}"
        assert match[1] not in files, f"docs/temporal.md shows {match[1]} twice"
        files[match[1]] = body
    return files


def test_every_block_is_a_named_python_file_that_compiles() -> None:
    files = doc_files()
    assert tuple(files) == FILES
    for name, source in files.items():
        compile(source, name, "exec")


def method_calls(function: ast.AST) -> list[tuple[str, ast.Call]]:
    """The method calls in ``function`` (``x.name(...)``), by name, in source order."""
    found = [
        (n.func.attr, n) for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    return sorted(found, key=lambda item: (item[1].lineno, item[1].col_offset))


@pytest.mark.parametrize(("name", "activity"), sorted(ACTIVITIES.items()))
def test_the_recipe_acquires_a_fence_before_reading_and_fences_every_write(name: str, activity: str) -> None:
    tree = ast.parse(doc_files()[name])
    function = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == activity
    )
    methods = method_calls(function)
    names = [m for m, _ in methods]
    assert names.index("acquire_fence") < names.index("get_state")
    writes = [c for m, c in methods if m in FENCED_WRITES]
    assert len(writes) >= 2
    for write in writes:
        assert any(k.arg == "fence" for k in write.keywords), f"{name}: a write without fence= at line {write.lineno}"
    handlers = [n for n in ast.walk(function) if isinstance(n, ast.ExceptHandler)]
    assert [ast.unparse(h.type) for h in handlers if h.type is not None] == ["FencedError"]
    assert "non_retryable=True" in ast.unparse(handlers[0])


def test_the_page_is_linked_from_the_readme_and_the_api_reference() -> None:
    assert "](docs/temporal.md)" in (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert "](temporal.md)" in (DOCS / "api.md").read_text(encoding="utf-8")
