"""Forked children: a store used before ``fork()`` works in the child, and the child keeps nothing of the parent's.

Every test forks this process (real processes, real descriptors): the child runs one function,
sends its result back through a pipe and ends with ``os._exit``; a child that hangs is killed
after a deadline and reported as hung.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import S3Target

import statestore.api
from statestore import LocalBackend, StateStore, StateType, Store, use_store
from statestore.errors import LockTimeoutError, S3ClientUnsupportedError
from statestore.sync import SyncStore

W = StateType.WORKFLOWS
HUNG = "hung"


def in_fork(work: Callable[[], Any], deadline: float = 20.0) -> Any:
    """Run ``work()`` in a forked child; its result, the exception it raised (returned), or ``HUNG``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            outcome: Any = work()
        except BaseException as exc:  # reported to the parent, whatever it is
            outcome = exc
        try:
            payload = pickle.dumps(outcome)
        except Exception:
            payload = pickle.dumps(RuntimeError(repr(outcome)))
        os.write(write, payload)
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], deadline)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return HUNG
        chunks = []
        while chunk := os.read(read, 1 << 16):
            chunks.append(chunk)
        return pickle.loads(b"".join(chunks))
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def open_files_under(root: Path) -> list[str]:
    """The files below ``root`` this process holds open (``/proc/self/fd``), deleted ones included."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)) and not os.path.isdir(target.removesuffix(" (deleted)")):
            found.append(target)
    return found


# -- SyncStore (item 3) ------------------------------------------------------------------


def test_a_syncstore_used_before_fork_works_in_the_child(tmp_path: Path) -> None:
    """The loop thread was not copied: the child's calls and close() run on a loop thread of its own."""
    with SyncStore(Store(LocalBackend(tmp_path))) as s:
        s.save_state("n", 1, "wf", W)

        def child() -> Any:
            got = s.get_state("wf", W)
            s.save_state("n", 2, "wf", W)
            s.close()
            return got

        assert in_fork(child) == {"n": 1}
        assert s.get_state("wf", W) == {"n": 2}  # the parent's loop thread was left alone
        s.save_state("n", 3, "wf", W)
        assert s.get_state("wf", W) == {"n": 3}


_POOL_STORE: SyncStore | None = None


def _increment_in_pool_worker(_: int) -> int:
    assert _POOL_STORE is not None
    return int(_POOL_STORE.update_state("counter", W, lambda st: {"n": st.get("n", 0) + 1})["n"])


def test_a_syncstore_shared_with_a_fork_pool(tmp_path: Path) -> None:
    """The workers of a ``multiprocessing`` fork pool use the parent's ``SyncStore``; none is lost, none hangs."""
    global _POOL_STORE
    _POOL_STORE = SyncStore(Store(LocalBackend(tmp_path)))
    try:
        _POOL_STORE.save_state("n", 0, "counter", W)
        with multiprocessing.get_context("fork").Pool(3) as pool:
            results = pool.map_async(_increment_in_pool_worker, range(12)).get(timeout=120)
        assert sorted(results) == list(range(1, 13))
        assert _POOL_STORE.get_state("counter", W) == {"n": 12}
    finally:
        _POOL_STORE.close()
        _POOL_STORE = None


