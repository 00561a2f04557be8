"""Failures the store wraps keep the previous service's words: ``Failed to extract state``, ``Failed to store state``.

Decision 0060. The ``path traversal detected`` ending of ``PathTraversalError`` is tested in test_paths.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from statestore import BackendError, CorruptStateError, StateType, Store
from statestore.backends.wrappers import WrapperBackend
from statestore.testing import memory_store

T = TypeVar("T")
W = StateType.WORKFLOWS


class ForeignErrorBackend(WrapperBackend):
    """Raises an exception of no statestore class from ``op``, as a third-party backend or client might."""

    def __init__(self, store: Store, op: str) -> None:
        super().__init__(store.backend)
        self.op = op

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if op == self.op:
            raise OSError("connection reset by peer")
        return await call()


async def test_a_failed_read_opens_with_failed_to_extract_state() -> None:
    inner = memory_store()
    store = Store(ForeignErrorBackend(inner, "get"), app_name=inner.app_name)
    message = r"^Failed to extract state: get of workflows state 'wf-1' failed \(OSError\)$"
    with pytest.raises(BackendError, match=message):
        await store.get_state("wf-1", W)


async def test_a_failed_write_opens_with_failed_to_store_state() -> None:
    inner = memory_store()
    store = Store(ForeignErrorBackend(inner, "put"), app_name=inner.app_name)
    message = r"^Failed to store state: put of workflows state 'wf-1' failed \(OSError\)$"
    with pytest.raises(BackendError, match=message):
        await store.save_state("progress", 75, "wf-1", W)
    assert await inner.get_state("wf-1", W) == {}


@pytest.mark.parametrize(("stored", "what"), [(b"invalid json content", "is not valid JSON"), (b"[1]", "holds a JSON")])
async def test_a_state_that_is_no_json_object_opens_with_failed_to_extract_state(stored: bytes, what: str) -> None:
    store = memory_store()
    await store.backend.put(store.key("wf-1", W).object_key, stored)
    with pytest.raises(CorruptStateError, match=f"^Failed to extract state: workflows state 'wf-1' {what}"):
        await store.get_state("wf-1", W)
