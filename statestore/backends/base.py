"""The backend protocol: a tiny, byte-oriented object store with conditional writes.

In the shape of Rust object_store (``PutMode``, ``PutResult``, ``ObjectMeta``)
and zarr's async ``Store`` ABC: a backend stores bytes under keys, and knows
nothing about JSON, state types, merging or retries. The precondition of a put
is one value, so it cannot contradict itself; a listing yields each object's
metadata, not only its key.
"""

from __future__ import annotations

import builtins
import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import ClassVar, NamedTuple, final

from ..errors import InvalidInputError, PreconditionFailed, StoredStateTooLargeError, VersionsUnsupportedError

__all__ = [
    "Capability",
    "Create",
    "NotModified",
    "ObjectBackend",
    "ObjectMeta",
    "ObjectVersion",
    "Overwrite",
    "PreconditionFailed",
    "PutMode",
    "PutResult",
    "StoredStateTooLargeError",
    "Update",
    "Versioned",
    "check_put_mode",
    "md5_etag",
    "same_etag",
]


class Capability(Enum):
    """What a backend may or may not offer; ask with ``await backend.supports(capability)``."""

    #: ``delete(key, if_match=etag)`` deletes only that version, atomically (MinIO and Ceph RGW ignore the condition).
    CONDITIONAL_DELETE = "conditional delete"
    #: ``versions`` and ``get_version`` return earlier versions of an object (S3 with bucket versioning).
    VERSIONS = "versions"


class Versioned(NamedTuple):
    """An object's bytes and its ETag (quoted, as S3 returns it)."""

    data: bytes
    etag: str


class NotModified(NamedTuple):
    """The answer to ``get(key, if_none_match=etag)`` when the object still has that ETag: no bytes were sent."""

    etag: str


class PutMode:
    """The precondition of a put, one of ``PutMode.OVERWRITE``, ``PutMode.CREATE`` or ``PutMode.update(etag)``.

    Backends tell them apart with ``isinstance`` (or ``match``) on
    ``Overwrite``, ``Create`` and ``Update``; ``allows`` is the rule itself.
    """

    __slots__ = ()

    #: Write whatever is stored (no precondition).
    OVERWRITE: ClassVar[Overwrite]
    #: Write only if the key does not exist (S3 ``If-None-Match: *``).
    CREATE: ClassVar[Create]

    @staticmethod
    def update(etag: str) -> Update:
        """Write only if the object exists with this ETag (S3 ``If-Match``); quoted or not."""
        return Update(etag)

    def allows(self, current: str | None) -> bool:
        """Whether this put may replace an object whose ETag is ``current`` (None: the key is missing)."""
        raise NotImplementedError


@final
@dataclass(frozen=True, slots=True)
class Overwrite(PutMode):
    """``PutMode.OVERWRITE``: no precondition."""

    def allows(self, current: str | None) -> bool:
        return True


@final
@dataclass(frozen=True, slots=True)
class Create(PutMode):
    """``PutMode.CREATE``: only if the key does not exist."""

    def allows(self, current: str | None) -> bool:
        return current is None


@final
@dataclass(frozen=True, slots=True, init=False)
class Update(PutMode):
    """``PutMode.update(etag)``: only if the object exists and its ETag is ``etag`` (quoted or not)."""

    etag: str

    def __init__(self, etag: str) -> None:  # one call, not the dataclass's two: made for every write
        if not isinstance(etag, str) or not etag.strip('"'):
            raise InvalidInputError(f"PutMode.update needs the ETag of the version to replace, got {etag!r}")
        object.__setattr__(self, "etag", etag)

    def allows(self, current: str | None) -> bool:
        return current is not None and same_etag(current, self.etag)


PutMode.OVERWRITE = Overwrite()
PutMode.CREATE = Create()


