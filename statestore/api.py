"""``StateStore``: the ``Store`` API on a process-wide default store, and stores built from ``Settings``.

The default store is built lazily from the environment (``Settings.from_env``) on first use. Applications with
their own configuration, and tests, install one with ``set_default_store`` or, for a block, ``use_store``.

``StateStore`` is not written a second time: each of its methods is the ``Store`` method of the same name, called
on the default store (``_on_default_store``), with the same signature for callers, mypy and IDEs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

from .config.build import store_options
from .config.settings import Settings
from .core.store import Store
from .keys.paths import state_path
from .keys.statetype import StateType
from .util import forks

__all__ = ["StateStore", "build_state_store_path", "build_store", "get_default_store", "set_default_store", "use_store"]

P = ParamSpec("P")
R = TypeVar("R")

_lock = forks.lock()
_default: Store | None = None


def build_store(settings: Settings | None = None) -> Store:
    """A new ``Store`` as ``settings`` (default: the environment) describe it."""
    return Store(**store_options(Settings.from_env() if settings is None else settings))


def build_state_store_path(
    id: str,  # noqa: A002
    state_type: StateType | str,
    *,
    root: str | None = None,
    app_name: str | None = None,
) -> str:
    """The local path of a state: ``<root>/persistent-artifacts/apps/<app>/<type>/<id>/config.json``.

    ``root`` and ``app_name`` default to the environment (see ``Settings``). Raises ``PathTraversalError`` for an
    id that would leave its slot.
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


def adopt(wrapper: Callable[..., Any], method: Callable[..., Any], *, drop_self: bool) -> None:
    """Give ``wrapper`` the name, docstring and signature of the ``Store`` method it stands for.

    ``drop_self``: ``wrapper`` takes no ``self`` (a ``StateStore`` method); else its first parameter is its own.
    """
    functools.update_wrapper(wrapper, method)
    signature = inspect.signature(method)
    if drop_self:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__qualname__ = f"{wrapper.__module__}.{method.__name__}"


def _on_default_store(
    method: Callable[Concatenate[Store, P], Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``method``, called on the default store: a ``StateStore`` method."""
    name = method.__name__

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound: Callable[P, Coroutine[Any, Any, R]] = getattr(get_default_store(), name)
        return await bound(*args, **kwargs)

    adopt(call, method, drop_self=True)
    return call


def _iterating_default_store(
    method: Callable[Concatenate[Store, P], AsyncIterator[R]],
) -> Callable[P, AsyncIterator[R]]:
    """``method`` (a listing), called on the default store."""
    name = method.__name__

    def call(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
        bound: Callable[P, AsyncIterator[R]] = getattr(get_default_store(), name)
        return bound(*args, **kwargs)

    adopt(call, method, drop_self=True)
    return call


class StateStore:
    """Unified state store service: the ``Store`` methods, on the default store (see ``get_default_store``)."""

    get_state = staticmethod(_on_default_store(Store.get_state))
    save_state = staticmethod(_on_default_store(Store.save_state))
    save_state_object = staticmethod(_on_default_store(Store.save_state_object))
    update_state = staticmethod(_on_default_store(Store.update_state))
    replace_state = staticmethod(_on_default_store(Store.replace_state))
    create_state = staticmethod(_on_default_store(Store.create_state))
    delete_state = staticmethod(_on_default_store(Store.delete_state))
    acquire_fence = staticmethod(_on_default_store(Store.acquire_fence))
    get_fence_epoch = staticmethod(_on_default_store(Store.get_fence_epoch))
    get_versioned_state = staticmethod(_on_default_store(Store.get_versioned_state))
    get_states = staticmethod(_on_default_store(Store.get_states))
    list_states = staticmethod(_on_default_store(Store.list_states))
    iter_states = staticmethod(_iterating_default_store(Store.iter_states))
    list_state_info = staticmethod(_on_default_store(Store.list_state_info))
    iter_state_info = staticmethod(_iterating_default_store(Store.iter_state_info))
    prune_states = staticmethod(_on_default_store(Store.prune_states))
    state_history = staticmethod(_on_default_store(Store.state_history))
    get_state_version = staticmethod(_on_default_store(Store.get_state_version))
    restore_state = staticmethod(_on_default_store(Store.restore_state))
