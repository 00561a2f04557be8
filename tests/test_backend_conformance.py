"""Our backends keep the ``ObjectBackend`` contract: each runs ``statestore.testing.BackendTests``.

The S3 class runs on the S3 target (``s3_server``): the session's moto server, or the server
``STATESTORE_TEST_S3_ENDPOINT`` names (Ceph RGW, MinIO, AWS; see conftest.py).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import S3Target

from statestore import InvalidInputError, LocalBackend, MemoryBackend, ObjectBackend, PutMode, S3Backend
from statestore.backends import LoggingBackend
from statestore.telemetry import TelemetryBackend
from statestore.testing import BackendTests, CountingBackend


class TestMemoryBackend(BackendTests):
    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend()


class TestLocalBackend(BackendTests):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[LocalBackend]:
        backend = LocalBackend(tmp_path / "root")
        yield backend
        await backend.aclose()


class TestWrappedLocalBackend(BackendTests):
    """Wrappers forward every keyword of the protocol (``max_bytes`` and ``if_none_match`` included)."""

    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[ObjectBackend]:
        backend = CountingBackend(LoggingBackend(TelemetryBackend(LocalBackend(tmp_path / "root"), "app")))
        yield backend
        await backend.aclose()


@pytest.mark.s3_server
class TestS3Backend(BackendTests):
    @pytest.fixture
    async def backend(self, s3_target: S3Target) -> AsyncIterator[S3Backend]:
        backend = s3_target.backend(s3_target.new_location())
        yield backend
        await backend.aclose()


async def test_a_mode_that_is_not_a_put_mode_is_refused(backend: ObjectBackend) -> None:
    """Our backends refuse anything but a ``PutMode`` before any I/O (a string would otherwise mean overwrite)."""
    with pytest.raises(InvalidInputError, match="PutMode"):
        await backend.put("k/config.json", b"1", "create")  # type: ignore[arg-type]
    assert await backend.get("k/config.json") is None


def test_an_empty_etag_is_not_an_update() -> None:
    with pytest.raises(InvalidInputError, match="ETag"):
        PutMode.update("")
    with pytest.raises(InvalidInputError):
        PutMode.update('""')
    assert PutMode.update('"abc"') == PutMode.update('"abc"') and PutMode.CREATE != PutMode.OVERWRITE


TESTS = Path(__file__).resolve().parent

CARELESS = """
import pytest
from test_third_party_backend import SQLiteBackend

from statestore import PutMode
from statestore.backends import PutResult
from statestore.testing import BackendTests


class CarelessBackend(SQLiteBackend):
    \"\"\"Drops every condition of a put: what the contract must catch.\"\"\"

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        return await super().put(key, data)


class TestCareless(BackendTests):
    @pytest.fixture
    def backend(self) -> CarelessBackend:
        return CarelessBackend()
"""


def test_docs_show_the_third_party_backend_that_is_tested() -> None:
    """docs/testing.md's example is tests/test_third_party_backend.py without its docstring."""
    source = (TESTS / "test_third_party_backend.py").read_text(encoding="utf-8")
    docstring_end = ast.parse(source).body[0].end_lineno
    example = "".join(source.splitlines(keepends=True)[docstring_end:]).strip()
    docs = (TESTS.parent / "docs" / "testing.md").read_text(encoding="utf-8")
    assert example in [block.strip() for block in re.findall(r"```python\n(.*?)```", docs, re.S)]


def test_the_contract_fails_a_backend_that_ignores_its_conditions(tmp_path: Path) -> None:
    """A pytest run of its own (strict asyncio mode, no configuration): exactly the tests of conditions fail."""
    (tmp_path / "test_careless.py").write_text(CARELESS, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-W", "ignore", "test_careless.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed = set(re.findall(r"FAILED test_careless.py::TestCareless::(\w+)", result.stdout))
    assert failed == {
        "test_create_creates_only_once",
        "test_update_with_current_etag_succeeds_stale_fails",
        "test_update_of_a_missing_key_fails_and_creates_nothing",
        "test_concurrent_creates_exactly_one_wins",
        "test_concurrent_updates_of_one_version_exactly_one_wins",
        "test_compare_and_swap_increments_are_never_lost",
    }, result.stdout[-3000:]
    assert re.search(r"\b6 failed, 18 passed\b", result.stdout), result.stdout[-3000:]


def test_statestore_testing_imports_pytest_only_for_backend_tests() -> None:
    code = (
        "import sys, statestore.testing as t\n"
        "assert 'pytest' not in sys.modules, 'pytest imported too early'\n"
        "assert t.BackendTests.__module__ == 'statestore.testing.conformance' and 'pytest' in sys.modules\n"
        "try:\n    t.NoSuchThing\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
