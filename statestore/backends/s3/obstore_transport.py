"""The obstore transport: Rust's object_store, no botocore.

It makes the calls object_store can make -- GetObject (If-None-Match), PutObject
(If-Match in either form, If-None-Match: *, user metadata), an unconditional
DeleteObject, ListObjectsV2 -- and refuses the rest (``S3ClientUnsupportedError``,
before any request). ``map_error`` maps obstore's typed exceptions to ``S3Error`` by
class. object_store's own retries are off: the S3 layer owns the retry loop.

Two things object_store's classes do not say, and how they are found out:

- A 404 is ``FileNotFoundError`` whether the key or the bucket is missing. The first
  404 before any request succeeded lists the bucket once: a missing bucket answers
  404 to that too (``NoSuchBucket``); after one success the bucket is known to exist.
- ``GenericError`` is object_store's fallback class (no S3 answer, or a status it has
  no class for: 5xx, 429, 400, 301). It carries no fields, only object_store's text;
  the transport reads two things object_store itself writes there -- its HTTP error
  kind (``kind: Connect``/``kind: Timeout``) and the status it reports -- and never
  the server's words (no error code, no body). See docs/decisions/0050.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NoReturn

from ...errors import S3ClientUnsupportedError
from .transport import (
    ClientOptions,
    Listed,
    ListPage,
    NoAnswer,
    S3Error,
    S3Object,
    Stored,
    Unchanged,
    VersionsPage,
    quoted_etag,
)

WRITES_METADATA = "statestore-writes"

#: Whether this process, or the parent it was forked from, opened an obstore client (so started its Rust runtime).
_runtime_started = False
#: Whether this process was forked from one whose obstore runtime had started: its threads were not copied.
_runtime_lost = False


def _after_fork_in_child() -> None:
    global _runtime_lost
    _runtime_lost = _runtime_lost or _runtime_started


os.register_at_fork(after_in_child=_after_fork_in_child)

_SETTLE_SECONDS = 0.01  # lets object_store's runtime close the dropped pool's connections
_table: tuple[tuple[type[BaseException], str, int], ...] | None = None


def _error_table() -> tuple[tuple[type[BaseException], str, int], ...]:
    """obstore's exception classes -> (S3 code, HTTP status) they stand for; most specific first."""
    global _table
    if _table is None:
        from obstore import exceptions as e

        _table = (
            (e.PreconditionError, "PreconditionFailed", 412),
            (e.AlreadyExistsError, "AlreadyExists", 409),  # a refused create (412) or a conflict (409)
            (e.NotModifiedError, "NotModified", 304),
            (e.PermissionDeniedError, "AccessDenied", 403),
            (PermissionError, "AccessDenied", 403),
            (e.UnauthenticatedError, "Unauthenticated", 401),
            (e.NotFoundError, "NoSuchKey", 404),
            (FileNotFoundError, "NoSuchKey", 404),
            (e.InvalidPathError, "InvalidPath", 400),
        )
    return _table


def _generic(operation: str, text: str) -> S3Error:
    """object_store's fallback error: its reported status, else the kind of its HTTP error (its own words only)."""
    marker = "status code: "  # object_store: "Server returned non-2xx status code: 503 Service Unavailable"
    at = text.find(marker)
    digits = text[at + len(marker) : at + len(marker) + 3] if at >= 0 else ""
    if len(digits) == 3 and digits.isdigit():
        return S3Error(operation, "", int(digits))
    for field, kind in (("kind: Timeout", NoAnswer.TIMEOUT), ("kind: Connect", NoAnswer.CONNECT)):
        if field in text:
            return S3Error(operation, no_answer=kind)
    return S3Error(operation, no_answer=NoAnswer.DROPPED)


def map_error(operation: str, exc: BaseException) -> S3Error | None:
    """The ``S3Error`` for an obstore failure of ``operation``, by class; None if it is not obstore's."""
    from obstore import exceptions as e

    for cls, code, status in _error_table():
        if isinstance(exc, cls):
            return S3Error(operation, code, status)
    if isinstance(exc, e.UnknownConfigurationKeyError):
        return S3Error(operation, no_answer=NoAnswer.CONFIG, detail="UnknownConfigurationKeyError")
    if isinstance(exc, e.GenericError):
        return _generic(operation, str(exc))
    if isinstance(exc, e.BaseError):
        return S3Error(operation, no_answer=NoAnswer.DROPPED, detail=type(exc).__name__)
    return None


