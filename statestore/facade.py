"""``StateStore``: the API page's classmethods, on a process-wide default ``Store``.

The default store is built lazily from the environment (``Settings.from_env``)
on first use. Applications with their own configuration, and tests, install
one explicitly with ``set_default_store`` or, for a block, ``use_store``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .config import Settings
from .statetype import StateType
from .store import State, Store, UpdateFn

_lock = threading.Lock()
_default: Store | None = None


def build_store(settings: Settings | None = None) -> Store:
    """A new ``Store`` as ``settings`` (default: the environment) describe it."""
    settings = Settings.from_env() if settings is None else settings
    from .backends.factory import backend_from_settings
    from .crypto import codec_from_settings

    return Store(
        backend_from_settings(settings),
        app_name=settings.app_name,
        codec=codec_from_settings(settings),
        max_state_bytes=settings.max_state_bytes,
        cache_size=settings.cache_size,
    )


def get_default_store() -> Store:
    """The process-wide default store, built from the environment on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = build_store()
        return _default


def set_default_store(store: Store | None) -> Store | None:
    """Install ``store`` as the default (None: rebuild from the environment on next use); returns the previous one."""
    global _default
    with _lock:
        previous, _default = _default, store
        return previous


@contextmanager
def use_store(store: Store) -> Iterator[Store]:
    """Make ``store`` the default inside a ``with`` block, then restore the previous default."""
    previous = set_default_store(store)
    try:
        yield store
    finally:
        set_default_store(previous)


class StateStore:
    """Unified state store service: classmethods on the default store (see ``get_default_store``)."""

    @classmethod
    async def get_state(cls, id: str, type: StateType | str) -> State:  # noqa: A002
        """Get state from the store; ``{}`` if none is stored."""
        return await get_default_store().get_state(id, type)

    @classmethod
    async def save_state(cls, key: str, value: Any, id: str, type: StateType | str) -> None:  # noqa: A002
        """Save a single state value, merging it into the existing state."""
        await get_default_store().save_state(key, value, id, type)

    @classmethod
    async def save_state_object(cls, id: str, value: Mapping[str, Any], type: StateType | str) -> State:  # noqa: A002
        """Merge ``value`` into the state and return the complete updated state."""
        return await get_default_store().save_state_object(id, value, type)

    @classmethod
    async def update_state(cls, id: str, type: StateType | str, fn: UpdateFn) -> State:  # noqa: A002
        """Replace the state with ``fn(copy of state)``, rerunning ``fn`` on conflict."""
        return await get_default_store().update_state(id, type, fn)

    @classmethod
    async def replace_state(cls, id: str, type: StateType | str, value: Mapping[str, Any]) -> State:  # noqa: A002
        """Store ``value`` as the whole state, whatever is stored now."""
        return await get_default_store().replace_state(id, type, value)

    @classmethod
    async def delete_state(cls, id: str, type: StateType | str) -> None:  # noqa: A002
        """Remove the state; a missing state is not an error."""
        await get_default_store().delete_state(id, type)

    @classmethod
    async def list_states(cls, type: StateType | str) -> list[str]:  # noqa: A002
        """The sorted ids of the default app's states of ``type``."""
        return await get_default_store().list_states(type)

    @classmethod
    def iter_states(cls, type: StateType | str) -> AsyncIterator[str]:  # noqa: A002
        """Stream the ids of the default app's states of ``type``, unsorted."""
        return get_default_store().iter_states(type)

    @classmethod
    async def get_states(
        cls,
        ids: Iterable[str],
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 16,
    ) -> dict[str, State]:
        """The states of ``ids`` (``{}`` for a missing one), read ``concurrency`` at a time; all or an error."""
        return await get_default_store().get_states(ids, type, concurrency=concurrency)
