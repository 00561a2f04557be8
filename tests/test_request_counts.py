"""Request counts and coalescing: what an update costs, and what each concurrent caller gets back.

Counts come from ``CountingBackend`` around a real backend of every kind (the S3 backend's own conflict
re-read happens below it and is not counted). Timing claims live in scripts/bench.py, never here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from test_batch_isolation import appender

from statestore import LocalBackend, ObjectBackend, PutMode, StateType, Store
from statestore.backends import PutResult, Update, Versioned
from statestore.backends.base import md5_etag
from statestore.codec.crypto import EncryptingCodec, generate_key
from statestore.errors import PreconditionFailed
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS
TASKS = 8


def make_store_on(make_backend: Callable[[], ObjectBackend]) -> Store:
    """Another store on the same objects."""
    return Store(make_backend())


def counting_store(make_backend: Callable[[], ObjectBackend], **options: Any) -> tuple[Store, CountingBackend]:
    counting = CountingBackend(make_backend())
    return Store(counting, **options), counting


# -- requests per operation ------------------------------------------------------------------------


async def test_cold_operations(make_backend: Callable[[], ObjectBackend]) -> None:
    store, counting = counting_store(make_backend)
    assert await store.get_state("wf", W) == {}
    assert counting.counts == {"get": 1}
    counting.reset()
    await store.save_state("k", 1, "new", W)  # nothing cached: read (missing), then create
    assert counting.counts == {"get": 1, "put": 1}
    other, other_counts = counting_store(make_backend)
    assert await other.save_state_object("new", {"j": 2}, W) == {"k": 1, "j": 2}
    assert other_counts.counts == {"get": 1, "put": 1}


class ModeRecordingBackend(CountingBackend):
    """A ``CountingBackend`` that also keeps the precondition of each put, in order."""

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.put_modes: list[PutMode] = []

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        self.put_modes.append(mode)
        return await super().put(key, data, mode)


async def test_first_save_after_reading_a_missing_state_is_one_get_and_one_put(
    make_backend: Callable[[], ObjectBackend],
) -> None:
    """A new workflow reads its state (missing), then saves: the absence is remembered, so the save creates at once."""
    recording = ModeRecordingBackend(make_backend())
    store = Store(recording)
    assert await store.get_state("wf", W) == {}
    await store.save_state("last_processed_index", 99, "wf", W)
    assert recording.counts == {"get": 1, "put": 1}
    assert recording.put_modes == [PutMode.CREATE]  # If-None-Match: *, no second read
    await store.save_state("status", "completed", "wf", W)
    assert recording.counts == {"get": 1, "put": 2}
    assert await make_store_on(make_backend).get_state("wf", W) == {"last_processed_index": 99, "status": "completed"}


async def test_remembered_absence_gone_stale_costs_one_failed_put_and_loses_nothing(
    make_backend: Callable[[], ObjectBackend],
) -> None:
    """Another store creates the state between our read (missing) and our save: the create fails, we re-read, merge."""
    recording = ModeRecordingBackend(make_backend())
    ours = Store(recording)
    theirs = make_store_on(make_backend)
    assert await ours.get_state("wf", W) == {}
    await theirs.save_state("theirs", 1, "wf", W)
    await ours.save_state("ours", 2, "wf", W)
    assert recording.counts["put"] == 2
    assert recording.put_modes[0] == PutMode.CREATE and isinstance(recording.put_modes[1], Update)
    assert recording.counts["get"] <= 2  # the first read; local and memory hand back what they saw, S3 reads below us
    assert await theirs.get_state("wf", W) == {"theirs": 1, "ours": 2}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_steady_single_writer_costs_one_put(make_backend: Callable[[], ObjectBackend], encrypted: bool) -> None:
    """A lone writer pays one PUT per change and no GET, also with encryption; a read or a no-op pays one GET."""
    kind = StateType.CREDENTIALS if encrypted else W
    store, counting = counting_store(make_backend, codec=EncryptingCodec(generate_key()) if encrypted else None)
    await store.save_state("k", 0, "wf", kind)
    counting.reset()
    for i in range(1, 6):
        await store.save_state("k", i, "wf", kind)
        state = await store.save_state_object("wf", {"o": i}, kind)
        assert (state["k"], state["o"]) == (i, i)
        await store.update_state("wf", kind, appender(i))
    assert counting.counts == {"put": 15}
    assert await store.get_state("wf", kind) == {"k": 5, "o": 5, "log": [1, 2, 3, 4, 5]}
    assert counting.counts == {"put": 15, "get": 1}  # reads always ask the backend
    await store.save_state("k", 5, "wf", kind)  # no change: no write, one read to rule out a stale cache
    assert counting.counts == {"put": 15, "get": 2}


async def test_concurrent_tasks_share_one_put(make_backend: Callable[[], ObjectBackend]) -> None:
    store, counting = counting_store(make_backend)
    await store.save_state("seed", 0, "wf", W)
    counting.reset()
    await asyncio.gather(*(store.save_state(f"k{i}", i, "wf", W) for i in range(TASKS)))
    assert counting.counts == {"put": 1}
    counting.reset()
    results = await asyncio.gather(*(store.save_state_object("wf", {f"o{i}": i}, W) for i in range(TASKS)))
    assert counting.counts == {"put": 1}
    for i, state in enumerate(results):
        assert state[f"o{i}"] == i


async def test_concurrent_loops_stay_batched(make_backend: Callable[[], ObjectBackend]) -> None:
    """Tasks that each update in a loop keep being written together, not one by one."""
    store, counting = counting_store(make_backend)
    await store.save_state("seed", 0, "wf", W)
    counting.reset()
    rounds = 5

    async def worker(w: int) -> None:
        for i in range(rounds):
            await store.save_state(f"w{w}", i, "wf", W)

    await asyncio.gather(*(worker(w) for w in range(TASKS)))
    assert counting.counts["get"] == 0
    assert counting.counts["put"] <= 0.3 * TASKS * rounds
    assert await store.get_state("wf", W) == {"seed": 0, **{f"w{w}": rounds - 1 for w in range(TASKS)}}


# -- writing nothing, and never trusting a stale cache for it ---------------------------------------


async def test_no_op_updates_write_nothing(make_backend: Callable[[], ObjectBackend]) -> None:
    store, counting = counting_store(make_backend)
    await store.save_state_object("wf", {"k": 1, "j": [1, 2]}, W)
    counting.reset()
    await store.save_state("k", 1, "wf", W)
    assert await store.save_state_object("wf", {"j": [1, 2]}, W) == {"k": 1, "j": [1, 2]}
    assert await store.update_state("wf", W, lambda s: s) == {"k": 1, "j": [1, 2]}
    await store.save_state_object("empty", {}, W)
    assert counting.counts["put"] == 0
    # A cached state may be stale: before reporting "nothing to do" the store checks with one read.
    assert counting.counts["get"] == 4


async def test_stale_cache_never_skips_a_write(make_backend: Callable[[], ObjectBackend]) -> None:
    one, _ = counting_store(make_backend)
    two, _ = counting_store(make_backend)
    await one.save_state("k", 1, "wf", W)
    await two.save_state("k", 2, "wf", W)
    await one.save_state("k", 1, "wf", W)  # equal to what one last saw, not to what is stored
    assert await two.get_state("wf", W) == {"k": 1}


async def test_stale_cache_never_fails_a_change(make_backend: Callable[[], ObjectBackend]) -> None:
    one, _ = counting_store(make_backend)
    two, _ = counting_store(make_backend)
    await one.save_state("n", 0, "wf", W)
    await two.save_state("x", 41, "wf", W)

    def needs_x(state: dict[str, Any]) -> dict[str, Any]:
        state["x"] += 1  # a KeyError on one's cached (stale) state
        return state

    assert await one.update_state("wf", W, needs_x) == {"n": 0, "x": 42}


async def test_stale_cache_costs_one_failed_put(make_backend: Callable[[], ObjectBackend]) -> None:
    one, counting = counting_store(make_backend)
    two, _ = counting_store(make_backend)
    await one.save_state("a", 1, "wf", W)
    await two.save_state("b", 2, "wf", W)
    counting.reset()
    assert await one.save_state_object("wf", {"c": 3}, W) == {"a": 1, "b": 2, "c": 3}
    assert counting.counts["put"] == 2
    assert counting.counts["get"] <= 1  # local and memory hand back what they saw; S3 reads it below us
    counting.reset()
    await one.save_state("d", 4, "wf", W)  # the cache is fresh again
    assert counting.counts == {"put": 1}


@pytest.mark.parametrize(
    ("bound", "states", "value"),
    [({"cache_size": 2}, 3, 0), ({"cache_bytes": 40_000}, 20, "x" * 3000)],  # bytes: about 12 states of 3 KB
    ids=["count", "bytes"],
)
async def test_cache_is_bounded(
    make_backend: Callable[[], ObjectBackend], bound: dict[str, int], states: int, value: object
) -> None:
    """Past ``cache_size`` states or ``cache_bytes`` (well before the default count) the least recent are dropped."""
    store, counting = counting_store(make_backend, **bound)
    for i in range(states):
        await store.save_state("k", value, f"s{i}", W)
    counting.reset()
    await store.save_state("k", 1, f"s{states - 1}", W)  # the two most recent: still cached
    await store.save_state("k", 1, f"s{states - 2}", W)
    assert counting.counts == {"put": 2}
    counting.reset()
    await store.save_state("k", 1, "s0", W)  # the least recently used, dropped
    assert counting.counts == {"get": 1, "put": 1}


@pytest.mark.parametrize("bound", ["cache_size", "cache_bytes"])
async def test_a_zero_bound_turns_the_cache_off(make_backend: Callable[[], ObjectBackend], bound: str) -> None:
    store, counting = counting_store(make_backend, **{bound: 0})
    await store.save_state("k", 2, "a", W)
    await store.save_state("k", 3, "a", W)
    assert counting.counts == {"get": 2, "put": 2}


# -- coalescing semantics ----------------------------------------------------------------------------


async def test_coalesced_changes_apply_in_call_order(make_backend: Callable[[], ObjectBackend]) -> None:
    store, counting = counting_store(make_backend)
    await store.save_state("log", [], "wf", W)
    counting.reset()
    results = await asyncio.gather(*(store.update_state("wf", W, appender(i)) for i in range(TASKS)))
    assert counting.counts == {"put": 1}
    assert await store.get_state("wf", W) == {"log": list(range(TASKS))}
    for i, state in enumerate(results):  # each caller sees its own change, and those before it
        assert state["log"][: i + 1] == list(range(i + 1))
    results[0]["log"].append("mine")  # and owns what it got
    assert results[1]["log"] == list(range(TASKS))


# -- local backend: the ETag check without a read --------------------------------------------------------


async def test_local_etag_proof_sees_other_writers(tmp_path: Path) -> None:
    ours, theirs = LocalBackend(tmp_path), LocalBackend(tmp_path)
    etag = (await ours.put("a/b.json", b'{"v":1}')).etag
    await theirs.put("a/b.json", b'{"v":1}', PutMode.update(etag))  # same bytes, a new file: the same ETag
    assert (await ours.put("a/b.json", b'{"v":2}', PutMode.update(etag))).etag != etag  # proven by reading, not the pin
    newer = (await theirs.put("a/b.json", b'{"v":3}', PutMode.update(md5_etag(b'{"v":2}')))).etag
    with pytest.raises(PreconditionFailed) as info:
        await ours.put("a/b.json", b'{"v":4}', PutMode.update(md5_etag(b'{"v":2}')))
    assert info.value.current == Versioned(b'{"v":3}', newer)
    (tmp_path / "a" / "b.json").write_bytes(b'{"v":"edited in place"}')  # not through a backend
    with pytest.raises(PreconditionFailed):
        await theirs.put("a/b.json", b'{"v":5}', PutMode.update(newer))
    await ours.aclose()
    await theirs.aclose()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_local_backend_keeps_a_bounded_number_of_files_open(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    before = open_fds()
    etags = {}
    for i in range(300):
        etags[i] = (await backend.put(f"s{i}/config.json", b"{}")).etag
    assert open_fds() - before <= 130
    for i in range(300):  # evicted or not, every ETag still checks out
        await backend.put(f"s{i}/config.json", b"[]", PutMode.update(etags[i]))
    await backend.delete("s299/config.json")
    await backend.aclose()
    assert open_fds() <= before


async def test_local_save_is_one_thread_hop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(LocalBackend(tmp_path))
    await store.save_state("k", 0, "wf", W)
    hops = AsyncMock(wraps=asyncio.to_thread)  # a spy: the real thread hop, counted
    monkeypatch.setattr(asyncio, "to_thread", hops)
    for i in range(1, 6):
        await store.save_state("k", i, "wf", W)
    assert hops.await_count == 5
    await store.aclose()


def test_stale_cache_after_another_process_wrote(tmp_path: Path) -> None:
    counting = CountingBackend(LocalBackend(tmp_path))
    store = Store(counting)
    asyncio.run(store.save_state_object("wf", {"mine": 1, "shared": "old"}, W))
    other = textwrap.dedent(
        """
        import asyncio, sys
        from statestore import LocalBackend, StateType, Store

        asyncio.run(Store(LocalBackend(sys.argv[1])).save_state("shared", "theirs", "wf", StateType.WORKFLOWS))
        """
    )
    subprocess.run([sys.executable, "-c", other, str(tmp_path)], check=True, timeout=60)
    counting.reset()
    asyncio.run(store.save_state("shared", "old", "wf", W))  # equal to our cached state, not to the stored one
    assert counting.counts == {"get": 1, "put": 1}
    assert asyncio.run(store.get_state("wf", W)) == {"mine": 1, "shared": "old"}
    counting.reset()
    assert asyncio.run(store.save_state_object("wf", {"more": 2}, W)) == {"mine": 1, "shared": "old", "more": 2}
    assert counting.counts == {"put": 1}


# -- the cache is bounded in bytes -----------------------------------------------------------------


async def test_a_state_over_an_eighth_of_the_bound_is_not_cached(make_backend: Callable[[], ObjectBackend]) -> None:
    """A huge state costs 1 GET + 1 PUT per update; a small one next to it still 1 PUT."""
    store, counting = counting_store(make_backend, cache_bytes=80_000)
    await store.save_state("k", "x" * 20_000, "huge", W)
    await store.save_state("k", 0, "small", W)
    for i in range(3):
        counting.reset()
        await store.save_state("n", i, "huge", W)
        assert counting.counts == {"get": 1, "put": 1}
        counting.reset()
        await store.save_state("n", i, "small", W)
        assert counting.counts == {"put": 1}
    assert (await store.get_state("huge", W))["n"] == 2
    counting.reset()
    await store.save_state("n", 3, "huge", W)  # a read does not cache it either
    assert counting.counts == {"get": 1, "put": 1}


async def test_coalescing_queues_are_dropped_when_empty(make_backend: Callable[[], ObjectBackend]) -> None:
    """The coalescer keeps a queue only while a state has callers waiting: nothing per state afterwards."""
    store, _ = counting_store(make_backend)
    await asyncio.gather(*(store.update_state(f"s{i % 40}", W, appender(i)) for i in range(120)))
    assert store._coalescer._queues == {}
