"""The compare-and-swap loop that stores every change, with its cache of the last version seen per state.

``CompareAndSwap.apply`` takes the current state, its ETag and its write record from the cache (or reads them),
applies a sequence of changes to a ``Draft`` of it (``changes``), writes the result with the condition "only over
that version", and on ``PreconditionFailed`` re-reads, re-applies and retries with jittered backoff. A change that
fails on its own is refused (its caller gets the error) and the others are still written. Every write stores a
fresh write record (``record``), so its ETag names that write alone.

A pass decodes and encodes the state once, however many changes it has; only an update function (its own copy)
costs a copy each. Work on large states runs in the worker thread (``util.offload``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from enum import Enum
from typing import Any, NamedTuple, TypeAlias, TypeVar

from ..backends.base import (
    Capability,
    Create,
    NotModified,
    ObjectBackend,
    ObjectVersion,
    PreconditionFailed,
    PutMode,
    Versioned,
    same_etag,
)
from ..backends.base import Update as PutUpdate
from ..codec.jsonio import Codec, copy_state, decode
from ..codec.record import NO_RECORD, Fence, Record, attach, detach, new_rev
from ..errors import (
    BackendError,
    ConditionalDeleteUnsupportedError,
    ConflictError,
    CorruptStateError,
    InvalidInputError,
    StateExistsError,
    StateStoreError,
    StoredStateTooLargeError,
    VersionConflictError,
)
from ..keys.paths import StateKey
from ..util import operation
from ..util.lru import LRU
from ..util.offload import OFFLOAD_BYTES, in_worker, is_small, offload
from ..util.retry import RetryBudget, RetryPolicy
from .changes import Acquire, Change, Draft, ExactDraft, Merge, Replace, State, Unreadable, Update, accept_result

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a store's cache of last-seen states may weigh by default (``STATESTORE_CACHE_BYTES``).
DEFAULT_CACHE_BYTES = 64 * 2**20
#: What a stored object may hold beyond twice ``max_state_bytes`` (the write record, an envelope's fields).
READ_SLACK = 64 * 1024


def read_limit(max_state_bytes: int) -> int:
    """The largest stored object a read takes: twice the state limit (an encryption envelope is base64, 4/3 of the
    state) plus ``READ_SLACK``. A larger one no write of this store made: refused unread (decision 0043)."""
    return 2 * max_state_bytes + READ_SLACK


class Stored(NamedTuple):
    """A stored state as seen: its plain JSON, its ETag, its write record, and whether to seal it anew."""

    plain: bytes
    etag: str
    record: Record = NO_RECORD
    reseal: bool = False


#: The cache's note that a read found no state: the next change creates it directly (``If-None-Match: *``).
ABSENT = Stored(b"", "")

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
    fence: int = 0  # the fence epoch stored

    async def copy(self) -> State:
        """A deep copy of ``state``: decoded from the stored JSON (the cheapest deep copy; in a thread if large)."""
        return await _decode(self.key, self.plain)

    def own(self) -> State:
        """What a batch of one gives its caller: the state it built, or the error that refused the change."""
        error = self.refused.get(0)
        if error is not None:
            raise error
        return self.state


async def _decode(skey: StateKey, plain: bytes) -> State:
    """``decode``, in a worker thread for large states."""
    if len(plain) < OFFLOAD_BYTES:
        return decode(plain, skey)
    return await offload(True, decode, plain, skey)


def _same_version(a: Seen, b: Seen) -> bool:
    """Whether two sightings of a stored object are the same version (ETags name one write each)."""
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and a.etag is not None and b.etag is not None and same_etag(a.etag, b.etag)


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


def _nothing_to_write(current: Seen, draft: Draft, plain: bytes) -> bool:
    """Whether the pass leaves the stored object as it is (no change applied, or the same JSON and encoding)."""
    if draft.acquired:
        return False
    if not draft.applied:  # every change failed (or needed a readable state)
        return True
    if current is None:
        return not draft.state
    return isinstance(current, Stored) and plain == current.plain and not current.reseal


#: The words the service statestore replaces used for a failed read or write, kept for log alerts (decision 0060).
_PHRASES = {
    "get": "Failed to extract state: ",
    "get_version": "Failed to extract state: ",
    "put": "Failed to store state: ",
}

_ENTRY_OVERHEAD = 256  # bytes a cache entry costs beyond its JSON and ETag (objects, key, links)


def _weigh(stored: Stored) -> int:
    """What a cache entry holds in memory, roughly: its JSON, its ETag, and the objects around them."""
    return len(stored.plain) + len(stored.etag) + _ENTRY_OVERHEAD


class CompareAndSwap:
    """Conditional writes of changes to states on one backend, and the (plain, ETag, record) last seen per state."""

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

    # -- reading ------------------------------------------------------------------------

    async def read_state(self, skey: StateKey) -> State:
        """The stored state (``{}`` if there is none), always read from the backend; remembers what it read."""
        return (await self.read_versioned(skey))[0]

    async def read_versioned(self, skey: StateKey) -> tuple[State, str | None]:
        """``read_state`` and the version (ETag) read with it; None if there is no state.

        What it read is remembered, an absence too: the next change to a state found missing creates it with
        one conditional PUT, and one to a state found unchanged replaces it with one.
        """
        current = await self._read(skey)
        if current is None:
            self._cache.put(skey.object_key, ABSENT)
            return {}, None
        if isinstance(current, Unreadable):
            raise current.error
        state = await _decode(skey, current.plain)
        if not current.reseal:
            self._cache.put(skey.object_key, current)
        return state, current.etag

    async def read_fence(self, skey: StateKey) -> int:
        """The state's fence epoch, read now (0: none was acquired, or no state); an unreadable state raises."""
        current = await self._read(skey)
        if isinstance(current, Unreadable):
            raise current.error
        return 0 if current is None else current.record.fence

    async def outdated(self, skey: StateKey) -> bool:
        """Whether the codec says the stored form of this state is outdated, read afresh.

        Raises the error of an unreadable object. An outdated state is remembered, so that applying ``RESEAL``
        next writes it anew without reading it again.
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

    async def _read(self, skey: StateKey) -> Seen:
        """The stored object, read now; a version the cache holds is asked for conditionally (no body if unchanged)."""
        cached = self._cache.get(skey.object_key)
        try:
            obj = await self._get(skey, None if cached is None or cached is ABSENT else cached.etag)
        except StoredStateTooLargeError as exc:
            self._cache.discard(skey.object_key)
            return Unreadable(
                exc.etag, StoredStateTooLargeError(exc.key, exc.size, exc.limit, exc.etag, what=str(skey))
            )
        if isinstance(obj, NotModified):
            if cached is None or cached is ABSENT or not same_etag(obj.etag, cached.etag):
                raise BackendError(
                    f"Failed to extract state: get of {skey} answered 'not modified' for a version it was not "
                    "asked about"
                )
            return cached
        if obj is None:
            self._cache.discard(skey.object_key)
            return None
        return await offload(len(obj.data) >= OFFLOAD_BYTES, self._open, skey, obj)

    async def _get(self, skey: StateKey, if_none_match: str | None = None) -> Versioned | NotModified | None:
        """One read of the stored object; over ``read_limit``: ``StoredStateTooLargeError``, before reading it."""
        limit = read_limit(self.max_state_bytes)
        return await self._call(
            skey, "get", self.backend.get(skey.object_key, if_none_match=if_none_match, max_bytes=limit)
        )

    def _open(self, skey: StateKey, obj: Versioned) -> Stored | Unreadable:
        """What the codec makes of stored bytes: the state's JSON and its write record, or why it cannot."""
        limit = read_limit(self.max_state_bytes)
        if len(obj.data) > limit:  # a backend that read it whole anyway
            return Unreadable(
                obj.etag, StoredStateTooLargeError(skey.object_key, len(obj.data), limit, obj.etag, what=str(skey))
            )
        try:
            opened = self.codec.open(skey, obj.data)
            plain, record = detach(opened.plain)
        except CorruptStateError as exc:
            return Unreadable(obj.etag, exc)
        return Stored(plain, obj.etag, record, opened.reseal)

    async def _call(self, skey: StateKey, op: str, call: Awaitable[T]) -> T:
        """Await a backend call; anything but our own errors becomes ``BackendError`` (its type named, not its text)."""
        try:
            return await call
        except StateStoreError:
            raise
        except Exception as exc:
            raise BackendError(f"{_PHRASES.get(op, '')}{op} of {skey} failed ({exc.__class__.__name__})") from exc

    # -- writing ------------------------------------------------------------------------

    async def apply(self, skey: StateKey, changes: Sequence[Change], expected: Expected | None = None) -> Outcome:
        """Apply ``changes`` in order and store the result, retrying on conflict.

        An outcome that writes nothing (no change, or every change failed) is returned only once the backend
        confirms the state it was computed from: a cached state may be stale, and a successful conditional write
        is what confirms it otherwise.

        With ``expected`` (a versioned change: ``PutMode.CREATE`` or ``PutMode.update(version)``) the changes
        apply only to that version, written with that precondition; finding or meeting another version raises
        ``VersionConflictError`` (``StateExistsError`` for ``CREATE``) at once, never a retry. ``CREATE`` stores
        even an empty state.
        """
        object_key = skey.object_key
        budget: RetryBudget | None = None  # made on the first conflict: most writes have none
        cached = self._cache.get(object_key)
        current: Seen = None if cached is ABSENT else cached
        basis = Basis.UNREAD if cached is None else Basis.CACHE
        if expected is not None and not _allows(expected, current):
            basis = Basis.UNREAD  # the cache may be stale: only the backend can say the version is gone
        while True:
            if basis is Basis.UNREAD:
                current, basis = await self._read(skey), Basis.BACKEND
            if expected is not None and not _allows(expected, current):
                raise _conflict_error(skey, expected, _etag(current), unknown=_unknown(current))
            draft, refused, plain = await self._pass(skey, current, changes)
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
                return Outcome(skey, draft.state or {}, plain, refused, draft.fence)
            rev = new_rev()
            stored = attach(plain, rev, draft.fence)
            if len(stored) < OFFLOAD_BYTES:
                sealed = self.codec.seal(skey, stored)
            else:
                sealed = await in_worker(self.codec.seal, skey, stored)
            mode: PutMode = PutMode.CREATE
            if current is not None:  # a state too large to read, of unknown version: a Replace overwrites it
                mode = PutMode.OVERWRITE if current.etag is None else PutUpdate(current.etag)
            if expected is not None:
                mode = expected
            try:
                etag = (await self._call(skey, "put", self.backend.put(object_key, sealed, mode))).etag
            except PreconditionFailed as conflict:
                self._cache.discard(object_key)
                if expected is not None:  # the caller asked for that version: never retried
                    raise await self._version_conflict(skey, expected, conflict) from None
                if budget is None:
                    budget = self.retry.start()
                retry_at_once = conflict.current_known and budget.tries == 1  # it said what it holds now
                if not await budget.backoff(sleep=not retry_at_once):
                    raise ConflictError(
                        f"{skey}: gave up after {budget.tries} attempts; other writers kept changing it"
                    ) from None
                logger.debug("conflict on %s, attempt %d", skey, budget.tries)
                operation.note_conflict()
                if retry_at_once and conflict.current is not None:
                    large = len(conflict.current.data) >= OFFLOAD_BYTES
                    current, basis = await offload(large, self._open, skey, conflict.current), Basis.BACKEND
                elif retry_at_once:
                    current, basis = None, Basis.BACKEND
                else:
                    basis = Basis.UNREAD
                continue
            except BaseException:
                self._cache.discard(object_key)
                raise
            self._cache.put(object_key, Stored(plain, etag, Record(rev, draft.fence)))
            return Outcome(skey, draft.current(), plain, refused, draft.fence)

    async def _pass(
        self, skey: StateKey, current: Seen, changes: Sequence[Change]
    ) -> tuple[Draft, dict[int, BaseException], bytes]:
        """Apply ``changes`` to the current state and encode the result: the draft, the refused changes, the JSON.

        The combined state is encoded once. Only if that fails, or it is over the size limit, are the changes
        applied again, one by one (``ExactDraft``), to refuse only the changes at fault.
        """
        base: State | Unreadable
        record: Record | None = None
        large = False
        if current is None:
            base = {}
        elif isinstance(current, Unreadable):
            base = current
        else:
            record, large = current.record, len(current.plain) >= OFFLOAD_BYTES
            try:
                base = await in_worker(decode, current.plain, skey) if large else decode(current.plain, skey)
            except CorruptStateError as exc:
                base, record = Unreadable(current.etag, exc), None
        draft = Draft(skey, self.codec, base, record, large)
        refused = await self._build(skey, draft, changes)
        if not draft.applied:
            return draft, refused, b""
        plain: bytes | None
        try:
            plain = await in_worker(draft.plain) if draft.large else draft.plain()
        except InvalidInputError:  # a value that does not encode: the exact pass finds whose
            plain = None
        if plain is not None and len(plain) <= self.max_state_bytes:
            return draft, refused, plain
        del plain
        draft = await offload(large, ExactDraft, skey, self.codec, base, record, large, self.max_state_bytes)
        refused = await self._build(skey, draft, changes)
        return draft, refused, await offload(draft.large, draft.plain) if draft.applied else b""

    async def _build(self, skey: StateKey, draft: Draft, changes: Sequence[Change]) -> dict[int, BaseException]:
        """Apply ``changes`` in order to ``draft``; a change that fails is refused and skipped."""
        refused: dict[int, BaseException] = {}
        for i, change in enumerate(changes):
            try:
                if isinstance(change, Merge):
                    if change.large:
                        await in_worker(draft.merge, change)
                    else:
                        draft.merge(change)
                elif isinstance(change, Replace):
                    await offload(change.large, draft.replace, change)
                elif isinstance(change, Acquire):
                    draft.acquire()
                else:
                    error = await self._update(skey, draft, change)
                    if error is not None:
                        refused[i] = error
            except Exception as exc:
                refused[i] = exc
        return refused

    async def _update(self, skey: StateKey, draft: Draft, change: Update) -> BaseException | None:
        """Apply an update function to a copy of the draft; whatever it raises, even a BaseException, is returned."""
        draft.check_fence(change.fence)
        copy = await offload(draft.large, copy_state, draft.current())
        try:
            result: Any = change.fn(copy)
        except BaseException as exc:  # the caller's own code: whatever it raises is that caller's alone
            return exc
        if not isinstance(result, dict):
            raise InvalidInputError(f"update function for {skey} returned {result.__class__.__name__}, not a dict")
        large = not is_small(result)
        await offload(large, accept_result, draft, result)
        draft.large = draft.large or large
        return None

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
            current = None if obj is None or isinstance(obj, NotModified) else obj.etag
        return _conflict_error(skey, expected, current)

    # -- deleting -----------------------------------------------------------------------

    async def delete(self, skey: StateKey, if_version: str | None = None, fence: Fence | None = None) -> None:
        """Remove the state; with ``if_version``, only if that version is stored (else ``VersionConflictError``).

        With ``fence``, only while that fence holds (else ``FencedError``). Both need a backend that honours a
        conditional delete; where it does not, ``ConditionalDeleteUnsupportedError`` and nothing is deleted,
        rather than a blind delete.
        """
        if if_version is None and fence is None:
            await self._call(skey, "delete", self.backend.delete(skey.object_key))
            self._cache.put(skey.object_key, ABSENT)
            return
        self._cache.discard(skey.object_key)
        supported = await self._call(skey, "probe", self.backend.supports(Capability.CONDITIONAL_DELETE))
        if not supported:
            raise ConditionalDeleteUnsupportedError(
                f"delete of {skey} with {'if_version' if fence is None else 'a fence'}: "
                f"{self.backend.describe()} does not honour a conditional delete, so it cannot be made only if "
                "unchanged; nothing was deleted"
            )
        budget: RetryBudget | None = None
        while True:
            version = if_version
            if fence is not None:
                current = await self._read(skey)
                fence.verify(skey, current.record if isinstance(current, Stored) else None)
                assert isinstance(current, Stored)  # verify refuses a missing or unreadable state
                if if_version is not None and not same_etag(current.etag, if_version):
                    raise _conflict_error(skey, PutMode.update(if_version), current.etag)
                version = current.etag
            assert version is not None
            try:
                await self._call(skey, "delete", self.backend.delete(skey.object_key, if_match=version))
            except PreconditionFailed as conflict:
                if fence is None or if_version is not None:
                    raise await self._version_conflict(skey, PutMode.update(version), conflict) from None
                budget = budget or self.retry.start()
                if not await budget.backoff():
                    raise ConflictError(f"{skey}: gave up deleting after {budget.tries} attempts") from None
                continue  # changed since read: read again, and check the fence again
            self._cache.put(skey.object_key, ABSENT)
            return

    # -- pruning ------------------------------------------------------------------------

    async def current_etag(self, skey: StateKey) -> str | None:
        """The stored object's ETag, read now (None: missing, or too large to read and not told); not opened."""
        try:
            obj = await self._get(skey)
        except StoredStateTooLargeError as exc:
            if exc.etag is None:
                logger.warning("%s is too large to read and its version is unknown: left alone", skey)
            return exc.etag
        return None if obj is None or isinstance(obj, NotModified) else obj.etag

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
        seen = await offload(len(obj.data) >= OFFLOAD_BYTES, self._open, skey, obj)
        if isinstance(seen, Unreadable):
            raise seen.error
        return await _decode(skey, seen.plain)
