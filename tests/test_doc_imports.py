"""Every import of statestore that the README and docs/*.md show works against the real package.

A reader copies these lines first: ``from statestore import X`` for a name that lives in
``statestore.backends`` fails before their code runs. Code blocks and inline code are both read,
parenthesised imports over several lines too (a lone capital letter is a placeholder). The decision records are
history and are not read.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import statestore
import statestore.backends

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FROM = re.compile(r"\bfrom\s+(statestore(?:\.\w+)*)\s+import\s+(\([^)]*\)|[\w, ]+(?:\\\n[\w, ]+)*)")
IMPORT = re.compile(r"(?<![\w.])import\s+(statestore(?:\.\w+)*)")


def documented_imports() -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, module, names) for each import of statestore in the docs; names is empty for ``import module``."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FROM.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            names = re.sub(r"#[^\n]*", "", match.group(2)).strip("()").replace("\\", " ")
            parsed = tuple(part.split(" as ")[0].strip() for part in names.split(",") if part.strip())
            if all(re.fullmatch(r"[A-Z]", name) for name in parsed):  # a placeholder: `from statestore import X`
                continue
            found.append((f"{path.name}:{line}", match.group(1), parsed))
        for match in IMPORT.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.name}:{line}", match.group(1), ()))
    return found


IMPORTS = documented_imports()


def test_the_backend_values_docs_testing_md_names_are_imported_there() -> None:
    """A backend author meets ``NotModified``, ``Versioned``, ``PutResult``... there: the page says where they live."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    values = {name for name in statestore.backends.__all__ if not name.endswith("Backend")}
    named = {name for name in values if re.search(rf"`{name}\b", text)}
    imported = {name for where, _, names in IMPORTS if where.startswith("testing.md:") for name in names}
    assert {"NotModified", "Versioned", "PutResult", "ObjectMeta"} <= named
    assert named - imported == set(), "docs/testing.md names these without saying where they are imported from"


@pytest.mark.parametrize(("where", "module", "names"), IMPORTS, ids=[where for where, _, _ in IMPORTS])
def test_a_documented_import_works(where: str, module: str, names: tuple[str, ...]) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, f"{where}: 'from {module} import {', '.join(names)}': {missing} not in {module}"


def test_the_root_keeps_a_small_api() -> None:
    """Decision 49: at most 35 names at the root; the backend protocol's values stay in ``statestore.backends``."""
    assert len(statestore.__all__) <= 35
    assert "NotModified" not in statestore.__all__
