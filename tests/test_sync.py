"""``SyncStore``: the ``Store`` API, blocking, from any thread; refused inside a running event loop."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import statestore
from statestore import (
    CorruptStateError,
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    PathTraversalError,
    StateStoreError,
    StateType,
    Store,
)
from statestore.backends import WrapperBackend
from statestore.sync import SyncStore, SyncStoreUsageError
from statestore.testing import CountingBackend, LatencyBackend

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS

#: Store methods SyncStore deliberately lacks, and what it offers instead.
NOT_OFFERED = {
    "aclose": "close",  # and ``with``
    "iter_states": "list_states",  # see statestore.sync's docstring
    "iter_state_info": "list_state_info",
}


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("statestore-sync-")]


def test_syncstore_has_every_public_method_of_store() -> None:
    """Fails as soon as ``Store`` gains a public method ``SyncStore`` lacks, or their arguments differ."""
    public = {name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))}
    assert public >= set(NOT_OFFERED)
    for name in sorted(public - set(NOT_OFFERED)):
        assert hasattr(SyncStore, name), f"SyncStore lacks Store.{name}"
        ours, theirs = getattr(SyncStore, name), getattr(Store, name)
        assert not inspect.iscoroutinefunction(ours), f"SyncStore.{name} must block, not be a coroutine"
        assert not inspect.isasyncgenfunction(ours), f"SyncStore.{name} must block, not be an async generator"
        assert inspect.signature(ours).parameters == inspect.signature(theirs).parameters, name
    for name, instead in NOT_OFFERED.items():
        assert not hasattr(SyncStore, name)
        assert hasattr(SyncStore, instead)


def test_import_statestore_does_not_import_sync() -> None:
    import subprocess
    import sys

    code = "import sys, threading, statestore; print('statestore.sync' in sys.modules, threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "1"]
    assert "SyncStore" not in vars(statestore)


def test_plain_sync_use(store: Store) -> None:
    with SyncStore(store) as s:
        assert s.get_state("wf", W) == {}
        assert s.save_state("progress", 50, "wf", W) is None
        assert s.save_state_object("wf", {"status": "running"}, W) == {"progress": 50, "status": "running"}
        assert s.update_state("wf", W, lambda st: {**st, "progress": st["progress"] + 1})["progress"] == 51
        assert s.replace_state("other", W, {"x": [1, 2]}) == {"x": [1, 2]}
        assert s.save_state_object("cred", {"host": "db"}, C) == {"host": "db"}
        assert s.list_states(W) == ["other", "wf"]
        assert [info.id for info in s.list_state_info(W)] == ["other", "wf"]
        assert s.get_states(["wf", "nope"], W, concurrency=2) == {
            "wf": {"progress": 51, "status": "running"},
            "nope": {},
        }
        assert s.key("wf", W) == store.key("wf", W)
        assert s.reencrypt_states(C) == 0
        assert s.check().verdict is not None
        s.delete_state("other", W)
        assert s.list_states("workflows") == ["wf"]
        with pytest.raises(PathTraversalError):
            s.get_state("../wf", W)
        with pytest.raises(InvalidInputError):
            s.save_state_object("wf", {"f": object()}, W)
        with pytest.raises(SyncStoreUsageError):  # fn runs on the SyncStore's loop: a blocking call would deadlock
            s.update_state("wf", W, lambda st: {**st, "other": s.get_state("other", W)})
        assert s.get_state("wf", W) == {"progress": 51, "status": "running"}
        s._run(store.backend.put, store.key("bad", W).object_key, b"not json")
        with pytest.raises(CorruptStateError):  # the store's own errors
            s.get_state("bad", W)
        with pytest.raises(CorruptStateError):
            s.get_states(["bad"], W)


def test_from_several_threads_at_once(store: Store) -> None:
    """8 threads x 25 increments of one state end at exactly 200; each thread's own state too."""

    def work(t: int) -> None:
        for _ in range(25):
            s.update_state("shared", W, lambda st: {"n": st.get("n", 0) + 1})
            s.save_state(f"k{t}", t, f"own-{t}", W)

    with SyncStore(store) as s, ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
        assert s.get_state("shared", W) == {"n": 200}
        assert s.get_states([f"own-{t}" for t in range(8)], W) == {f"own-{t}": {f"k{t}": t} for t in range(8)}
        assert len(loop_threads()) == 1


async def test_on_a_running_loop_it_raises_and_from_a_thread_it_blocks_only_that_thread(store: Store) -> None:
    """On a running loop a call raises (it would deadlock) and sends nothing; from a worker thread calls work
    while this loop keeps running."""
    counting = CountingBackend(LatencyBackend(store.backend, 0.05))
    s = SyncStore(Store(counting, app_name=store.app_name))
    with pytest.raises(SyncStoreUsageError, match=r"await store\.get_state") as caught:
        s.get_state("wf", W)
    assert isinstance(caught.value, StateStoreError)
    assert isinstance(caught.value, RuntimeError)
    with pytest.raises(SyncStoreUsageError):
        s.save_state_object("wf", {"n": 1}, W)
    with pytest.raises(SyncStoreUsageError):
        s.close()
    assert counting.counts == {}
    assert s._runner is None  # no thread was started for it
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    def blocking() -> dict[str, Any]:
        for i in range(4):
            s.save_state("i", i, "wf", W)
        return s.get_state("wf", W)

    ticker = asyncio.create_task(tick())
    try:
        assert await asyncio.to_thread(blocking) == {"i": 3}
        assert ticks >= 10  # about 0.5 s of calls: this loop was never blocked
    finally:
        ticker.cancel()
        await asyncio.to_thread(s.close)
    assert await store.get_state("wf", W) == {"i": 3}


