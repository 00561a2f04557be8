"""``FaultBackend``: a wrapper that makes a share of calls fail, to prove the layers above cope.

Kinds of fault (each counted in ``counts`` as ``fault:<kind>``):

- ``error``: the call fails before reaching the inner backend (``InjectedFault``,
  a ``BackendError`` and a ``ConnectionError``): nothing happened, the caller sees an error.
- ``conflict``: a put or delete fails with ``PreconditionFailed`` without
  telling the current object, as S3's 409 ConditionalRequestConflict does.
- ``lost``: the call reaches the inner backend and succeeds, then its answer is
  lost (``InjectedFault``), as when a connection drops after the server committed.
  Only a backend that reconciles its own retries (``S3Backend``'s write ids) can
  turn this into a success; through this wrapper the caller sees an error for a
  change that landed, which is what the fault models.
- ``delay``: the call is held back ``delay`` seconds, then forwarded.

Every ``PreconditionFailed`` that passes through (injected or real) is counted
as ``conflict``; every call as its operation name. Safe to share between
threads and event loops.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from ..backends.base import ObjectBackend, ObjectMeta
from ..backends.wrappers import WrapperBackend
from ..errors import BackendError, PreconditionFailed
from ..util import forks

FAULT_KINDS = ("error", "conflict", "lost", "delay")
OPERATIONS = ("get", "put", "delete", "list")

T = TypeVar("T")


class InjectedFault(BackendError, ConnectionError):
    """A failure made up by ``FaultBackend`` to model a broken connection; a real backend never raises it.

    A ``BackendError``, as a real backend reports its I/O failures, and a
    ``ConnectionError``, as the failure it stands for.
    """


class FaultBackend(WrapperBackend):
    """Forwards to ``inner``, failing a ``rate`` share of the calls in ``ops`` with one of ``kinds``.

    ``seed`` makes the choice of calls and kinds repeatable. ``inject_next``
    queues faults for the next calls whatever the rate, for tests that need
    one fault at one place.
    """

    def __init__(
        self,
        inner: ObjectBackend,
        *,
        rate: float = 0.0,
        kinds: Iterable[str] = ("error",),
        ops: Iterable[str] = OPERATIONS,
        delay: float = 0.05,
        seed: int | None = None,
    ) -> None:
        super().__init__(inner)
        self.kinds = tuple(kinds)
        self.ops = frozenset(ops)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        if not self.kinds or any(k not in FAULT_KINDS for k in self.kinds):
            raise ValueError(f"kinds must be some of {', '.join(FAULT_KINDS)}, got {self.kinds!r}")
        if any(op not in OPERATIONS for op in self.ops):
            raise ValueError(f"ops must be some of {', '.join(OPERATIONS)}, got {sorted(self.ops)!r}")
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.rate = rate
        self.delay = delay
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._queued: deque[str] = deque()
        self._lock = forks.lock()

    def describe(self) -> str:
        return f"FaultBackend({self.inner.describe()}, rate={self.rate})"

    def inject_next(self, *kinds: str) -> None:
        """Make the next ``len(kinds)`` calls (of any operation in ``ops``) fail with these kinds, in order."""
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queued.extend(kinds)

    @property
    def faults(self) -> int:
        """How many faults were injected so far."""
        with self._lock:
            return sum(n for name, n in self.counts.items() if name.startswith("fault:"))

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def _pick(self, op: str) -> str | None:
        """Count the call and decide its fault (None: forward untouched)."""
        with self._lock:
            self.counts[op] += 1
            if op not in self.ops:
                return None
            kind: str | None = None
            if self._queued:
                kind = self._queued.popleft()
            elif self.rate and self._random.random() < self.rate:
                kind = self._random.choice(self.kinds)
            if kind == "conflict" and op not in ("put", "delete"):
                kind = "error"  # a read cannot conflict; fail it instead
            if kind is not None:
                self.counts[f"fault:{kind}"] += 1
            return kind

    async def _before(self, op: str, key: str, kind: str | None) -> None:
        if kind == "error":
            raise InjectedFault(f"injected failure of {op} {key!r}")
        if kind == "conflict":
            self._count("conflict")
            raise PreconditionFailed(key)
        if kind == "delay":
            await asyncio.sleep(self.delay)

    @staticmethod
    def _after(op: str, key: str, kind: str | None) -> None:
        if kind == "lost":
            raise InjectedFault(f"injected lost response of {op} {key!r} (the call was applied)")

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        kind = self._pick(op)
        await self._before(op, key, kind)
        try:
            result = await call()
        except PreconditionFailed:
            self._count("conflict")
            raise
        self._after(op, key, kind)
        return result

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        kind = self._pick("list")
        await self._before("list", prefix, kind)
        if kind == "lost":  # the listing is done, then its answer is lost
            async for _ in self.inner.list(prefix):
                pass
            self._after("list", prefix, kind)
        async for meta in self.inner.list(prefix):
            yield meta
