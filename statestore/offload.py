"""Work on large states runs in worker threads, so the event loop keeps running.

Work on states (and values) of ``OFFLOAD_BYTES`` and more -- decode, copy,
check, encode, seal -- goes to a worker thread: parsing 1 MiB of JSON takes
about 2-10 ms, and many of those back to back would stall the event loop.
Below it, a thread hop costs more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

OFFLOAD_BYTES = 64 * 1024


def is_small(value: Any) -> bool:
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


async def offload(large: bool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``: in a worker thread if ``large``, else right here."""
    if large:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


async def run_check(value: Any, check: Callable[[], None]) -> bool:
    """Run ``check`` on ``value`` (in a thread if it is large); returns whether it was large."""
    large = not is_small(value)
    await offload(large, check)
    return large


async def run_workers(worker: Callable[[], Coroutine[Any, Any, None]], count: int) -> None:
    """Run ``count`` copies of ``worker`` at once and wait for all; the first failure cancels the others.

    The workers usually share one iterator of items, so each item is taken once.
    """
    tasks = [asyncio.create_task(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
