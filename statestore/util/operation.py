"""The operation in progress: how long one public call of a store may take, and what the layers below redid for it.

``Store`` runs each public call as an ``Operation`` (``enter`` ... ``leave``). The layers below never see the
store, only this: its ``deadline`` bounds every wait they make for that call (a local lock held elsewhere, an S3
retry after a transient failure), and they count what they had to do again (``note_conflict``: the
compare-and-swap loop retried; ``note_retry``: a backend request was sent again) so that telemetry can report it.
Outside any operation (a backend used on its own) there is no deadline but the caller's.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

__all__ = ["CURRENT", "Operation", "current", "enter", "leave", "note_conflict", "note_retry", "seconds_left"]


class Operation:
    """One public call: its name, the ``time.monotonic()`` by which it must end, and its conflicts and retries.

    ``recording`` belongs to telemetry: what it records of this call, while something records.
    """

    __slots__ = ("conflicts", "deadline", "name", "recording", "retries")

    def __init__(self, name: str, deadline: float) -> None:
        self.name = name
        self.deadline = deadline
        self.conflicts = 0
        self.retries = 0
        self.recording: object | None = None

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, {self.deadline - time.monotonic():.3f} s left)"


#: The operation the current task runs for (None outside any). ``enter``/``leave`` or ``CURRENT.set``/``reset``.
CURRENT: ContextVar[Operation | None] = ContextVar("statestore_operation", default=None)


def current() -> Operation | None:
    """The operation this task runs for, or None outside any."""
    return CURRENT.get()


def enter(op: Operation) -> Token[Operation | None]:
    """Make ``op`` the current operation of this task; pass the token to ``leave`` when it ends."""
    return CURRENT.set(op)


def leave(token: Token[Operation | None]) -> None:
    """End the operation ``enter`` began: the one before it is current again."""
    CURRENT.reset(token)


def seconds_left(bound: float) -> float:
    """What is left of the current operation's time, at most ``bound`` seconds (all of ``bound`` outside any)."""
    op = CURRENT.get()
    if op is None:
        return bound
    return min(bound, op.deadline - time.monotonic())


def note_conflict() -> None:
    """The compare-and-swap loop is about to try again after a failed precondition."""
    op = CURRENT.get()
    if op is not None:
        op.conflicts += 1


def note_retry() -> None:
    """A backend is about to send a request again after a transient failure."""
    op = CURRENT.get()
    if op is not None:
        op.retries += 1
