"""What a server does with conditions, learnt once per backend: the If-Match form, and conditional deletes.

- ``IfMatchForm``: quoted (RFC 7232, AWS) or bare (Ceph RGW, DigitalOcean Spaces).
  ``auto`` starts quoted; the safety verification (``verify``) or a put rejected
  although the object still had the ETag it sent switches it, once.
- ``ConditionalDelete``: whether DeleteObject honours If-Match (MinIO and Ceph RGW
  ignore it): as set, or (``auto``) probed once, on first need.
- ``OnceAnswer``: one answer per backend, found by one coroutine while concurrent
  callers on any loop wait for it (the probe and the verification use it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ...errors import InvalidInputError
from ...util import forks

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: ``if_match_form`` / ``STATESTORE_S3_IF_MATCH``: how If-Match carries an ETag.
IF_MATCH_FORMS = ("auto", "quoted", "unquoted")
#: ``conditional_delete`` / ``STATESTORE_S3_CONDITIONAL_DELETE``.
CONDITIONAL_DELETE_MODES = ("auto", "true", "false")


def if_match_header(etag: str, form: str) -> str:
    """``etag`` in ``form``: ``"abc"`` (quoted) or ``abc`` (unquoted)."""
    bare = etag.strip('"')
    return bare if form == "unquoted" else f'"{bare}"'


class IfMatchForm:
    """The If-Match form the server honours: pinned (``quoted``, ``unquoted``) or learnt (``auto``)."""

    def __init__(self, setting: str) -> None:
        if setting not in IF_MATCH_FORMS:
            raise InvalidInputError(f"if_match_form must be one of {', '.join(IF_MATCH_FORMS)}, got {setting!r}")
        self.setting = setting
        self.form = "unquoted" if setting == "unquoted" else "quoted"
        self._lock = forks.lock()

    def alternative(self, rejected: str) -> str | None:
        """The form to try once after ``rejected`` failed on an unchanged object; None when pinned."""
        if self.setting != "auto":
            return None
        return "unquoted" if rejected == "quoted" else "quoted"

    def learn(self, form: str, where: str) -> None:
        """Use ``form`` from now on (the server just honoured it)."""
        with self._lock:
            if self.form != form:
                self.form = form
                logger.info("%s honours only the %s If-Match form; using it from now on", where, form)


def conditional_delete_mode(value: bool | str) -> str:
    mode = ("true" if value else "false") if isinstance(value, bool) else str(value).strip().lower()
    if mode not in CONDITIONAL_DELETE_MODES:
        raise InvalidInputError(f"conditional_delete must be auto, true or false, got {value!r}")
    return mode


class OnceAnswer(Generic[T]):
    """An answer found at most once (per success) for the life of its owner; concurrent askers wait for it.

    A finder that raises leaves the answer unknown: the next ask tries again.
    """

    def __init__(self, known: T | None = None) -> None:
        self.known: T | None = known
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lock = forks.lock()
        forks.in_child(self, OnceAnswer._forget_locks)

    def _forget_locks(self) -> None:
        self._locks = {}

    async def get(self, find: Callable[[], Awaitable[T]]) -> T:
        known = self.known
        if known is not None:
            return known
        with self._lock:
            for closed in [lp for lp in self._locks if lp.is_closed()]:
                del self._locks[closed]
            lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if self.known is None:
                answer = await find()
                with self._lock:
                    if self.known is None:
                        self.known = answer
                    self._locks.clear()
        assert self.known is not None
        return self.known
