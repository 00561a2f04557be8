"""``Store``: one backend, one app name and the options; all of statestore's logic lives here.

Every change goes through one compare-and-swap loop (``_apply``): read the
current state and its ETag (or take them from the cache), apply the change,
write with ``if_match`` / ``if_none_match``, and on ``PreconditionFailed``
re-read, re-apply and retry with jittered backoff. Concurrent changes to one
state from one event loop are coalesced into a single write (``_submit``).

A batch decodes and encodes the state once, however many callers it has; only
an ``update_state`` function (its own copy) and a caller that gets the state
back (a copy of its own) cost a copy each. On states of ``OFFLOAD_BYTES`` and
more that work runs in worker threads, so the event loop keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, ParamSpec, TypeAlias, TypeVar

from .backends.base import ObjectBackend, PreconditionFailed, PutMode, Versioned, same_etag
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
P = ParamSpec("P")
_KEY_MEMO = 4096  # validated (id, type) pairs remembered per store

#: Work on states (and values) at least this large -- decode, copy, check, encode, seal -- runs in a
#: worker thread: parsing 1 MiB of JSON takes about 2-10 ms, and many of those back to back would
#: stall the event loop. Below it, a thread hop costs more than the work.
OFFLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Set:
    """Set top-level keys to ``values`` (``save_state``, ``save_state_object``), checked at the call.

    ``replaces`` drops every other key (``replace_state``), so it also applies on top of a corrupt state.
    """

    values: Mapping[str, Any]
    replaces: bool = False
    large: bool = False  # the values may encode to OFFLOAD_BYTES or more


@dataclass(frozen=True)
class _Update:
    """Replace the state with ``fn(a copy of it)`` (``update_state``); the result is checked when applied."""

    fn: UpdateFn


_Change: TypeAlias = _Set | _Update


class _Current(NamedTuple):
    """The stored state as last seen: plain JSON bytes, ETag, and whether its encoding is outdated."""

    plain: bytes
    etag: str
    reseal: bool = False
    error: CorruptStateError | None = None  # the codec could not open it (e.g. DecryptionError)


class _Outcome(NamedTuple):
    """What the compare-and-swap loop did with a batch of changes."""

    state: State  # as stored (or as found, if nothing needed writing)
    plain: bytes  # its JSON; empty if no change applied
    refused: dict[int, BaseException]  # index of a change that was not applied -> its caller's error


@dataclass
class _Pending:
    change: _Change
    future: asyncio.Future[State]
    returns: bool  # the caller gets the state back (save_state does not)


@dataclass
class _Batcher:
    """Changes to one state from one event loop, waiting for the next write."""

    pending: list[_Pending] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


_MISSING: Any = object()


class _Draft:
    """The state one batch builds, change by change; a change that fails leaves it as it was.

    It starts from a shallow copy of ``base``: changes only set top-level keys or replace the
    whole state (an update function works on a deep copy), so ``base`` itself stays as decoded
    and a second pass can start from it again.
    """

    def __init__(self, skey: StateKey, codec: Codec, base: State | CorruptStateError, large: bool) -> None:
        self.skey = skey
        self.codec = codec
        self.state: State | None = None if isinstance(base, CorruptStateError) else dict(base)
        self.corrupt = base if isinstance(base, CorruptStateError) else None
        self.large = large  # the state may encode to OFFLOAD_BYTES or more: work on it goes to a thread
        self.applied = 0

    def current(self) -> State:
        """The state so far; a change that needs it fails if the stored state is corrupt."""
        if self.state is None:
            assert self.corrupt is not None
            raise self.corrupt
        return self.state

    def set(self, change: _Set) -> None:
        """Apply a ``_Set``: only its keys change, so undoing it is restoring them."""
        if change.replaces:
            self.replace(dict(change.values))
        else:
            state = self.current()
            saved = {k: state.get(k, _MISSING) for k in change.values}
            state.update(change.values)
            try:
                self.codec.check_state(self.skey, state)
            except Exception:
                for k, old in saved.items():
                    if old is _MISSING:
                        del state[k]
                    else:
                        state[k] = old
                raise
            self.applied += 1
        self.large = self.large or change.large

    def replace(self, state: State) -> None:
        """Make ``state`` (checked JSON) the whole state."""
        self.codec.check_state(self.skey, state)
        self.state = state
        self.applied += 1

    def plain(self) -> bytes:
        return encode(self.current())


class _ExactDraft(_Draft):
    """A draft that also keeps each top-level entry's JSON, to encode and size every change on its own.

    A change then costs encoding what it sets (for an ``update_state`` result, the whole state),
    so the size limit fails exactly the changes that cross it, and a value that does not encode
    fails only its own change. Used to re-apply a batch whose combined state did not encode or
    was over the limit.
    """

    def __init__(self, skey: StateKey, codec: Codec, base: State | CorruptStateError, large: bool, limit: int) -> None:
        super().__init__(skey, codec, base, large)
        self.limit = limit
        self.pieces = _pieces(self.state) if self.state is not None else {}
        self.total = _total(self.pieces.values())

    def set(self, change: _Set) -> None:
        if change.replaces:
            super().set(change)  # through ``replace`` below
            return
        self.current()  # a corrupt stored state fails the change first
        new = _pieces(change.values)
        total = self.total + _total(new.values()) - _total(self.pieces[k] for k in new if k in self.pieces)
        self._check_size(total)
        super().set(change)
        self.pieces.update(new)
        self.total = total

    def replace(self, state: State) -> None:
        pieces = _pieces(state)
        total = _total(pieces.values())
        self._check_size(total)
        super().replace(state)
        self.pieces, self.total = pieces, total

    def plain(self) -> bytes:
        return b"{" + b",".join(self.pieces.values()) + b"}"

    def _check_size(self, total: int) -> None:
        size = max(2, total + 1)  # "{" + pieces joined by "," + "}"
        if size > self.limit:
            raise StateTooLargeError(f"{self.skey} would be {size} bytes; the limit is {self.limit}")


def _pieces(values: Mapping[str, Any]) -> dict[str, bytes]:
    """The JSON of each entry (``"key":value``): an object's JSON is these, joined by commas, in braces."""
    return {k: encode({k: v})[1:-1] for k, v in values.items()}


