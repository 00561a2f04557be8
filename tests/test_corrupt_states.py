"""Corrupt stored objects (put straight into the backend, as a bad disk or another tool would leave them):
``CorruptStateError`` on read and on every merging write, nothing written; recovery is ``delete_state`` or
``replace_state``. Runs on every backend kind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_store import raw

from statestore import CorruptStateError, MemoryBackend, ObjectBackend, StateExistsError, StateType, Store
from statestore.backends import NotModified, Versioned, WrapperBackend
from statestore.core.cas import read_limit
from statestore.errors import StoredStateTooLargeError

CORRUPT = {
    "truncated-json": b'{"step": 3, "tables": ["a", "b"',
    "json-list": b'[{"step": 3}]',
    "json-string": b'"step 3"',
    "json-null": b"null",
    "json-number": b"42",
    "binary-garbage": bytes(range(256)) * 4,
    "invalid-utf8": b'{"x": "\xff\xfe"}',
    "empty-file": b"",
    "two-objects": b'{"a": 1}{"b": 2}',
}
ID = "wf-1"
W = StateType.WORKFLOWS


def increment(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-store", "warm-cache"])
@pytest.mark.parametrize("name", sorted(CORRUPT))
async def test_corrupt_state_is_an_error_on_read_and_write(backend: ObjectBackend, name: str, warm: bool) -> None:
    store = Store(backend, app_name="app")
    key = store.key(ID, W).object_key
    if warm:  # this store last saw a good version, then something else wrote garbage
        await store.save_state("step", 1, ID, W)
    await backend.put(key, CORRUPT[name])

    with pytest.raises(CorruptStateError, match=f"workflows state '{ID}'"):
        await store.get_state(ID, W)
    writes = [
        store.save_state("step", 4, ID, W),
        store.save_state_object(ID, {"step": 4}, W),
        store.update_state(ID, W, increment),
    ]
    for write in writes:
        with pytest.raises(CorruptStateError, match=ID):
            await write
        assert await raw(store, ID) == CORRUPT[name], "a write on top of a corrupt state changed it"
    assert ID in await store.list_states(W)

    # recovery 1: replace the whole state explicitly
    assert await store.replace_state(ID, W, {"step": 0}) == {"step": 0}
    assert await store.update_state(ID, W, increment) == {"step": 0, "n": 1}

    # recovery 2: delete it
    await backend.put(key, CORRUPT[name])
    await store.delete_state(ID, W)
    assert await raw(store, ID) is None
    assert await store.get_state(ID, W) == {}
    await store.save_state("step", 1, ID, W)
    assert await store.get_state(ID, W) == {"step": 1}


async def test_a_corrupt_state_fails_only_its_own_callers(backend: ObjectBackend) -> None:
    """Coalesced writes to a corrupt state all fail; another state of the same store is untouched."""
    store = Store(backend, app_name="app")
    await backend.put(store.key(ID, W).object_key, CORRUPT["json-list"])
    await store.save_state("ok", True, "other", W)
    results = await asyncio.gather(
        *(store.save_state(f"k{i}", i, ID, W) for i in range(5)),
        store.save_state("more", 1, "other", W),
        return_exceptions=True,
    )
    assert all(isinstance(r, CorruptStateError) for r in results[:5])
    assert results[5] is None
    assert await store.get_state("other", W) == {"ok": True, "more": 1}
    assert await raw(store, ID) == CORRUPT["json-list"]


# -- an object too large to read ---------------------------------------------------------------------------------

LIMIT = 1000  # max_state_bytes of these stores; a read takes read_limit(LIMIT) bytes at most


def json_of_size(size: int) -> bytes:
    """A valid JSON object of exactly ``size`` bytes: refused for its size alone."""
    return b'{"x":"' + b"y" * (size - 8) + b'"}'


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-store", "warm-cache"])
async def test_an_object_too_large_to_read_is_refused_and_replaceable(backend: ObjectBackend, warm: bool) -> None:
    """Over ``2 * max_state_bytes + 64 KiB``: ``StoredStateTooLargeError`` (a ``CorruptStateError``) on read and
    on every merging write, nothing written; at the limit it is read. ``replace_state`` recovers."""
    store = Store(backend, app_name="app", max_state_bytes=LIMIT)
    key = store.key(ID, W).object_key
    if warm:
        await store.save_state("step", 1, ID, W)
    await backend.put(key, json_of_size(read_limit(LIMIT)))
    assert len((await store.get_state(ID, W))["x"]) == read_limit(LIMIT) - 8
    big = json_of_size(read_limit(LIMIT) + 1)
    await backend.put(key, big)
    with pytest.raises(StoredStateTooLargeError, match=f"workflows state '{ID}'") as refused:
        await store.get_state(ID, W)
    assert isinstance(refused.value, CorruptStateError)
    assert (refused.value.size, refused.value.limit) == (len(big), read_limit(LIMIT))
    writes = [
        store.save_state("step", 4, ID, W),
        store.save_state_object(ID, {"step": 4}, W),
        store.update_state(ID, W, increment),
        store.get_versioned_state(ID, W),
    ]
    for write in writes:
        with pytest.raises(StoredStateTooLargeError, match=ID):
            await write
        assert await raw(store, ID) == big
    with pytest.raises(StateExistsError):
        await store.create_state(ID, W, {"step": 0})
    assert await raw(store, ID) == big
    assert await store.replace_state(ID, W, {"step": 0}) == {"step": 0}
    assert await store.update_state(ID, W, increment) == {"step": 0, "n": 1}
    store.max_state_bytes = 10 * LIMIT  # a larger limit reads what a smaller one refused
    await backend.put(key, big)
    assert len((await store.get_state(ID, W))["x"]) == len(big) - 8


class ReadsWhole(WrapperBackend):
    """A backend that ignores ``max_bytes``: it returns whatever is stored, however large."""

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        return await self.inner.get(key, if_none_match=if_none_match)


async def test_a_backend_that_ignores_max_bytes_is_checked_after_the_read() -> None:
    """The same error, from the size of what it returned: the limit holds whatever a backend does with it."""
    backend = ReadsWhole(MemoryBackend())
    store = Store(backend, app_name="app", max_state_bytes=LIMIT)
    big = json_of_size(read_limit(LIMIT) + 1)
    await backend.put(store.key(ID, W).object_key, big)
    with pytest.raises(StoredStateTooLargeError) as refused:
        await store.get_state(ID, W)
    assert refused.value.etag is not None and refused.value.size == len(big)
    assert await store.replace_state(ID, W, {"step": 0}) == {"step": 0}
