"""The backend protocol: a tiny, byte-oriented object store with conditional writes.

In the spirit of zarr's async ``Store`` ABC and Rust object_store's
``PutMode::Create`` / ``PutMode::Update(etag)``: a backend stores bytes under
keys, and knows nothing about JSON, state types, merging or retries.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import NamedTuple

from ..errors import StateStoreError


class Versioned(NamedTuple):
    """An object's bytes and its ETag (quoted, as S3 returns it)."""

    data: bytes
    etag: str


class PreconditionFailed(StateStoreError):
    """A conditional put or delete found another version than the one it expected.

    Whatever the backend said (S3 412, S3 409 ConditionalRequestConflict, S3 404
    on If-Match of a missing key, a local mismatch) it is this one type.
    ``Store`` turns it into a retry; users never see it. When the backend could
    see the current object at no extra cost it passes it as ``current``
    (``None`` meaning "missing") and sets ``current_known``.
    """

    def __init__(self, key: str, *, current: Versioned | None = None, current_known: bool = False) -> None:
        super().__init__(f"precondition failed for object {key!r}")
        self.key = key
        self.current = current
        self.current_known = current_known


def md5_etag(data: bytes) -> str:
    """The ETag S3 gives a single-part upload: the quoted hex MD5 of the content."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def same_etag(a: str, b: str) -> bool:
    """Compare ETags whether or not they are quoted."""
    return a.strip('"') == b.strip('"')


class ObjectBackend(ABC):
    """An object store. Every method may raise ``BackendError`` (cause chained) for I/O failures."""

    #: False where the server ignores ``if_match`` on delete (MinIO): ``Store`` must not rely on it.
    supports_conditional_delete: bool = True

    @abstractmethod
    async def get(self, key: str) -> Versioned | None:
        """The object's bytes and ETag, or None if it does not exist."""

    @abstractmethod
    async def put(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        """Store ``data`` and return its ETag.

        ``if_match``: only if the current ETag is this one. ``if_none_match``: only
        if the key does not exist. Otherwise raise ``PreconditionFailed``.
        """

    @abstractmethod
    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove the object; a missing key is not an error unless ``if_match`` is given."""

    @abstractmethod
    def list(self, prefix: str) -> AsyncIterator[str]:
        """Yield the keys that start with ``prefix``, streaming (never temp or lock files)."""

    @property
    def key_prefix(self) -> str:
        """What the backend puts before every key on the server (S3's ``prefix``); counts toward key limits."""
        return ""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections and other resources; the backend may be used again afterwards."""

    def describe(self) -> str:
        """A one-line description for logs and ``statestore config`` (never a credential)."""
        return type(self).__name__
