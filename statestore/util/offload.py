"""Work on large states runs in a worker thread, so the event loop keeps running.

Work on states (and values) of ``OFFLOAD_BYTES`` and more -- decode, copy,
check, encode, seal -- goes to a worker thread: parsing 1 MiB of JSON takes
about 2-10 ms, and many of those back to back would stall the event loop.
Below it, a thread hop costs more than the work.

That thread is one per process, shared by every store and event loop, not
asyncio's default executor: the work holds the GIL (orjson, the JSON checks),
so more threads would not run it faster, and each thread that allocates large
buffers gets a malloc arena of its own (glibc) that keeps the freed buffers
of 1 MB states, growing memory well past the cache bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from ..errors import InvalidInputError
from . import forks

T = TypeVar("T")
P = ParamSpec("P")

OFFLOAD_BYTES = 64 * 1024


def is_small(value: Any) -> bool:
    """Whether ``value`` surely encodes to less than about ``OFFLOAD_BYTES``; stops once it has seen that much."""
    cls = value.__class__
    if cls is int or cls is float or cls is bool or value is None:  # the common lone value, without the walk
        return True
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


_worker: tuple[int, ThreadPoolExecutor] | None = None
_worker_lock = forks.lock()


def executor() -> ThreadPoolExecutor:
    """The process's thread for work on large states (made anew in a forked child: the parent's thread is not there)."""
    global _worker
    current = _worker
    pid = os.getpid()
    if current is not None and current[0] == pid:
        return current[1]
    with _worker_lock:
        if _worker is None or _worker[0] != pid:
            _worker = (pid, ThreadPoolExecutor(max_workers=1, thread_name_prefix="statestore-offload"))
        return _worker[1]


async def in_worker(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the worker thread, in a copy of this context (as ``asyncio.to_thread``)."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(), call)


async def offload(large: bool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``: in the worker thread if ``large``, else right here."""
    if large:
        return await in_worker(fn, *args, **kwargs)
    return fn(*args, **kwargs)


async def run_check(value: Any, check: Callable[[], None]) -> bool:
    """Run ``check`` on ``value`` (in a thread if it is large); returns whether it was large."""
    large = not is_small(value)
    await offload(large, check)
    return large


def check_concurrency(concurrency: object) -> int:
    """``concurrency`` if it is an integer of at least 1 (a bool is not), else ``InvalidInputError``.

    The one check of the ``concurrency`` argument of every bulk call, made before any I/O.
    """
    if concurrency.__class__ is not int or concurrency < 1:
        raise InvalidInputError(f"concurrency must be an integer of at least 1, not {concurrency!r}")
    return concurrency


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
