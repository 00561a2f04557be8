"""The compare-and-swap loop that stores every change, with its cache of the last version seen per state.

``CompareAndSwap.apply`` reads the current state and its ETag (or takes them
from the cache), applies a sequence of changes to it (a ``Draft``), writes the
result conditionally, and on ``PreconditionFailed`` re-reads, re-applies and
retries with jittered backoff. A change that fails on its own is refused (its
caller gets the error) and the others are still written.

A pass decodes and encodes the state once, however many changes it has; only
an update function (its own copy) costs a copy each. Work on large states runs
in worker threads (``offload``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, TypeAlias, TypeVar

from ..backends.base import (
    Create,
    NotModified,
    ObjectBackend,
    ObjectVersion,
    PreconditionFailed,
    PutMode,
    Versioned,
    same_etag,
    takes_if_none_match,
    takes_max_bytes,
)
from ..backends.base import Update as PutUpdate
from ..config.settings import DEFAULT_CACHE_BYTES
from ..errors import (
    BackendError,
    ConditionalDeleteUnsupportedError,
    ConflictError,
    CorruptStateError,
    InvalidInputError,
    StateExistsError,
    StateStoreError,
    StateTooLargeError,
    StoredStateTooLargeError,
    VersionConflictError,
)
from ..util import hooks
from ..util.lru import LRU
from ..util.offload import OFFLOAD_BYTES, offload, run_check
from ..util.retry import RetryBudget, RetryPolicy
from .codec import Codec, check_json, copy_state, decode, encode
from .paths import StateKey

logger = logging.getLogger(__name__)

State = dict[str, Any]
UpdateFn = Callable[[State], State]
T = TypeVar("T")

#: What a stored object may hold beyond twice ``max_state_bytes`` (per-write metadata, an envelope's fields).
READ_SLACK = 64 * 1024


def read_limit(max_state_bytes: int) -> int:
    """The largest stored object a read takes: twice the state limit (an encryption envelope is base64,
    4/3 of the state) plus ``READ_SLACK``. A larger one no write of this store made: refused unread."""
    return 2 * max_state_bytes + READ_SLACK


# -- changes ------------------------------------------------------------------------


@dataclass(slots=True)
class Merge:
    """Set top-level keys to ``values``, keeping the others (``save_state``, ``save_state_object``)."""

    values: Mapping[str, Any]
    large: bool = False  # the values may encode to OFFLOAD_BYTES or more


@dataclass(slots=True)
class Replace:
    """Make ``values`` the whole state; it applies on top of a corrupt state too (``replace_state``)."""

    values: Mapping[str, Any]
    large: bool = False


@dataclass(slots=True)
class Update:
    """Replace the state with ``fn(a copy of it)`` (``update_state``); the result is checked when applied."""

    fn: UpdateFn


Change: TypeAlias = Merge | Replace | Update

#: Changes nothing: the loop writes it only where the codec says the stored form is outdated (``Opened.reseal``).
RESEAL = Merge({})


# -- what the loop knows of the stored object ---------------------------------------


class Stored(NamedTuple):
    """A stored state as seen: its plain JSON, its ETag, and whether the codec says its stored form is outdated."""

    plain: bytes
    etag: str
    reseal: bool = False


class Unreadable(NamedTuple):
    """A stored object that is not a readable state (the codec cannot open it, it is not a JSON object, or it is
    too large to read).

    Only a ``Replace`` may write over it; every other change fails with ``error``. ``etag`` is
    None for an object refused unread whose ETag the backend could not tell without reading it:
    a ``Replace`` then overwrites it unconditionally (it replaces whatever is stored anyway).
    """

    etag: str | None
    error: CorruptStateError


#: The stored object: a state, something unreadable, or nothing (None).
Seen: TypeAlias = Stored | Unreadable | None

#: The version a versioned change expects: ``PutMode.CREATE`` (nothing stored) or ``PutMode.update(version)``.
Expected: TypeAlias = Create | PutUpdate


class Basis(Enum):
    """Where the loop's picture of the stored object comes from."""

    UNREAD = "nothing yet: read it"
    CACHE = "this process's last sighting: may be stale"
    BACKEND = "the backend, just now (a read, or a refused write that said what it holds)"


