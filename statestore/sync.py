"""``SyncStore``: the ``Store`` API as blocking calls, for scripts, notebooks and sync frameworks.

Each ``SyncStore`` runs one private event loop in a daemon thread, started on its first call;
every call hands its coroutine to that loop (``asyncio.run_coroutine_threadsafe``) and waits.
So it works from any thread, several at once (their concurrent changes to one state are
coalesced as on a ``Store``), and while other event loops run in the process. A call from a
thread that runs an event loop raises ``SyncStoreUsageError`` instead of blocking that loop.
``close()`` (or leaving ``with``) cancels calls still running, closes the store's connections
on the private loop and stops its thread; a ``SyncStore`` dropped unclosed stops its thread
when it is garbage-collected.

A forked child starts a loop thread of its own on its first call (the parent's thread was not
copied by the fork; its loop is left alone). A ``KeyboardInterrupt`` or ``SystemExit`` raised
on the loop thread (by an update function, say) goes to the call that caused it, and the loop
thread keeps running for every other call.

``iter_states`` and ``iter_state_info`` are not offered: a blocking iterator would keep an async
generator (and, on S3, a listing) open on the private loop between ``next()`` calls for as long as the caller holds it;
``list_states`` and ``list_state_info`` return everything. Nothing here is imported by ``import statestore``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from .api import adopt, build_store
from .config.settings import Settings
from .core.store import Store
from .errors import InvalidInputError, SyncStoreUsageError
from .keys.paths import StateKey
from .keys.statetype import StateType
from .util import forks

__all__ = ["SyncStore", "SyncStoreUsageError"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


def _refuse_in_loop(method: str) -> None:
    """Raise if this thread runs an event loop: blocking it would stall that loop, or deadlock."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise SyncStoreUsageError(
        f"SyncStore.{method}() was called from a thread running an event loop, where blocking would stall "
        f"that loop (or deadlock); there, use the Store: await store.{method}(...)"
    )


class _LoopThread:
    """One event loop running forever in a daemon thread, shut down like ``asyncio.run`` shuts down."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            while True:
                try:
                    loop.run_forever()
                except (KeyboardInterrupt, SystemExit) as exc:
                    # asyncio lets these two out of a task that raised them, stopping the loop; the
                    # task holds the exception for whoever awaits it, so the loop goes on for the rest.
                    if self.stopping:
                        break
                    logger.debug("%s escaped a task of %s; running on", type(exc).__name__, self.thread.name)
                    continue
                break
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())  # also closes S3 clients of this loop
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def stop(self) -> None:
        """Ask the loop to stop (from any thread); its thread then cancels what is left and exits."""
        self.stopping = True
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self.loop.call_soon_threadsafe(self.loop.stop)


class _Raised:
    """A ``KeyboardInterrupt`` or ``SystemExit`` raised by a call, carried to its caller's thread as a result."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _carried(call: Coroutine[Any, Any, T]) -> T | _Raised:
    """``call``'s result; a ``KeyboardInterrupt`` or ``SystemExit`` it raises is returned, not let out of the loop."""
    try:
        return await call
    except (KeyboardInterrupt, SystemExit) as exc:
        return _Raised(exc)


