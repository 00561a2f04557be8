"""A long-lived store at scale: listings stream with flat memory, and per-loop bookkeeping does not pile up.

Speed figures live in scripts/bench.py; here only what can be counted: how much of a listing was read, what it held.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from conftest import s3_backend

from statestore import LocalBackend, StateType, Store
from statestore.backends import local, localfs
from statestore.testing import MotoServer

pytestmark = pytest.mark.slow  # thousands of states: about 10 s

W = StateType.WORKFLOWS


def make_tree(root: Path, n: int) -> None:
    """``n`` workflow states of the default app, written straight to disk (as the local backend lays them out)."""
    base = root / "persistent-artifacts" / "apps" / "default" / "workflows"
    base.mkdir(parents=True)
    for i in range(n):
        state = base / f"wf-{i:06d}"
        state.mkdir()
        (state / "config.json").write_bytes(b'{"i":%d}' % i)
        (state / ".config.json.lock").touch()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    make_tree(root, 10_000)
    return root


async def test_local_listing_streams_with_flat_memory(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first of 10,000 ids arrives after one batch is read; the walk holds a batch at a time, not an entry per
    state (a sorted directory held 1.6 MB)."""
    taken: list[int] = []
    take = local._take

    def spy(iterator: Any, n: int) -> Any:
        batch = take(iterator, n)
        taken.append(len(batch))
        return batch

    monkeypatch.setattr(local, "_take", spy)
    store = Store(LocalBackend(tree))
    seen = 0
    at_first: int | None = None
    tracemalloc.start()
    try:
        async for _ in store.iter_states(W):
            if at_first is None:
                at_first = sum(taken)
            seen += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == 10_000
    assert at_first is not None and at_first <= local._LIST_BATCH + local._LIST_BATCH_MAX
    assert max(taken) <= local._LIST_BATCH_MAX
    assert peak < 2**20


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_a_listing_stopped_early_closes_its_directories(tree: Path) -> None:
    store = Store(LocalBackend(tree))
    before = _open_fds()
    async with aclosing(store.iter_states(W)) as ids:
        async for _ in ids:
            break
    for _ in range(200):  # the read-ahead thread finishes its batch, then the walk is collected
        gc.collect()
        if _open_fds() <= before:
            break
        await asyncio.sleep(0.01)
    assert _open_fds() <= before
    assert len(await store.list_states(W)) == 10_000  # and the next listing is whole


async def test_s3_listing_streams_page_by_page(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first id arrives after one page of a listing; pages are fetched as the caller goes."""
    backend = s3_backend(moto_server, moto_server.create_bucket(), list_page_size=50)
    store = Store(backend)
    try:
        await asyncio.gather(*(store.save_state("k", i, f"wf-{i:04d}", W) for i in range(300)))
        calls: list[int] = []
        retrying = backend._retrying

        async def spy(call: Any) -> Any:
            calls.append(1)
            return await retrying(call)

        monkeypatch.setattr(backend, "_retrying", spy)
        seen = 0
        async for _ in store.iter_states(W):
            if seen == 0:
                assert len(calls) == 1
            seen += 1
        assert seen == 300 and len(calls) == 6
    finally:
        await store.aclose()


async def test_listing_ids_costs_no_status_or_metadata_per_file(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``list_states`` needs ids only: no ``ObjectMeta`` (nor the ``lstat`` it needs) per state; info still has them."""
    made: list[str] = []

    class CountedMeta(localfs.ObjectMeta):
        def __init__(self, key: str, *args: Any) -> None:
            made.append(key)
            super().__init__(key, *args)

    monkeypatch.setattr(localfs, "ObjectMeta", CountedMeta)
    store = Store(LocalBackend(tree))
    assert len(await store.list_states(W)) == 10_000
    assert made == []
    infos = [info async for info in store.iter_state_info(W)]
    assert len(infos) == len(made) == 10_000
    assert all(info.size > 0 and info.last_modified.tzinfo is not None for info in infos)