class Outcome(NamedTuple):
    """What the compare-and-swap loop did with a sequence of changes."""

    key: StateKey
    state: State  # as stored (or as found, if nothing needed writing)
    plain: bytes  # its JSON; empty if no change applied
    refused: dict[int, BaseException]  # index of a change that was not applied -> its caller's error

    async def copy(self) -> State:
        """A deep copy of ``state``: decoded from the stored JSON (the cheapest deep copy; in a thread if large)."""
        return await _decode(self.key, self.plain)

    def own(self) -> State:
        """What a batch of one gives its caller: the state it built, or the error that refused the change."""
        error = self.refused.get(0)
        if error is not None:
            raise error
        return self.state


# -- drafts -------------------------------------------------------------------------

_MISSING: Any = object()


class Draft:
    """The state one pass builds, change by change; a change that fails leaves it as it was.

    It starts from a shallow copy of ``base``: changes only set top-level keys or replace the
    whole state (an update function works on a deep copy), so ``base`` itself stays as decoded
    and a second pass can start from it again.
    """

    def __init__(self, skey: StateKey, codec: Codec, base: State | Unreadable, large: bool) -> None:
        self.skey = skey
        self.codec = codec
        self.state: State | None = None if isinstance(base, Unreadable) else dict(base)
        self.unreadable = base if isinstance(base, Unreadable) else None
        self.large = large  # the state may encode to OFFLOAD_BYTES or more: work on it goes to a thread
        self.applied = 0

    def current(self) -> State:
        """The state so far; a change that needs it fails if the stored object is unreadable."""
        if self.state is None:
            assert self.unreadable is not None
            raise self.unreadable.error
        return self.state

    def merge(self, change: Merge) -> None:
        """Apply a ``Merge``: only its keys change, so undoing it is restoring them."""
        state = self.current()
        saved = {}
        for k in change.values:  # a loop, not a comprehension: no function call for the usual one or two keys
            saved[k] = state.get(k, _MISSING)
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

    def replace(self, change: Replace) -> None:
        self.accept(dict(change.values))
        self.large = self.large or change.large

    def accept(self, state: State) -> None:
        """Make ``state`` (checked JSON) the whole state."""
        self.codec.check_state(self.skey, state)
        self.state = state
        self.applied += 1

    def plain(self) -> bytes:
        return encode(self.current())


class ExactDraft(Draft):
    """A draft that also keeps each top-level entry's JSON, to encode and size every change on its own.

    A change then costs encoding what it sets (for an update function's result, the whole state),
    so the size limit fails exactly the changes that cross it, and a value that does not encode
    fails only its own change. Used to re-apply changes whose combined state did not encode or
    was over the limit.
    """

    def __init__(self, skey: StateKey, codec: Codec, base: State | Unreadable, large: bool, limit: int) -> None:
        super().__init__(skey, codec, base, large)
        self.limit = limit
        self.pieces = _pieces(self.state) if self.state is not None else {}
        self.total = _total(self.pieces.values())

    def merge(self, change: Merge) -> None:
        self.current()  # an unreadable stored object fails the change first
        new = _pieces(change.values)
        total = self.total + _total(new.values()) - _total(self.pieces[k] for k in new if k in self.pieces)
        self._check_size(total)
        super().merge(change)
        self.pieces.update(new)
        self.total = total

    def accept(self, state: State) -> None:
        pieces = _pieces(state)
        total = _total(pieces.values())
        self._check_size(total)
        super().accept(state)
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


async def _decode(skey: StateKey, plain: bytes) -> State:
    """``decode``, in a worker thread for large states."""
    if len(plain) < OFFLOAD_BYTES:
        return decode(plain, skey)
    return await offload(True, decode, plain, skey)