async def _shutdown(store: Store) -> None:
    """Cancel every other task on this loop (calls still running), then close the store's connections."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await store.aclose()


def _blocking(
    method: Callable[Concatenate[Store, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncStore, P], T]:
    """``method`` of the ``SyncStore``'s store, run on its loop thread and waited for: a ``SyncStore`` method."""
    name = method.__name__

    def call(self: SyncStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        bound: Callable[P, Coroutine[Any, Any, T]] = getattr(self.store, name)
        return self._run(bound, *args, **kwargs)

    adopt(call, method, drop_self=False)
    return call


class SyncStore:
    """A ``Store`` with blocking methods: the same names, arguments and results.

    Build it from a ``Store`` (``SyncStore(store)``), the environment (``SyncStore.from_env()``)
    or a URL (``SyncStore.from_url("s3://bucket/prefix")``); close it with ``close()`` or
    ``with SyncStore(...) as store:``. Safe to share between threads.
    """

    def __init__(self, store: Store) -> None:
        if not isinstance(store, Store):
            raise InvalidInputError(f"SyncStore needs a Store, not {store.__class__.__name__}")
        self.store = store
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._finalizer: weakref.finalize[[], SyncStore] | None = None
        self._closed = False
        forks.in_child(self, SyncStore._forget_parent_loop)

    def _forget_parent_loop(self) -> None:
        """In a forked child: the loop thread was not copied; drop it unused, so the next call starts one here."""
        self._lock = threading.Lock()
        runner, self._runner = self._runner, None
        if self._finalizer is not None:
            self._finalizer.detach()  # it would stop the parent's loop through the descriptors the fork shares
            self._finalizer = None
        if runner is not None:
            forks.disown_loop(runner.loop, runner)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SyncStore:
        """A ``SyncStore`` on a new store configured by the ``STATESTORE_*`` variables (default ``os.environ``)."""
        return cls(build_store(Settings.from_env(environ)))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncStore:
        """A ``SyncStore`` on ``Store.from_url(url, **options)``."""
        return cls(Store.from_url(url, **options))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SyncStore({self.store!r}, {state})"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- running a coroutine on the private loop -------------------------------

    def _run(self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        _refuse_in_loop(fn.__name__)
        with self._lock:  # ``close`` takes it too: a call is either on the loop before its shutdown, or refused
            if self._closed:
                raise SyncStoreUsageError(f"SyncStore.{fn.__name__}() was called after close()")
            if self._runner is None:
                self._runner = _LoopThread(f"statestore-sync-{id(self):x}")
                self._finalizer = weakref.finalize(self, self._runner.stop)
            future = asyncio.run_coroutine_threadsafe(_carried(fn(*args, **kwargs)), self._runner.loop)
        try:
            result = future.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise SyncStoreUsageError(f"SyncStore.{fn.__name__}() was cancelled by close()") from None
            raise
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the call on the loop as well
            raise
        if isinstance(result, _Raised):
            raise result.error
        return result

    def close(self) -> None:
        """Cancel calls still running, close the store's connections and stop the loop thread (idempotent)."""
        _refuse_in_loop("close")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(self.store), runner.loop).result()
        finally:
            runner.stop()
            runner.thread.join()

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the Store's methods, blocking -----------------------------------------

    def key(self, id: str, type: StateType | str) -> StateKey:  # noqa: A002
        """Validate ``id`` and ``type`` and return where that state lives (no I/O)."""
        return self.store.key(id, type)

    get_state = _blocking(Store.get_state)
    save_state = _blocking(Store.save_state)
    save_state_object = _blocking(Store.save_state_object)
    update_state = _blocking(Store.update_state)  # ``fn`` runs in this store's loop thread
    replace_state = _blocking(Store.replace_state)
    create_state = _blocking(Store.create_state)
    delete_state = _blocking(Store.delete_state)
    acquire_fence = _blocking(Store.acquire_fence)
    get_fence_epoch = _blocking(Store.get_fence_epoch)
    get_versioned_state = _blocking(Store.get_versioned_state)
    get_states = _blocking(Store.get_states)
    list_states = _blocking(Store.list_states)
    list_state_info = _blocking(Store.list_state_info)
    reencrypt_states = _blocking(Store.reencrypt_states)  # ``progress`` runs in this store's loop thread
    prune_states = _blocking(Store.prune_states)  # ``progress`` runs in this store's loop thread
    state_history = _blocking(Store.state_history)
    get_state_version = _blocking(Store.get_state_version)
    restore_state = _blocking(Store.restore_state)
    check = _blocking(Store.check)