def _total(pieces: Iterable[bytes]) -> int:
    return sum(len(piece) + 1 for piece in pieces)


def _small(value: Any) -> bool:
    """Whether ``value`` surely encodes to less than about ``OFFLOAD_BYTES``; stops once it has seen that much."""
    budget = OFFLOAD_BYTES
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            budget -= len(item) + 2
        elif isinstance(item, (dict, list, tuple)):
            budget -= len(item) + 2
            if budget >= 0:
                stack.extend(item)
                if isinstance(item, dict):
                    stack.extend(item.values())
        else:
            budget -= 4
        if budget < 0:
            return False
    return True


async def _offload(large: bool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``: in a worker thread if ``large``, else right here."""
    if large:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


async def _checked(value: Any, check: Callable[[], None]) -> bool:
    """Run ``check`` on what a call sets, before any I/O; returns whether ``value`` is large (it ran in a thread)."""
    large = not _small(value)
    await _offload(large, check)
    return large


def _raisable(error: BaseException) -> BaseException:
    """``error`` as a future can hold it: a future refuses StopIteration, which a coroutine turns into RuntimeError."""
    if isinstance(error, StopIteration):
        wrapped = RuntimeError("update function raised StopIteration")
        wrapped.__cause__ = error
        return wrapped
    return error


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
            return state_key(self.app_name, type, id, key_prefix=self.backend.key_prefix)
        memo = (id, type)
        skey = self._keys.get(memo)
        if skey is None:
            skey = state_key(self.app_name, type, id, key_prefix=self.backend.key_prefix)
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

        def check() -> None:
            check_json({key: value}, "value")
            self.codec.check(skey, {key: value})

        large = await _checked(value, check)
        await self._submit(skey, _Set({key: value}, large=large), returns=False)

    async def save_state_object(self, id: str, value: Mapping[str, Any], type: StateType | str) -> State:  # noqa: A002
        """Shallow-merge ``value`` into the state and return the complete merged state."""
        skey = self.key(id, type)
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"value must be a dict, not {value.__class__.__name__}")
        update = dict(value)
        large = await _checked(update, lambda: self._check_value(skey, update))
        return await self._submit(skey, _Set(update, large=large))

    # -- beyond the API page ---------------------------------------------------

    async def update_state(self, id: str, type: StateType | str, fn: UpdateFn) -> State:  # noqa: A002
        """Replace the state with ``fn(copy of state)`` and return what was stored.

        ``fn`` runs on the event loop, so keep it quick: nothing else on the loop runs while it
        does. It gets a deep copy of its own (made in a worker thread for large states) and may
        mutate and return it; its result is checked before it is stored. ``fn`` may run more
        than once: again after a conflict with another writer, and when a batch of coalesced
        changes is re-applied one by one (a change in it did not encode or crossed the size limit).
        Whatever ``fn`` raises, even a ``BaseException``, fails this call alone.
        """
        skey = self.key(id, type)
        if not callable(fn):
            raise InvalidInputError("fn must be callable")
        return await self._submit(skey, _Update(fn))

    async def replace_state(self, id: str, type: StateType | str, value: Mapping[str, Any]) -> State:  # noqa: A002
        """Store ``value`` as the whole state, whatever is stored now (also a corrupt state)."""
        skey = self.key(id, type)
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"value must be a dict, not {value.__class__.__name__}")
        new = dict(value)
        large = await _checked(new, lambda: self._check_value(skey, new))
        return await self._submit(skey, _Set(new, replaces=True, large=large))

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
            async for meta in self.backend.list(prefix):
                state_id = id_from_key(prefix, meta.key)
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
        await self._submit(skey, _Set({}), returns=False)
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

    async def _opened(self, skey: StateKey, obj: Versioned | None) -> _Current | None:
        """``_open``, in a worker thread for large objects (the codec scans, and may decrypt, all of it)."""
        return await _offload(obj is not None and len(obj.data) >= OFFLOAD_BYTES, self._open, skey, obj)

    async def _read(self, skey: StateKey) -> _Current | None:
        obj = await self._call(skey, "get", self.backend.get(skey.object_key))
        if obj is None:
            self._cache.discard(skey.object_key)
        return await self._opened(skey, obj)

    def _check_value(self, skey: StateKey, values: dict[str, Any]) -> None:
        """What ``save_state_object`` and ``replace_state`` check before any I/O."""
        check_json(values, "value")
        self.codec.check(skey, values)

    # -- coalescing ------------------------------------------------------------

    async def _submit(self, skey: StateKey, change: _Change, returns: bool = True) -> State:
        """Apply one change; changes to the same state that wait together share one write.

        ``returns=False`` (``save_state``) says the caller drops the result, so it needs no copy of its own.
        """
        if not self.coalesce:
            return await self._apply_alone(skey, change)
        loop = asyncio.get_running_loop()
        slot = (loop, skey.object_key)
        future: asyncio.Future[State] = loop.create_future()
        batcher = self._batchers.get(slot)
        if batcher is not None:
            batcher.pending.append(_Pending(change, future, returns))
            return await future
        batcher = self._batchers[slot] = _Batcher([_Pending(change, future, returns)])
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
        outcome = await self._apply(skey, [change])
        error = outcome.refused.get(0)
        if error is not None:
            raise error
        return outcome.state  # a batch of one: the state it built is this caller's own

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
                    outcome = await self._apply(skey, [p.change for p in batch])
                except Exception as exc:
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                await self._deliver(skey, batch, outcome)
        finally:  # normally nothing is left; on cancellation every waiting caller is cancelled too
            del self._batchers[slot]
            for p in batch + batcher.pending:
                p.future.cancel()

    async def _deliver(self, skey: StateKey, batch: list[_Pending], outcome: _Outcome) -> None:
        """Give each caller of a written batch its error or the state.

        The state the batch built holds every caller's values, so in a batch of several each
        caller that gets the state back gets a copy of its own, decoded from the stored bytes
        (a decode is the cheapest deep copy, and runs in a thread for large states); the state
        itself goes only to callers that drop it.
        """
        for i, p in enumerate(batch):
            if p.future.done():
                continue
            error = outcome.refused.get(i)
            if error is not None:
                p.future.set_exception(_raisable(error))
            elif p.returns and len(batch) > 1:
                copy = await self._decode(skey, outcome.plain)
                if not p.future.done():
                    p.future.set_result(copy)
            else:
                p.future.set_result(outcome.state)

    # -- compare-and-swap ------------------------------------------------------

    async def _decode(self, skey: StateKey, plain: bytes) -> State:
        """``decode``, in a worker thread for large states."""
        return await _offload(len(plain) >= OFFLOAD_BYTES, decode, plain, skey)

    async def _base(self, skey: StateKey, current: _Current | None) -> State | CorruptStateError:
        """The stored state, decoded, or why it cannot be."""
        if current is None:
            return {}
        if current.error is not None:
            return current.error
        try:
            return await self._decode(skey, current.plain)
        except CorruptStateError as exc:
            return exc

    async def _build(self, skey: StateKey, draft: _Draft, changes: Sequence[_Change]) -> dict[int, BaseException]:
        """Apply ``changes`` in order to ``draft``; a change that fails is refused and skipped."""
        refused: dict[int, BaseException] = {}
        for i, change in enumerate(changes):
            try:
                if isinstance(change, _Set):
                    await _offload(change.large, draft.set, change)
                    continue
                copy = await _offload(draft.large, copy_state, draft.current())
                try:
                    result = change.fn(copy)
                except BaseException as exc:  # the caller's own code: whatever it raises is that caller's alone
                    refused[i] = exc
                    continue
                await self._accept(skey, draft, result)
            except Exception as exc:
                refused[i] = exc
        return refused

    async def _accept(self, skey: StateKey, draft: _Draft, result: Any) -> None:
        """Check an update function's result and make it the draft's state (in a thread if it is large)."""
        if not isinstance(result, dict):
            raise InvalidInputError(f"update function for {skey} returned {result.__class__.__name__}, not a dict")

        def accept() -> None:
            check_json(result, "updated state")
            self.codec.check(skey, result)
            draft.replace(result)

        large = await _checked(result, accept)
        draft.large = draft.large or large

    async def _run(
        self, skey: StateKey, current: _Current | None, changes: Sequence[_Change]
    ) -> tuple[_Draft, dict[int, BaseException], bytes]:
        """Apply ``changes`` to the current state and encode the result: the draft, the refused changes, the JSON.

        The combined state is encoded once. Only if that fails, or it is over the size limit, are the
        changes applied again, one by one (``_ExactDraft``), to refuse only the changes at fault.
        """
        base = await self._base(skey, current)
        large = current is not None and len(current.plain) >= OFFLOAD_BYTES
        draft = _Draft(skey, self.codec, base, large)
        refused = await self._build(skey, draft, changes)
        if not draft.applied:
            return draft, refused, b""
        plain: bytes | None
        try:
            plain = await _offload(draft.large, draft.plain)
        except InvalidInputError:  # a value that does not encode: the exact pass finds whose
            plain = None
        if plain is not None and len(plain) <= self.max_state_bytes:
            return draft, refused, plain
        del plain
        draft = await _offload(large, _ExactDraft, skey, self.codec, base, large, self.max_state_bytes)
        refused = await self._build(skey, draft, changes)
        return draft, refused, await _offload(draft.large, draft.plain) if draft.applied else b""

    async def _apply(self, skey: StateKey, changes: Sequence[_Change]) -> _Outcome:
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
            draft, refused, plain = await self._run(skey, current, changes)
            if (
                not draft.applied  # every change failed (or needed a corrupt state)
                or (current is None and not draft.state)
                or (current is not None and plain == current.plain and not current.reseal)
            ):
                if not confirmed:  # nothing to write, but only by the cache: ask the backend
                    fresh = await self._read(skey)
                    confirmed = True
                    if not _same_version(current, fresh):
                        current = fresh
                        continue
                if current is not None and not current.reseal and draft.state is not None:
                    self._cache.put(object_key, current)
                return _Outcome(draft.state or {}, plain, refused)  # write nothing
            sealed = await _offload(len(plain) >= OFFLOAD_BYTES, self.codec.seal, skey, plain)
            try:
                mode = PutMode.CREATE if current is None else PutMode.update(current.etag)
                etag = (await self._call(skey, "put", self.backend.put(object_key, sealed, mode))).etag
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
                    current = await self._opened(skey, conflict.current)
                continue
            except BaseException:
                self._cache.discard(object_key)
                raise
            self._cache.put(object_key, _Current(plain, etag))
            return _Outcome(draft.current(), plain, refused)

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