def _same_version(a: Seen, b: Seen) -> bool:
    """Whether two sightings of a stored object are the same version."""
    if isinstance(a, Stored) and isinstance(b, Stored):
        return same_etag(a.etag, b.etag) and a.plain == b.plain
    if isinstance(a, Unreadable) and isinstance(b, Unreadable):
        return a.etag is not None and b.etag is not None and same_etag(a.etag, b.etag)
    return a is None and b is None


def _update_mode(seen: Stored | Unreadable) -> PutMode:
    """The condition of a write over ``seen``: its version; none where that is unknown (only a ``Replace`` applies)."""
    return PutMode.OVERWRITE if seen.etag is None else PutUpdate(seen.etag)


def _etag(seen: Seen) -> str | None:
    """The version of a sighting; None if nothing is stored (or, for an object refused unread, not known)."""
    return None if seen is None else seen.etag


def _unknown(seen: Seen) -> bool:
    """Whether something is stored whose version is not known (too large to read, and the backend did not say)."""
    return isinstance(seen, Unreadable) and seen.etag is None


def _allows(expected: Expected, seen: Seen) -> bool:
    """Whether a versioned change may go on: a stored object of unknown version is left to the put's condition."""
    if _unknown(seen):
        return isinstance(expected, PutUpdate)
    return expected.allows(_etag(seen))


def _conflict_error(
    skey: StateKey, expected: Expected, current: str | None, *, unknown: bool = False
) -> VersionConflictError:
    """``StateExistsError`` for a create that found a state, else ``VersionConflictError``; both name ``current``.

    ``unknown``: something is stored whose version could not be read (``current`` is None).
    """
    if isinstance(expected, Create):
        shown = "of a size too large to read" if unknown else f"version {current}"
        return StateExistsError(f"{skey} already exists ({shown}); nothing was changed", current_version=current)
    now = "it does not exist" if current is None else f"version {current} is stored"
    if unknown:
        now = "another version, too large to read, is stored"
    return VersionConflictError(
        f"{skey}: expected version {expected.etag}, but {now}; nothing was changed", current_version=current
    )


def _backend_error(skey: StateKey, op: str, exc: Exception) -> BackendError:
    """What a backend failure that is not one of our errors becomes: its type is named, its text is not."""
    return BackendError(f"{op} of {skey} failed ({exc.__class__.__name__})")


def _nothing_to_write(current: Seen, draft: Draft, plain: bytes) -> bool:
    """Whether the pass leaves the stored object as it is (no change applied, or the same JSON and encoding)."""
    if not draft.applied:  # every change failed (or needed a readable state)
        return True
    if current is None:
        return not draft.state
    return isinstance(current, Stored) and plain == current.plain and not current.reseal


_ENTRY_OVERHEAD = 256  # bytes a cache entry costs beyond its JSON and ETag (objects, key, links)


def _weigh(stored: Stored) -> int:
    """What a cache entry holds in memory, roughly: its JSON, its ETag, and the objects around them."""
    return len(stored.plain) + len(stored.etag) + _ENTRY_OVERHEAD


# -- the loop -----------------------------------------------------------------------


