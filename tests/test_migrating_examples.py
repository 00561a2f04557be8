"""docs/migrating.md's test migration: the "after" tests run as a user's project runs them, and the claim about
the "before" pattern (a patched ``get_state`` no longer feeds saves) holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from unittest.mock import AsyncMock, patch

from statestore import StateStore, StateType, Store

MIGRATING = Path(__file__).resolve().parent.parent / "docs" / "migrating.md"


def section(title: str) -> str:
    """The text of the ``## title`` section of docs/migrating.md."""
    text = MIGRATING.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_after_example_runs_as_a_users_tests(tmp_path: Path) -> None:
    """The fixtures come from the installed plugin; no configuration, pytest-asyncio in strict mode."""
    before, after = python_blocks(section("Migrating tests"))
    assert "application_sdk" in before and "application_sdk" not in after
    (tmp_path / "test_after.py").write_text(after, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATESTORE_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "test_after.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


async def test_a_patched_get_state_no_longer_feeds_saves(statestore_memory: Store) -> None:
    """The "before" pattern with only the import changed: the save stores ``{'progress': 75}``, as the doc says."""
    assert "`{'progress': 75}`" in section("Migrating tests")
    fake = AsyncMock(return_value={"status": "running"})
    with patch.object(StateStore, "get_state", fake):
        await StateStore.save_state("progress", 75, "wf-1", StateType.WORKFLOWS)
    assert await statestore_memory.get_state("wf-1", StateType.WORKFLOWS) == {"progress": 75}
    fake.assert_not_awaited()
