"""``RetryPolicy``: how often and how long to retry, with capped, fully jittered exponential backoff."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from . import operation


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: at most ``attempts`` tries within ``deadline`` seconds.

    The n-th wait is uniform in ``[0, min(max_delay, base_delay * 2**n)]``
    ("full jitter"), so competing writers spread out instead of colliding again.
    """

    # The deadline is the real bound: 10 tries (about 1 s of backoff) let one busy writer starve the
    # others of a state into ConflictError (seen with 6 threads x 50 updates on one local state).
    attempts: int = 100
    base_delay: float = 0.01
    max_delay: float = 1.0
    deadline: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.deadline) < 0:
            raise ValueError("delays and deadline must not be negative")

    def delay(self, retry: int) -> float:
        """The jittered wait before retry number ``retry`` (1 for the first retry)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (retry - 1)))

    def start(self, at: float | None = None) -> RetryBudget:
        """The budget of retries started at ``at`` (``time.monotonic()``; default: now).

        It ends ``deadline`` seconds later, or when the current operation must end (``util.operation``) if
        that is sooner: a store's deadline bounds every retry made for one of its calls.
        """
        ends_at = (time.monotonic() if at is None else at) + self.deadline
        op = operation.current()
        return RetryBudget(self, ends_at if op is None else min(ends_at, op.deadline))


@dataclass
class RetryBudget:
    """The retries left to one operation."""

    policy: RetryPolicy
    ends_at: float
    tries: int = 1

    async def backoff(self, *, sleep: bool = True) -> bool:
        """Wait before the next try; False (without waiting) when attempts or time are used up."""
        if self.tries >= self.policy.attempts:
            return False
        wait = self.policy.delay(self.tries) if sleep else 0.0
        if time.monotonic() + wait > self.ends_at:
            return False
        self.tries += 1
        if wait:
            await asyncio.sleep(wait)
        return True
