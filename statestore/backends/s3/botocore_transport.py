"""The botocore transports: aioboto3's client (``aioboto3``) and botocore's own in worker threads (``boto3``).

Both send the same requests with the same arguments, and botocore raises the
same exception classes for both, so one class serves them and ``map_error`` is
their one mapping table. The threaded form exists for moto's in-process
``mock_aws``, which hooks botocore's synchronous HTTP layer (aiobotocore does not
use it); calls into that mock are serialised, because moto checks If-Match and
then stores in two steps.

botocore (and aioboto3) are imported only when a client is opened, and that
happens in a worker thread (``open_*``): importing them and building a client
takes a few hundred milliseconds that would otherwise stall the event loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

from .transport import (
    ClientOptions,
    Listed,
    ListPage,
    NoAnswer,
    S3Error,
    S3Object,
    Stored,
    Unchanged,
    VersionEntry,
    VersionsPage,
    quoted_etag,
)

T = TypeVar("T")

#: User-metadata key (header ``x-amz-meta-statestore-writes``) holding the recent write ids.
WRITES_METADATA = "statestore-writes"

_MOCK_LOCK = threading.Lock()
_table: tuple[tuple[type[BaseException], NoAnswer], ...] | None = None
_loader: Any = None
_loader_lock = threading.Lock()


def _error_table() -> tuple[tuple[type[BaseException], NoAnswer], ...]:
    """botocore's exceptions without an S3 answer -> ``NoAnswer``, most specific first (built once)."""
    global _table
    if _table is None:
        import botocore.exceptions as b

        _table = (
            (b.NoCredentialsError, NoAnswer.NO_CREDENTIALS),
            (b.PartialCredentialsError, NoAnswer.NO_CREDENTIALS),
            (b.ProfileNotFound, NoAnswer.CONFIG),
            (b.NoRegionError, NoAnswer.CONFIG),
            (b.EndpointResolutionError, NoAnswer.CONFIG),
            (b.InvalidEndpointConfigurationError, NoAnswer.CONFIG),
            (b.InvalidRegionError, NoAnswer.CONFIG),
            (b.ConnectTimeoutError, NoAnswer.TIMEOUT),
            (b.ReadTimeoutError, NoAnswer.TIMEOUT),
            (b.EndpointConnectionError, NoAnswer.CONNECT),
            (b.ProxyConnectionError, NoAnswer.CONNECT),
            (b.ConnectionError, NoAnswer.CONNECT),
            (b.HTTPClientError, NoAnswer.DROPPED),
            (b.IncompleteReadError, NoAnswer.DROPPED),
            *_aiohttp_table(),
            (asyncio.TimeoutError, NoAnswer.TIMEOUT),
            (ConnectionRefusedError, NoAnswer.CONNECT),
            (ConnectionError, NoAnswer.DROPPED),
        )
    return _table


def _aiohttp_table() -> tuple[tuple[type[BaseException], NoAnswer], ...]:
    """aiohttp's own errors that reach us unwrapped (a body cut short while it is read), where aiohttp is used."""
    try:
        import aiohttp
    except ImportError:
        return ()
    return (
        (aiohttp.ClientConnectorError, NoAnswer.CONNECT),
        (aiohttp.ServerTimeoutError, NoAnswer.TIMEOUT),
        (aiohttp.ClientError, NoAnswer.DROPPED),  # ClientPayloadError, ServerDisconnectedError...
    )


