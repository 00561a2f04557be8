"""What the ported tests of the previous service (atlanhq/application-sdk's StateStore) need beyond our fixtures.

Those tests patched ``ObjectStore.get_content`` / ``upload_file`` and ``StateStore.get_state`` with a
``side_effect=Exception("...")`` to model a failing object store. Here the store of a fixture gets a backend
that raises that same exception from the operations named: the failure enters where a real object store's
would, below the compare-and-swap loop, and nothing of statestore is patched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

import pytest

from statestore import Store
from statestore.backends.base import ObjectBackend
from statestore.backends.wrappers import WrapperBackend
from statestore.testing import install_default_store

T = TypeVar("T")


class RaisingBackend(WrapperBackend):
    """Forwards to ``inner``, except that each call of ``ops`` (``get``, ``put``, ``delete``) raises ``error``."""

    def __init__(self, inner: ObjectBackend, error: Exception, ops: frozenset[str]) -> None:
        super().__init__(inner)
        self.error = error
        self.ops = ops

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if op in self.ops:
            raise self.error
        return await call()


@contextmanager
def _object_store_failing(store: Store, error: Exception, *ops: str) -> Iterator[Store]:
    """``store``'s objects through a backend whose ``ops`` raise ``error``, as the default store in the block."""
    failing = Store(RaisingBackend(store.backend, error, frozenset(ops)), app_name=store.app_name)
    with install_default_store(failing, close=False):  # the fixture closes the backend they share
        yield failing


@pytest.fixture
def object_store_failing() -> Callable[..., AbstractContextManager[Store]]:
    """``with object_store_failing(store, Exception("..."), "get"):`` (see ``_object_store_failing``)."""
    return _object_store_failing
