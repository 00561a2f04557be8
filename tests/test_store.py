"""Store behaviour beyond the API page examples, on every backend."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from statestore import (
    BackendError,
    ConflictError,
    CorruptStateError,
    FaultBackend,
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    ObjectBackend,
    ObjectMeta,
    RetryPolicy,
    StateStore,
    StateTooLargeError,
    StateType,
    Store,
    WrapperBackend,
)

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS
T = TypeVar("T")


async def raw(store: Store, id: str, type: StateType = W) -> bytes | None:  # noqa: A002
    obj = await store.backend.get(store.key(id, type).object_key)
    return None if obj is None else obj.data


async def test_missing_state_is_empty_dict(store: Store) -> None:
    assert await store.get_state("nope", W) == {}
    assert await StateStore.get_state("nope", C) == {}


async def test_stored_bytes_are_plain_json(store: Store) -> None:
    await store.save_state_object("wf", {"a": 1, "b": [1, 2]}, W)
    assert await raw(store, "wf") == b'{"a":1,"b":[1,2]}'


async def test_save_state_sets_one_key_and_keeps_others(store: Store) -> None:
    await store.save_state_object("wf", {"a": 1, "b": {"x": 1}}, W)
    assert await store.save_state("b", {"y": 2}, "wf", W) is None
    assert await store.get_state("wf", W) == {"a": 1, "b": {"y": 2}}


async def test_positional_calls(store: Store) -> None:
    await StateStore.save_state("k", "v", "wf", W)
    assert await StateStore.save_state_object("wf", {"j": 1}, W) == {"k": "v", "j": 1}
    assert await StateStore.get_state("wf", W) == {"k": "v", "j": 1}


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

    def boom(state: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("user code failed")

    with pytest.raises(RuntimeError, match="user code failed"):
        await store.update_state("wf", W, boom)
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
    other_app = Store(store.backend, app_name="other")
    assert await other_app.list_states(W) == []


async def test_save_after_delete_recreates(store: Store) -> None:
    await store.save_state("k", 1, "wf", W)
    await store.delete_state("wf", W)
    await store.save_state("j", 2, "wf", W)
    assert await store.get_state("wf", W) == {"j": 2}


async def test_empty_merge_on_missing_state_writes_nothing(store: Store) -> None:
    assert await store.save_state_object("wf", {}, W) == {}
    assert await raw(store, "wf") is None


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


async def test_size_limit(backend: ObjectBackend) -> None:
    store = Store(backend, max_state_bytes=1000)
    await store.save_state("small", "x" * 100, "wf", W)
    with pytest.raises(StateTooLargeError, match="limit is 1000"):
        await store.save_state("big", "x" * 2000, "wf", W)
    assert await store.get_state("wf", W) == {"small": "x" * 100}


@pytest.mark.parametrize("garbage", [b'{"a": 1', b"[1, 2]", b"\xff\xfe\x00garbage", b"", b'"text"'])
async def test_corrupt_state_raises_on_read_and_save_and_can_be_recovered(store: Store, garbage: bytes) -> None:
    key = store.key("wf", W).object_key
    await store.backend.put(key, garbage)
    for call in (
        store.get_state("wf", W),
        store.save_state("k", 1, "wf", W),
        store.save_state_object("wf", {"k": 1}, W),
        store.update_state("wf", W, lambda s: s),
    ):
        with pytest.raises(CorruptStateError, match="workflows state 'wf'"):
            await call
    assert await raw(store, "wf") == garbage
    assert await store.replace_state("wf", W, {"fresh": True}) == {"fresh": True}
    assert await store.get_state("wf", W) == {"fresh": True}
    await store.backend.put(key, garbage)
    await store.delete_state("wf", W)
    await store.save_state("k", 1, "wf", W)
    assert await store.get_state("wf", W) == {"k": 1}


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


async def test_failed_write_forgets_cached_etag() -> None:
    inner = MemoryBackend()
    backend = FailingBackend(inner, set())
    store = Store(backend)
    await store.save_state("k", 1, "wf", W)
    backend.failing = {"put"}
    with pytest.raises(BackendError):
        await store.save_state("k", 2, "wf", W)
    backend.failing = set()
    await store.save_state("j", 3, "wf", W)
    assert await store.get_state("wf", W) == {"k": 1, "j": 3}


def test_credentials_files_are_private(tmp_path: Path) -> None:
    import asyncio

    store = Store(LocalBackend(tmp_path / "root"))

    async def main() -> None:
        await store.save_state("host", "db", "cred-1", C)
        await store.save_state("port", 5432, "cred-1", C)

    asyncio.run(main())
    path = tmp_path / "root" / store.key("cred-1", C).object_key
    assert path.stat().st_mode & 0o777 == 0o600
    for directory in (path.parent, path.parent.parent, tmp_path / "root" / "persistent-artifacts"):
        assert directory.stat().st_mode & 0o777 == 0o700
