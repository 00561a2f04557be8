"""Wrappers for tests and benchmarks: ``CountingBackend`` counts requests and bytes, ``LatencyBackend`` adds delay."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..backends.base import NotModified, ObjectBackend, ObjectMeta, PutMode, PutResult, Versioned
from ..backends.wrappers import WrapperBackend

T = TypeVar("T")


class CountingBackend(WrapperBackend):
    """Counts calls by operation (``get``, ``put``, ``delete``, ``list``) in ``counts``, and the bytes moved.

    A call is counted when it is made, whether it then succeeds or fails.
    ``bytes_read`` is the object bytes gets returned (a ``NotModified`` returns
    none; ``not_modified`` counts those), ``bytes_written`` the bytes of the
    puts that succeeded.
    """

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.counts: Counter[str] = Counter()
        self.bytes_read = 0
        self.bytes_written = 0
        self.not_modified = 0

    def reset(self) -> None:
        self.counts.clear()
        self.bytes_read = self.bytes_written = self.not_modified = 0

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        self.counts[op] += 1
        result = await call()
        if isinstance(result, Versioned):
            self.bytes_read += len(result.data)
        elif isinstance(result, NotModified):
            self.not_modified += 1
        return result

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        result = await super().put(key, data, mode)
        self.bytes_written += len(data)
        return result

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        self.counts["list"] += 1
        async for meta in self.inner.list(prefix):
            yield meta

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        self.counts["list"] += 1
        async for key in self.inner.list_keys(prefix):
            yield key


class LatencyBackend(WrapperBackend):
    """Sleeps ``seconds`` before every get, put and delete, to model a remote store in tests and benchmarks."""

    def __init__(self, inner: ObjectBackend, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        await asyncio.sleep(self.seconds)
        return await call()
