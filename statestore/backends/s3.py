"""``S3Backend``: objects in an S3 bucket (AWS S3, MinIO, a moto server) through aioboto3.

- ``get`` is one GetObject; ``put`` is one PutObject with ``IfMatch`` /
  ``IfNoneMatch="*"`` (boto3's upload helpers cannot send them); ``delete`` is
  DeleteObject, with ``IfMatch`` when asked; ``list`` pages ListObjectsV2.
- Every way S3 says "your condition failed" (412, 409
  ConditionalRequestConflict, 404 on an If-Match put) is ``PreconditionFailed``
  carrying the current object, read with one GetObject.
- Lost responses: every put stores, in user metadata, the ids of the last
  ``HISTORY`` writes to the object (its own fresh id first). A put that comes
  back 412/409 although it landed (its response was lost and aiohttp or our
  retry loop resent it) finds its id in that history and reports success,
  so a change is neither reported failed nor applied twice.
- botocore's own retries are off (one attempt): this module owns the retry
  loop for transient failures, so a resent put carries the same write id.
- One aiobotocore client per event loop, opened lazily and reused; it is
  closed by ``aclose()``, or when its loop shuts down (``asyncio.run`` closes
  async generators before closing the loop), or at interpreter exit.

aioboto3 and botocore are imported only when a client is opened or an error
is classified, so importing statestore never loads them.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import secrets
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import BackendError, InvalidInputError, StateStoreError
from ..lru import LRU
from ..retry import RetryPolicy
from .base import ObjectBackend, PreconditionFailed, Versioned, md5_etag

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: User-metadata key (header ``x-amz-meta-statestore-writes``) holding the recent write ids.
WRITES_METADATA = "statestore-writes"
#: How many write ids an object remembers; see docs/s3-and-minio.md for what this bounds.
HISTORY = 100  # 17 + 100 * 17 - 1 bytes: inside S3's 2 KB user-metadata limit
SSE_MODES = ("AES256", "aws:kms")
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
#: Transient failures (5xx, throttling, dropped connections, timeouts) are retried this way.
DEFAULT_TRANSIENT_RETRY = RetryPolicy(attempts=4, base_delay=0.1, max_delay=2.0, deadline=30.0)

_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class ConditionalDeleteUnsupportedError(StateStoreError, NotImplementedError):
    """``delete(if_match=...)`` on a backend configured without conditional delete (MinIO).

    Raised instead of deleting unconditionally, which would claim a guarantee
    the server does not give. Nothing is deleted.
    """


@dataclass
class _LoopClient:
    """The client of one event loop, the exit stack that closes it, and its loop-shutdown hook."""

    loop: asyncio.AbstractEventLoop
    client: S3Client
    stack: AsyncExitStack
    closer: AsyncGenerator[None, None] | None = None
    closed: bool = False


_live_backends: weakref.WeakSet[S3Backend] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = threading.Lock()


def _close_at_exit() -> None:
    """Close clients whose loop is still open but idle (``run_until_complete`` users) at interpreter exit."""
    for backend in list(_live_backends):
        for entry in backend._entries():
            loop = entry.loop
            if entry.closed or loop.is_closed() or loop.is_running():
                continue
            try:
                loop.run_until_complete(backend._shutdown(entry))
            except Exception:  # exit must go on; nothing useful to do with it here
                logger.debug("closing an S3 client at exit failed", exc_info=True)


def _register_atexit() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_close_at_exit)
            _atexit_registered = True


_loader: Any = None


def _new_botocore_session() -> Any:
    """A fresh aiobotocore session sharing one process-wide data loader.

    Sessions are cheap but each one parses botocore's JSON service models
    again (~150 ms); the loader caches them, so a client for a new event loop
    opens in a few ms.
    """
    global _loader
    from aiobotocore.session import get_session
    from botocore.loaders import create_loader

    with _atexit_lock:
        if _loader is None:
            _loader = create_loader()
        loader = _loader
    session = get_session()
    session.register_component("data_loader", loader)
    return session


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _parse_history(metadata: dict[str, str] | None) -> tuple[str, ...]:
    raw = (metadata or {}).get(WRITES_METADATA, "")
    return tuple(part for part in raw.split(",") if part)


def _error_code(exc: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a botocore ``ClientError`` (``("", None)`` otherwise)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def _is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: 5xx, throttling, a dropped connection or a timeout."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        return code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS
    return isinstance(exc, BotoConnectionError | HTTPClientError | asyncio.TimeoutError | ConnectionError)


def _safe_endpoint(url: str | None) -> str | None:
    """``url`` without any user:password part, for logs and ``describe``."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class S3Backend(ObjectBackend):
    """Objects under ``prefix`` in ``bucket`` of AWS S3 or an S3-compatible server (``endpoint_url``).

    Credentials and region come from the standard AWS chain (environment,
    profiles, instance roles) unless given here; ``profile`` picks a profile.
    ``endpoint_url`` (else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, as
    botocore reads them) selects MinIO or moto, with path-style addressing.
    ``sse`` (``"AES256"`` or ``"aws:kms"`` with ``sse_kms_key_id``) is sent
    with every put. ``conditional_delete=False`` is for servers that ignore
    If-Match on DeleteObject (MinIO): ``delete(if_match=...)`` then raises
    ``ConditionalDeleteUnsupportedError``. ``retry`` bounds the retries of
    transient failures.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        conditional_delete: bool = True,
        profile: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        max_pool_connections: int = 10,
        list_page_size: int = 1000,
    ) -> None:
        if not isinstance(bucket, str) or not bucket.strip():
            raise InvalidInputError("S3Backend needs a bucket name (STATESTORE_BUCKET)")
        if sse is not None and sse not in SSE_MODES:
            raise InvalidInputError(f"sse must be one of {', '.join(SSE_MODES)} or None, got {sse!r}")
        if sse_kms_key_id is not None and sse != "aws:kms":
            raise InvalidInputError("sse_kms_key_id needs sse='aws:kms'")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise InvalidInputError("connect_timeout and read_timeout must be positive")
        if not 1 <= list_page_size <= 1000:
            raise InvalidInputError("list_page_size must be between 1 and 1000")
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise InvalidInputError("give both aws_access_key_id and aws_secret_access_key, or neither")
        self.bucket = bucket.strip()
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or DEFAULT_TRANSIENT_RETRY
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.conditional_delete = conditional_delete
        self.supports_conditional_delete = conditional_delete
        self.profile = profile
        self.max_pool_connections = max_pool_connections
        self.list_page_size = list_page_size
        self.__credentials = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        # ETag (unquoted) -> the write ids stored with that version, newest first
        self._histories: LRU[str, tuple[str, ...]] = LRU(4096)
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._open_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lock = threading.Lock()
        _live_backends.add(self)

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        where = f", endpoint_url={_safe_endpoint(self.effective_endpoint_url)!r}" if self.effective_endpoint_url else ""
        prefix = f", prefix={self.prefix!r}" if self.prefix else ""
        return f"S3Backend(bucket={self.bucket!r}{where}{prefix})"

    @property
    def effective_endpoint_url(self) -> str | None:
        """The endpoint in use: the argument, else the one botocore reads from the environment."""
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None

    def object_key(self, key: str) -> str:
        return self.prefix + key

    # -- clients ---------------------------------------------------------------

    def _entries(self) -> list[_LoopClient]:
        with self._lock:
            return list(self._clients.values())

    async def _client(self) -> S3Client:
        """This event loop's client, opened on first use."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is not None and not entry.closed:
            return entry.client
        with self._lock:
            lock = self._open_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            entry = self._clients.get(loop)
            if entry is None or entry.closed:
                entry = await self._open(loop)
        return entry.client

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _LoopClient:
        import aioboto3
        from aiobotocore.config import AioConfig

        endpoint = self.effective_endpoint_url
        config = AioConfig(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self.max_pool_connections,
            s3={"addressing_style": "path"} if endpoint else None,
        )
        key_id, secret, token = self.__credentials
        session = aioboto3.Session(
            botocore_session=_new_botocore_session(),
            profile_name=self.profile,
            region_name=self.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
        )
        stack = AsyncExitStack()
        try:
            client: S3Client = await stack.enter_async_context(
                session.client("s3", endpoint_url=self.endpoint_url, config=config)
            )
        except Exception as exc:
            await stack.aclose()
            raise BackendError(f"cannot open an S3 client for bucket {self.bucket!r} ({type(exc).__name__})") from exc
        entry = _LoopClient(loop, client, stack)
        # An async generator parked at its yield is closed by loop.shutdown_asyncgens(), which
        # asyncio.run (and asyncio.Runner) call before closing the loop: the client closes on its own loop.
        closer = self._close_with_loop(entry)
        await closer.__anext__()
        entry.closer = closer
        with self._lock:
            for old_loop in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old_loop]
                self._open_locks.pop(old_loop, None)
            self._clients[loop] = entry
        _register_atexit()
        logger.debug("opened S3 client for %s", self.describe())
        return entry

    async def _close_with_loop(self, entry: _LoopClient) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close_entry(entry)

    async def _close_entry(self, entry: _LoopClient) -> None:
        if entry.closed:
            return
        entry.closed = True
        with self._lock:
            if self._clients.get(entry.loop) is entry:
                del self._clients[entry.loop]
        try:
            await entry.stack.aclose()
        except Exception:
            logger.debug("closing an S3 client failed", exc_info=True)

    async def _shutdown(self, entry: _LoopClient) -> None:
        """Close ``entry``'s client and its loop-shutdown hook; must run on ``entry.loop``."""
        await self._close_entry(entry)
        if entry.closer is not None:
            await entry.closer.aclose()

    async def aclose(self) -> None:
        """Close the clients; the backend opens new ones if used again."""
        current = asyncio.get_running_loop()
        for entry in self._entries():
            if entry.loop is current:
                await self._shutdown(entry)
            elif entry.loop.is_running() and not entry.loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self._shutdown(entry), entry.loop)
                try:
                    await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.connect_timeout)
                except Exception:
                    logger.debug("closing the S3 client of another loop failed", exc_info=True)
            # a loop that is neither current nor running closes its client when it shuts down

    # -- calls -----------------------------------------------------------------

    async def _retrying(self, call: Callable[[S3Client], Awaitable[T]]) -> T:
        """Run ``call`` with this loop's client, retrying transient failures per ``self.retry``."""
        budget = self.retry.start()
        while True:
            client = await self._client()
            try:
                return await call(client)
            except Exception as exc:
                if not _is_transient(exc) or not await budget.backoff():
                    raise
                reason = _error_code(exc)[0] or type(exc).__name__
                logger.debug("transient S3 failure (%s), attempt %d", reason, budget.tries)

    def _error(self, op: str, key: str, exc: BaseException) -> BackendError:
        """A ``BackendError`` naming the operation, key and S3 error code, never a server message or credential."""
        code, status = _error_code(exc)
        what = f"{code or 'error'} (HTTP {status})" if status else code or type(exc).__name__
        return BackendError(f"S3 {op} of {key!r} in bucket {self.bucket!r} failed: {what}")

    async def _get(self, key: str) -> tuple[Versioned, tuple[str, ...]] | None:
        from botocore.exceptions import ClientError

        async def call(client: S3Client) -> tuple[Versioned, tuple[str, ...]]:
            response = await client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            async with response["Body"] as body:
                data = await body.read()
            return Versioned(data, _quoted(response["ETag"])), _parse_history(response.get("Metadata"))

        try:
            got = await self._retrying(call)
        except ClientError as exc:
            if _error_code(exc)[0] == "NoSuchKey":
                return None
            raise self._error("get", key, exc) from exc
        except StateStoreError:
            raise
        except Exception as exc:
            raise self._error("get", key, exc) from exc
        self._histories.put(got[0].etag.strip('"'), got[1])
        return got

    async def get(self, key: str) -> Versioned | None:
        got = await self._get(key)
        return None if got is None else got[0]

    async def put(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        from botocore.exceptions import ClientError

        data = bytes(data)
        write_id = secrets.token_hex(8)
        previous = (self._histories.get(if_match.strip('"')) or ()) if if_match else ()
        history = (write_id, *previous[: HISTORY - 1])
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "Body": data,
            "Metadata": {WRITES_METADATA: ",".join(history)},
        }
        if if_match is not None:
            args["IfMatch"] = _quoted(if_match)
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if self.sse is not None:
            args["ServerSideEncryption"] = self.sse
            if self.sse_kms_key_id is not None:
                args["SSEKMSKeyId"] = self.sse_kms_key_id

        async def call(client: S3Client) -> str:
            response = await client.put_object(**args)
            return _quoted(response["ETag"])

        try:
            etag = await self._retrying(call)
        except ClientError as exc:
            code, status = _error_code(exc)
            conditional = if_match is not None or if_none_match
            if conditional and (code in _CONDITION_CODES or status in (412, 304) or (code == "NoSuchKey" and if_match)):
                return await self._reconcile(key, data, write_id, f"{code or status}")
            if conditional and _is_transient(exc):
                return await self._settle(key, data, write_id, exc)
            raise self._error("put", key, exc) from exc
        except StateStoreError:
            raise
        except Exception as exc:
            if (if_match is not None or if_none_match) and _is_transient(exc):
                return await self._settle(key, data, write_id, exc)
            raise self._error("put", key, exc) from exc
        self._histories.put(etag.strip('"'), history)
        return etag

    async def _settle(self, key: str, data: bytes, write_id: str, exc: Exception) -> str:
        """A conditional put gave up on a transient failure, but an earlier try may have landed: look first.

        Found in the history: success (reported as a failure, the caller would
        apply its change again). Not found: the ``BackendError`` stands, and the
        change is not applied. The read failing too leaves the outcome unknown.
        """
        try:
            got = await self._get(key)
        except StateStoreError:
            raise self._error("put", key, exc) from exc
        if got is not None and write_id in got[1]:
            logger.info("S3 put of %r gave up (%s), but an earlier try had landed: success", key, type(exc).__name__)
            return got[0].etag if got[1][0] == write_id and got[0].data == data else md5_etag(data)
        raise self._error("put", key, exc) from exc

    async def _reconcile(self, key: str, data: bytes, write_id: str, answer: str) -> str:
        """After a failed condition: did our own (resent) write land? Else raise ``PreconditionFailed``."""
        got = await self._get(key)
        if got is not None:
            current, history = got
            if write_id in history:
                if history[0] == write_id and current.data == data:
                    logger.info("S3 put of %r answered %s, but it was our own write landing: success", key, answer)
                    return current.etag
                # Landed, and another write has already replaced it: a non-current ETag makes the
                # caller's next compare-and-swap fail and re-read instead of overwriting that write.
                logger.info("S3 put of %r answered %s; it landed and was since replaced", key, answer)
                return md5_etag(data)
        raise PreconditionFailed(key, current=None if got is None else got[0], current_known=True)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        from botocore.exceptions import ClientError

        if if_match is not None and not self.conditional_delete:
            raise ConditionalDeleteUnsupportedError(
                f"S3 delete of {key!r}: conditional delete is off for bucket {self.bucket!r} "
                "(the server ignores If-Match on DeleteObject); nothing was deleted"
            )
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if if_match is not None:
            args["IfMatch"] = _quoted(if_match)

        async def call(client: S3Client) -> None:
            await client.delete_object(**args)

        try:
            await self._retrying(call)
        except ClientError as exc:
            code, status = _error_code(exc)
            if if_match is not None and (code in _CONDITION_CODES or code == "NoSuchKey" or status == 412):
                got = await self._get(key)
                raise PreconditionFailed(key, current=None if got is None else got[0], current_known=True) from None
            if code == "NoSuchKey":
                return
            raise self._error("delete", key, exc) from exc
        except StateStoreError:
            raise
        except Exception as exc:
            raise self._error("delete", key, exc) from exc

    async def list(self, prefix: str) -> AsyncIterator[str]:
        full_prefix = self.object_key(prefix)
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix, "MaxKeys": self.list_page_size}
            if token is not None:
                args["ContinuationToken"] = token

            async def call(client: S3Client, args: dict[str, Any] = args) -> Any:
                return await client.list_objects_v2(**args)

            try:
                page = await self._retrying(call)
            except StateStoreError:
                raise
            except Exception as exc:
                raise self._error("list", prefix, exc) from exc
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
