"""A read that fails is an error, never an empty state, and the save after it writes nothing.

Cases: a local root that is a file, a state file that cannot be read, and (through ``FaultBackend``) reads
failing on any backend. The S3 cases are in ``test_typed_failures.py`` and ``test_s3_faults.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_local_backend import snapshot

from statestore import BackendConfigError, BackendError, LocalBackend, MemoryBackend, StateType, Store
from statestore.testing import FaultBackend, InjectedFault

WF = StateType.WORKFLOWS


async def assert_read_fails_and_save_writes_nothing(
    store: Store, look: Path, error: type[BackendError] = BackendError, match: str | None = None
) -> None:
    """Every call raises ``error`` naming the state; nothing under ``look`` changes."""
    before = snapshot(look)
    for call in (
        store.get_state("wf", WF),
        store.save_state("k", 1, "wf", WF),
        store.save_state_object("wf", {"k": 1}, WF),
        store.update_state("wf", WF, lambda s: {**s, "k": 1}),
        store.delete_state("wf", WF),
    ):
        with pytest.raises(error, match=match) as info:
            await call
        assert (info.value.state_id, info.value.state_type) == ("wf", "workflows")
    assert snapshot(look) == before


async def test_local_root_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_bytes(b"not a directory")
    store = Store(LocalBackend(root), app_name="app")
    await assert_read_fails_and_save_writes_nothing(store, tmp_path, BackendConfigError, "not a directory")
    with pytest.raises(BackendConfigError, match="not a directory"):
        await store.list_states(WF)


async def test_local_root_that_is_missing_is_empty_not_an_error(tmp_path: Path) -> None:
    """The opposite case: no root yet is a real "nothing stored", and the first save creates it."""
    store = Store(LocalBackend(tmp_path / "new-root"), app_name="app")
    assert await store.get_state("wf", WF) == {}
    assert await store.list_states(WF) == []
    await store.save_state("k", 1, "wf", WF)
    assert await store.get_state("wf", WF) == {"k": 1}


async def test_local_state_file_that_cannot_be_read(tmp_path: Path) -> None:
    """``config.json`` is a directory (the test runs as root, so file modes would not stop a read)."""
    root = tmp_path / "root"
    store = Store(LocalBackend(root), app_name="app")
    await store.save_state("k", 0, "wf", WF)
    path = root / "persistent-artifacts/apps/app/workflows/wf/config.json"
    path.unlink()
    (path / "inner").mkdir(parents=True)
    (path / "inner" / "x").write_bytes(b"{}")
    fresh = Store(LocalBackend(root), app_name="app")
    await assert_read_fails_and_save_writes_nothing(fresh, tmp_path)
    await assert_read_fails_and_save_writes_nothing(store, tmp_path)  # also with a warm cache


@pytest.mark.parametrize("kind", ["error", "lost"])
async def test_failing_reads_on_any_backend(kind: str, tmp_path: Path) -> None:
    """Every read fails (before or after reaching the backend): get raises, a fresh store's save writes nothing."""
    for inner in (MemoryBackend(), LocalBackend(tmp_path / kind)):
        seed = Store(inner, app_name="app")
        await seed.save_state("k", "original", "wf", WF)
        key = seed.key("wf", WF).object_key
        original = await inner.get(key)
        faulty = FaultBackend(inner, rate=1.0, kinds=(kind,), ops=("get",))
        store = Store(faulty, app_name="app")
        with pytest.raises(BackendError) as info:
            await store.get_state("wf", WF)
        assert isinstance(info.value, InjectedFault)  # a BackendError itself, passed through as any backend's
        for save in (
            store.save_state("k", "lost?", "wf", WF),
            store.save_state_object("wf", {"k": "lost?"}, WF),
            store.update_state("wf", WF, lambda s: {**s, "k": "lost?"}),
        ):
            with pytest.raises(BackendError):
                await save
        assert await inner.get(key) == original
        assert faulty.counts["put"] == 0, "a save went ahead without knowing the stored state"
