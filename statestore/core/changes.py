"""What a change does to a state: the kinds of change, and the ``Draft`` a pass of the compare-and-swap loop builds.

Every change (``save_state``, ``save_state_object``, ``update_state``, ``replace_state``, ``acquire_fence``, a
reseal by ``reencrypt_states``) is data, applied in order to a draft of the stored state. A change that fails on
its own (a bad value, a stale fence, an update function that raised) is refused and undone; the others stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from ..codec.jsonio import Codec, check_json, encode
from ..codec.record import Fence, Record, next_epoch
from ..errors import CorruptStateError, StateTooLargeError
from ..keys.paths import StateKey

State = dict[str, Any]
UpdateFn = Callable[[State], State]


@dataclass(slots=True)
class Merge:
    """Set top-level keys to ``values``, keeping the others (``save_state``, ``save_state_object``)."""

    values: Mapping[str, Any]
    large: bool = False  # the values may encode to OFFLOAD_BYTES or more
    fence: Fence | None = None


@dataclass(slots=True)
class Replace:
    """Make ``values`` the whole state; it applies on top of a corrupt state too (``replace_state``).

    ``epoch``: the state's fence epoch becomes at least this (a fenced state copied from another store).
    """

    values: Mapping[str, Any]
    large: bool = False
    fence: Fence | None = None
    epoch: int = 0


@dataclass(slots=True)
class Update:
    """Replace the state with ``fn(a copy of it)`` (``update_state``); the result is checked when applied."""

    fn: UpdateFn
    fence: Fence | None = None


@dataclass(slots=True)
class Acquire:
    """Give the state a new fence epoch (``acquire_fence``), keeping the state itself; always written."""


Change: TypeAlias = Merge | Replace | Update | Acquire

#: Changes nothing: the loop writes it only where the codec says the stored form is outdated (``Opened.reseal``).
RESEAL = Merge({})


class Unreadable(NamedTuple):
    """A stored object that is not a readable state (the codec cannot open it, it is not a JSON object, or it is
    too large to read).

    Only a ``Replace`` may write over it; every other change fails with ``error``. ``etag`` is None for an object
    refused unread whose ETag the backend could not tell: a ``Replace`` then overwrites it unconditionally (it
    replaces whatever is stored anyway).
    """

    etag: str | None
    error: CorruptStateError


_MISSING: Any = object()


class Draft:
    """The state one pass builds, change by change; a change that fails leaves it as it was.

    It starts from a shallow copy of ``base``: changes only set top-level keys or replace the whole state (an
    update function works on a deep copy), so ``base`` itself stays as decoded and a second pass can start from
    it again. ``fence`` is the epoch the write will store: the stored one, or a new one (``Acquire``).
    """

    def __init__(
        self, skey: StateKey, codec: Codec, base: State | Unreadable, record: Record | None, large: bool = False
    ) -> None:
        self.skey = skey
        self.codec = codec
        self.state: State | None = None if isinstance(base, Unreadable) else dict(base)
        self.unreadable = base if isinstance(base, Unreadable) else None
        self.record = record  # None: nothing stored (or unreadable); a fenced change then fails
        self.fence = 0 if record is None else record.fence
        self.large = large  # the state may encode to OFFLOAD_BYTES or more: work on it goes to a thread
        self.applied = 0
        self.acquired = False

    def current(self) -> State:
        """The state so far; a change that needs it fails if the stored object is unreadable."""
        if self.state is None:
            assert self.unreadable is not None
            raise self.unreadable.error
        return self.state

    def check_fence(self, fence: Fence | None) -> None:
        """Refuse a change whose fence is not the one stored (``FencedError``); unfenced changes pass."""
        if fence is not None:
            fence.verify(self.skey, self.record)

    def merge(self, change: Merge) -> None:
        """Apply a ``Merge``: only its keys change, so undoing it is restoring them."""
        if change.fence is not None:
            self.check_fence(change.fence)
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
        self.check_fence(change.fence)
        self.accept(dict(change.values))
        self.large = self.large or change.large
        if change.epoch > self.fence:
            self.fence = change.epoch
            self.acquired = True  # the epoch changes: written even if the state does not

    def accept(self, state: State) -> None:
        """Make ``state`` (checked JSON) the whole state."""
        self.codec.check_state(self.skey, state)
        self.state = state
        self.applied += 1

    def acquire(self) -> None:
        """Take a new fence epoch (the state itself is kept; an unreadable one must be repaired first)."""
        self.current()
        self.fence = next_epoch(self.fence)
        self.acquired = True
        self.applied += 1

    def plain(self) -> bytes:
        return encode(self.current())


class ExactDraft(Draft):
    """A draft that also keeps each top-level entry's JSON, to encode and size every change on its own.

    A change then costs encoding what it sets (for an update function's result, the whole state), so the size
    limit fails exactly the changes that cross it, and a value that does not encode fails only its own change.
    Used to re-apply changes whose combined state did not encode or was over the limit.
    """

    def __init__(
        self, skey: StateKey, codec: Codec, base: State | Unreadable, record: Record | None, large: bool, limit: int
    ) -> None:
        super().__init__(skey, codec, base, record, large)
        self.limit = limit
        self.pieces = _pieces(self.state) if self.state is not None else {}
        self.total = _total(self.pieces.values())

    def merge(self, change: Merge) -> None:
        self.check_fence(change.fence)
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


def accept_result(draft: Draft, result: State) -> None:
    """Check what an update function returned (a dict, checked for its type first) and make it the draft's state."""
    check_json(result, "updated state")
    draft.codec.check(draft.skey, result)
    draft.accept(result)


def _pieces(values: Mapping[str, Any]) -> dict[str, bytes]:
    """The JSON of each entry (``"key":value``): an object's JSON is these, joined by commas, in braces."""
    return {k: encode({k: v})[1:-1] for k, v in values.items()}


def _total(pieces: Iterable[bytes]) -> int:
    return sum(len(piece) + 1 for piece in pieces)
