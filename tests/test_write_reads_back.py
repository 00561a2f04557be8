"""Whatever a write accepts reads back unchanged: the write-time check is the reader's own envelope test.

``EncryptingCodec.check_state`` refuses to write a state the reader would take for an encrypted envelope
(``crypto._is_envelope``), for every type, key and call; a refused call leaves the stored state untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_store import raw

from statestore import InvalidInputError, MemoryBackend, ObjectBackend, StateStoreError, StateType, Store
from statestore.codec.crypto import EncryptingCodec, generate_key

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS
KEY = generate_key()
LOOKALIKE = {"version": 2, "key_id": "arn:aws:kms:eu-west-1:1:key/k", "nonce": "AAAA", "ciphertext": "BBBB"}
ISSUE_STATE = {**LOOKALIKE, "algorithm": "RSAES_OAEP"}

CODECS: dict[str, Callable[[], EncryptingCodec]] = {
    "no key": EncryptingCodec,
    "key": lambda: EncryptingCodec(KEY),
    "key, workflows encrypted": lambda: EncryptingCodec(KEY, encrypt_workflows=True),
}


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("stype", [W, C])
async def test_an_envelope_shaped_state_is_refused_at_write(
    backend: ObjectBackend, codec: str, stype: StateType
) -> None:
    store = Store(backend, codec=CODECS[codec]())
    with pytest.raises(InvalidInputError, match="shape of an encrypted envelope") as info:
        await store.save_state_object("x", ISSUE_STATE, stype)
    assert "algorithm" not in str(info.value)  # it names the envelope's own field names, never the values
    assert "arn:" not in str(info.value)
    assert await raw(store, "x", stype) is None

    await store.save_state_object("x", LOOKALIKE, stype)  # four of them are fine
    before = await raw(store, "x", stype)
    attempts: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.save_state("algorithm", "RSAES_OAEP", "x", stype),  # the fifth key completes the shape
        lambda: store.save_state_object("x", {"algorithm": "RSAES_OAEP"}, stype),
        lambda: store.replace_state("x", stype, ISSUE_STATE),
        lambda: store.update_state("x", stype, lambda s: {**s, "algorithm": "RSAES_OAEP"}),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInputError, match="shape of an encrypted envelope"):
            await attempt()
        assert await raw(store, "x", stype) == before
    fresh = Store(backend, codec=CODECS[codec]())
    assert await fresh.get_state("x", stype) == LOOKALIKE
    assert await fresh.save_state_object("x", {"algorithm": "RSAES_OAEP", "more": 1}, stype) == {
        **ISSUE_STATE,
        "more": 1,
    }  # six keys are no envelope: written, and read back
    assert await Store(backend, codec=CODECS[codec]()).get_state("x", stype) == {**ISSUE_STATE, "more": 1}


async def test_the_change_completing_the_shape_fails_alone_in_its_batch() -> None:
    store = Store(MemoryBackend())
    await store.save_state_object("x", {**LOOKALIKE, "a": 1, "b": 2}, W)
    results = await asyncio.gather(
        store.save_state("c", 3, "x", W),
        store.update_state("x", W, lambda s: {k: s[k] for k in LOOKALIKE} | {"algorithm": "A"}),  # five keys
        store.save_state("d", 4, "x", W),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], InvalidInputError)
    assert await Store(store.backend).get_state("x", W) == {**LOOKALIKE, "a": 1, "b": 2, "c": 3, "d": 4}


# -- the property ---------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["version", "key_id", "nonce", "ciphertext", "statestore_encrypted", "algorithm", "password"])
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=4,
)
STATES = st.dictionaries(KEYS, VALUES, max_size=6)
OPS = st.sampled_from(["save_state_object", "replace_state", "update_state", "save_state"])


async def write(store: Store, op: str, stype: StateType, change: dict[str, Any]) -> dict[str, Any]:
    """Apply ``change`` through ``op``; returns what the state should be if the write is accepted."""
    before = await store.get_state("p", stype)
    if op == "save_state_object":
        await store.save_state_object("p", change, stype)
        return {**before, **change}
    if op == "replace_state":
        await store.replace_state("p", stype, change)
        return change
    if op == "update_state":
        await store.update_state("p", stype, lambda _s: dict(change))
        return change
    for key, value in change.items():
        await store.save_state(key, value, "p", stype)
        before[key] = value
    return before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    codec=st.sampled_from(sorted(CODECS)),
    stype=st.sampled_from([W, C]),
    first=STATES,
    op=OPS,
    change=STATES,
)
@example(codec="no key", stype=W, first={}, op="save_state_object", change=ISSUE_STATE)
# a list, a key of no words and a secret: every branch of the secret scan, on every run
@example(codec="no key", stype=C, first={"version": [{"": 1}], "password": "x"}, op="replace_state", change={})
def test_whatever_a_write_accepts_reads_back_equal(
    codec: str, stype: StateType, first: dict[str, Any], op: str, change: dict[str, Any]
) -> None:
    async def run() -> None:
        backend = MemoryBackend()
        store = Store(backend, codec=CODECS[codec]())
        for state, how in ((first, "replace_state"), (change, op)):
            previous = await raw(store, "p", stype)
            try:
                expected = await write(store, how, stype, state)
            except StateStoreError:
                if how != "save_state":  # one call per key: the keys before the refused one were written
                    assert await raw(store, "p", stype) == previous
                continue
            assert await Store(backend, codec=CODECS[codec]()).get_state("p", stype) == expected

    asyncio.run(run())
