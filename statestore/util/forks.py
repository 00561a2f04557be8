"""What a forked child must not keep of its parent: locks other threads held, their event loops, shared descriptors.

``os.fork()`` copies every thread's memory but runs only the thread that called it. In the
child a lock another thread held stays held forever, an event loop another thread ran never
runs again (a call handed to it waits forever), and every descriptor is shared with the
parent: a lock file's ``flock`` stays held while the child keeps its copy, and closing a
connection of the parent's event loop (even by garbage collection) unregisters its socket
from the parent's own ``epoll``.

So each object that holds such things registers a reset here (``in_child``), locks are made
by ``lock()``, descriptors a child must not share are opened by ``open_fd`` (and closed by
``close_fd``), and in a forked child, before anything else runs, every such descriptor is
closed, every lock is made free and every reset runs. A reset forgets what belongs to the
parent, never uses it: ``disown_loop`` keeps the parent's loops (and what hangs on them) alive
and marks them closed, so that nothing in the child, not even its exit, acts on them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_locks: weakref.WeakSet[Any] = weakref.WeakSet()
_resets: weakref.WeakKeyDictionary[Any, list[Callable[[Any], None]]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
#: The parent's objects a child keeps but never uses: freeing them would run finalizers that act on shared descriptors.
_disowned: list[object] = []


def lock() -> threading.Lock:
    """A ``threading.Lock`` that is free in a forked child, whichever thread held it at the fork."""
    made = threading.Lock()
    with _registry_lock:
        _locks.add(made)
    return made


def in_child(obj: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(obj)`` in each forked child, first thing (locks are free by then), while ``obj`` lives."""
    with _registry_lock:
        _resets.setdefault(obj, []).append(reset)


def disown_loop(loop: asyncio.AbstractEventLoop, *keep: object) -> None:
    """In a forked child: never run, close or free ``loop`` (and ``keep``), a loop of a thread the fork did not copy.

    Marked closed (in this process only: the parent's copy is untouched), so that the
    finalizers of what uses it (an aiohttp connector's, ``asyncio``'s own) do no I/O on it,
    and kept referenced, so that they do not even run while the child lives.
    """
    if isinstance(loop, asyncio.BaseEventLoop):
        loop._closed = True  # type: ignore[attr-defined]  # is_closed() is what every finalizer asks
    _disowned.append((loop, keep))


class _Descriptors:
    """The descriptors ``open_fd`` made and ``close_fd`` has not closed yet: the ones a forked child closes at once.

    A child's copy of a descriptor shares the parent's open file: a lock file's ``flock`` (which
    belongs to the open file, not to a process) stays held until the child closes its copy, and
    a file that was replaced or deleted keeps its disk space. Closing the copy in the child
    releases neither the lock nor the file for the parent, whose own descriptor still holds
    them; the parent's close then does. Opening and closing hold ``guard``, and a fork waits for
    it, so a fork never falls between an open and its registration or between an unregistration
    and its close: the child closes every copy it has, and only those.
    """

    def __init__(self) -> None:
        self.open: set[int] = set()
        self.guard = threading.Lock()

    def before_fork(self) -> None:
        self.guard.acquire()

    def after_fork_in_parent(self) -> None:
        self.guard.release()

    def after_fork_in_child(self) -> None:
        for fd in self.open:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - registered descriptors are open
                logger.debug("closing inherited descriptor %d failed", fd, exc_info=True)
        self.open.clear()
        self.guard.release()


_descriptors = _Descriptors()


def open_fd(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    """``os.open`` for a descriptor a forked child must not keep (a lock file's, a file held open): closed there.

    Close it with ``close_fd``. Pass ``O_CLOEXEC`` too, for children that exec.
    """
    with _descriptors.guard:
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
        _descriptors.open.add(fd)
    return fd


def close_fd(fd: int) -> None:
    """Close a descriptor of ``open_fd``."""
    with _descriptors.guard:
        _descriptors.open.discard(fd)
        os.close(fd)


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for made in list(_locks):
        made._at_fork_reinit()  # what threading and logging do with their own locks
    for obj, resets in list(_resets.items()):
        for reset in resets:
            try:
                reset(obj)
            except Exception:  # one object's reset must not leave the others in the parent's state
                logger.exception("resetting %s in a forked child failed", type(obj).__name__)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_descriptors.before_fork,
        after_in_parent=_descriptors.after_fork_in_parent,
        after_in_child=_descriptors.after_fork_in_child,
    )
    os.register_at_fork(after_in_child=_after_fork_in_child)
