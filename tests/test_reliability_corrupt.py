"""Corrupt stored objects: ``CorruptStateError`` on read and on every merging write, nothing written.

Runs on every backend kind of the conformance suite. The corrupt bytes are put
straight into the backend (as another tool, a bad disk or a half-copied
object would leave them). Recovery is an explicit ``delete_state`` or
``replace_state``.
"""

from __future__ import annotations

from typing import Any

import pytest

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


def increment(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


async def stored(backend: ObjectBackend, store: Store) -> bytes | None:
    got = await backend.get(store.key(ID, StateType.WORKFLOWS).object_key)
    return None if got is None else got.data


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-store", "warm-cache"])
@pytest.mark.parametrize("name", sorted(CORRUPT))
async def test_corrupt_state_is_an_error_on_read_and_write(backend: ObjectBackend, name: str, warm: bool) -> None:
    store = Store(backend, app_name="app")
    key = store.key(ID, StateType.WORKFLOWS).object_key
    if warm:  # this store last saw a good version, then something else wrote garbage
        await store.save_state("step", 1, ID, StateType.WORKFLOWS)
    await backend.put(key, CORRUPT[name])

    with pytest.raises(CorruptStateError) as info:
        await store.get_state(ID, StateType.WORKFLOWS)
    assert ID in str(info.value) and "workflows" in str(info.value)
    writes = [
        store.save_state("step", 4, ID, StateType.WORKFLOWS),
        store.save_state_object(ID, {"step": 4}, StateType.WORKFLOWS),
        store.update_state(ID, StateType.WORKFLOWS, increment),
    ]
    for write in writes:
        with pytest.raises(CorruptStateError, match=ID):
            await write
        assert await stored(backend, store) == CORRUPT[name], "a write on top of a corrupt state changed it"
    assert ID in await store.list_states(StateType.WORKFLOWS)

    # recovery 1: replace the whole state explicitly
    assert await store.replace_state(ID, StateType.WORKFLOWS, {"step": 0}) == {"step": 0}
    assert await store.update_state(ID, StateType.WORKFLOWS, increment) == {"step": 0, "n": 1}

    # recovery 2: delete it
    await backend.put(key, CORRUPT[name])
    await store.delete_state(ID, StateType.WORKFLOWS)
    assert await stored(backend, store) is None
    assert await store.get_state(ID, StateType.WORKFLOWS) == {}
    await store.save_state("step", 1, ID, StateType.WORKFLOWS)
    assert await store.get_state(ID, StateType.WORKFLOWS) == {"step": 1}


async def test_a_corrupt_state_fails_only_its_own_callers(backend: ObjectBackend) -> None:
    """Coalesced writes to a corrupt state all fail; another state of the same store is untouched."""
    import asyncio

    store = Store(backend, app_name="app")
    await backend.put(store.key(ID, StateType.WORKFLOWS).object_key, CORRUPT["json-list"])
    await store.save_state("ok", True, "other", StateType.WORKFLOWS)
    results = await asyncio.gather(
        *(store.save_state(f"k{i}", i, ID, StateType.WORKFLOWS) for i in range(5)),
        store.save_state("more", 1, "other", StateType.WORKFLOWS),
        return_exceptions=True,
    )
    assert all(isinstance(r, CorruptStateError) for r in results[:5])
    assert results[5] is None
    assert await store.get_state("other", StateType.WORKFLOWS) == {"ok": True, "more": 1}
    assert await stored(backend, store) == CORRUPT["json-list"]
