"""``MemoryBackend``: objects in a dict, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import NamedTuple

from ..util import forks
from .base import (
    NotModified,
    ObjectBackend,
    ObjectMeta,
    PreconditionFailed,
    PutMode,
    PutResult,
    StoredStateTooLargeError,
    Versioned,
    check_put_mode,
    md5_etag,
    same_etag,
)


class _Entry(NamedTuple):
    object: Versioned
    modified: datetime


class MemoryBackend(ObjectBackend):
    """In-process objects; safe to share between threads and event loops."""

    def __init__(self) -> None:
        self._objects: dict[str, _Entry] = {}
        self._lock = forks.lock()

    def _check(self, key: str, mode: PutMode) -> None:
        entry = self._objects.get(key)
        current = None if entry is None else entry.object
        if not mode.allows(None if current is None else current.etag):
            raise PreconditionFailed(key, current=current, current_known=True)

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            return None
        if if_none_match is not None and same_etag(entry.object.etag, if_none_match):
            return NotModified(entry.object.etag)
        if max_bytes is not None and len(entry.object.data) > max_bytes:
            raise StoredStateTooLargeError(key, len(entry.object.data), max_bytes, entry.object.etag)
        return entry.object

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        check_put_mode(mode)
        data = bytes(data)
        etag = md5_etag(data)
        with self._lock:
            self._check(key, mode)
            self._objects[key] = _Entry(Versioned(data, etag), datetime.now(UTC))
        return PutResult(etag)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        with self._lock:
            if if_match is not None:
                self._check(key, PutMode.update(if_match))
            self._objects.pop(key, None)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        with self._lock:
            found = sorted(((k, e) for k, e in self._objects.items() if k.startswith(prefix)), key=lambda item: item[0])
        for key, entry in found:
            yield ObjectMeta(key, len(entry.object.data), entry.modified, entry.object.etag)
