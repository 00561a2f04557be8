"""Store behaviour on every backend: reads, merges, updates, deletes, listings, bad input and failures."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from statestore import (
    BackendError,
    ConflictError,
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    ObjectBackend,
    RetryPolicy,
    StateStore,
    StateType,
    Store,
)
from statestore.backends import ObjectMeta, WrapperBackend
from statestore.testing import FaultBackend

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS
T = TypeVar("T")


async def raw(store: Store, id: str, type: StateType = W) -> bytes | None:  # noqa: A002
    obj = await store.backend.get(store.key(id, type).object_key)
    return None if obj is None else obj.data


async def test_missing_state_merges_and_the_stored_bytes(store: Store) -> None:
    """Missing is ``{}`` (an empty merge on it writes nothing); save_state sets one key; stored bytes are plain JSON."""
    assert await store.get_state("nope", W) == {}
    assert await StateStore.get_state("nope", C) == {}
    assert await store.save_state_object("wf", {}, W) == {}
    assert await raw(store, "wf") is None
    await store.save_state_object("wf", {"a": 1, "b": {"x": 1}}, W)
    assert await store.save_state("b", [1, 2], "wf", W) is None
    assert await store.get_state("wf", W) == {"a": 1, "b": [1, 2]}
    stored = await raw(store, "wf")  # plain JSON, then the write's record as whitespace (docs/decisions/0039)
    assert stored is not None and re.fullmatch(rb'\{"a":1,"b":\[1,2\]\}\n[ \t]{64}', stored)
    await StateStore.save_state("k", "v", "p", W)  # positional, through the facade
    assert await StateStore.save_state_object("p", {"j": 1}, W) == {"k": "v", "j": 1}
    assert await StateStore.get_state("p", W) == {"k": "v", "j": 1}


async def test_update_state_gets_a_copy_and_returns_stored(store: Store) -> None:
    await store.save_state_object("wf", {"n": 1, "items": [1]}, W)
    seen: list[dict[str, Any]] = []

    def bump(state: dict[str, Any]) -> dict[str, Any]:
        seen.append(state)
        state["items"].append(2)  # mutating the copy must not leak into the store's cache
        return {**state, "n": state["n"] + 1}

    assert await store.update_state("wf", W, bump) == {"n": 2, "items": [1, 2]}
    assert await StateStore.update_state("wf", W, lambda s: {**s, "n": s["n"] + 1}) == {"n": 3, "items": [1, 2]}
    assert await store.get_state("wf", W) == {"n": 3, "items": [1, 2]}


async def test_update_state_errors_write_nothing(store: Store) -> None:
    await store.save_state_object("wf", {"n": 1}, W)
    before = await raw(store, "wf")
    with pytest.raises(ZeroDivisionError):  # the function's own error, as it raised it
        await store.update_state("wf", W, lambda s: {**s, "n": 1 // 0})
    with pytest.raises(InvalidInputError, match="returned list"):
        await store.update_state("wf", W, lambda s: [1])  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidInputError, match="nan"):
        await store.update_state("wf", W, lambda s: {"x": math.nan})
    with pytest.raises(InvalidInputError, match="callable"):
        await store.update_state("wf", W, "not callable")  # type: ignore[arg-type]
    assert await raw(store, "wf") == before


async def test_delete_and_list(store: Store) -> None:
    for wid in ("b", "a", "c.d", "ü"):
        await store.save_state("k", 1, wid, W)
    await store.save_state("k", 1, "cred", C)
    assert await store.list_states(W) == ["a", "b", "c.d", "ü"]
    assert await StateStore.list_states("credentials") == ["cred"]
    await store.delete_state("b", W)
    await StateStore.delete_state("b", W)  # missing: not an error
    assert await store.get_state("b", W) == {}
    assert await store.list_states(W) == ["a", "c.d", "ü"]
    assert sorted([i async for i in store.iter_states(W)]) == ["a", "c.d", "ü"]
    assert await Store(store.backend, app_name="other").list_states(W) == []
    await store.save_state("j", 2, "b", W)  # a save after a delete recreates the state
    assert await store.get_state("b", W) == {"j": 2}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        ({1, 2}, "set"),
        (b"bytes", "bytes"),
        (object(), "object"),
        ({1: "x"}, "key of type int"),
        ([10**5000], "more than 4300 digits"),  # in a list: pytest cannot print it as an id
        ("x\ud800", "lone surrogate"),
        ({"k\udfff": 1}, "lone surrogate"),
        ([[[[]]]], None),
    ],
)
async def test_values_that_are_not_json_are_refused(store: Store, value: Any, message: str | None) -> None:
    await store.save_state_object("wf", {"keep": True}, W)
    before = await raw(store, "wf")
    if message is None:  # valid: nested lists are fine
        await store.save_state("k", value, "wf", W)
        return
    with pytest.raises(InvalidInputError, match=message):
        await store.save_state("k", value, "wf", W)
    with pytest.raises(InvalidInputError, match=message):
        await store.save_state_object("wf", {"k": value}, W)
    assert await raw(store, "wf") == before


async def test_bad_keys_and_objects(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="state key must be a string"):
        await store.save_state(1, "v", "wf", W)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="must be a dict"):
        await store.save_state_object("wf", [("a", 1)], W)  # type: ignore[arg-type]
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(InvalidInputError, match="nested deeper"):
        await store.save_state("k", deep, "wf", W)
    assert await raw(store, "wf") is None


async def test_conflict_error_after_bounded_attempts() -> None:
    """Every put conflicts (another writer each time): the store gives up after its attempts, one put each."""
    faulty = FaultBackend(MemoryBackend(), rate=1.0, kinds=("conflict",), ops=("put",))
    store = Store(faulty, retry=RetryPolicy(attempts=4, base_delay=0.001))
    with pytest.raises(ConflictError, match="gave up after 4 attempts"):
        await store.save_state("k", 1, "wf", W)
    assert (faulty.counts["put"], faulty.counts["fault:conflict"]) == (4, 4)


class FailingBackend(WrapperBackend):
    """Fails chosen operations with an ``OSError`` (not a statestore error), as a broken disk or network would."""

    def __init__(self, inner: ObjectBackend, failing: set[str]) -> None:
        super().__init__(inner)
        self.failing = failing

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if op in self.failing:
            raise OSError("disk on fire")
        return await call()

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        if "list" in self.failing:
            raise OSError("disk on fire")
        async for meta in super().list(prefix):
            yield meta


async def test_failed_read_is_an_error_never_empty_state() -> None:
    inner = MemoryBackend()
    good = Store(inner)
    await good.save_state("k", 1, "wf", W)
    stored = await inner.get(good.key("wf", W).object_key)
    broken = Store(FailingBackend(inner, {"get", "list"}))
    with pytest.raises(BackendError, match="get of workflows state 'wf' failed") as info:
        await broken.get_state("wf", W)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(BackendError):
        await broken.save_state("j", 2, "wf", W)
    with pytest.raises(BackendError, match="listing"):
        await broken.list_states(W)
    assert await inner.get(good.key("wf", W).object_key) == stored


async def test_failed_writes_reach_every_caller_write_nothing_and_the_store_recovers(tmp_path: Path) -> None:
    """Puts that fail raise ``BackendError`` for every caller and change nothing; later saves work again."""
    faulty = FaultBackend(LocalBackend(tmp_path), rate=1.0, ops=("put",))
    await Store(faulty.inner).save_state("k", "original", "wf", W)
    store = Store(faulty)
    results = await asyncio.gather(*(store.save_state(f"k{i}", i, "wf", W) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, BackendError) for r in results)
    assert await Store(faulty.inner).get_state("wf", W) == {"k": "original"}
    faulty.rate = 0.0
    await store.save_state("k", 1, "wf", W)
    faulty.rate = 1.0  # with a cached ETag, too: the next save after the failed one still lands
    with pytest.raises(BackendError):
        await store.save_state("k", 2, "wf", W)
    faulty.rate = 0.0
    await store.save_state("j", 3, "wf", W)
    assert await store.get_state("wf", W) == {"k": 1, "j": 3}
