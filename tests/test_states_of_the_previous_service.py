"""States the previous service wrote (Atlan application SDK, ``json.dump``) read, update and copy.

First contact II, item 1: its ``json.dump`` wrote bare ``NaN`` / ``Infinity`` tokens, which strict JSON parsers
refuse; such a state was "corrupt" to statestore, and the repair it suggested threw the data away.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult

from statestore import LocalBackend, MemoryBackend, StateType, Store
from statestore.copying import copy_states
from statestore.errors import CorruptStateError, InvalidInputError

W = StateType.WORKFLOWS
WRITTEN_BY_JSON_DUMP = json.dumps(
    {"progress": math.nan, "limits": [math.inf, -math.inf, 1.5], "status": "running", "big": 2**70}
).encode()  # '{"progress": NaN, "limits": [Infinity, -Infinity, 1.5], ...}': the previous service's bytes


def plant(root: Path, state_id: str, data: bytes) -> None:
    path = root / f"persistent-artifacts/apps/default/workflows/{state_id}/config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_nan_and_infinity_read_as_none_and_the_state_updates_and_copies(tmp_path: Path) -> None:
    assert b"NaN" in WRITTEN_BY_JSON_DUMP and b"-Infinity" in WRITTEN_BY_JSON_DUMP
    plant(tmp_path, "wf", WRITTEN_BY_JSON_DUMP)
    store = Store(LocalBackend(tmp_path))
    expected: dict[str, Any] = {"progress": None, "limits": [None, None, 1.5], "status": "running", "big": 2**70}
    assert await store.get_state("wf", W) == expected
    await store.save_state("step", 2, "wf", W)  # a later save of another key keeps the rest
    assert await store.get_state("wf", W) == {**expected, "step": 2}
    stored = (tmp_path / "persistent-artifacts/apps/default/workflows/wf/config.json").read_bytes()
    assert b"NaN" not in stored and json.loads(stored)["progress"] is None  # new writes are strict JSON
    plant(tmp_path, "other", WRITTEN_BY_JSON_DUMP)
    copied = Store(MemoryBackend())
    report = await copy_states(store, copied)
    assert report.ok and sorted(item.id for item in report.copied) == ["other", "wf"]
    assert await copied.get_state("other", W) == expected


async def test_what_is_not_json_stays_corrupt_and_nan_is_still_refused_in_new_values(tmp_path: Path) -> None:
    store = Store(LocalBackend(tmp_path))
    for bad in (b'{"a": nan}', b'{"a": NaN', b"[NaN]", b'{"a": "\\ud800", "b": NaN}'):
        plant(tmp_path, "bad", bad)
        with pytest.raises(CorruptStateError, match="Failed to extract state"):
            await store.get_state("bad", W)
    with pytest.raises(InvalidInputError, match="JSON cannot represent"):
        await store.save_state("x", math.nan, "wf", W)


def test_the_command_reads_such_a_state(tmp_path: Path, cli_run: Any) -> None:
    plant(tmp_path / "root", "wf", WRITTEN_BY_JSON_DUMP)
    done: CliResult = cli_run("--root", "root", "get", "wf")
    assert done.code == 0, done.err
    assert json.loads(done.out)["progress"] is None
