"""``Coalescer``: concurrent changes to one state from one event loop share one write.

Changes that wait at the same time are handed to ``apply`` together, in call
order. Each caller's await returns once a write that contains its change is
stored, with the state as of that write; a change ``apply`` refuses fails its
caller alone, and a failed write fails every caller in the batch. A caller
cancelled before its batch starts is dropped; once its batch is being written,
its change may still land (as with any request that was already sent).

A lone writer (the common case) writes from its own task, with no drain task
to hop through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..keys.paths import StateKey
from .cas import Expected, Outcome
from .changes import Change, State


class Apply(Protocol):
    """``CompareAndSwap.apply``: one pass of the compare-and-swap loop over a batch of changes."""

    def __call__(
        self, skey: StateKey, changes: Sequence[Change], expected: Expected | None = None
    ) -> Awaitable[Outcome]:
        """Apply ``changes`` in order and store the result."""


@dataclass
class _Call:
    """One caller's change, waiting for its write."""

    change: Change
    future: asyncio.Future[State]
    returns: bool  # the caller gets the state back (save_state does not)


@dataclass
class _Queue:
    """The calls for one state from one event loop, waiting for the next write, and the task that drains them."""

    calls: list[_Call] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


_Slot = tuple[asyncio.AbstractEventLoop, str]


def _raisable(error: BaseException) -> BaseException:
    """``error`` as a future can hold it: a future refuses StopIteration, which a coroutine turns into RuntimeError."""
    if isinstance(error, StopIteration):
        wrapped = RuntimeError("update function raised StopIteration")
        wrapped.__cause__ = error
        return wrapped
    return error


class Coalescer:
    """Batches concurrent changes to one state into one call of ``apply(key, changes)``."""

    def __init__(self, apply: Apply) -> None:
        self._apply = apply
        self._queues: dict[_Slot, _Queue] = {}

    async def submit(self, skey: StateKey, change: Change, returns: bool = True) -> State:
        """Apply one change; changes to the same state that wait together share one write.

        ``returns=False`` (``save_state``) says the caller drops the result, so it needs no copy of its own.
        """
        loop = asyncio.get_running_loop()
        slot = (loop, skey.object_key)
        queue = self._queues.get(slot)
        if queue is not None:  # a write of this state is on its way: join the next one
            call = _Call(change, loop.create_future(), returns)
            queue.calls.append(call)
            return await call.future
        queue = self._queues[slot] = _Queue()
        mine = _Call(change, loop.create_future(), returns)
        queue.calls.append(mine)
        try:
            await asyncio.sleep(0)  # one loop turn, so callers of the same moment join this write
        except BaseException:
            mine.future.cancel()
            self._hand_off(slot, skey, queue)
            raise
        if len(queue.calls) > 1:
            self._hand_off(slot, skey, queue)
            return await mine.future
        # Alone: write from this task. Callers that arrive meanwhile queue up and go to a drain task afterwards.
        queue.calls = []
        try:
            return await self.alone(skey, change)
        finally:
            if queue.calls:
                self._hand_off(slot, skey, queue)
            else:
                del self._queues[slot]

    async def alone(self, skey: StateKey, change: Change, expected: Expected | None = None) -> State:
        """Apply one change in a write of its own (with ``expected``, only over that version)."""
        return (await self._apply(skey, [change], expected)).own()

    def _hand_off(self, slot: _Slot, skey: StateKey, queue: _Queue) -> None:
        """Leave the waiting calls to a drain task, or drop the queue if nobody waits."""
        if any(not call.future.done() for call in queue.calls):
            queue.task = slot[0].create_task(self._drain(slot, skey, queue))
        else:
            del self._queues[slot]

    async def _drain(self, slot: _Slot, skey: StateKey, queue: _Queue) -> None:
        """Write the waiting changes batch by batch, in call order, until none are left."""
        batch: list[_Call] = []
        try:
            while queue.calls:
                batch = [call for call in queue.calls if not call.future.done()]
                queue.calls = []
                if not batch:
                    continue
                try:
                    outcome = await self._apply(skey, [call.change for call in batch])
                except Exception as exc:
                    for call in batch:
                        if not call.future.done():
                            call.future.set_exception(exc)
                    continue
                await self._deliver(batch, outcome)
        finally:  # normally nothing is left; on cancellation every waiting caller is cancelled too
            del self._queues[slot]
            for call in batch + queue.calls:
                call.future.cancel()

    async def _deliver(self, batch: list[_Call], outcome: Outcome) -> None:
        """Give each caller of a written batch its error or the state.

        The state the batch built holds every caller's values, so in a batch of several each
        caller that gets the state back gets a copy of its own; the state itself goes only to
        callers that drop it.
        """
        for i, call in enumerate(batch):
            if call.future.done():
                continue
            error = outcome.refused.get(i)
            if error is not None:
                call.future.set_exception(_raisable(error))
            elif call.returns and len(batch) > 1:
                copy = await outcome.copy()
                if not call.future.done():
                    call.future.set_result(copy)
            else:
                call.future.set_result(outcome.state)
