"""A Rust S3 transport: obstore (object_store), speaking the S3 client vocabulary ``S3Backend`` calls.

``ObstoreS3Client`` offers the calls of ``S3ClientProtocol`` that object_store
can make -- ``get_object`` (with ``IfNoneMatch``), ``put_object`` (with
``IfMatch`` in either form, ``IfNoneMatch="*"`` and user metadata),
``delete_object`` (unconditional only) and ``list_objects_v2`` -- with the
arguments and answer shapes of aiobotocore's client. Every failure is one of:

- ``S3ErrorResponse``: the server answered with an S3 error; it carries the S3
  error code and HTTP status in a botocore-shaped ``response``, so
  ``S3Backend`` classifies it exactly as a ``ClientError`` (412 and 409 are
  reconciled, 5xx and throttling retried, 403 denied);
- ``S3ConnectionFailure`` / ``S3Timeout`` (``ConnectionError`` /
  ``TimeoutError``): no answer, transient;
- ``S3CredentialsUnavailable`` (``PermissionError``): no credentials;
- ``S3ClientUnsupportedError``: a call object_store cannot make (conditional
  or versioned delete, version listing, head of a bucket...), raised before
  any request -- never replaced by a weaker call.

object_store's own retries are off (``max_retries=0``): ``S3Backend`` owns the
retry loop, so a resent put carries the same write id. Nothing here imports
botocore; this module, and obstore with it, is imported only when a client is opened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn

import obstore

from ...errors import S3ClientUnsupportedError
from .threaded import ReadBody

logger = logging.getLogger(__name__)

#: Whether this process, or the parent it was forked from, opened an obstore client (so started its Rust runtime).
_runtime_started = False
#: Whether this process was forked from one whose obstore runtime had started: its threads were not copied.
_runtime_lost = False


def _after_fork_in_child() -> None:
    global _runtime_lost
    _runtime_lost = _runtime_lost or _runtime_started


os.register_at_fork(after_in_child=_after_fork_in_child)

_SETTLE_SECONDS = 0.01  # lets object_store's runtime close the dropped pool's connections
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_SUPPORTED_PUT_ARGS = frozenset(
    {"Bucket", "Key", "Body", "Metadata", "IfMatch", "IfNoneMatch", "ServerSideEncryption", "SSEKMSKeyId"}
)


class S3ErrorResponse(Exception):
    """The server answered an S3 error: ``response`` holds its code and HTTP status as botocore's ``ClientError`` does.

    The message names the operation, code and status only: never the server's text.
    """

    def __init__(self, operation: str, code: str, status: int | None) -> None:
        super().__init__(f"{operation}: {code or 'error'} (HTTP {status})")
        self.response: dict[str, Any] = {
            "Error": {"Code": code},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


class S3ConnectionFailure(ConnectionError):
    """No answer from the server (refused, reset, dropped): transient."""


class S3Timeout(TimeoutError):
    """The server did not answer in time: transient."""


class S3CredentialsUnavailable(PermissionError):
    """object_store found no credentials in its chain."""


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def translate(operation: str, exc: BaseException) -> BaseException:
    """The exception ``S3Backend`` classifies for an obstore failure of ``operation``.

    object_store puts the status and the S3 error document in its message: they
    are parsed, and nothing else of the message is kept (it can hold the
    server's text).
    """
    from obstore.exceptions import BaseError, NotModifiedError

    if not isinstance(exc, BaseError | FileNotFoundError | PermissionError):
        return exc  # not obstore's: a bug or a cancellation, passed on as it is
    text = str(exc)
    status_match = _STATUS.search(text)
    code_match = _CODE.search(text)
    if status_match is not None:
        status = int(status_match.group(1))
        code = code_match.group(1) if code_match is not None else ""
        if not code and isinstance(exc, NotModifiedError):
            code = "304"  # botocore's code for a bodiless 304
        return S3ErrorResponse(operation, code or str(status), status)
    lowered = text.lower()
    if "credential" in lowered and "error performing" not in lowered:
        return S3CredentialsUnavailable(f"{operation}: no credentials found (object_store's chain)")
    if "kind: connect" in lowered or "connecterror" in lowered:
        return S3ConnectionFailure(f"{operation}: the connection failed")
    if "timed out" in lowered or "timedout" in lowered or "kind: timeout" in lowered:  # not "retry_timeout: ..."
        return S3Timeout(f"{operation}: no answer in time")
    if "error sending request" in lowered or "http error" in lowered or "connection" in lowered:
        return S3ConnectionFailure(f"{operation}: the connection failed")
    return exc


class ObstoreS3Client:
    """The S3 calls ``S3Backend`` makes, on one obstore ``S3Store`` (the bucket is fixed at construction)."""

    conditional_delete = False  #: object_store has no If-Match on delete

    def __init__(self, store: Any, bucket: str) -> None:
        self._store: Any = store
        self._bucket = bucket
        self._sse: tuple[str | None, str | None] = (
            store.config.get("server_side_encryption"),
            store.config.get("sse_kms_key_id"),
        )

    def _check_bucket(self, operation: str, args: dict[str, Any]) -> None:
        if args.get("Bucket", self._bucket) != self._bucket:
            self._unsupported(operation, f"a bucket other than {self._bucket!r}")

    @staticmethod
    def _unsupported(operation: str, what: str) -> NoReturn:
        raise S3ClientUnsupportedError(
            f"the obstore S3 transport cannot do {operation} with {what}; "
            "use the aioboto3 transport for it (STATESTORE_S3_CLIENT=aioboto3)"
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except Exception as exc:
            translated = translate(operation, exc)
            if translated is exc:
                raise
            raise translated from None

    async def get_object(self, **args: Any) -> dict[str, Any]:
        """GetObject (``Bucket``, ``Key``, optional ``IfNoneMatch``): ``Body``, ``ETag``, ``Metadata``."""
        extra = set(args) - {"Bucket", "Key", "IfNoneMatch"}
        if extra:
            self._unsupported("GetObject", ", ".join(sorted(extra)))
        self._check_bucket("GetObject", args)
        options: dict[str, Any] = {}
        if args.get("IfNoneMatch"):
            options["if_none_match"] = args["IfNoneMatch"]

        async def call() -> tuple[Any, bytes]:
            result = await obstore.get_async(self._store, args["Key"], options=options or None)  # type: ignore[arg-type]
            return result, bytes(await result.bytes_async())

        result, data = await self._call("GetObject", call)
        meta = result.meta
        attributes = result.attributes
        metadata = {k: v for k, v in attributes.items() if not k[:1].isupper()}
        return {"Body": ReadBody(data), "ETag": meta["e_tag"], "Metadata": metadata, "ContentLength": len(data)}

    async def put_object(self, **args: Any) -> dict[str, Any]:
        """PutObject with ``IfMatch`` (sent as given: quoted or not) or ``IfNoneMatch="*"``, and user ``Metadata``."""
        if not args.keys() <= _SUPPORTED_PUT_ARGS:
            self._unsupported("PutObject", ", ".join(sorted(args.keys() - _SUPPORTED_PUT_ARGS)))
        self._check_bucket("PutObject", args)
        sse = args.get("ServerSideEncryption")
        sse_key = args.get("SSEKMSKeyId")
        if (sse is not None or sse_key is not None) and (sse, sse_key) != self._sse:
            self._unsupported("PutObject", "server-side encryption other than the client's own")
        mode: Any = "overwrite"
        if args.get("IfMatch") is not None:
            mode = {"e_tag": args["IfMatch"]}
        elif args.get("IfNoneMatch") is not None:
            if args["IfNoneMatch"] != "*":
                self._unsupported("PutObject", "If-None-Match other than '*'")
            mode = "create"
        attributes = args.get("Metadata") or None  # only read by obstore
        try:
            result = await obstore.put_async(
                self._store, args["Key"], args["Body"], mode=mode, attributes=attributes, use_multipart=False
            )
        except Exception as exc:
            translated = translate("PutObject", exc)
            if translated is exc:
                raise
            raise translated from None
        return {"ETag": result["e_tag"], "VersionId": result.get("version")}

    async def delete_object(self, **args: Any) -> dict[str, Any]:
        """DeleteObject, unconditional only: ``IfMatch`` or ``VersionId`` raise ``S3ClientUnsupportedError``."""
        extra = set(args) - {"Bucket", "Key"}
        if extra:  # never drop a condition: that would turn a safe delete into an unsafe one
            self._unsupported("DeleteObject", ", ".join(sorted(extra)))
        self._check_bucket("DeleteObject", args)
        await self._call("DeleteObject", lambda: obstore.delete_async(self._store, args["Key"]))
        return {}

    async def list_objects_v2(self, **args: Any) -> dict[str, Any]:
        """One page of ListObjectsV2 (``Prefix``, ``MaxKeys``, ``ContinuationToken``) as botocore shapes it.

        object_store lists by path segment; a prefix that ends inside a segment
        is listed from its parent and filtered. The continuation token is the
        last key returned (object_store's ``offset``, S3's ``start-after``).
        A key outside the parent asked of the server (which ignored the prefix)
        is handed on, not filtered away: ``S3Backend`` refuses such a listing.
        """
        extra = set(args) - {"Bucket", "Prefix", "MaxKeys", "ContinuationToken"}
        if extra:
            self._unsupported("ListObjectsV2", ", ".join(sorted(extra)))
        self._check_bucket("ListObjectsV2", args)
        prefix: str = args.get("Prefix") or ""
        max_keys = int(args.get("MaxKeys") or 1000)
        parent = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        asked = parent + "/" if parent else ""  # what object_store sends as the prefix
        offset = args.get("ContinuationToken")
        if offset is None and len(prefix) > len(parent) + 2:
            offset = prefix[:-1]  # start-after is exclusive: every key under ``prefix`` sorts after it
        contents: list[dict[str, Any]] = []
        truncated = False

        async def call() -> None:
            nonlocal truncated
            stream = obstore.list(self._store, parent or None, offset=offset, chunk_size=max_keys)
            async for chunk in stream:
                for meta in chunk:
                    key = meta["path"]
                    if not key.startswith(asked):  # the server ignored the prefix: let S3Backend see it
                        contents.append({"Key": key, "Size": meta["size"], "LastModified": meta["last_modified"]})
                        return
                    if not key.startswith(prefix):
                        if key > prefix:  # sorted: nothing further can match
                            return
                        continue
                    if len(contents) == max_keys:
                        truncated = True
                        return
                    contents.append(
                        {"Key": key, "Size": meta["size"], "LastModified": meta["last_modified"], "ETag": meta["e_tag"]}
                    )

        await self._call("ListObjectsV2", call)
        page: dict[str, Any] = {"Contents": contents, "IsTruncated": truncated, "KeyCount": len(contents)}
        if truncated:
            page["NextContinuationToken"] = contents[-1]["Key"]
        return page

    async def close(self) -> None:
        """Drop the store (and its connection pool) while the event loop still runs, and let its threads settle.

        A store still alive when the interpreter finalizes races object_store's
        runtime threads closing its connections, and the process can abort
        (SIGABRT) on exit; dropped here, the pool closes while Python is whole.
        """
        if self._store is None:
            return
        self._store = None
        await asyncio.sleep(_SETTLE_SECONDS)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        """Any other S3 call (HeadBucket, ListObjectVersions, GetBucketVersioning...): ``S3ClientUnsupportedError``."""
        if name.startswith("_"):
            raise AttributeError(name)

        async def unsupported(**args: Any) -> Any:
            self._unsupported(name, "any arguments")

        return unsupported


def open_obstore_client(
    *,
    bucket: str,
    endpoint_url: str | None,
    region: str | None,
    credentials: tuple[str | None, str | None, str | None],
    connect_timeout: float,
    read_timeout: float,
    sse: str | None,
    sse_kms_key_id: str | None,
    max_pool_connections: int,
) -> ObstoreS3Client:
    """An ``ObstoreS3Client`` configured as ``S3Backend`` configures botocore (no retries, timeouts, path style).

    Refused (``S3ClientUnsupportedError``) in a process forked after obstore was used: its
    runtime's threads exist only in the parent, so any request would wait forever.
    """
    global _runtime_started
    if _runtime_lost:
        raise S3ClientUnsupportedError(
            "the obstore S3 transport cannot be used in a process forked from one that used it: obstore's "
            "runtime threads stay in the parent, so its requests would never complete; in a forked child use "
            "STATESTORE_S3_CLIENT=aioboto3, or start workers with multiprocessing's 'spawn' or 'forkserver' method"
        )
    from obstore.store import S3Store

    _runtime_started = True

    config: dict[str, Any] = {}
    if endpoint_url:
        config["endpoint"] = endpoint_url
        config["virtual_hosted_style_request"] = False
    if region:
        config["region"] = region
    key_id, secret, token = credentials
    if key_id is not None and secret is not None:
        config["access_key_id"] = key_id
        config["secret_access_key"] = secret
        if token is not None:
            config["session_token"] = token
    if sse is not None:
        config["server_side_encryption"] = sse
        if sse_kms_key_id is not None:
            config["sse_kms_key_id"] = sse_kms_key_id
    client_options: dict[str, Any] = {
        "connect_timeout": _seconds(connect_timeout),
        "read_timeout": _seconds(read_timeout),
        "pool_max_idle_per_host": str(max_pool_connections),
        "allow_http": bool(endpoint_url and endpoint_url.startswith("http://")),
    }
    store = S3Store(
        bucket,
        config=config,  # type: ignore[arg-type]
        client_options=client_options,  # type: ignore[arg-type]
        retry_config={"max_retries": 0, "retry_timeout": _seconds(connect_timeout + read_timeout)},
    )
    return ObstoreS3Client(store, bucket)