def _unsupported(operation: str, what: str) -> NoReturn:
    raise S3ClientUnsupportedError(
        f"the obstore S3 transport cannot do {operation} with {what}; "
        "use the aioboto3 transport for it (STATESTORE_S3_CLIENT=aioboto3)"
    )


class ObstoreTransport:
    """The S3 calls on one obstore ``S3Store`` (the bucket is fixed at construction)."""

    name = "obstore"
    can_delete_conditionally = False  #: object_store sends no If-Match on DeleteObject
    can_list_versions = False

    def __init__(self, store: Any) -> None:
        import obstore

        self._obstore = obstore
        self._store: Any = store
        self._bucket_seen = False

    async def _failed(self, operation: str, exc: Exception) -> S3Error | None:
        mapped = map_error(operation, exc)
        if mapped is not None and mapped.status == 404 and not self._bucket_seen and not await self._bucket_exists():
            return S3Error(operation, "NoSuchBucket", 404)
        return mapped

    async def _bucket_exists(self) -> bool:
        """One listing of at most one key: a missing bucket answers it 404 too."""
        try:
            async for _ in self._obstore.list(self._store, None, chunk_size=1):
                break
        except Exception as exc:  # a listing answers 404 only for a missing bucket
            mapped = map_error("ListObjectsV2", exc)
            return mapped is None or mapped.status != 404  # cannot tell: take the 404 as the key's
        self._bucket_seen = True
        return True

    async def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        version_id: str | None = None,
        max_bytes: int | None = None,
    ) -> S3Object | Unchanged:
        if version_id is not None:
            _unsupported("GetObject", "VersionId")
        options = {"if_none_match": if_none_match} if if_none_match else None
        try:
            result = await self._obstore.get_async(self._store, key, options=options)  # type: ignore[arg-type]
            meta = result.meta
            size = int(meta["size"])
            data = None if max_bytes is not None and size > max_bytes else bytes(await result.bytes_async())
        except Exception as exc:
            mapped = await self._failed("GetObject", exc)
            if mapped is None:
                raise
            if mapped.status == 304 and if_none_match is not None:
                return Unchanged(if_none_match if if_none_match.startswith('"') else f'"{if_none_match}"')
            raise mapped from None
        self._bucket_seen = True
        if data is not None and max_bytes is not None and len(data) > max_bytes:
            size, data = len(data), None
        etag = quoted_etag("GetObject", meta.get("e_tag"))
        writes = "" if data is None else str(result.attributes.get(WRITES_METADATA, ""))
        return S3Object(etag, size, data, writes, meta.get("version"))

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        create: bool = False,
        metadata: Mapping[str, str] | None = None,
        sse: bool = True,
    ) -> Stored:
        mode: Any = {"e_tag": if_match} if if_match is not None else "create" if create else "overwrite"
        try:
            attributes = (metadata if isinstance(metadata, dict) else dict(metadata)) if metadata else None
            result = await self._obstore.put_async(
                self._store, key, body, mode=mode, attributes=attributes, use_multipart=False
            )
        except Exception as exc:
            mapped = await self._failed("PutObject", exc)
            if mapped is None:
                raise
            raise mapped from None
        self._bucket_seen = True
        return Stored(quoted_etag("PutObject", result.get("e_tag")), result.get("version"))

    async def delete(self, key: str, *, if_match: str | None = None, version_id: str | None = None) -> str | None:
        if if_match is not None:  # never dropped: that would turn a safe delete into an unsafe one
            _unsupported("DeleteObject", "IfMatch")
        if version_id is not None:
            _unsupported("DeleteObject", "VersionId")
        try:
            await self._obstore.delete_async(self._store, key)
        except Exception as exc:
            mapped = await self._failed("DeleteObject", exc)
            if mapped is None:
                raise
            raise mapped from None
        return None

    async def list_page(self, prefix: str, *, max_keys: int, token: str | None = None) -> ListPage:
        """One page of S3's string-prefix listing on object_store's by-segment listing.

        A prefix that ends inside a segment is listed from its parent and filtered; the
        continuation token is the last key returned (object_store's ``offset``, S3's
        ``start-after``). A key outside the parent asked of the server (which ignored the
        prefix) is handed on, not filtered away: the S3 layer refuses such a listing.
        """
        parent = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        asked = parent + "/" if parent else ""  # what object_store sends as the prefix
        offset = token
        if offset is None and len(prefix) > len(parent) + 2:
            offset = prefix[:-1]  # start-after is exclusive: every key under ``prefix`` sorts after it
        items: list[Listed] = []
        truncated = False
        try:
            async for chunk in self._obstore.list(self._store, parent or None, offset=offset, chunk_size=max_keys):
                for meta in chunk:
                    key = meta["path"]
                    if not key.startswith(asked):  # the server ignored the prefix: let the S3 layer see it
                        items.append(Listed(key, int(meta["size"]), meta["last_modified"]))
                        return ListPage(items)
                    if not key.startswith(prefix):
                        if key > prefix:  # sorted: nothing further can match
                            return ListPage(items)
                        continue
                    if len(items) == max_keys:
                        truncated = True
                        break
                    items.append(Listed(key, int(meta["size"]), meta["last_modified"], meta.get("e_tag")))
                if truncated:
                    break
        except Exception as exc:
            mapped = await self._failed("ListObjectsV2", exc)
            if mapped is None:
                raise
            raise mapped from None
        self._bucket_seen = True
        return ListPage(items, items[-1].key if truncated else None)

    async def list_versions_page(
        self, prefix: str, *, max_keys: int, key_marker: str | None = None, version_id_marker: str | None = None
    ) -> VersionsPage:
        _unsupported("ListObjectVersions", "any arguments")

    async def bucket_versioning(self) -> str | None:
        _unsupported("GetBucketVersioning", "any arguments")

    async def head_bucket(self) -> None:
        _unsupported("HeadBucket", "any arguments")

    async def create_bucket(self, region: str | None) -> bool:
        _unsupported("CreateBucket", "any arguments")

    async def put_bucket_versioning(self, enabled: bool) -> None:
        _unsupported("PutBucketVersioning", "any arguments")

    async def close(self) -> None:
        """Drop the store (and its connection pool) while the event loop still runs, and let its threads settle.

        A store still alive when the interpreter finalizes races object_store's runtime
        threads closing its connections, and the process can abort (SIGABRT) on exit.
        """
        if self._store is None:
            return
        self._store = None
        await asyncio.sleep(_SETTLE_SECONDS)


