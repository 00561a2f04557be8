"""State metadata (``iter_state_info`` / ``list_state_info``) and pruning (``prune_states``) on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from conftest import s3_backend
from test_get_states import over

from statestore import (
    InvalidInputError,
    LocalBackend,
    ObjectBackend,
    StateInfo,
    StateStore,
    StateType,
    Store,
    set_default_store,
)
from statestore.backends import ObjectMeta, WrapperBackend
from statestore.backends.base import Capability
from statestore.errors import ConditionalDeleteUnsupportedError, InvalidStateTypeError
from statestore.sync import SyncStore
from statestore.testing import CountingBackend, MotoServer

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS
T = TypeVar("T")


# -- metadata ---------------------------------------------------------------------


async def test_list_state_info_from_the_listing_alone(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 times are whole seconds
    await store.save_state_object("b", {"n": 2, "tables": ["x", "y"]}, W)
    await store.save_state_object("a", {"n": 1}, W)
    await store.save_state_object("other", {"n": 3}, C)
    after = datetime.now(UTC) + timedelta(seconds=1)

    counting = CountingBackend(store.backend)
    infos = await over(store, counting).list_state_info(W)
    assert counting.counts == {"list": 1}  # no GET per state

    assert [info.id for info in infos] == ["a", "b"]
    for info in infos:
        assert isinstance(info, StateInfo)
        stored = await store.backend.get(store.key(info.id, W).object_key)
        assert stored is not None
        assert info.size == len(stored.data)
        assert info.last_modified.tzinfo is not None and info.last_modified.utcoffset() == timedelta(0)
        assert before <= info.last_modified <= after
        if isinstance(store.backend, LocalBackend):
            assert info.version is None  # the local listing cannot know the ETag without reading
        else:
            assert info.version == stored.etag
    streamed = [info async for info in store.iter_state_info(W)]
    assert sorted(streamed) == infos
    assert await StateStore.list_state_info(W) == infos
    assert [info.id async for info in StateStore.iter_state_info("credentials")] == ["other"]


async def test_state_info_of_an_empty_type_and_a_bad_type(store: Store) -> None:
    assert await store.list_state_info(C) == []
    counting = CountingBackend(store.backend)
    with pytest.raises(InvalidStateTypeError) as caught:
        await over(store, counting).list_state_info("nope")
    assert counting.counts == {}
    assert caught.value.operation == "list_state_info" and caught.value.state_type == "nope"


# -- pruning ----------------------------------------------------------------------


#: The ``older_than`` of the pruning tests: the states ``Aged`` makes old are a day old, the others are new.
AGE = timedelta(hours=1)


class Aged(WrapperBackend):
    """Lists the states ``ids`` as a day older than they are: the clock of a prune moved on, without a wait."""

    def __init__(self, store: Store, *ids: str, inner: ObjectBackend | None = None) -> None:
        super().__init__(inner or store.backend)
        self.keys = {store.key(state_id, W).object_key for state_id in ids}

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async for meta in self.inner.list(prefix):
            yield replace(meta, last_modified=meta.last_modified - timedelta(days=1)) if meta.key in self.keys else meta


async def saved_apart(store: Store) -> Aged:
    """Save old-1, old-2 and fresh; the backend returned lists old-1 and old-2 a day old (``AGE`` splits them)."""
    for n, state_id in enumerate(("old-1", "old-2", "fresh"), 1):
        await store.save_state_object(state_id, {"n": n}, W)
    return Aged(store, "old-1", "old-2")


async def skip_without_conditional_delete(store: Store) -> None:
    """Where the server does not honour If-Match on DeleteObject (Ceph RGW, MinIO, LocalStack) prune refuses
    instead (its own test)."""
    if not await store.backend.supports(Capability.CONDITIONAL_DELETE):
        pytest.skip("the server does not honour If-Match on DeleteObject: prune refuses there")


async def test_prune_deletes_only_states_older_than_the_cutoff(store: Store) -> None:
    await skip_without_conditional_delete(store)
    aged = await saved_apart(store)
    await store.save_state_object("other", {"n": 4}, C)  # another type is never touched
    counting = CountingBackend(aged)
    assert await over(store, counting).prune_states(W, older_than=AGE, dry_run=True) == ["old-1", "old-2"]
    assert counting.counts["delete"] == 0 and counting.counts["put"] == 0
    assert await store.list_states(W) == ["fresh", "old-1", "old-2"]

    seen: list[tuple[int, int]] = []
    pruned = await over(store, aged).prune_states(W, older_than=AGE, progress=lambda done, t: seen.append((done, t)))
    assert pruned == ["old-1", "old-2"]
    assert seen == [(1, 2), (2, 2)]
    assert await store.list_states(W) == ["fresh"]
    assert await store.get_state("old-1", W) == {}
    assert await store.list_states(C) == ["other"]
    assert await over(store, aged).prune_states(W, older_than=AGE) == []


class TouchFirst(WrapperBackend):
    """Before its first get or delete, runs ``touch`` (another writer updating a state)."""

    def __init__(self, inner: ObjectBackend, touch: Callable[[], Awaitable[object]]) -> None:
        super().__init__(inner)
        self.touch: Callable[[], Awaitable[object]] | None = touch

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if op in ("get", "delete") and self.touch is not None:
            touch, self.touch = self.touch, None
            await touch()
        return await call()


async def test_prune_keeps_a_state_updated_since_it_was_listed(store: Store) -> None:
    await skip_without_conditional_delete(store)
    aged = await saved_apart(store)
    writer = Store(store.backend, app_name=store.app_name)
    pruning = over(store, TouchFirst(aged, lambda: writer.save_state_object("old-2", {"touched": 1}, W)))
    assert await pruning.prune_states(W, older_than=AGE) == ["old-1"]
    assert await store.get_state("old-2", W) == {"n": 2, "touched": 1}
    assert await store.list_states(W) == ["fresh", "old-2"]


@pytest.mark.parametrize(
    ("older_than", "options"),
    [
        (timedelta(0), {}),
        (timedelta(seconds=-5), {}),
        (30, {}),
        ("30d", {}),
        (timedelta(days=1), {"dry_run": "yes"}),
        (timedelta(days=1), {"allow_unconditional": 1}),
        (timedelta(days=1), {"progress": 3}),
    ],
)
async def test_prune_validates_before_any_io(store: Store, older_than: Any, options: dict[str, Any]) -> None:
    await store.save_state_object("a", {"n": 1}, W)
    counting = CountingBackend(store.backend)
    with pytest.raises(InvalidInputError) as caught:
        await over(store, counting).prune_states(W, older_than=older_than, **options)
    assert counting.counts == {}
    assert caught.value.operation == "prune_states"
    with pytest.raises(InvalidStateTypeError):
        await over(store, counting).prune_states("nope", older_than=timedelta(days=1))
    assert counting.counts == {}
    assert await store.list_states(W) == ["a"]


async def test_prune_through_the_facade_and_the_sync_store(store: Store) -> None:
    await skip_without_conditional_delete(store)
    pruning = over(store, await saved_apart(store))
    previous = set_default_store(pruning)
    try:
        assert await StateStore.prune_states(W, older_than=AGE, dry_run=True) == ["old-1", "old-2"]
    finally:
        set_default_store(previous)
    sync = SyncStore(pruning)
    try:
        assert await asyncio.to_thread(lambda: sync.prune_states(W, older_than=AGE)) == ["old-1", "old-2"]
    finally:
        await asyncio.to_thread(sync.close)
    assert await store.list_states(W) == ["fresh"]


async def test_prune_refuses_where_conditional_delete_is_ignored(moto_server: MotoServer) -> None:
    """A server that ignores If-Match on delete: refused, nothing deleted, unless allow_unconditional."""
    backend = s3_backend(moto_server, moto_server.create_bucket(), conditional_delete="false")
    async with Store(backend, app_name="appName") as store:
        aged = await saved_apart(store)
        with pytest.raises(ConditionalDeleteUnsupportedError, match="allow_unconditional") as caught:
            await over(store, aged).prune_states(W, older_than=AGE)
        assert caught.value.operation == "prune_states"
        assert caught.value.state_id == "old-1" and caught.value.state_type == "workflows"
        assert await store.list_states(W) == ["fresh", "old-1", "old-2"]

        # allowed: still re-read first, so a state changed before its turn is kept
        writer = Store(backend, app_name="appName")
        pruning = over(store, TouchFirst(aged, lambda: writer.save_state_object("old-1", {"touched": 1}, W)))
        assert await pruning.prune_states(W, older_than=AGE, allow_unconditional=True) == ["old-2"]
        assert await store.list_states(W) == ["fresh", "old-1"]