def check_put_mode(mode: object) -> PutMode:
    """``mode`` if it is a ``PutMode``, else ``InvalidInputError`` (before any I/O)."""
    if not isinstance(mode, PutMode):
        raise InvalidInputError(
            f"the mode of a put must be PutMode.OVERWRITE, PutMode.CREATE or PutMode.update(etag), not {mode!r}"
        )
    return mode


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a put returns: the ETag of the version it stored (quoted, as S3 returns it)."""

    etag: str


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """One listed object: its key, size in bytes, last change (aware, UTC) and ETag.

    ``etag`` is None where the listing cannot know it without reading the
    object (the local backend: its ETag is the MD5 of the content).
    """

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One kept version of an object: its id, ETag, last change (aware, UTC), size, and whether it is a deletion.

    A deletion (S3's delete marker) has no content: ``etag`` is None and ``size`` 0.
    """

    version_id: str
    etag: str | None
    last_modified: datetime
    size: int
    deleted: bool = False


def md5_etag(data: bytes) -> str:
    """The ETag S3 gives a single-part upload: the quoted hex MD5 of the content."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def same_etag(a: str, b: str) -> bool:
    """Compare ETags whether or not they are quoted."""
    return a.strip('"') == b.strip('"')


class ObjectBackend(ABC):
    """An object store. Every method may raise ``BackendError`` (cause chained) for I/O failures."""

    @abstractmethod
    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        """The object's bytes and ETag, or None if it does not exist.

        With ``if_none_match`` (an ETag, quoted or not): ``NotModified`` if the object
        still has that ETag, without its bytes. A backend that cannot tell cheaply may
        return the whole ``Versioned`` instead; never ``NotModified`` for another ETag.

        With ``max_bytes``: an object larger than that raises ``StoredStateTooLargeError``
        (its ``size``, and its ``etag`` if known without reading) before its body is read,
        from the size the store tells first (``fstat``, ``Content-Length``); a body that turns
        out longer than announced is refused after at most ``max_bytes + 1`` bytes.
        """

    @abstractmethod
    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        """Store ``data`` if ``mode`` allows it, and return the new ETag; else raise ``PreconditionFailed``."""

    @abstractmethod
    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove the object; a missing key is not an error unless ``if_match`` is given."""

    @abstractmethod
    def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        """Yield the objects whose keys start with ``prefix``, streaming (never temp or lock files)."""

    @property
    def key_prefix(self) -> str:
        """What the backend puts before every key on the server (S3's ``prefix``); counts toward key limits."""
        return ""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections and other resources; the backend may be used again afterwards."""

    def describe(self) -> str:
        """A one-line description for logs and ``statestore config`` (never a credential)."""
        return type(self).__name__

    async def supports(self, capability: Capability) -> bool:
        """Whether this backend offers ``capability``, finding out if need be (S3 probes a server once).

        The one way to ask a backend what it can do. The defaults: a conditional delete is honoured
        (``delete(if_match=...)`` is atomic), and no earlier versions are kept (``versions`` and
        ``get_version`` raise ``VersionsUnsupportedError``). A backend that differs overrides this.
        """
        return capability is Capability.CONDITIONAL_DELETE

    async def versions(self, key: str) -> builtins.list[ObjectVersion]:
        """The kept versions of ``key``, newest first, deletions included (else ``VersionsUnsupportedError``).

        An optional capability: a backend that keeps versions (S3 with bucket versioning) overrides
        this and ``get_version``.
        """
        raise VersionsUnsupportedError(_no_versions(self))

    async def get_version(self, key: str, version_id: str) -> Versioned | None:
        """The bytes and ETag of one kept version of ``key``; None if there is no such version or it is a deletion."""
        raise VersionsUnsupportedError(_no_versions(self))

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """The keys ``list`` yields, for callers that need nothing else (a backend may find them cheaper)."""
        async for meta in self.list(prefix):
            yield meta.key


def _no_versions(backend: ObjectBackend) -> str:
    return (
        f"{backend.describe()} keeps no earlier versions of a state, so there is no history: the local and "
        "memory backends never do; use S3 with bucket versioning enabled (aws s3api put-bucket-versioning "
        "--bucket BUCKET --versioning-configuration Status=Enabled)"
    )
