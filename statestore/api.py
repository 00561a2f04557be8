"""``StateStore``: classmethods on a process-wide default ``Store``, and stores built from ``Settings``.

The default store is built lazily from the environment (``Settings.from_env``)
on first use. Applications with their own configuration, and tests, install
one explicitly with ``set_default_store`` or, for a block, ``use_store``.
``build_store`` turns ``Settings`` into a backend, a codec and a ``Store``;
this is the one module that does so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from .config.settings import Settings, backend_from_settings
from .core.crypto import EncryptingCodec
from .core.paths import state_path
from .core.statetype import StateType
from .core.store import State, StateInfo, StateVersion, Store, UpdateFn, VersionedState
from .util import forks

_lock = forks.lock()
_default: Store | None = None


def build_store(settings: Settings | None = None) -> Store:
    """A new ``Store`` as ``settings`` (default: the environment) describe it."""
    settings = Settings.from_env() if settings is None else settings
    return Store(
        backend_from_settings(settings),
        app_name=settings.app_name,
        codec=codec_from_settings(settings),
        max_state_bytes=settings.max_state_bytes,
        cache_size=settings.cache_size,
        cache_bytes=settings.cache_bytes,
    )


def codec_from_settings(settings: Settings) -> EncryptingCodec:
    """The codec ``Settings`` describe (keys, ``encrypt_workflows``, ``secret_policy``, ``require_encryption``)."""
    return EncryptingCodec(
        settings.encryption_key,
        settings.encryption_old_keys,
        encrypt_workflows=settings.encrypt_workflows,
        secret_policy=settings.secret_policy,
        require_encryption=settings.require_encryption,
    )


def build_state_store_path(
    id: str,  # noqa: A002
    state_type: StateType | str,
    *,
    root: str | None = None,
    app_name: str | None = None,
) -> str:
    """The local path of a state: ``<root>/persistent-artifacts/apps/<app>/<type>/<id>/config.json``.

    ``root`` and ``app_name`` default to the environment (see ``Settings``).
    Raises ``PathTraversalError`` for an id that would leave its slot.
    """
    if root is None or app_name is None:
        settings = Settings.from_env()
        root = settings.local_root if root is None else root
        app_name = settings.app_name if app_name is None else app_name
    return state_path(root, app_name, id, state_type)


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
    async def save_state(
        cls,
        key: str,
        value: Any,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> None:
        """Save a single state value, merging it into the existing state (only at ``if_version``, if given)."""
        await get_default_store().save_state(key, value, id, type, if_version=if_version)

    @classmethod
    async def save_state_object(
        cls,
        id: str,  # noqa: A002
        value: Mapping[str, Any],
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> State:
        """Merge ``value`` into the state and return the complete updated state (only at ``if_version``, if given)."""
        return await get_default_store().save_state_object(id, value, type, if_version=if_version)

    @classmethod
    async def update_state(cls, id: str, type: StateType | str, fn: UpdateFn) -> State:  # noqa: A002
        """Replace the state with ``fn(copy of state)``, rerunning ``fn`` on conflict."""
        return await get_default_store().update_state(id, type, fn)

    @classmethod
    async def replace_state(
        cls,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        value: Mapping[str, Any],
        *,
        if_version: str | None = None,
    ) -> State:
        """Store ``value`` as the whole state, whatever is stored now (only at ``if_version``, if given)."""
        return await get_default_store().replace_state(id, type, value, if_version=if_version)

    @classmethod
    async def delete_state(
        cls,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> None:
        """Remove the state; a missing state is not an error (only at ``if_version``, if given)."""
        await get_default_store().delete_state(id, type, if_version=if_version)

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

    @classmethod
    async def get_versioned_state(cls, id: str, type: StateType | str) -> VersionedState:  # noqa: A002
        """The state and its version (None if it does not exist), for ``if_version=``."""
        return await get_default_store().get_versioned_state(id, type)

    @classmethod
    async def create_state(cls, id: str, type: StateType | str, value: Mapping[str, Any]) -> State:  # noqa: A002
        """Store ``value`` only if no state exists, else ``StateExistsError``."""
        return await get_default_store().create_state(id, type, value)

    @classmethod
    def iter_state_info(cls, type: StateType | str) -> AsyncIterator[StateInfo]:  # noqa: A002
        """Stream id, version, size and last change of the default app's states of ``type`` (listing only)."""
        return get_default_store().iter_state_info(type)

    @classmethod
    async def list_state_info(cls, type: StateType | str) -> list[StateInfo]:  # noqa: A002
        """``iter_state_info``, sorted by id."""
        return await get_default_store().list_state_info(type)

    @classmethod
    async def prune_states(
        cls,
        type: StateType | str,  # noqa: A002
        *,
        older_than: timedelta,
        dry_run: bool = False,
        allow_unconditional: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Delete states of ``type`` unchanged for ``older_than``, each only if unchanged since listed."""
        return await get_default_store().prune_states(
            type, older_than=older_than, dry_run=dry_run, allow_unconditional=allow_unconditional, progress=progress
        )

    @classmethod
    async def state_history(cls, id: str, type: StateType | str) -> list[StateVersion]:  # noqa: A002
        """The kept versions of the state, newest first (a backend that keeps versions: S3 with versioning)."""
        return await get_default_store().state_history(id, type)

    @classmethod
    async def get_state_version(cls, id: str, type: StateType | str, version: str) -> State:  # noqa: A002
        """The state as it was at ``version`` (from ``state_history``)."""
        return await get_default_store().get_state_version(id, type, version)

    @classmethod
    async def restore_state(
        cls,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        version: str,
        *,
        if_version: str | None = None,
    ) -> State:
        """Write the content of ``version`` as the state again, by compare-and-swap."""
        return await get_default_store().restore_state(id, type, version, if_version=if_version)
