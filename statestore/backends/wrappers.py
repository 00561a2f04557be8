"""Backends that wrap another backend to add one behaviour: counting requests, latency, logging.

Like zarr's ``WrapperStore``: ``WrapperBackend`` forwards every call and
property to ``inner``, and runs each ``get``, ``put`` and ``delete`` through one
hook (``_around``), so a wrapper overrides only what it changes and tests and
benchmarks compose what they need.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from .base import Capability, NotModified, ObjectBackend, ObjectMeta, ObjectVersion, PutMode, PutResult, Versioned

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WrapperBackend(ObjectBackend):
    """Forwards everything to ``inner``, capabilities included (read live, not copied)."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner = inner

    @property
    def key_prefix(self) -> str:
        return self.inner.key_prefix

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one ``get``, ``put`` or ``delete`` (``call``) of ``key``: the hook a wrapper overrides."""
        return await call()

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        return await self._around(
            "get", key, lambda: self.inner.get(key, if_none_match=if_none_match, max_bytes=max_bytes)
        )

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        return await self._around("put", key, lambda: self.inner.put(key, data, mode))

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        await self._around("delete", key, lambda: self.inner.delete(key, if_match=if_match))

    def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        return self.inner.list(prefix)

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        if type(self).list is WrapperBackend.list:  # nothing to see in the listing: the inner fast path
            return self.inner.list_keys(prefix)
        return super().list_keys(prefix)  # a wrapper that watches ``list`` sees this listing too

    async def aclose(self) -> None:
        await self.inner.aclose()

    def describe(self) -> str:
        return f"{type(self).__name__}({self.inner.describe()})"

    async def supports(self, capability: Capability) -> bool:
        return await self.inner.supports(capability)

    async def versions(self, key: str) -> builtins.list[ObjectVersion]:
        return await self.inner.versions(key)

    async def get_version(self, key: str, version_id: str) -> Versioned | None:
        return await self.inner.get_version(key, version_id)


def _outcome(op: str, result: object) -> str:
    if isinstance(result, PutResult):
        return f"ok, etag {result.etag}"
    if isinstance(result, Versioned):
        return f"found, {len(result.data)} bytes"
    if isinstance(result, NotModified):
        return "not modified"
    return "missing" if op == "get" else "ok"


class LoggingBackend(WrapperBackend):
    """Logs every call at DEBUG: operation, key (or prefix), outcome and duration; never the data.

    A listing is logged when it ends, with the number of objects it yielded.

    Records go to ``logging.getLogger("statestore.backends.wrappers")``. A
    failed call is logged with its exception's type and re-raised unchanged.
    """

    async def _around(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if not logger.isEnabledFor(logging.DEBUG):
            return await call()
        start = time.perf_counter()
        try:
            result = await call()
        except BaseException as exc:
            self._log(op, key, f"failed: {type(exc).__name__}", start)
            raise
        self._log(op, key, _outcome(op, result), start)
        return result

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        start = time.perf_counter()
        listed = 0
        try:
            async for meta in self.inner.list(prefix):
                listed += 1
                yield meta
        except GeneratorExit:  # the caller stopped early
            self._log("list", prefix, f"closed after {listed} objects", start)
            raise
        except BaseException as exc:
            self._log("list", prefix, f"failed after {listed} objects: {type(exc).__name__}", start)
            raise
        self._log("list", prefix, f"{listed} objects", start)

    def _log(self, op: str, key: str, outcome: str, start: float) -> None:
        ms = (time.perf_counter() - start) * 1000
        logger.debug("%s %s %r: %s in %.1f ms", self.inner.describe(), op, key, outcome, ms)