class CompareAndSwap:
    """Conditional writes of changes to states on one backend, and the (plain, ETag) last seen per state."""

    def __init__(
        self,
        backend: ObjectBackend,
        codec: Codec,
        retry: RetryPolicy,
        max_state_bytes: int,
        cache_size: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.backend = backend
        self.codec = codec
        self.retry = retry
        self.max_state_bytes = max_state_bytes
        # At most cache_size states weighing cache_bytes in all; a state over 1/8 of that is not kept
        # (its next update reads it first: 1 GET + 1 PUT instead of 1 PUT).
        self._cache: LRU[str, Stored] = LRU(cache_size, max_bytes=cache_bytes, weigh=_weigh)
        # Reads of a cached state ask "if not this version" (a backend of the older protocol cannot be asked).
        self._conditional = takes_if_none_match(backend)
        # Reads refuse an object over ``read_limit`` unread where the backend takes ``max_bytes`` (else after reading).
        self._bounded = takes_max_bytes(backend)

    async def read_state(self, skey: StateKey) -> State:
        """The stored state (``{}`` if there is none), always read from the backend; remembers what it read."""
        return (await self.read_versioned(skey))[0]

    async def read_versioned(self, skey: StateKey) -> tuple[State, str | None]:
        """``read_state`` and the version (ETag) read with it; None if there is no state."""
        current = await self._read(skey)
        if current is None:
            return {}, None
        if isinstance(current, Unreadable):
            raise current.error
        state = await _decode(skey, current.plain)
        if not current.reseal:
            self._cache.put(skey.object_key, current)
        return state, current.etag

    async def outdated(self, skey: StateKey) -> bool:
        """Whether the codec says the stored form of this state is outdated, read afresh.

        Raises the error of an unreadable object. An outdated state is remembered, so that
        applying ``RESEAL`` next writes it anew without reading it again.
        """
        self._cache.discard(skey.object_key)
        current = await self._read(skey)
        if current is None:
            return False
        if isinstance(current, Unreadable):
            raise current.error
        if not current.reseal:
            return False
        self._cache.put(skey.object_key, current)
        return True

    async def delete(self, skey: StateKey, if_version: str | None = None) -> None:
        """Remove the state; with ``if_version``, only if that version is stored (else ``VersionConflictError``).

        A versioned delete needs a backend that honours a conditional delete; where it
        does not (``conditional_delete_supported``), it raises
        ``ConditionalDeleteUnsupportedError`` and deletes nothing, rather than delete blindly.
        """
        self._cache.discard(skey.object_key)
        if if_version is None:
            await self._call(skey, "delete", self.backend.delete(skey.object_key))
            return
        supported = await self._call(skey, "probe", self.backend.conditional_delete_supported())
        if not supported:
            raise ConditionalDeleteUnsupportedError(
                f"delete of {skey} with if_version: {self.backend.describe()} does not honour a conditional "
                "delete, so it cannot be made only if unchanged; nothing was deleted"
            )
        try:
            await self._call(skey, "delete", self.backend.delete(skey.object_key, if_match=if_version))
        except PreconditionFailed as conflict:
            raise await self._version_conflict(skey, PutMode.update(if_version), conflict) from None

    async def apply(self, skey: StateKey, changes: Sequence[Change], expected: Expected | None = None) -> Outcome:
        """Apply ``changes`` in order and store the result, retrying on conflict.

        An outcome that writes nothing (no change, or every change failed) is returned only once
        the backend confirms the state it was computed from: a cached state may be stale, and a
        successful conditional write is what confirms it otherwise.

        With ``expected`` (a versioned change: ``PutMode.CREATE`` or ``PutMode.update(version)``)
        the changes apply only to that version, written with that precondition; finding or
        meeting another version raises ``VersionConflictError`` (``StateExistsError`` for
        ``CREATE``) at once, never a retry. ``CREATE`` stores even an empty state.
        """
        object_key = skey.object_key
        started = time.monotonic()
        budget: RetryBudget | None = None  # made on the first conflict: most writes have none
        current: Seen = self._cache.get(object_key)
        basis = Basis.UNREAD if current is None else Basis.CACHE
        if expected is not None and not _allows(expected, current):
            basis = Basis.UNREAD  # the cache may be stale: only the backend can say the version is gone
        while True:
            if basis is Basis.UNREAD:
                current, basis = await self._read(skey), Basis.BACKEND
            if expected is not None and not _allows(expected, current):
                raise _conflict_error(skey, expected, _etag(current), unknown=_unknown(current))
            draft, refused, plain = self._run_now(skey, current, changes) or await self._run(skey, current, changes)
            creates = isinstance(expected, Create) and draft.applied > 0
            if _nothing_to_write(current, draft, plain) and not creates:
                if basis is Basis.CACHE:  # only the cache says so: ask the backend
                    fresh = await self._read(skey)
                    basis = Basis.BACKEND
                    if not _same_version(current, fresh):
                        current = fresh
                        continue
                if isinstance(current, Stored) and not current.reseal and draft.state is not None:
                    self._cache.put(object_key, current)
                return Outcome(skey, draft.state or {}, plain, refused)
            if len(plain) < OFFLOAD_BYTES:
                sealed = self.codec.seal(skey, plain)
            else:
                sealed = await offload(True, self.codec.seal, skey, plain)
            try:
                mode: PutMode = PutMode.CREATE if current is None else _update_mode(current)
                if expected is not None:
                    mode = expected
                try:  # as ``_call``, without its frame: the path of every write
                    etag = (await self.backend.put(object_key, sealed, mode)).etag
                except StateStoreError:
                    raise
                except Exception as exc:
                    raise _backend_error(skey, "put", exc) from exc
            except PreconditionFailed as conflict:
                self._cache.discard(object_key)
                if expected is not None:  # the caller asked for that version: never retried
                    raise await self._version_conflict(skey, expected, conflict) from None
                if budget is None:
                    budget = self.retry.start(started)
                retry_at_once = conflict.current_known and budget.tries == 1  # it said what it holds now
                if not await budget.backoff(sleep=not retry_at_once):
                    raise ConflictError(
                        f"{skey}: gave up after {budget.tries} attempts; other writers kept changing it"
                    ) from None
                logger.debug("conflict on %s, attempt %d", skey, budget.tries)
                if hooks.on_conflict is not None:
                    hooks.on_conflict()
                if retry_at_once:
                    current, basis = await self._opened(skey, conflict.current), Basis.BACKEND
                else:
                    basis = Basis.UNREAD
                continue
            except BaseException:
                self._cache.discard(object_key)
                raise
            self._cache.put(object_key, Stored(plain, etag))
            return Outcome(skey, draft.current(), plain, refused)

    # -- one pass -----------------------------------------------------------------------

    def _run_now(
        self, skey: StateKey, current: Seen, changes: Sequence[Change]
    ) -> tuple[Draft, dict[int, BaseException], bytes] | None:
        """``_run`` without a coroutine, for the common case; None for anything else (``_run`` then starts over).

        The common case: a small readable state, small merges, and one pass that encodes within the limit.
        """
        if current is not None and (not isinstance(current, Stored) or len(current.plain) >= OFFLOAD_BYTES):
            return None
        merges: list[Merge] = []
        for change in changes:
            if not isinstance(change, Merge) or change.large:
                return None
            merges.append(change)
        try:
            draft = Draft(skey, self.codec, {} if current is None else decode(current.plain, skey), False)
        except CorruptStateError:
            return None
        refused: dict[int, BaseException] = {}
        for i, merge in enumerate(merges):
            try:
                draft.merge(merge)
            except Exception as exc:
                refused[i] = exc
        if not draft.applied:
            return draft, refused, b""
        try:
            plain = draft.plain()
        except InvalidInputError:
            return None
        return (draft, refused, plain) if len(plain) <= self.max_state_bytes else None

    async def _run(
        self, skey: StateKey, current: Seen, changes: Sequence[Change]
    ) -> tuple[Draft, dict[int, BaseException], bytes]:
        """Apply ``changes`` to the current state and encode the result: the draft, the refused changes, the JSON.

        The combined state is encoded once. Only if that fails, or it is over the size limit, are the
        changes applied again, one by one (``ExactDraft``), to refuse only the changes at fault.
        """
        base = await self._base(skey, current)
        large = isinstance(current, Stored) and len(current.plain) >= OFFLOAD_BYTES
        draft = Draft(skey, self.codec, base, large)
        refused = await self._build(skey, draft, changes)
        if not draft.applied:
            return draft, refused, b""
        plain: bytes | None
        try:
            plain = await offload(True, draft.plain) if draft.large else draft.plain()
        except InvalidInputError:  # a value that does not encode: the exact pass finds whose
            plain = None
        if plain is not None and len(plain) <= self.max_state_bytes:
            return draft, refused, plain
        del plain
        draft = await offload(large, ExactDraft, skey, self.codec, base, large, self.max_state_bytes)
        refused = await self._build(skey, draft, changes)
        return draft, refused, await offload(draft.large, draft.plain) if draft.applied else b""

    async def _base(self, skey: StateKey, current: Seen) -> State | Unreadable:
        """The stored state, decoded, or the unreadable object."""
        if current is None:
            return {}
        if isinstance(current, Unreadable):
            return current
        try:
            return await _decode(skey, current.plain)
        except CorruptStateError as exc:
            return Unreadable(current.etag, exc)

    async def _build(self, skey: StateKey, draft: Draft, changes: Sequence[Change]) -> dict[int, BaseException]:
        """Apply ``changes`` in order to ``draft``; a change that fails is refused and skipped."""
        refused: dict[int, BaseException] = {}
        for i, change in enumerate(changes):
            try:
                if isinstance(change, Merge):
                    if change.large:
                        await offload(True, draft.merge, change)
                    else:
                        draft.merge(change)
                    continue
                if isinstance(change, Replace):
                    await offload(change.large, draft.replace, change)
                    continue
                copy = await offload(draft.large, copy_state, draft.current())
                try:
                    result = change.fn(copy)
                except BaseException as exc:  # the caller's own code: whatever it raises is that caller's alone
                    refused[i] = exc
                    continue
                await self._accept(skey, draft, result)
            except Exception as exc:
                refused[i] = exc
        return refused

    async def _accept(self, skey: StateKey, draft: Draft, result: Any) -> None:
        """Check an update function's result and make it the draft's state (in a thread if it is large)."""
        if not isinstance(result, dict):
            raise InvalidInputError(f"update function for {skey} returned {result.__class__.__name__}, not a dict")

        def accept() -> None:
            check_json(result, "updated state")
            self.codec.check(skey, result)
            draft.accept(result)

        large = await run_check(result, accept)
        draft.large = draft.large or large

    # -- reading ------------------------------------------------------------------------

    async def _version_conflict(
        self, skey: StateKey, expected: Expected, conflict: PreconditionFailed
    ) -> VersionConflictError:
        """The error for a refused versioned change, with the version stored now (read if the refusal did not say)."""
        if conflict.current_known:
            current = None if conflict.current is None else conflict.current.etag
        else:
            try:
                obj = await self._get(skey)
            except StoredStateTooLargeError as exc:
                return _conflict_error(skey, expected, exc.etag, unknown=exc.etag is None)
            current = None if obj is None else obj.etag
        return _conflict_error(skey, expected, current)

    async def _call(self, skey: StateKey, op: str, call: Awaitable[T]) -> T:
        """Await a backend call; anything but our own errors becomes ``BackendError``."""
        try:
            return await call
        except StateStoreError:
            raise
        except Exception as exc:
            raise _backend_error(skey, op, exc) from exc

    def _open(self, skey: StateKey, obj: Versioned | None) -> Seen:
        if obj is None:
            return None
        limit = read_limit(self.max_state_bytes)
        if len(obj.data) > limit:  # from a backend that takes no ``max_bytes``, or one that sent it anyway
            size = len(obj.data)
            return Unreadable(
                obj.etag, StoredStateTooLargeError(skey.object_key, size, limit, obj.etag, what=str(skey))
            )
        try:
            opened = self.codec.open(skey, obj.data)
        except CorruptStateError as exc:
            return Unreadable(obj.etag, exc)
        return Stored(opened.plain, obj.etag, opened.reseal)

    async def _opened(self, skey: StateKey, obj: Versioned | None) -> Seen:
        """``_open``, in a worker thread for large objects (the codec scans, and may decrypt, all of it)."""
        return await offload(obj is not None and len(obj.data) >= OFFLOAD_BYTES, self._open, skey, obj)

    async def _get(self, skey: StateKey, if_none_match: str | None = None) -> Versioned | NotModified | None:
        """One read of the stored object; over ``read_limit``: ``StoredStateTooLargeError``, unread if it can be."""
        key = skey.object_key
        if not self._bounded:
            call = (
                self.backend.get(key) if if_none_match is None else self.backend.get(key, if_none_match=if_none_match)
            )
            return await self._call(skey, "get", call)
        limit = read_limit(self.max_state_bytes)
        if if_none_match is None:
            return await self._call(skey, "get", self.backend.get(key, max_bytes=limit))
        return await self._call(skey, "get", self.backend.get(key, if_none_match=if_none_match, max_bytes=limit))

    async def _read(self, skey: StateKey) -> Seen:
        """The stored object, read now; a version the cache holds is asked for conditionally (no body if unchanged)."""
        cached = self._cache.get(skey.object_key) if self._conditional else None
        try:
            obj = await self._get(skey, None if cached is None else cached.etag)
        except StoredStateTooLargeError as exc:
            self._cache.discard(skey.object_key)
            return Unreadable(
                exc.etag, StoredStateTooLargeError(exc.key, exc.size, exc.limit, exc.etag, what=str(skey))
            )
        if isinstance(obj, NotModified):
            if cached is None or not same_etag(obj.etag, cached.etag):
                raise BackendError(f"get of {skey} answered 'not modified' for a version it was not asked about")
            return cached
        if obj is None:
            self._cache.discard(skey.object_key)
        return await self._opened(skey, obj)

    # -- pruning ------------------------------------------------------------------------

    async def current_etag(self, skey: StateKey) -> str | None:
        """The stored object's ETag, read now (None: missing, or too large to read and not told); not opened."""
        try:
            obj = await self._get(skey)
        except StoredStateTooLargeError as exc:
            if exc.etag is None:
                logger.warning("%s is too large to read and its version is unknown: left alone", skey)
            return exc.etag
        return None if obj is None else obj.etag

    async def delete_if(self, skey: StateKey, etag: str) -> bool:
        """Delete the state only if it is still version ``etag``; False if it changed or is gone.

        Raises ``ConditionalDeleteUnsupportedError`` (nothing deleted) where the server ignores the condition.
        """
        self._cache.discard(skey.object_key)
        try:
            await self._call(skey, "delete", self.backend.delete(skey.object_key, if_match=etag))
        except PreconditionFailed:
            return False
        return True

    async def delete_if_unchanged(self, skey: StateKey, etag: str) -> bool:
        """Re-read, then delete unconditionally if still version ``etag``: NOT atomic (servers without the condition).

        A write landing between the read and the delete is lost; callers must have asked for this.
        """
        current = await self.current_etag(skey)
        if current is None or not same_etag(current, etag):
            return False
        await self.delete(skey)
        return True

    # -- kept versions (history and restore) ----------------------------------------------

    async def versions(self, skey: StateKey) -> list[ObjectVersion]:
        """The backend's kept versions of the state, newest first (``VersionsUnsupportedError`` where none are kept)."""
        return await self._call(skey, "versions", self.backend.versions(skey.object_key))

    async def read_version(self, skey: StateKey, version_id: str) -> State | None:
        """One kept version, opened by the codec (decrypted) and decoded; None if there is none of that id.

        A version the codec cannot open, or that is not a JSON object, raises its ``CorruptStateError``.
        """
        obj = await self._call(skey, "get_version", self.backend.get_version(skey.object_key, version_id))
        if obj is None:
            return None
        seen = await self._opened(skey, obj)
        if isinstance(seen, Unreadable):
            raise seen.error
        assert seen is not None
        return await _decode(skey, seen.plain)
