"""The process-wide default store: built from the environment, replaceable, and the demo command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from statestore import (
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    Settings,
    StateStore,
    StateType,
    build_store,
    set_default_store,
    use_store,
)
from statestore.api import get_default_store
from statestore.testing import CountingBackend, memory_store


@pytest.fixture
def clean_default(monkeypatch: pytest.MonkeyPatch) -> object:
    for name in list(os.environ):
        if name.startswith(("STATESTORE_", "ATLAN_")):
            monkeypatch.delenv(name)
    previous = set_default_store(None)
    yield
    set_default_store(previous)


def test_settings_defaults_and_fallbacks() -> None:
    assert Settings.from_env({}) == Settings()
    s = Settings.from_env({"ATLAN_APPLICATION_NAME": "a", "ATLAN_TEMPORARY_PATH": "/t/"})
    assert (s.backend, s.app_name, s.local_root) == ("local", "a", "/t/")
    s = Settings.from_env({"STATESTORE_APP_NAME": "b", "ATLAN_APPLICATION_NAME": "a", "STATESTORE_BACKEND": "Memory"})
    assert (s.backend, s.app_name) == ("memory", "b")
    with pytest.raises(InvalidInputError, match="STATESTORE_BACKEND='nope'"):
        Settings.from_env({"STATESTORE_BACKEND": "nope"})
    with pytest.raises(InvalidInputError, match="STATESTORE_MAX_STATE_BYTES"):
        Settings.from_env({"STATESTORE_MAX_STATE_BYTES": "lots"})


async def test_default_store_is_built_lazily_from_environment(
    clean_default: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATESTORE_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("STATESTORE_APP_NAME", "envapp")
    await StateStore.save_state("k", 1, "wf", StateType.WORKFLOWS)
    store = get_default_store()
    assert isinstance(store.backend, LocalBackend) and store.app_name == "envapp"
    assert json.loads((tmp_path / "persistent-artifacts/apps/envapp/workflows/wf/config.json").read_bytes()) == {"k": 1}
    assert get_default_store() is store


async def test_memory_backend_from_environment(clean_default: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE_BACKEND", "memory")
    await StateStore.save_state("k", 1, "wf", StateType.WORKFLOWS)
    assert isinstance(get_default_store().backend, MemoryBackend)
    assert await StateStore.get_state("wf", StateType.WORKFLOWS) == {"k": 1}


async def test_set_and_use_store(clean_default: object) -> None:
    first, second = memory_store(), memory_store()
    assert set_default_store(first) is None
    await StateStore.save_state("k", 1, "wf", StateType.WORKFLOWS)
    with use_store(second) as installed:
        assert installed is second and get_default_store() is second
        assert await StateStore.get_state("wf", StateType.WORKFLOWS) == {}
    assert get_default_store() is first
    assert await StateStore.get_state("wf", StateType.WORKFLOWS) == {"k": 1}
    with pytest.raises(RuntimeError), use_store(second):
        raise RuntimeError("restored even on error")
    assert get_default_store() is first


async def test_build_store_from_settings(tmp_path: Path) -> None:
    """The settings reach the store; with ``cache_bytes=0`` every update reads the state first."""
    store = build_store(Settings(backend="local", local_root=str(tmp_path), app_name="x", cache_size=3, cache_bytes=0))
    assert isinstance(store.backend, LocalBackend) and store.backend.root == tmp_path and store.app_name == "x"
    counting = CountingBackend(store.backend)
    store._cas.backend = counting
    await store.save_state("k", 1, "wf", StateType.WORKFLOWS)
    await store.save_state("k", 2, "wf", StateType.WORKFLOWS)
    assert counting.counts == {"get": 2, "put": 2}


def test_demo_command_runs_on_the_local_default(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("statestore")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATESTORE_", "ATLAN_"))}
    out = subprocess.run([str(exe), "demo", "--items", "250"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    path = "./local/tmp/persistent-artifacts/apps/default/workflows/demo-workflow/config.json"
    assert f"state file: {path}" in text
    stored = orjson.loads((tmp_path / path).read_bytes())
    assert stored == {"last_processed_index": 199, "status": "completed"}
    assert orjson.loads(text[text.index("{") :]) == stored
