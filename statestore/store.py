"""``Store``: one backend, one app name and the options; all of statestore's logic lives here.

Every change goes through one compare-and-swap loop (``_apply``): read the
current state and its ETag (or take them from the cache), apply the change,
write with ``if_match`` / ``if_none_match``, and on ``PreconditionFailed``
re-read, re-apply and retry with jittered backoff. Concurrent changes to one
state from one event loop are coalesced into a single write (``_submit``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from .backends.base import ObjectBackend, PreconditionFailed, Versioned, same_etag
from .check import CheckReport, check_backend
from .codec import Codec, check_json, copy_state, decode, encode
from .config import DEFAULT_APP_NAME, DEFAULT_MAX_STATE_BYTES
from .crypto import EncryptingCodec
from .errors import (
    BackendError,
    ConflictError,
    CorruptStateError,
    InvalidInputError,
    StateStoreError,
    StateTooLargeError,
)
from .lru import LRU
from .paths import StateKey, id_from_key, state_key, type_prefix, validate_app_name
from .retry import RetryPolicy
from .statetype import StateType

logger = logging.getLogger(__name__)

State = dict[str, Any]
UpdateFn = Callable[[State], State]
T = TypeVar("T")
_KEY_MEMO = 4096  # validated (id, type) pairs remembered per store

#: States at least this large are parsed in a worker thread: parsing 1 MiB of JSON takes about
#: 2 ms, and eight of those back to back would stall the event loop.
OFFLOAD_BYTES = 64 * 1024


class _Change(NamedTuple):
    """One caller's change: ``fn`` maps the working state to the next one.

    ``user`` functions get a deep copy and have their result checked;
    ``replaces`` changes ignore the stored state, so they also apply on top of
    a corrupt one.
    """

    fn: UpdateFn
    user: bool = False
    replaces: bool = False


class _Current(NamedTuple):
    """The stored state as last seen: plain JSON bytes, ETag, and whether its encoding is outdated."""

    plain: bytes
    etag: str
    reseal: bool = False
    error: CorruptStateError | None = None  # the codec could not open it (e.g. DecryptionError)


@dataclass
class _Pending:
    change: _Change
    future: asyncio.Future[State]


@dataclass
class _Batcher:
    """Changes to one state from one event loop, waiting for the next write."""

    pending: list[_Pending] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Store:
    """A state store: the API page's operations on one backend for one app.

    ``Store`` objects are cheap to share: use one per backend for the life of
    the process, from any number of tasks, threads and event loops; close it
    with ``await store.aclose()`` or ``async with store:``.
    """

    def __init__(
        self,
        backend: ObjectBackend,
        *,
        app_name: str = DEFAULT_APP_NAME,
        codec: Codec | None = None,
        retry: RetryPolicy | None = None,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        cache_size: int = 1024,
        coalesce: bool = True,
    ) -> None:
        self.backend = backend
        self.app_name = validate_app_name(app_name)
        self.codec = codec if codec is not None else EncryptingCodec()
        self.retry = retry or RetryPolicy()
        self.max_state_bytes = max_state_bytes
        self.coalesce = coalesce
        self._cache: LRU[str, _Current] = LRU(cache_size)  # last (plain, etag) seen per object key
        self._batchers: dict[tuple[asyncio.AbstractEventLoop, str], _Batcher] = {}
        self._keys: dict[tuple[str, str], StateKey] = {}

    def __repr__(self) -> str:
        return f"Store({self.backend.describe()}, app_name={self.app_name!r})"

    def key(self, id: str, type: StateType | str) -> StateKey:  # noqa: A002
        """Validate ``id`` and ``type`` and return where that state lives (validated pairs are remembered)."""
        if id.__class__ is not str or not isinstance(type, str):
            return state_key(self.app_name, type, id)
        memo = (id, type)
        skey = self._keys.get(memo)
        if skey is None:
            skey = state_key(self.app_name, type, id)
            if len(self._keys) >= _KEY_MEMO:
                self._keys.clear()
            self._keys[memo] = skey
        return skey

    # -- the API page ----------------------------------------------------------

    async def get_state(self, id: str, type: StateType | str) -> State:  # noqa: A002
        """The stored state; ``{}`` only if it does not exist. Always asks the backend."""
        skey = self.key(id, type)
        current = await self._read(skey)
        if current is None:
            return {}
        if current.error is not None:
            raise current.error
        state = await self._decode(skey, current.plain)
        if not current.reseal:
            self._cache.put(skey.object_key, current)
        return state

    async def save_state(self, key: str, value: Any, id: str, type: StateType | str) -> None:  # noqa: A002
        """Set one top-level ``key`` of the state to ``value``, keeping every other key."""
        skey = self.key(id, type)
        if not isinstance(key, str):
            raise InvalidInputError(f"state key must be a string, not {key.__class__.__name__}")
        check_json(value, f"value of {key!r}")
        self.codec.check(skey, {key: value})

        def set_key(state: State) -> State:
            state[key] = value
            return state

        await self._submit(skey, _Change(set_key))

    async def save_state_object(self, id: str, value: Mapping[str, Any], type: StateType | str) -> State:  # noqa: A002
        """Shallow-merge ``value`` into the state and return the complete merged state."""
        skey = self.key(id, type)
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"value must be a dict, not {value.__class__.__name__}")
        update = dict(value)
        check_json(update, "value")
        self.codec.check(skey, update)

        def merge(state: State) -> State:
            state.update(update)
            return state

        return await self._submit(skey, _Change(merge))

    # -- beyond the API page ---------------------------------------------------

    async def update_state(self, id: str, type: StateType | str, fn: UpdateFn) -> State:  # noqa: A002
        """Replace the state with ``fn(copy of state)``; ``fn`` is rerun on conflict. Returns what was stored."""
        skey = self.key(id, type)
        if not callable(fn):
            raise InvalidInputError("fn must be callable")
        return await self._submit(skey, _Change(fn, user=True))

    async def replace_state(self, id: str, type: StateType | str, value: Mapping[str, Any]) -> State:  # noqa: A002
        """Store ``value`` as the whole state, whatever is stored now (also a corrupt state)."""
        skey = self.key(id, type)
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"value must be a dict, not {value.__class__.__name__}")
        new = dict(value)
        check_json(new, "value")
        self.codec.check(skey, new)
        return await self._submit(skey, _Change(lambda _state: dict(new), replaces=True))

    async def delete_state(self, id: str, type: StateType | str) -> None:  # noqa: A002
        """Remove the state; a missing state is not an error."""
        skey = self.key(id, type)
        self._cache.discard(skey.object_key)
        await self._call(skey, "delete", self.backend.delete(skey.object_key))

    async def iter_states(self, type: StateType | str) -> AsyncIterator[str]:  # noqa: A002
        """Yield the ids of this app's states of ``type`` as the backend lists them (streaming, unsorted)."""
        stype = StateType.coerce(type)
        prefix = type_prefix(self.app_name, stype)
        try:
            async for key in self.backend.list(prefix):
                state_id = id_from_key(prefix, key)
                if state_id is not None:
                    yield state_id
        except StateStoreError:
            raise
        except Exception as exc:
            raise BackendError(f"listing {stype.value} states failed ({exc.__class__.__name__})") from exc

    async def list_states(self, type: StateType | str) -> list[str]:  # noqa: A002
        """The ids of this app's states of ``type``, sorted."""
        return sorted([state_id async for state_id in self.iter_states(type)])

    async def reencrypt_states(self, type: StateType | str, *, concurrency: int = 8) -> int:  # noqa: A002
        """Rewrite every state of ``type`` whose stored form is outdated; returns how many were outdated.

        Outdated means what the codec flags with ``reseal``: sealed under an
        old key (after a key rotation), plain JSON where encryption is now on,
        or encrypted where it is now off. Each rewrite is a conditional write
        through the normal compare-and-swap loop, so a concurrent update is
        never lost (if another writer rewrites a state first, its write counts
        and this one is skipped). A state that cannot be read (``DecryptionError``: a key
        nobody configured) stops the run with that error; states done before
        it stay done, and running again is safe. ``statestore reencrypt`` calls it.
        """
        stype = StateType.coerce(type)
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        ids = iter(await self.list_states(stype))
        count = 0

        async def worker() -> None:
            nonlocal count
            for state_id in ids:  # a plain iterator shared by the workers: each id is taken once
                if await self._reseal(self.key(state_id, stype)):
                    count += 1

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return count

    async def _reseal(self, skey: StateKey) -> bool:
        """Rewrite one state if the codec says its stored form is outdated; True if it was."""
        self._cache.discard(skey.object_key)
        current = await self._read(skey)
        if current is None or not current.reseal:
            return False
        if current.error is not None:
            raise current.error
        self._cache.put(skey.object_key, current)  # the write below needs no second read
        await self._submit(skey, _Change(lambda state: state))
        return True

    async def aclose(self) -> None:
        """Close the backend's connections; the store opens new ones if used again."""
        await self.backend.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- reading ---------------------------------------------------------------

    async def _call(self, skey: StateKey, op: str, call: Awaitable[T]) -> T:
        """Await a backend call; anything but our own errors becomes ``BackendError``."""
        try:
            return await call
        except StateStoreError:
            raise
        except Exception as exc:
            raise BackendError(f"{op} of {skey} failed ({exc.__class__.__name__})") from exc

    def _open(self, skey: StateKey, obj: Versioned | None) -> _Current | None:
        if obj is None:
            return None
        try:
            opened = self.codec.open(skey, obj.data)
        except CorruptStateError as exc:  # only a replacing change may write over it
            return _Current(b"", obj.etag, True, exc)
        return _Current(opened.plain, obj.etag, opened.reseal)

    async def _read(self, skey: StateKey) -> _Current | None:
        obj = await self._call(skey, "get", self.backend.get(skey.object_key))
        if obj is None:
            self._cache.discard(skey.object_key)
        return self._open(skey, obj)

    # -- coalescing ------------------------------------------------------------

    async def _submit(self, skey: StateKey, change: _Change) -> State:
        """Apply one change; changes to the same state that wait together share one write."""
        if not self.coalesce:
            return await self._apply_alone(skey, change)
        loop = asyncio.get_running_loop()
        slot = (loop, skey.object_key)
        future: asyncio.Future[State] = loop.create_future()
        batcher = self._batchers.get(slot)
        if batcher is not None:
            batcher.pending.append(_Pending(change, future))
            return await future
        batcher = self._batchers[slot] = _Batcher([_Pending(change, future)])
        try:
            await asyncio.sleep(0)  # one loop turn, so callers of the same moment join this write
        except BaseException:
            future.cancel()
            self._hand_off(slot, skey, batcher)
            raise
        if len(batcher.pending) > 1:
            self._hand_off(slot, skey, batcher)
            return await future
        # Alone (the common case of a lone writer): write from this task, with no drain task to
        # hop through. Callers that arrive meanwhile queue up and are handed to a drain task afterwards.
        batcher.pending = []
        try:
            return await self._apply_alone(skey, change)
        finally:
            self._hand_off(slot, skey, batcher)

    async def _apply_alone(self, skey: StateKey, change: _Change) -> State:
        outcomes, state = await self._apply(skey, [change])
        if outcomes[0] is not None:
            raise outcomes[0]
        return state

    def _hand_off(self, slot: tuple[asyncio.AbstractEventLoop, str], skey: StateKey, batcher: _Batcher) -> None:
        """Leave the waiting changes to a drain task, or drop the batcher if nobody waits."""
        if any(not p.future.done() for p in batcher.pending):
            batcher.task = slot[0].create_task(self._drain(slot, skey, batcher))
        else:
            del self._batchers[slot]

    async def _drain(self, slot: tuple[asyncio.AbstractEventLoop, str], skey: StateKey, batcher: _Batcher) -> None:
        """Write the waiting changes batch by batch, in call order, until none are left."""
        batch: list[_Pending] = []
        try:
            while batcher.pending:
                batch = [p for p in batcher.pending if not p.future.done()]
                batcher.pending = []
                if not batch:
                    continue
                try:
                    outcomes, state = await self._apply(skey, [p.change for p in batch])
                except Exception as exc:
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                first = True
                for p, outcome in zip(batch, outcomes, strict=True):
                    if p.future.done():
                        continue
                    if outcome is not None:
                        p.future.set_exception(outcome)
                    else:
                        p.future.set_result(state if first else copy_state(state))
                        first = False
        finally:  # normally nothing is left; on cancellation every waiting caller is cancelled too
            del self._batchers[slot]
            for p in batch + batcher.pending:
                p.future.cancel()

    # -- compare-and-swap ------------------------------------------------------

    async def _decode(self, skey: StateKey, plain: bytes) -> State:
        """``decode``, in a worker thread for large states."""
        if len(plain) < OFFLOAD_BYTES:
            return decode(plain, skey)
        return await asyncio.to_thread(decode, plain, skey)

    def _run(
        self,
        skey: StateKey,
        current: _Current | None,
        changes: Sequence[_Change],
        limit_each: bool,
        decoded: State | CorruptStateError | None = None,
    ) -> tuple[list[Exception | None], State | None]:
        """Apply ``changes`` in order to the current state; a change that fails is skipped.

        Returns each change's error (or None) and the resulting state (None if
        nothing applied on top of a corrupt state). With ``limit_each`` the
        size limit is checked after every change, so only the change that
        crosses it fails.
        """
        outcomes: list[Exception | None] = []
        state: State | None
        corrupt: CorruptStateError | None = None
        if current is not None and current.error is not None:
            state, corrupt = None, current.error
        elif isinstance(decoded, CorruptStateError):
            state, corrupt = None, decoded
        elif decoded is not None:  # ``current.plain`` parsed by the caller, off the event loop
            state = decoded
        else:
            try:
                state = decode(current.plain, skey) if current is not None else {}
            except CorruptStateError as exc:
                state, corrupt = None, exc
        for change in changes:
            if state is None and not change.replaces:
                assert corrupt is not None
                outcomes.append(corrupt)
                continue
            before = copy_state(state) if limit_each and state is not None else None
            try:
                state = self._run_one(skey, change, state)
                if limit_each:
                    self._check_size(skey, encode(state))
            except Exception as exc:  # this caller's change fails alone; its caller gets the error
                if limit_each:
                    state = before
                outcomes.append(exc)
                continue
            outcomes.append(None)
        return outcomes, state

    def _run_one(self, skey: StateKey, change: _Change, state: State | None) -> State:
        if change.user:
            assert state is not None
            result = change.fn(copy_state(state))
            if not isinstance(result, dict):
                raise InvalidInputError(f"update function for {skey} returned {result.__class__.__name__}, not a dict")
            check_json(result, "updated state")
            self.codec.check(skey, result)
            return result
        return change.fn(state if state is not None else {})

    def _check_size(self, skey: StateKey, plain: bytes) -> None:
        if len(plain) > self.max_state_bytes:
            raise StateTooLargeError(f"{skey} would be {len(plain)} bytes; the limit is {self.max_state_bytes}")

    async def _apply(self, skey: StateKey, changes: Sequence[_Change]) -> tuple[list[Exception | None], State]:
        """The compare-and-swap loop: apply ``changes`` and store the result, retrying on conflict.

        An outcome that writes nothing (no change, or every change failed) is
        returned only once the state it was computed from is confirmed by the
        backend: a cached state may be stale, and a successful conditional
        write is what confirms it otherwise.
        """
        object_key = skey.object_key
        budget = self.retry.start()
        current: _Current | None = self._cache.get(object_key)
        known = current is not None
        confirmed = False
        while True:
            if not known:
                current = await self._read(skey)
                confirmed = True
            decoded: State | CorruptStateError | None = None
            if current is not None and len(current.plain) >= OFFLOAD_BYTES:
                try:
                    decoded = await self._decode(skey, current.plain)
                except CorruptStateError as exc:
                    decoded = exc
            outcomes, state = self._run(skey, current, changes, limit_each=False, decoded=decoded)
            plain = b""
            if state is not None:
                plain = encode(state)
                if len(plain) > self.max_state_bytes:  # rerun, so that only the changes crossing the limit fail
                    outcomes, state = self._run(skey, current, changes, limit_each=True)
                    plain = encode(state) if state is not None else b""
            if (
                state is None  # every change needed the corrupt state
                or (current is None and not state)
                or (current is not None and plain == current.plain and not current.reseal)
            ):
                if not confirmed:  # nothing to write, but only by the cache: ask the backend
                    fresh = await self._read(skey)
                    confirmed = True
                    if not _same_version(current, fresh):
                        current = fresh
                        continue
                if current is not None and not current.reseal and state is not None:
                    self._cache.put(object_key, current)
                return outcomes, state if state is not None else {}  # write nothing
            sealed = self.codec.seal(skey, plain)
            try:
                etag = await self._call(
                    skey,
                    "put",
                    self.backend.put(
                        object_key,
                        sealed,
                        if_match=current.etag if current is not None else None,
                        if_none_match=current is None,
                    ),
                )
            except PreconditionFailed as conflict:
                self._cache.discard(object_key)
                use_seen = conflict.current_known and budget.tries == 1
                if not await budget.backoff(sleep=not use_seen):
                    raise ConflictError(
                        f"{skey}: gave up after {budget.tries} attempts; other writers kept changing it"
                    ) from None
                logger.debug("conflict on %s, attempt %d", skey, budget.tries)
                known = confirmed = use_seen
                if use_seen:
                    current = self._open(skey, conflict.current)
                continue
            except BaseException:
                self._cache.discard(object_key)
                raise
            self._cache.put(object_key, _Current(plain, etag))
            return outcomes, state

    async def check(self) -> CheckReport:
        """Probe the backend on scratch objects under this app's prefix: is compare-and-swap safe on it?

        Nothing stored is touched and the scratch objects are removed. The
        report names each probe, a verdict and the settings to use (for
        example the ``If-Match`` form an S3 server honours); see ``statestore.check``.
        """
        return await check_backend(self.backend, self.app_name)


def _same_version(a: _Current | None, b: _Current | None) -> bool:
    """Whether two sightings of a state are the same stored version."""
    if a is None or b is None:
        return a is b
    return same_etag(a.etag, b.etag) and a.plain == b.plain