def _open(options: ClientOptions) -> ObstoreTransport:
    global _runtime_started
    if _runtime_lost:
        raise S3ClientUnsupportedError(
            "the obstore S3 transport cannot be used in a process forked from one that used it: obstore's "
            "runtime threads stay in the parent, so its requests would never complete; in a forked child use "
            "STATESTORE_S3_CLIENT=aioboto3, or start workers with multiprocessing's 'spawn' or 'forkserver' method"
        )
    if options.profile is not None:
        raise S3ClientUnsupportedError("the obstore S3 transport reads no AWS profiles")
    from obstore.store import S3Store

    _runtime_started = True
    config: dict[str, Any] = {}
    if options.endpoint_url:
        config["endpoint"] = options.endpoint_url
        config["virtual_hosted_style_request"] = False
    if options.region:
        config["region"] = options.region
    key_id, secret, token = options.credentials
    if key_id is not None and secret is not None:
        config["access_key_id"] = key_id
        config["secret_access_key"] = secret
        if token is not None:
            config["session_token"] = token
    if "ServerSideEncryption" in options.sse:
        config["server_side_encryption"] = options.sse["ServerSideEncryption"]
        if "SSEKMSKeyId" in options.sse:
            config["sse_kms_key_id"] = options.sse["SSEKMSKeyId"]
    client_options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=options.connect_timeout),
        "read_timeout": timedelta(seconds=options.read_timeout),
        "pool_max_idle_per_host": str(options.max_pool_connections),
        "allow_http": bool(options.endpoint_url and options.endpoint_url.startswith("http://")),
    }
    retry = {"max_retries": 0, "retry_timeout": timedelta(seconds=options.connect_timeout + options.read_timeout)}
    store = S3Store(
        options.bucket,
        config=config,  # type: ignore[arg-type]
        client_options=client_options,  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
    )
    return ObstoreTransport(store)


async def open_obstore(options: ClientOptions) -> ObstoreTransport:
    """An ``ObstoreTransport``; obstore is imported and the store built in a worker thread (off the event loop)."""
    try:
        return await asyncio.to_thread(_open, options)
    except S3ClientUnsupportedError:
        raise
    except Exception as exc:
        mapped = map_error("open", exc) if not isinstance(exc, ImportError) else None
        raise (mapped or exc) from None
