"""Fenced writes: a writer holding an older fence cannot change a state once a newer fence was acquired.

Temporal-ready, item 2: compare-and-swap prevents lost updates, not stale writers; a paused attempt that wakes up
after its retry took over rolls checkpoints back unless its writes are fenced (docs/temporal.md).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from statestore import Fence, LocalBackend, MemoryBackend, StateStore, StateType, Store
from statestore.errors import FencedError, InvalidInputError
from statestore.sync import SyncStore
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS


async def test_a_fence_on_a_missing_state_creates_it_empty_and_epochs_only_grow(store: Store) -> None:
    first = await store.acquire_fence("wf", W)
    assert isinstance(first, Fence) and first.epoch > 0 and (first.id, first.type) == ("wf", W)
    assert await store.get_state("wf", W) == {}
    assert await store.list_states(W) == ["wf"]
    second = await store.acquire_fence("wf", W)
    assert second.epoch > first.epoch


async def test_every_write_with_an_older_fence_is_refused_and_writes_nothing(store: Store) -> None:
    old = await store.acquire_fence("wf", W)
    await store.save_state("i", 1, "wf", W, fence=old)
    new = await store.acquire_fence("wf", W)
    _, before = await store.get_versioned_state("wf", W)
    writes = [
        store.save_state("i", 0, "wf", W, fence=old),
        store.save_state_object("wf", {"i": 0}, W, fence=old),
        store.update_state("wf", W, lambda s: {**s, "i": 0}, fence=old),
        store.replace_state("wf", W, {"i": 0}, fence=old),
    ]
    for write in writes:
        with pytest.raises(FencedError) as info:
            await write
        assert (info.value.epoch, info.value.stored_epoch) == (old.epoch, new.epoch)
        assert not info.value.retryable and info.value.operation is not None
    if await _conditional_delete(store):
        with pytest.raises(FencedError):
            await store.delete_state("wf", W, fence=old)
    state, after = await store.get_versioned_state("wf", W)
    assert state == {"i": 1} and after == before  # not one byte written
    await store.save_state("i", 2, "wf", W, fence=new)
    assert await store.get_state("wf", W) == {"i": 2}


async def _conditional_delete(store: Store) -> bool:
    from statestore.backends.base import Capability

    return await store.backend.supports(Capability.CONDITIONAL_DELETE)


async def test_writes_without_a_fence_keep_the_fence(store: Store) -> None:
    fence = await store.acquire_fence("wf", W)
    await store.save_state("a", 1, "wf", W)  # unfenced: allowed, and the epoch stays
    await store.replace_state("wf", W, {"b": 2})
    await store.save_state("c", 3, "wf", W, fence=fence)
    assert await store.get_state("wf", W) == {"b": 2, "c": 3}


async def test_a_stale_fence_in_a_coalesced_batch_fails_alone() -> None:
    store = Store(MemoryBackend())
    old = await store.acquire_fence("wf", W)
    new = await store.acquire_fence("wf", W)
    results = await asyncio.gather(
        store.save_state("a", 1, "wf", W, fence=new),
        store.save_state("z", 0, "wf", W, fence=old),
        store.save_state("b", 2, "wf", W),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], FencedError) and results[2] is None
    assert await store.get_state("wf", W) == {"a": 1, "b": 2}


async def test_a_deleted_state_voids_its_fences(store: Store) -> None:
    fence = await store.acquire_fence("wf", W)
    await store.delete_state("wf", W)
    with pytest.raises(FencedError, match="missing"):
        await store.save_state("i", 9, "wf", W, fence=fence)
    assert await store.get_versioned_state("wf", W) == ({}, None)  # the zombie did not bring it back
    again = await store.acquire_fence("wf", W)
    assert again.epoch > fence.epoch  # the clock keeps epochs growing across a deletion


async def test_a_fence_is_for_its_own_state_only() -> None:
    store = Store(MemoryBackend())
    fence = await store.acquire_fence("wf", W)
    with pytest.raises(InvalidInputError, match="acquired for"):
        await store.save_state("i", 1, "other", W, fence=fence)
    with pytest.raises(InvalidInputError, match="Fence from acquire_fence"):
        await store.save_state("i", 1, "wf", W, fence=fence.epoch)  # type: ignore[arg-type]
    assert await store.get_state("other", W) == {}


async def test_a_steady_fenced_update_is_one_put() -> None:
    counting = CountingBackend(MemoryBackend())
    async with Store(counting) as store:
        fence = await store.acquire_fence("wf", W)
        counting.reset()
        for i in range(10):
            await store.save_state("i", i, "wf", W, fence=fence)
        assert dict(counting.counts) == {"put": 10}


async def test_the_fence_is_never_shown_as_a_key(store: Store) -> None:
    fence = await store.acquire_fence("wf", W)
    await store.save_state("i", 1, "wf", W, fence=fence)
    assert await store.get_state("wf", W) == {"i": 1}
    assert await store.get_states(["wf"], W) == {"wf": {"i": 1}}
    assert await store.get_fence_epoch("wf", W) == fence.epoch


async def test_the_facade_and_the_sync_store_take_fences(tmp_path: Path) -> None:
    store = Store(LocalBackend(tmp_path))
    from statestore import use_store

    with use_store(store):
        fence = await StateStore.acquire_fence("wf", W)
        await StateStore.save_state("i", 1, "wf", W, fence=fence)
        await StateStore.acquire_fence("wf", W)
        with pytest.raises(FencedError):
            await StateStore.save_state("i", 0, "wf", W, fence=fence)

    def blocking() -> None:
        with SyncStore(Store(LocalBackend(tmp_path))) as sync:
            old = sync.acquire_fence("wf2", W)
            sync.acquire_fence("wf2", W)
            with pytest.raises(FencedError):
                sync.save_state("i", 0, "wf2", W, fence=old)

    await asyncio.to_thread(blocking)


def _acquire_and_write(root: str, rounds: int, out: Any) -> None:
    """In a child process: acquire a fence, write with it, and report the epochs and refusals seen."""

    async def main() -> dict[str, list[int] | int]:
        store = Store(LocalBackend(root))
        epochs: list[int] = []
        refused = 0
        for _ in range(rounds):
            fence = await store.acquire_fence("shared", W)
            epochs.append(fence.epoch)
            for _ in range(3):
                try:
                    await store.update_state("shared", W, lambda s: {**s, "n": s.get("n", 0) + 1}, fence=fence)
                except FencedError:
                    refused += 1
        return {"epochs": epochs, "refused": refused}

    out.put(json.dumps(asyncio.run(main())))


def test_processes_get_ever_greater_epochs_and_older_fences_are_refused(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_acquire_and_write, args=(str(tmp_path), 10, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    reports = [json.loads(out.get(timeout=120)) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    epochs = [epoch for report in reports for epoch in report["epochs"]]
    assert len(set(epochs)) == len(epochs) == 40  # every acquire got its own epoch
    for report in reports:
        assert report["epochs"] == sorted(report["epochs"])  # and each process saw them grow
    written = asyncio.run(Store(LocalBackend(tmp_path)).get_state("shared", W))
    refused = sum(report["refused"] for report in reports)
    assert written["n"] + refused == 4 * 10 * 3  # each write either landed once or was refused


async def test_copy_carries_the_fence_over(tmp_path: Path) -> None:
    from statestore.copying import copy_states

    src, dst = Store(MemoryBackend(), app_name="app"), Store(LocalBackend(tmp_path), app_name="app")
    fence = await src.acquire_fence("wf", W)
    await src.save_state("i", 7, "wf", W, fence=fence)
    report = await copy_states(src, dst)
    assert report.ok and await dst.get_state("wf", W) == {"i": 7}
    assert await dst.get_fence_epoch("wf", W) == fence.epoch
    await dst.save_state("i", 8, "wf", W, fence=Fence("app", W, "wf", fence.epoch))  # the holder writes on at dst
    newer = await dst.acquire_fence("wf", W)
    assert newer.epoch > fence.epoch
    with pytest.raises(FencedError):
        await dst.save_state("i", 0, "wf", W, fence=fence)


def test_the_cli_never_shows_a_fence(tmp_path: Path, cli_run: Any) -> None:
    """The epoch lives in the write record after the JSON: ``get``, ``--json get`` and ``list --long`` show the
    state alone, as every JSON reader sees it."""
    root = tmp_path / "root"

    async def fenced() -> None:
        async with Store(LocalBackend(root), app_name="app") as store:
            for _ in range(3):
                fence = await store.acquire_fence("wf", W)
            await store.save_state_object("wf", {"done": 41}, W, fence=fence)

    asyncio.run(fenced())
    args = ("--root", str(root), "--app", "app")
    assert json.loads(cli_run(*args, "get", "wf").ok()) == {"done": 41}
    assert json.loads(cli_run(*args, "--json", "get", "wf").ok()) == {"done": 41}
    listed = cli_run(*args, "list", "--long").ok()
    assert "wf" in listed and "epoch" not in listed.lower() and "fence" not in listed.lower()
    stored = next(root.rglob("config.json")).read_bytes()
    assert json.loads(stored) == {"done": 41}  # plain JSON for every reader, the record after it
