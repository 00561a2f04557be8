"""Corrupt stored objects (put straight into the backend, as a bad disk or another tool would leave them):
``CorruptStateError`` on read and on every merging write, nothing written; recovery is ``delete_state`` or
``replace_state``. Runs on every backend kind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_store import raw

from statestore import CorruptStateError, ObjectBackend, StateType, Store

CORRUPT = {
    "truncated-json": b'{"step": 3, "tables": ["a", "b"',
    "json-list": b'[{"step": 3}]',
    "json-string": b'"step 3"',
    "json-null": b"null",
    "json-number": b"42",
    "nan-literal": b'{"x": NaN}',
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