def test_a_lock_held_by_another_thread_at_fork_is_free_in_the_child(tmp_path: Path) -> None:
    """A thread of the parent inside ``get_default_store`` (holding its lock) at the fork: the child must not wait."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with statestore.api._lock:
            held.set()
            release.wait()

    with use_store(Store(LocalBackend(tmp_path))):
        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        try:
            outcome = in_fork(lambda: asyncio.run(StateStore.get_state("wf", W)), deadline=10)
        finally:
            release.set()
            holder.join()
    assert outcome == {}


@pytest.mark.s3_server
def test_a_store_used_before_fork_in_the_child_on_s3(s3_target: S3Target, s3_transport: str) -> None:
    """aioboto3: the child opens a client of its own (never the parent's connections); obstore, whose runtime
    threads stay in the parent, refuses at once with ``S3ClientUnsupportedError``. The parent carries on."""
    store = Store(s3_target.backend(s3_target.new_location()))
    with SyncStore(store) as s:
        s.save_state("n", 1, "wf", W)

        def child() -> Any:
            started = time.monotonic()
            try:
                return asyncio.run(store.get_state("wf", W)), s.get_state("wf", W)
            except S3ClientUnsupportedError as exc:
                return exc, time.monotonic() - started

        outcome = in_fork(child, deadline=30)
        if s3_transport == "obstore":
            error, seconds = outcome
            assert isinstance(error, S3ClientUnsupportedError), outcome
            assert "fork" in str(error) and seconds < 5
        else:
            assert outcome == ({"n": 1}, {"n": 1})
        for n in range(2, 5):
            s.save_state("n", n, "wf", W)
        assert s.get_state("wf", W) == {"n": 4}


# -- the local backend's descriptors (item 4) -------------------------------------------


@pytest.fixture
def slow_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """``os.fsync`` that waits 0.5 s on its first call: a write holds its state's lock meanwhile (event set)."""
    inside = threading.Event()
    real = os.fsync

    def fsync(fd: int) -> None:
        if not inside.is_set():
            inside.set()
            time.sleep(0.5)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield inside


def test_a_child_forked_during_a_write_keeps_neither_its_lock_nor_its_files(
    tmp_path: Path, slow_fsync: threading.Event
) -> None:
    """A child forked while a thread holds the state's ``flock``: the parent's next write must not wait for it."""
    root = tmp_path / "root"
    backend = LocalBackend(root, lock_timeout=1.0)
    key = "apps/a/workflows/wf/config.json"
    writer = threading.Thread(target=lambda: asyncio.run(backend.put(key, b'{"n":1}')))
    writer.start()
    assert slow_fsync.wait(10)  # the writer holds the lock now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, pickle.dumps(open_files_under(root)))
        time.sleep(30)  # alive, as a worker would be, while the parent writes on
        os._exit(0)
    try:
        os.close(write)
        assert select.select([read], [], [], 10)[0]
        child_files = pickle.loads(os.read(read, 1 << 16))
        writer.join()
        asyncio.run(backend.put(key, b'{"n":2}'))  # LockTimeoutError while the child kept the lock
        assert child_files == []
    finally:
        os.close(read)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_forked_child_keeps_no_pinned_file(tmp_path: Path) -> None:
    """Files kept open to prove ETags are closed in a child: a state deleted by the parent frees its space."""
    root = tmp_path / "root"
    backend = LocalBackend(root)
    asyncio.run(backend.put("apps/a/workflows/wf/config.json", b"x" * 4096))
    assert open_files_under(root)  # the parent pins what it wrote
    assert in_fork(lambda: open_files_under(root)) == []


def test_children_forked_while_a_thread_writes_never_block_the_parent(tmp_path: Path) -> None:
    """Twelve children forked (and left sleeping) while a thread writes one state nonstop: no write times out."""
    store = Store(LocalBackend(tmp_path / "root", lock_timeout=1.0))
    stop = threading.Event()
    errors: list[BaseException] = []
    writes = 0

    def write() -> None:
        async def loop() -> None:
            nonlocal writes
            while not stop.is_set():
                try:
                    await store.save_state("n", writes, "wf", W)
                except LockTimeoutError as exc:
                    errors.append(exc)
                writes += 1

        asyncio.run(loop())

    writer = threading.Thread(target=write)
    writer.start()
    children = []
    try:
        for _ in range(12):
            time.sleep(0.02)
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
        time.sleep(2.5)  # > lock_timeout: a lock kept by a child fails a write meanwhile
    finally:
        stop.set()
        writer.join()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert writes > 20 and errors == []


def test_the_child_writes_with_locks_of_its_own(tmp_path: Path) -> None:
    """The backend keeps working in the child, and its writes exclude the parent's as before."""
    store = Store(LocalBackend(tmp_path / "root"))
    asyncio.run(store.save_state("n", 1, "wf", W))
    assert in_fork(lambda: asyncio.run(store.update_state("wf", W, lambda st: {"n": st["n"] + 1}))) == {"n": 2}
    assert asyncio.run(store.get_state("wf", W)) == {"n": 2}