def _client_error() -> type[BaseException]:
    from botocore.exceptions import ClientError

    return ClientError


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it (``__cause__``, ``__context__``, botocore's wrapped ``error``)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        kwargs = getattr(e, "kwargs", None)
        todo += [e.__cause__, e.__context__, kwargs.get("error") if isinstance(kwargs, dict) else None]
        todo.append(getattr(e, "os_error", None))  # aiohttp's connection errors
    return seen


def map_error(operation: str, exc: BaseException) -> S3Error | None:
    """The ``S3Error`` for a botocore (or aiohttp, asyncio) failure of ``operation``; None if it is none of theirs."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(exc, _client_error()):
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return S3Error(operation, str(error.get("Code", "")), status if isinstance(status, int) else None)
    for cls, kind in _error_table():
        if isinstance(exc, cls):
            detail = type(exc).__name__
            if kind is NoAnswer.CONNECT:
                chain = _chain(exc)
                if any(isinstance(e, socket.gaierror) for e in chain):
                    detail = "its host name does not resolve"
                elif any(isinstance(e, ConnectionRefusedError) for e in chain):
                    detail = "the connection was refused"
            return S3Error(operation, no_answer=kind, detail=detail)
    return None


def _shared_loader() -> Any:
    """The process-wide botocore data loader: it caches the parsed service models (~150 ms each parse)."""
    global _loader
    from botocore.loaders import create_loader

    with _loader_lock:
        if _loader is None:
            _loader = create_loader()
        return _loader


def _aware(moment: datetime) -> datetime:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


class BotocoreTransport:
    """The S3 calls on a botocore client: aiobotocore's (awaited) or botocore's (``threaded``, in worker threads)."""

    can_delete_conditionally = True
    can_list_versions = True

    def __init__(
        self, client: Any, bucket: str, *, sse: Mapping[str, str], threaded: bool, serialise: bool = False
    ) -> None:
        self.name = "boto3" if threaded else "aioboto3"
        self._client = client
        self._bucket = bucket
        self._sse = dict(sse)
        self._threaded = threaded
        self._serialise = serialise
        self.stack = AsyncExitStack()  #: closes the aiobotocore client (entered by ``open_aioboto3``)

    def _locked(self, fn: Callable[[], T]) -> T:
        if not self._serialise:
            return fn()
        with _MOCK_LOCK:
            return fn()

    async def _send(self, operation: str, method: str, args: dict[str, Any]) -> Any:
        try:
            if self._threaded:
                bound = getattr(self._client, method)
                return await asyncio.to_thread(self._locked, lambda: bound(**args))
            return await getattr(self._client, method)(**args)
        except Exception as exc:
            mapped = map_error(operation, exc)
            if mapped is None:
                raise
            raise mapped from None  # botocore's message holds the server's text: never passed on

    async def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        version_id: str | None = None,
        max_bytes: int | None = None,
    ) -> S3Object | Unchanged:
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if if_none_match is not None:
            args["IfNoneMatch"] = if_none_match
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            if self._threaded:
                return await asyncio.to_thread(self._locked, lambda: self._get_sync(args, max_bytes))
            response = await self._client.get_object(**args)
            body = response["Body"]
            size = int(response.get("ContentLength") or 0)
            async with body:
                if max_bytes is not None and size > max_bytes:
                    data = None  # never read: closing the body drops the connection's rest
                elif max_bytes is not None:  # a body longer than announced: refused after max_bytes + 1
                    buffer = bytearray()
                    while len(buffer) <= max_bytes and (chunk := await body.read(max_bytes + 1 - len(buffer))):
                        buffer += chunk
                    data = bytes(buffer)
                else:
                    data = await body.read()
            return self._object(response, size, data, max_bytes)
        except Exception as exc:
            mapped = map_error("GetObject", exc)
            if mapped is None:
                raise
            if mapped.status == 304 and if_none_match is not None:
                return Unchanged(_quoted(if_none_match))
            raise mapped from None

    def _get_sync(self, args: dict[str, Any], max_bytes: int | None) -> S3Object:
        response = self._client.get_object(**args)
        body = response["Body"]
        size = int(response.get("ContentLength") or 0)
        try:
            if max_bytes is not None and size > max_bytes:
                data = None
            elif max_bytes is not None:
                buffer = bytearray()
                while len(buffer) <= max_bytes and (chunk := body.read(max_bytes + 1 - len(buffer))):
                    buffer += chunk
                data = bytes(buffer)
            else:
                data = body.read()
        finally:
            body.close()
        return self._object(response, size, data, max_bytes)

    @staticmethod
    def _object(response: Any, size: int, data: bytes | None, max_bytes: int | None) -> S3Object:
        if data is not None and max_bytes is not None and len(data) > max_bytes:
            size, data = max(size, len(data)), None  # longer than announced
        metadata = response.get("Metadata") or {}
        return S3Object(
            quoted_etag("GetObject", response.get("ETag")),
            size if data is None else len(data),
            data,
            metadata.get(WRITES_METADATA, ""),
            response.get("VersionId"),
        )

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
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "Body": body}
        if metadata:
            args["Metadata"] = metadata
        if if_match is not None:
            args["IfMatch"] = if_match
        elif create:
            args["IfNoneMatch"] = "*"
        if sse and self._sse:
            args.update(self._sse)
        response = await self._send("PutObject", "put_object", args)
        etag = quoted_etag("PutObject", response.get("ETag"))
        return Stored(etag, response.get("VersionId"), response.get("ServerSideEncryption"))

    async def delete(self, key: str, *, if_match: str | None = None, version_id: str | None = None) -> str | None:
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if if_match is not None:
            args["IfMatch"] = if_match
        if version_id is not None:
            args["VersionId"] = version_id
        response = await self._send("DeleteObject", "delete_object", args)
        version = response.get("VersionId")
        return str(version) if version else None

    async def list_page(self, prefix: str, *, max_keys: int, token: str | None = None) -> ListPage:
        args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if token is not None:
            args["ContinuationToken"] = token
        page = await self._send("ListObjectsV2", "list_objects_v2", args)
        items = [
            Listed(item["Key"], int(item.get("Size", 0)), _aware(item["LastModified"]), item.get("ETag"))
            for item in page.get("Contents", [])
        ]
        following = page.get("NextContinuationToken")
        return ListPage(items, following if page.get("IsTruncated") and following else None)

    async def list_versions_page(
        self, prefix: str, *, max_keys: int, key_marker: str | None = None, version_id_marker: str | None = None
    ) -> VersionsPage:
        args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if key_marker is not None:
            args["KeyMarker"] = key_marker
        if version_id_marker is not None:
            args["VersionIdMarker"] = version_id_marker
        page = await self._send("ListObjectVersions", "list_object_versions", args)

        def entry(item: Any, deleted: bool) -> VersionEntry:
            etag = item.get("ETag")
            return VersionEntry(
                item["Key"],
                str(item["VersionId"]),
                _aware(item["LastModified"]),
                _quoted(etag) if etag and not deleted else None,
                0 if deleted else int(item.get("Size", 0)),
                deleted,
            )

        return VersionsPage(
            [entry(item, False) for item in page.get("Versions", [])],
            [entry(item, True) for item in page.get("DeleteMarkers", [])],
            bool(page.get("IsTruncated")),
            page.get("NextKeyMarker") or None,
            page.get("NextVersionIdMarker") or None,
        )

    async def bucket_versioning(self) -> str | None:
        response = await self._send("GetBucketVersioning", "get_bucket_versioning", {"Bucket": self._bucket})
        status = response.get("Status")
        return str(status) if status else None

    async def head_bucket(self) -> None:
        await self._send("HeadBucket", "head_bucket", {"Bucket": self._bucket})

    async def create_bucket(self, region: str | None) -> bool:
        args: dict[str, Any] = {"Bucket": self._bucket}
        region = region or getattr(getattr(self._client, "meta", None), "region_name", None)
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._send("CreateBucket", "create_bucket", args)
        except S3Error as exc:
            if exc.code in ("BucketAlreadyOwnedByYou",):
                return False
            raise
        return True

    async def put_bucket_versioning(self, enabled: bool) -> None:
        status = "Enabled" if enabled else "Suspended"
        args = {"Bucket": self._bucket, "VersioningConfiguration": {"Status": status}}
        await self._send("PutBucketVersioning", "put_bucket_versioning", args)

    async def close(self) -> None:
        if self._threaded:
            await asyncio.to_thread(self._client.close)
        else:
            await self.stack.aclose()


def _client_config(options: ClientOptions) -> dict[str, Any]:
    return {
        "connect_timeout": options.connect_timeout,
        "read_timeout": options.read_timeout,
        "retries": {"total_max_attempts": 1, "mode": "standard"},  # the S3 layer owns retries
        "max_pool_connections": options.max_pool_connections,
        "s3": {"addressing_style": "path"} if options.endpoint_url else None,
    }


async def open_aioboto3(options: ClientOptions) -> BotocoreTransport:
    """aioboto3's client, made in a worker thread: the imports, S3's models and the client class (about 0.3 s
    the first time) never stall the event loop. The client's aiohttp session is made on this loop at its first
    request, so the client belongs to this loop.
    """

    def prepare() -> tuple[Any, Any]:
        import aioboto3
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        botocore_session = get_session()
        botocore_session.register_component("data_loader", _shared_loader())
        key_id, secret, token = options.credentials
        session = aioboto3.Session(
            botocore_session=botocore_session,
            profile_name=options.profile,
            region_name=options.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
        )
        plain_http = bool(options.endpoint_url and options.endpoint_url.lower().startswith("http://"))
        context = session.client(
            "s3",
            endpoint_url=options.endpoint_url,
            config=AioConfig(**_client_config(options)),
            # no TLS to an http:// endpoint: not loading the CA bundle saves ~50 ms on the loop at the first request
            verify=False if plain_http else None,
        )
        # a loop of this thread's own makes the client (credentials, endpoint, client class); entering it
        # opens no connection: aiobotocore makes its aiohttp session at the first request, on the caller's loop
        return context, asyncio.run(context.__aenter__())

    try:
        context, client = await asyncio.to_thread(prepare)
    except Exception as exc:
        mapped = map_error("open", exc)
        if mapped is None and isinstance(exc, ValueError):  # botocore: "Invalid endpoint"
            mapped = S3Error("open", no_answer=NoAnswer.CONFIG, detail=type(exc).__name__)
        raise (mapped or exc) from None
    transport = BotocoreTransport(client, options.bucket, sse=options.sse, threaded=False)
    transport.stack.push_async_exit(context)
    return transport


async def open_threaded(options: ClientOptions, *, mocked: bool) -> BotocoreTransport:
    """botocore's synchronous client, made in a worker thread; ``mocked``: calls serialised for moto's mock."""

    def create() -> Any:
        import botocore.session
        from botocore.config import Config

        session = botocore.session.Session(profile=options.profile)
        session.register_component("data_loader", _shared_loader())
        key_id, secret, token = options.credentials
        return session.create_client(
            "s3",
            region_name=options.region,
            endpoint_url=options.endpoint_url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(**_client_config(options)),
        )

    try:
        client = await asyncio.to_thread(create)
    except Exception as exc:
        mapped = map_error("open", exc)
        if mapped is None and isinstance(exc, ValueError):
            mapped = S3Error("open", no_answer=NoAnswer.CONFIG, detail=type(exc).__name__)
        raise (mapped or exc) from None
    return BotocoreTransport(client, options.bucket, sse=options.sse, threaded=True, serialise=mocked)
