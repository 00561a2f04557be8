"""Work on large states runs in one worker thread of statestore's own, the same for every store and loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from pathlib import Path

from statestore import LocalBackend, MemoryBackend, StateType, Store
from statestore.codec.jsonio import Codec
from statestore.keys.paths import StateKey
from statestore.util.offload import OFFLOAD_BYTES, offload

W = StateType.WORKFLOWS
BIG = "x" * (2 * OFFLOAD_BYTES)


class ThreadRecordingCodec(Codec):
    """The plain codec, noting the thread each seal (of a whole state) and check (of what a call sets) ran in."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def seal(self, key: StateKey, plain: bytes) -> bytes:
        self.threads.append(threading.current_thread())
        return plain

    def check(self, key: StateKey, state: dict[str, object]) -> None:
        if "blob" in state:  # a large value: checked off the loop
            self.threads.append(threading.current_thread())


async def test_large_state_work_runs_in_one_dedicated_thread(tmp_path: Path) -> None:
    codec = ThreadRecordingCodec()
    stores = [Store(MemoryBackend(), codec=codec), Store(LocalBackend(tmp_path), codec=codec)]
    for store in stores:
        for i in range(6):
            await store.save_state_object(f"big-{i}", {"blob": BIG, "i": i}, W)
            await store.save_state("i", -1 - i, f"big-{i}", W)
    # and from another event loop, in another thread
    await asyncio.to_thread(asyncio.run, stores[0].save_state_object("big-other-loop", {"blob": BIG}, W))
    threads = set(codec.threads)
    assert len(codec.threads) == 2 * 6 * 3 + 2  # per store and state: check and seal, seal; the other loop's
    assert len(threads) == 1, [t.name for t in threads]
    (thread,) = threads
    assert thread is not threading.main_thread()
    assert thread.name.startswith("statestore-offload")


async def test_small_state_work_stays_on_the_loop() -> None:
    codec = ThreadRecordingCodec()
    store = Store(MemoryBackend(), codec=codec)
    await store.save_state_object("small", {"n": 1}, W)
    await store.save_state("n", 2, "small", W)
    assert set(codec.threads) == {threading.current_thread()}


def _offload_in_child(queue: multiprocessing.Queue[str]) -> None:
    queue.put(asyncio.run(offload(True, lambda: threading.current_thread().name)))


def test_a_forked_child_gets_a_worker_of_its_own() -> None:
    """The parent's worker thread does not exist in a forked child: the child must not wait for it forever."""
    assert asyncio.run(offload(True, lambda: threading.current_thread().name)).startswith("statestore-offload")
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(target=_offload_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5).startswith("statestore-offload")
