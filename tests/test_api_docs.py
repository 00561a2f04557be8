"""docs/api.md lists every public name with an example that is valid Python."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import statestore
import statestore.config.url
import statestore.sync
import statestore.telemetry
from statestore import StateStore, Store

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"
ROW = re.compile(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \| (.+) \| `(.+)` \|$")


def rows() -> dict[str, str]:
    """Each documented name and its example."""
    found: dict[str, str] = {}
    for line in API_MD.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            found.setdefault(match.group(1), match.group(3))
    return found


def store_methods() -> set[str]:
    return {name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))}


MODULES = (statestore, statestore.sync, statestore.config.url, statestore.telemetry)


@pytest.mark.parametrize(
    "names",
    [pytest.param(m.__all__, id=m.__name__) for m in MODULES] + [pytest.param(sorted(store_methods()), id="Store")],
)
def test_every_public_name_has_a_row(names: list[str]) -> None:
    missing = sorted(set(names) - set(rows()))
    assert not missing, f"docs/api.md has no row for {missing}"


def test_every_example_is_python() -> None:
    for name, example in rows().items():
        source = f"try:\n    pass\n{example}" if example.startswith("except") else example
        try:
            compile(source, f"<{name}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            raise AssertionError(f"the example of {name} is not Python: {example}") from exc


def test_statestore_classmethods_are_the_store_methods_it_says() -> None:
    facade = {name for name in dir(StateStore) if not name.startswith("_")}
    assert store_methods() - facade == {"key", "check", "reencrypt_states", "from_url", "aclose"}
    assert "except `key`, `check`, `reencrypt_states`, `from_url`, `aclose`" in API_MD.read_text(encoding="utf-8")
