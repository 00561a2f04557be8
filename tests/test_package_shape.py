"""The package's shape, as issue 26 asked for it: short modules, a small root, no private reads, lazy imports.

The import direction between layers is tested in ``test_layers.py``; here what a newcomer relies on beside it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import statestore

PACKAGE = Path(__file__).resolve().parent.parent / "statestore"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: Private attributes of asyncio's loops and of OpenTelemetry's globals that a library must not rely on.
FOREIGN_PRIVATE = {"_ready", "_scheduled", "_selector", "_run_once", "_TRACER_PROVIDER", "_METER_PROVIDER", "_closed"}
#: The deliberate exceptions, each with its reason (decision 0042): in a forked child the parent's loop must
#: look closed to every finalizer, and nothing public says so.
ALLOWED = {("util/forks.py", "_closed")}

#: What ``import statestore`` must not load: heavy or native dependencies, imported when first needed
#: (a Temporal workflow sandbox cannot load ``cryptography`` twice; issue 25, item 1).
HEAVY = (
    "cryptography",
    "aioboto3",
    "aiobotocore",
    "botocore",
    "boto3",
    "obstore",
    "rich",
    "click",
    "moto",
    "opentelemetry",
)


def test_no_module_is_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_no_private_attribute_of_asyncio_or_opentelemetry_is_used() -> None:
    used = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in FOREIGN_PRIVATE:
                owner = node.value.id if isinstance(node.value, ast.Name) else ""
                if owner not in ("self", "cls"):
                    used.add((str(path.relative_to(PACKAGE)), node.attr))
    assert used == ALLOWED


def test_no_private_name_is_imported_from_another_module() -> None:
    imported = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imported += [
                    f"{path.relative_to(PACKAGE)}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert imported == []


def test_the_root_exports_at_most_35_names_and_no_test_tool() -> None:
    names = set(statestore.__all__)
    assert len(names) <= 35, sorted(names)
    tools = {"FaultBackend", "LatencyBackend", "CountingBackend", "InjectedFault", "MotoServer", "MotoUnavailableError"}
    checks = {"check_backend", "CheckReport", "Verdict", "Probe"}
    assert names.isdisjoint(tools | checks)
    assert all(hasattr(statestore, name) for name in names)


def test_import_statestore_loads_no_heavy_dependency() -> None:
    code = (
        "import sys\nfrom statestore import StateStore, StateType, Store, build_state_store_path\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
