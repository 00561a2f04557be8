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
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from .api import build_store
from .check import CheckReport
from .config.settings import Settings
from .core.paths import StateKey
from .core.statetype import StateType
from .core.store import State, StateInfo, StateVersion, Store, UpdateFn, VersionedState
from .errors import InvalidInputError, SyncStoreUsageError
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

    def get_state(self, id: str, type: StateType | str) -> State:  # noqa: A002
        """The stored state; ``{}`` only if it does not exist."""
        return self._run(self.store.get_state, id, type)

    def save_state(
        self,
        key: str,
        value: Any,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> None:
        """Set one top-level ``key`` of the state to ``value``, keeping every other key (only at ``if_version``)."""
        self._run(self.store.save_state, key, value, id, type, if_version=if_version)

    def save_state_object(
        self,
        id: str,  # noqa: A002
        value: Mapping[str, Any],
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> State:
        """Shallow-merge ``value`` into the state and return the complete merged state (only at ``if_version``)."""
        return self._run(self.store.save_state_object, id, value, type, if_version=if_version)

    def update_state(self, id: str, type: StateType | str, fn: UpdateFn) -> State:  # noqa: A002
        """Replace the state with ``fn(copy of state)`` and return what was stored.

        ``fn`` runs in this store's loop thread (maybe more than once, see ``Store.update_state``);
        it must not call this ``SyncStore`` (that raises ``SyncStoreUsageError``).
        """
        return self._run(self.store.update_state, id, type, fn)

    def replace_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        value: Mapping[str, Any],
        *,
        if_version: str | None = None,
    ) -> State:
        """Store ``value`` as the whole state, whatever is stored now (only at ``if_version``, if given)."""
        return self._run(self.store.replace_state, id, type, value, if_version=if_version)

    def delete_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> None:
        """Remove the state; a missing state is not an error (only at ``if_version``, if given)."""
        self._run(self.store.delete_state, id, type, if_version=if_version)

    def list_states(self, type: StateType | str) -> list[str]:  # noqa: A002
        """The ids of this app's states of ``type``, sorted."""
        return self._run(self.store.list_states, type)

    def get_states(
        self,
        ids: Iterable[str],
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 16,
    ) -> dict[str, State]:
        """The states of ``ids`` (``{}`` for a missing one), read ``concurrency`` at a time; all or an error."""
        return self._run(self.store.get_states, ids, type, concurrency=concurrency)

    def reencrypt_states(
        self,
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Rewrite every state of ``type`` whose stored form is outdated; returns how many were.

        ``progress(done, total)`` runs on the store's loop thread.
        """
        return self._run(self.store.reencrypt_states, type, concurrency=concurrency, progress=progress)

    def check(self) -> CheckReport:
        """Probe the backend on scratch objects: is compare-and-swap safe on it?"""
        return self._run(self.store.check)

    def get_versioned_state(self, id: str, type: StateType | str) -> VersionedState:  # noqa: A002
        """The state and its version (None if it does not exist), for ``if_version=``."""
        return self._run(self.store.get_versioned_state, id, type)

    def create_state(self, id: str, type: StateType | str, value: Mapping[str, Any]) -> State:  # noqa: A002
        """Store ``value`` only if no state exists, else ``StateExistsError``."""
        return self._run(self.store.create_state, id, type, value)

    def list_state_info(self, type: StateType | str) -> list[StateInfo]:  # noqa: A002
        """Id, version, size and last change of each state of ``type``, sorted by id (listing only)."""
        return self._run(self.store.list_state_info, type)

    def prune_states(
        self,
        type: StateType | str,  # noqa: A002
        *,
        older_than: timedelta,
        dry_run: bool = False,
        allow_unconditional: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Delete states of ``type`` unchanged for ``older_than``, each only if unchanged since listed.

        ``progress`` runs in this store's loop thread.
        """
        return self._run(
            self.store.prune_states,
            type,
            older_than=older_than,
            dry_run=dry_run,
            allow_unconditional=allow_unconditional,
            progress=progress,
        )

    def state_history(self, id: str, type: StateType | str) -> list[StateVersion]:  # noqa: A002
        """The kept versions of the state, newest first (a backend that keeps versions: S3 with versioning)."""
        return self._run(self.store.state_history, id, type)

    def get_state_version(self, id: str, type: StateType | str, version: str) -> State:  # noqa: A002
        """The state as it was at ``version`` (from ``state_history``)."""
        return self._run(self.store.get_state_version, id, type, version)

    def restore_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        version: str,
        *,
        if_version: str | None = None,
    ) -> State:
        """Write the content of ``version`` as the state again, by compare-and-swap."""
        return self._run(self.store.restore_state, id, type, version, if_version=if_version)
