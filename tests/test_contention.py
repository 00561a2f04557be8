"""Contention: many writers on one state lose nothing and apply nothing twice.

Each writer mixes ``save_state``, ``save_state_object`` (keys of its own) and an ``update_state`` counter; at the
end every key is present and the counter exact. A fault-free ``FaultBackend`` counts the conflicts retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from statestore import LocalBackend, MemoryBackend, ObjectBackend, StateType, Store
from statestore.testing import FaultBackend

PROCESSES, UPDATES = 6, 50
THREADS, TASKS = 6, 8
ID = "shared"
WF = StateType.WORKFLOWS

# A writer process (``writer`` below): waits for the go file so that all start together, prints its counts as JSON.
WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from statestore import Store
    from statestore.testing import FaultBackend

    def make_backend(spec):
        if spec["kind"] == "local":
            from statestore import LocalBackend
            return LocalBackend(spec["root"])
        from statestore.backends.s3.backend import S3Backend
        return S3Backend(
            spec["bucket"], endpoint_url=spec["endpoint_url"], region="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    async def main(spec, worker, updates):
        from test_contention import writer

        backend = FaultBackend(make_backend(spec))
        store = Store(backend, app_name="rel")
        await writer(store, worker, updates)
        await store.aclose()
        print(json.dumps(dict(backend.counts)))

    spec = json.loads(sys.argv[1])
    deadline = time.monotonic() + 60
    while not os.path.exists(spec["go"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    asyncio.run(main(spec, int(sys.argv[2]), int(sys.argv[3])))
    """
)


def increment(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


async def writer(store: Store, worker: int, updates: int) -> None:
    """The mix of one writer (the ``WORKER`` processes run it too)."""
    for i in range(updates):
        await store.update_state(ID, WF, increment)
        if i % 2:
            await store.save_state(f"k{worker}-{i}", i, ID, WF)
        else:
            await store.save_state_object(ID, {f"o{worker}-{i}": [worker, i]}, WF)


def check_final(state: dict[str, Any], workers: int, updates: int) -> None:
    """Every writer's keys present (``k`` on odd rounds, ``o`` on even) and the counter exact."""
    expected: dict[str, Any] = {"n": workers * updates}
    for w in range(workers):
        expected.update({f"k{w}-{i}" if i % 2 else f"o{w}-{i}": i if i % 2 else [w, i] for i in range(updates)})
    missing = sorted(set(expected) - set(state))
    assert not missing, f"{len(missing)} keys lost, e.g. {missing[:5]}"
    assert state["n"] == workers * updates, f"counter is {state['n']}, expected exactly {workers * updates}"
    assert state == expected


def run_processes(spec: dict[str, Any], workers: int, updates: int, tmp_path: Path) -> Counter[str]:
    """Start ``workers`` writer processes together; return their summed counts."""
    go = tmp_path / "go"
    spec = {**spec, "go": str(go)}
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(Path(__file__).parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(spec), str(w), str(updates)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    time.sleep(0.3)  # let the interpreters start, so that the writers really overlap
    go.touch()
    total: Counter[str] = Counter()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        total.update(json.loads(out.decode().strip().splitlines()[-1]))
    return total


def report(what: str, counts: Counter[str] | dict[str, int], seconds: float) -> None:
    print(
        f"\n[reliability] {what}: {counts.get('put', 0)} puts, {counts.get('get', 0)} gets, "
        f"{counts.get('conflict', 0)} conflicts retried, {seconds:.1f} s"
    )


def test_processes_on_one_local_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    started = time.monotonic()
    counts = run_processes({"kind": "local", "root": str(root)}, PROCESSES, UPDATES, tmp_path)
    report(f"local {PROCESSES} processes x {UPDATES}", counts, time.monotonic() - started)
    state = asyncio.run(Store(LocalBackend(root), app_name="rel").get_state(ID, WF))
    check_final(state, PROCESSES, UPDATES)
    assert counts["conflict"] > 0, "the writers never collided, so this test proved nothing"
    slot = root / "persistent-artifacts/apps/rel/workflows" / ID
    assert sorted(p.name for p in slot.iterdir()) == [".config.json.lock", "config.json"]


def _run_threads(stores: list[Store], updates: int) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def run(worker: int) -> None:
        try:
            barrier.wait(timeout=30)
            asyncio.run(writer(stores[worker], worker, updates))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []


def test_threads_with_their_own_event_loops(tmp_path: Path) -> None:
    """Threads each running ``asyncio.run``: one shared store, then one store (own cache) per thread."""
    for what, inner in (("local", LocalBackend(tmp_path / "shared-store")), ("memory", MemoryBackend())):
        started = time.monotonic()
        backend = FaultBackend(inner)
        shared = Store(backend, app_name="rel")
        _run_threads([shared] * THREADS, UPDATES)
        check_final(asyncio.run(shared.get_state(ID, WF)), THREADS, UPDATES)
        report(f"{what} {THREADS} threads x {UPDATES}, one store", backend.counts, time.monotonic() - started)

    started = time.monotonic()
    backends = [FaultBackend(LocalBackend(tmp_path / "own-stores")) for _ in range(THREADS)]
    stores = [Store(b, app_name="rel") for b in backends]
    _run_threads(stores, UPDATES)
    check_final(asyncio.run(stores[0].get_state(ID, WF)), THREADS, UPDATES)
    total = sum((b.counts for b in backends), Counter[str]())
    report(f"local {THREADS} threads x {UPDATES}, a store each", total, time.monotonic() - started)
    assert total["conflict"] > 0


async def _tasks(inner: ObjectBackend, what: str, **options: Any) -> None:
    started = time.monotonic()
    backend = FaultBackend(inner)
    store = Store(backend, app_name="rel", **options)
    await asyncio.gather(*(writer(store, w, UPDATES) for w in range(TASKS)))
    check_final(await store.get_state(ID, WF), TASKS, UPDATES)
    report(f"{what} {TASKS} tasks x {UPDATES}", backend.counts, time.monotonic() - started)


async def test_tasks_on_one_store(tmp_path: Path) -> None:
    await _tasks(LocalBackend(tmp_path / "coalesced"), "local coalesced")
    await _tasks(LocalBackend(tmp_path / "uncoalesced"), "local uncoalesced", coalesce=False)
    await _tasks(MemoryBackend(), "memory coalesced")
    await _tasks(MemoryBackend(), "memory uncoalesced", coalesce=False)


async def test_tasks_with_a_store_each_under_injected_conflicts() -> None:
    """Spurious conflicts (S3's 409, which tells nothing about the current object) only cost retries."""
    started = time.monotonic()
    memory = MemoryBackend()
    backend = FaultBackend(memory, rate=0.2, kinds=("conflict",), ops=("put",), seed=4)
    stores = [Store(backend, app_name="rel", coalesce=False) for _ in range(TASKS)]
    await asyncio.gather(*(writer(stores[w], w, UPDATES) for w in range(TASKS)))
    check_final(await stores[0].get_state(ID, WF), TASKS, UPDATES)
    assert backend.counts["fault:conflict"] > 0
    report(f"memory {TASKS} stores x {UPDATES}, 20% injected 409s", backend.counts, time.monotonic() - started)
