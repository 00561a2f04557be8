"""``MemoryBackend``: objects in a dict, for tests and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

from .base import ObjectBackend, PreconditionFailed, Versioned, md5_etag, same_etag


class MemoryBackend(ObjectBackend):
    """In-process objects; safe to share between threads and event loops."""

    def __init__(self) -> None:
        self._objects: dict[str, Versioned] = {}
        self._lock = threading.Lock()

    def _check(self, key: str, if_match: str | None, if_none_match: bool) -> None:
        current = self._objects.get(key)
        if (if_none_match and current is not None) or (
            if_match is not None and (current is None or not same_etag(current.etag, if_match))
        ):
            raise PreconditionFailed(key, current=current, current_known=True)

    async def get(self, key: str) -> Versioned | None:
        with self._lock:
            return self._objects.get(key)

    async def put(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        data = bytes(data)
        etag = md5_etag(data)
        with self._lock:
            self._check(key, if_match, if_none_match)
            self._objects[key] = Versioned(data, etag)
        return etag

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        with self._lock:
            self._check(key, if_match, False)
            self._objects.pop(key, None)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        for key in keys:
            yield key
