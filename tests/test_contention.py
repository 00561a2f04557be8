"""Concurrent save_state calls with distinct keys on one id lose nothing: processes, threads and tasks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from statestore import StateType, Store
from statestore.testing import local_store, memory_store

PROCESSES, CALLS = 6, 40

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from statestore import StateStore, StateType

    async def main(worker: int, calls: int) -> None:
        for i in range(calls):
            await StateStore.save_state(f"w{worker}-{i}", i, "shared", StateType.WORKFLOWS)

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


def expected_keys(workers: int, calls: int) -> dict[str, int]:
    return {f"w{w}-{i}": i for w in range(workers) for i in range(calls)}


def test_processes_on_local_backend_lose_no_update(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STATESTORE_BACKEND": "local",
        "STATESTORE_LOCAL_ROOT": str(tmp_path),
        "STATESTORE_APP_NAME": "c",
    }
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(w), str(CALLS)], env=env, stderr=subprocess.PIPE)
        for w in range(PROCESSES)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    state = asyncio.run(Store(local_store(tmp_path).backend, app_name="c").get_state("shared", StateType.WORKFLOWS))
    assert state == expected_keys(PROCESSES, CALLS)
    leftovers = [p.name for p in (tmp_path / "persistent-artifacts/apps/c/workflows/shared").iterdir()]
    assert sorted(leftovers) == [".config.json.lock", "config.json"]


def _run_threads(stores: list[Store]) -> None:
    """Worker ``w`` saves its keys from its own thread and event loop, through ``stores[w]``."""
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        async def main() -> None:
            for i in range(CALLS):
                await stores[worker].save_state(f"w{worker}-{i}", i, "shared", StateType.WORKFLOWS)

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(PROCESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert asyncio.run(stores[0].get_state("shared", StateType.WORKFLOWS)) == expected_keys(PROCESSES, CALLS)


def test_threads_with_their_own_event_loops_share_one_store(tmp_path: Path) -> None:
    for store in (local_store(tmp_path), memory_store()):
        _run_threads([store] * PROCESSES)


def test_threads_with_a_store_each_on_one_directory(tmp_path: Path) -> None:
    """Separate stores (separate caches) on one directory: only the backend's lock and CAS protect."""
    _run_threads([local_store(tmp_path) for _ in range(PROCESSES)])


async def test_tasks_on_one_store(tmp_path: Path) -> None:
    for store in (local_store(tmp_path), memory_store(), memory_store(coalesce=False)):

        async def worker(w: int, store: Store = store) -> None:
            for i in range(CALLS):
                await store.save_state(f"w{w}-{i}", i, "shared", StateType.WORKFLOWS)

        await asyncio.gather(*(worker(w) for w in range(PROCESSES)))
        assert await store.get_state("shared", StateType.WORKFLOWS) == expected_keys(PROCESSES, CALLS)
