"""Backends that wrap another backend to add behaviour: counting requests, adding latency.

Like zarr's ``LatencyStore`` / ``LoggingStore``: each wrapper forwards to
``inner`` and adds one thing, so tests and benchmarks compose what they need.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

from .base import ObjectBackend, ObjectMeta, PutMode, PutResult, Versioned


class WrapperBackend(ObjectBackend):
    """Forwards every call to ``inner``; subclasses override what they change."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner = inner
        self.supports_conditional_delete = inner.supports_conditional_delete

    @property
    def key_prefix(self) -> str:
        return self.inner.key_prefix

    async def get(self, key: str) -> Versioned | None:
        return await self.inner.get(key)

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        return await self.inner.put(key, data, mode)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        await self.inner.delete(key, if_match=if_match)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async for key in self.inner.list(prefix):
            yield key

    async def aclose(self) -> None:
        await self.inner.aclose()

    def describe(self) -> str:
        return f"{type(self).__name__}({self.inner.describe()})"


class CountingBackend(WrapperBackend):
    """Counts calls by operation (``get``, ``put``, ``delete``, ``list``) in ``counts``.

    A call is counted when it is made, whether it then succeeds or fails.
    """

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.counts: Counter[str] = Counter()

    def reset(self) -> None:
        self.counts.clear()

    async def get(self, key: str) -> Versioned | None:
        self.counts["get"] += 1
        return await super().get(key)

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        self.counts["put"] += 1
        return await super().put(key, data, mode)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.counts["delete"] += 1
        await super().delete(key, if_match=if_match)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        self.counts["list"] += 1
        async for key in super().list(prefix):
            yield key


class LatencyBackend(WrapperBackend):
    """Sleeps ``seconds`` before every call, to model a remote store in tests and benchmarks."""

    def __init__(self, inner: ObjectBackend, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds

    async def get(self, key: str) -> Versioned | None:
        await asyncio.sleep(self.seconds)
        return await super().get(key)

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        await asyncio.sleep(self.seconds)
        return await super().put(key, data, mode)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        await asyncio.sleep(self.seconds)
        await super().delete(key, if_match=if_match)
