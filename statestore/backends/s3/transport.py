"""The S3 transport interface: the handful of S3 calls the S3 layer makes, in statestore's own terms.

A transport sends one request and reports what came back: a small typed result,
or ``S3Error``, the one error a transport raises for a failure of the request
(the server's S3 error code and HTTP status, or the kind of "no answer"). It
never retries, never classifies, never reconciles: that is the S3 semantics
layer's (``backend``), which does not know which transport it talks to.

Each transport has one table that maps its library's exceptions to ``S3Error``
(``botocore_transport``, ``obstore_transport``), as httpx maps httpcore's. A
call a transport cannot make raises ``S3ClientUnsupportedError`` before any
request: never replaced by a weaker one (a delete without its condition).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

#: The longest S3 error code kept; longer ones (no real code is) are cut.
MAX_CODE = 64


class NoAnswer(Enum):
    """Why a request got no S3 answer at all."""

    CONNECT = "cannot connect"  #: refused, unresolvable host, no route: nothing listens there
    TIMEOUT = "no answer in time"
    DROPPED = "connection dropped"  #: reset or closed mid-request
    NO_CREDENTIALS = "no credentials found"
    CONFIG = "bad client settings"  #: endpoint, region or profile the client cannot use


def clean_code(code: object) -> str:
    """A server's error code as we keep it: printable ASCII letters, digits and ``._-``, at most ``MAX_CODE``.

    Whatever else a server sends (escape sequences, markup, very long text) never reaches
    a message, a log or a terminal.
    """
    text = str(code or "")[: MAX_CODE * 2]
    kept = "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in "._-"))
    return kept[:MAX_CODE]


def quoted_etag(operation: str, etag: object) -> str:
    """A server's ETag, quoted; an answer without one (a server writing the object meanwhile) is no answer."""
    text = str(etag or "").strip('"')
    if not text:
        raise S3Error(operation, no_answer=NoAnswer.DROPPED, detail="an answer without an ETag")
    return f'"{text}"'


class S3Error(Exception):
    """A request failed: the server answered ``code`` / ``status``, or there was no answer (``no_answer``).

    The message names the operation and the code, status or kind only: never the
    server's text, a URL or a credential.
    """

    def __init__(
        self,
        operation: str,
        code: str = "",
        status: int | None = None,
        *,
        no_answer: NoAnswer | None = None,
        detail: str = "",
    ) -> None:
        self.operation = operation
        self.code = clean_code(code)
        self.status = status if isinstance(status, int) else None
        self.no_answer = no_answer
        self.detail = detail  #: our own words about a no-answer (an exception class name), never server text
        super().__init__(f"{operation}: {self.reason}")

    @property
    def reason(self) -> str:
        """The failure in a few words: ``NoSuchKey (HTTP 404)``, ``cannot connect``."""
        if self.no_answer is not None:
            return self.no_answer.value + (f" ({self.detail})" if self.detail else "")
        if self.status is None:
            return self.code or "error"
        return f"{self.code or 'error'} (HTTP {self.status})"


@dataclass(frozen=True, slots=True)
class S3Object:
    """A GetObject answer: ETag (quoted), size, the write-id history header, version id, and the body.

    ``data`` is None when the object was larger than the ``max_bytes`` asked for: its body
    was never read (``size`` is what the server announced).
    """

    etag: str
    size: int
    data: bytes | None
    writes: str = ""  #: our user metadata (``x-amz-meta-statestore-writes``), "" if none
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A conditional GetObject answered 304: the object still has the ETag sent."""

    etag: str


@dataclass(frozen=True, slots=True)
class Stored:
    """A PutObject answer: the new ETag (quoted), version id and the encryption the server confirmed."""

    etag: str
    version_id: str | None = None
    sse: str | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One ListObjectsV2 entry (full key, prefix included)."""

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ListPage:
    """One ListObjectsV2 page; ``next_token`` is None on the last one."""

    items: builtins.list[Listed]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One ListObjectVersions entry: a version or (``deleted``) a delete marker."""

    key: str
    version_id: str
    last_modified: datetime
    etag: str | None = None
    size: int = 0
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class VersionsPage:
    """One ListObjectVersions page: versions and delete markers as S3 sends them (two lists, each newest first)."""

    versions: builtins.list[VersionEntry]
    delete_markers: builtins.list[VersionEntry]
    truncated: bool = False
    next_key_marker: str | None = None
    next_version_id_marker: str | None = None

    def every_key(self) -> builtins.list[str]:
        """Every key the page answered (versions and markers)."""
        return [item.key for item in (*self.versions, *self.delete_markers)]


class ClientOptions:
    """What a transport needs to open a client (credentials stay in here, never printed)."""

    __slots__ = (
        "bucket",
        "connect_timeout",
        "credentials",
        "endpoint_url",
        "max_pool_connections",
        "profile",
        "read_timeout",
        "region",
        "sse",
    )

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str | None,
        profile: str | None,
        credentials: tuple[str | None, str | None, str | None],
        connect_timeout: float,
        read_timeout: float,
        max_pool_connections: int,
        sse: Mapping[str, str],
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.profile = profile
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_pool_connections = max_pool_connections
        self.sse = dict(sse)

    def __repr__(self) -> str:
        return f"ClientOptions(bucket={self.bucket!r})"


class Transport(Protocol):
    """The S3 calls of one bucket (fixed at construction) through one client library.

    Keys are full object keys (the backend's prefix included). ETags are sent as given
    (quoted or not: the If-Match form is the caller's choice) and returned quoted.
    Every method raises ``S3Error`` for a failed request, ``S3ClientUnsupportedError``
    for a call it cannot make (before sending anything).
    """

    #: ``aioboto3``, ``boto3`` or ``obstore``.
    name: str
    #: Whether DeleteObject can carry If-Match; whether ListObjectVersions/GetBucketVersioning can be sent.
    can_delete_conditionally: bool
    can_list_versions: bool

    async def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        version_id: str | None = None,
        max_bytes: int | None = None,
    ) -> S3Object | Unchanged: ...

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        create: bool = False,
        metadata: Mapping[str, str] | None = None,
        sse: bool = True,
    ) -> Stored: ...

    async def delete(self, key: str, *, if_match: str | None = None, version_id: str | None = None) -> str | None:
        """DeleteObject; returns the version id the server names (a delete marker's), if any."""
        ...

    async def list_page(self, prefix: str, *, max_keys: int, token: str | None = None) -> ListPage: ...

    async def list_versions_page(
        self, prefix: str, *, max_keys: int, key_marker: str | None = None, version_id_marker: str | None = None
    ) -> VersionsPage: ...

    async def bucket_versioning(self) -> str | None:
        """``Enabled``, ``Suspended`` or None (never enabled)."""
        ...

    async def head_bucket(self) -> None: ...

    async def create_bucket(self, region: str | None) -> bool:
        """CreateBucket; False if this account already owns it (idempotent)."""
        ...

    async def put_bucket_versioning(self, enabled: bool) -> None: ...

    async def close(self) -> None: ...