class ClosingBackend(WrapperBackend):
    """Records the thread each ``aclose`` ran in."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.closed_in: list[str] = []

    async def aclose(self) -> None:
        self.closed_in.append(threading.current_thread().name)
        await super().aclose()


def test_close_closes_connections_on_the_loop_and_releases_the_thread(store: Store) -> None:
    backend = ClosingBackend(store.backend)
    with SyncStore(Store(backend, app_name=store.app_name)):
        pass  # without any call: nothing started, nothing to close
    assert backend.closed_in == []
    assert loop_threads() == []
    s = SyncStore(Store(backend, app_name=store.app_name))
    assert s.get_state("wf", W) == {}
    (thread,) = loop_threads()
    assert thread.daemon
    s.close()
    assert backend.closed_in == [thread.name]
    assert not thread.is_alive()
    assert loop_threads() == []
    assert s.closed
    s.close()  # idempotent
    with pytest.raises(SyncStoreUsageError, match="after close"):
        s.get_state("wf", W)


def test_close_cancels_a_call_still_running(tmp_path: Path) -> None:
    s = SyncStore(Store(LatencyBackend(MemoryBackend(), 30.0)))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            s.get_state("wf", W)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not loop_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # the call is sleeping on the loop now
    started = time.monotonic()
    s.close()
    caller.join(5)
    assert time.monotonic() - started < 5
    assert not caller.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], SyncStoreUsageError)
    assert "cancelled by close" in str(errors[0])


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_an_update_raising_systemexit_or_keyboardinterrupt_fails_only_its_caller(
    raised: type[BaseException],
) -> None:
    """asyncio lets these two out of a task, stopping its loop: the raiser gets its exception, and the loop
    thread goes on serving the other threads' calls (coalesced with it, and later ones)."""
    s = SyncStore(Store(LatencyBackend(MemoryBackend(), 0.02)))
    s.save_state("n", 0, "wf", W)
    outcomes: dict[int, Any] = {}

    def increment(st: dict[str, Any]) -> dict[str, Any]:
        return {"n": st["n"] + 1}

    def stop(st: dict[str, Any]) -> dict[str, Any]:
        raise raised(7)

    def call(t: int) -> None:
        try:
            outcomes[t] = s.update_state("wf", W, stop if t == 2 else increment)
        except BaseException as exc:
            outcomes[t] = exc

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(call, range(6)))
    assert isinstance(outcomes.pop(2), raised)
    assert all(isinstance(o, dict) for o in outcomes.values()), outcomes
    with pytest.raises(raised):  # alone, too
        s.update_state("wf", W, stop)
    assert s.get_state("wf", W) == {"n": 5}
    assert s.update_state("wf", W, increment) == {"n": 6}
    (thread,) = loop_threads()
    s.close()
    assert not thread.is_alive()


def test_systemexit_from_a_task_of_the_loop_fails_only_its_call() -> None:
    """``progress`` of ``reencrypt_states`` runs in worker tasks: a ``SystemExit`` there stops the loop
    (asyncio lets it out), which must run on for later calls."""
    s = SyncStore(Store(MemoryBackend()))
    s.save_state_object("wf", {"n": 1}, W)

    def progress(done: int, total: int) -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        s.reencrypt_states(W, progress=progress)
    assert s.get_state("wf", W) == {"n": 1}
    assert s.reencrypt_states(W) == 0
    s.close()


def test_an_unclosed_sync_store_stops_its_thread_when_collected() -> None:
    s = SyncStore(Store(MemoryBackend()))
    s.get_state("wf", W)
    (thread,) = loop_threads()
    del s
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_from_url_and_from_env(tmp_path: Path) -> None:
    with SyncStore.from_url(f"file://{tmp_path}/url", app_name="urlapp") as s:
        assert isinstance(s.store.backend, LocalBackend)
        s.save_state_object("wf", {"n": 1}, W)
    assert (tmp_path / "url/persistent-artifacts/apps/urlapp/workflows/wf/config.json").exists()
    env = {"STATESTORE_BACKEND": "local", "STATESTORE_LOCAL_ROOT": str(tmp_path / "env"), "STATESTORE_APP_NAME": "e"}
    with SyncStore.from_env(env) as s:
        s.save_state_object("wf", {"n": 2}, W)
    assert json.loads((tmp_path / "env/persistent-artifacts/apps/e/workflows/wf/config.json").read_bytes()) == {"n": 2}
    with pytest.raises(InvalidInputError, match="'gs'"):
        SyncStore.from_url("gs://bucket")
    with pytest.raises(InvalidInputError, match="Store"):
        SyncStore("memory://")  # type: ignore[arg-type]
