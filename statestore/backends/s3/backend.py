"""``S3Backend``: objects in an S3 bucket (AWS S3, MinIO, a moto server) through aioboto3 or obstore.

- ``get`` is one GetObject; ``put`` is one PutObject with ``IfMatch`` /
  ``IfNoneMatch="*"`` (boto3's upload helpers cannot send them); ``delete`` is
  DeleteObject, with ``IfMatch`` when asked; ``list`` pages ListObjectsV2.
- Every way S3 says "your condition failed" (412, 409
  ConditionalRequestConflict, 404 on an If-Match put) is ``PreconditionFailed``
  carrying the current object, read with one GetObject.
- Servers differ (docs/s3-and-minio.md): Ceph RGW and DigitalOcean Spaces honour
  only an unquoted ETag in If-Match, RGW and MinIO ignore If-Match on
  DeleteObject. ``_IfMatchForm`` learns the form a server honours from its
  first rejection of an unchanged object; ``_ConditionalDelete`` probes once
  whether a conditional delete is honoured, and refuses it where it is not.
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

This module is the one S3 semantics layer. Under it, a transport is a client
with the S3 calls of ``S3ClientProtocol``, in botocore's vocabulary: aioboto3's
client (the default), ``s3_boto3.ThreadedS3Client`` (moto's ``mock_aws``) or
``s3_obstore.ObstoreS3Client`` (Rust object_store). A failure the server
answered carries its S3 error code and HTTP status in a botocore-shaped
``response``; one without an answer is a ``ConnectionError`` or
``TimeoutError``: every transport's errors are classified by the same code.

aioboto3, botocore and obstore are imported only when a client of theirs is
opened, so importing statestore (or using obstore) never loads botocore.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import logging
import os
import secrets
import sys
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from ...errors import (
    AccessDeniedError,
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    ConditionalDeleteUnsupportedError,
    IfMatchRejectedError,
    InvalidInputError,
    ListingOutOfPrefixError,
    S3ClientUnsupportedError,
    StateStoreError,
    StoredStateTooLargeError,
    VersionsUnsupportedError,
)
from ...util import forks, operation
from ...util.lru import LRU
from ...util.retry import RetryBudget, RetryPolicy
from ..base import (
    Capability,
    Create,
    NotModified,
    ObjectBackend,
    ObjectMeta,
    ObjectVersion,
    PreconditionFailed,
    PutMode,
    PutResult,
    Update,
    Versioned,
    check_put_mode,
    md5_etag,
    same_etag,
)

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

#: ``if_match_form`` / ``STATESTORE_S3_IF_MATCH``: how If-Match carries an ETag.
IF_MATCH_FORMS = ("auto", "quoted", "unquoted")
#: ``conditional_delete`` / ``STATESTORE_S3_CONDITIONAL_DELETE``.
CONDITIONAL_DELETE_MODES = ("auto", "true", "false")
#: Scratch objects of the conditional-delete probe live under this key (after the backend's prefix).
PROBE_PREFIX = ".statestore-probe/"
#: ``client`` / ``STATESTORE_S3_CLIENT``: the transport. ``auto`` is ``boto3`` while moto's ``mock_aws`` is
#: active, else ``aioboto3``; ``obstore`` is Rust's object_store (the ``obstore`` extra).
S3_CLIENTS = ("auto", "aioboto3", "boto3", "obstore")
_WRONG_ETAG = '"00000000000000000000000000000000"'


class S3ClientProtocol(Protocol):
    """The S3 calls the semantics layer makes, in botocore's vocabulary (keyword arguments, response dicts).

    aioboto3's client, ``ThreadedS3Client`` and ``ObstoreS3Client`` meet it. A
    transport that cannot make a call (or honour one of its arguments) raises
    ``S3ClientUnsupportedError`` before sending anything.
    """

    def get_object(self, **args: Any) -> Awaitable[Any]: ...
    def put_object(self, **args: Any) -> Awaitable[Any]: ...
    def delete_object(self, **args: Any) -> Awaitable[Any]: ...
    def list_objects_v2(self, **args: Any) -> Awaitable[Any]: ...
    def list_object_versions(self, **args: Any) -> Awaitable[Any]: ...
    def get_bucket_versioning(self, **args: Any) -> Awaitable[Any]: ...


class _Unchanged(Exception):
    """Internal: a conditional read answered 304, the object still has ``etag``."""

    def __init__(self, etag: str) -> None:
        super().__init__(etag)
        self.etag = etag


class _RejectedUnchanged(Exception):
    """Internal: a conditional request failed although the object still has the ETag it named."""


def _if_match_header(etag: str, form: str) -> str:
    bare = etag.strip('"')
    return bare if form == "unquoted" else f'"{bare}"'


class _IfMatchForm:
    """Which If-Match form the server honours: quoted (RFC 7232, AWS) or bare (Ceph RGW, DigitalOcean Spaces).

    ``quoted`` and ``unquoted`` pin the form. ``auto`` starts quoted; a put
    rejected although the object still has the ETag it sent is retried once in
    the other form, and the form that succeeds is kept for the life of the
    backend. A server that honours the first form never costs a request more.
    """

    def __init__(self, setting: str) -> None:
        if setting not in IF_MATCH_FORMS:
            raise InvalidInputError(f"if_match_form must be one of {', '.join(IF_MATCH_FORMS)}, got {setting!r}")
        self.setting = setting
        self._form = "unquoted" if setting == "unquoted" else "quoted"
        self._lock = forks.lock()

    @property
    def form(self) -> str:
        """The form to send now."""
        return self._form

    def alternative(self, rejected: str) -> str | None:
        """The form to try once after ``rejected`` failed on an unchanged object; None when pinned."""
        if self.setting != "auto":
            return None
        return "unquoted" if rejected == "quoted" else "quoted"

    def learn(self, form: str, where: str) -> None:
        """Use ``form`` from now on (the server just honoured it)."""
        with self._lock:
            if self._form != form:
                self._form = form
                logger.info("%s honours only the %s If-Match form; using it from now on", where, form)


def _conditional_delete_mode(value: bool | str) -> str:
    mode = ("true" if value else "false") if isinstance(value, bool) else str(value).strip().lower()
    if mode not in CONDITIONAL_DELETE_MODES:
        raise InvalidInputError(f"conditional_delete must be auto, true or false, got {value!r}")
    return mode


class _ConditionalDelete:
    """Whether DeleteObject honours If-Match: ``true``/``false`` as set, or (``auto``) probed once and kept."""

    def __init__(self, setting: bool | str) -> None:
        self.setting = _conditional_delete_mode(setting)
        self.known: bool | None = None if self.setting == "auto" else self.setting == "true"
        self._probe_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lock = forks.lock()

    async def supported(self, probe: Callable[[], Awaitable[bool]]) -> bool:
        """The known answer, or ``probe()``'s (one probe at a time per event loop; the first answer is kept)."""
        if self.known is None:
            with self._lock:
                for closed in [lp for lp in self._probe_locks if lp.is_closed()]:  # a failed probe's
                    del self._probe_locks[closed]
                lock = self._probe_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with lock:
                if self.known is None:
                    answer = await probe()
                    with self._lock:
                        if self.known is None:
                            self.known = answer
                        self._probe_locks.clear()
        return self.known


@dataclass
class _LoopClient:
    """The client of one event loop, the exit stack that closes it, and its loop-shutdown hook."""

    loop: asyncio.AbstractEventLoop
    client: S3ClientProtocol
    stack: AsyncExitStack
    closer: AsyncGenerator[None, None] | None = None
    closed: bool = False
    transport: str = "aioboto3"


_live_backends: weakref.WeakSet[S3Backend] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = forks.lock()


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
    from aiobotocore.session import get_session

    session = get_session()
    session.register_component("data_loader", _shared_loader())
    return session


def _shared_loader() -> Any:
    """The process-wide botocore data loader (it caches the parsed service models)."""
    global _loader
    from botocore.loaders import create_loader

    with _atexit_lock:
        if _loader is None:
            _loader = create_loader()
        return _loader


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _parse_history(metadata: dict[str, str] | None) -> tuple[str, ...]:
    raw = (metadata or {}).get(WRITES_METADATA, "")
    return tuple(part for part in raw.split(",") if part)


def _next_history(write_id: str, previous: str | None) -> str:
    """The write-id header of a put: ``write_id`` first, then at most ``HISTORY - 1`` of ``previous`` (a header)."""
    if not previous:
        return write_id
    history = f"{write_id},{previous}"
    for _ in range(history.count(",") + 1 - HISTORY):  # over by the oldest id (by more only if HISTORY shrank)
        history = history[: history.rfind(",")]
    return history


def _error_code(exc: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a botocore ``ClientError`` (``("", None)`` otherwise)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def _is_answer(exc: BaseException) -> bool:
    """Whether the server answered with an S3 error (botocore's ``ClientError`` or a transport's look-alike)."""
    return isinstance(getattr(exc, "response", None), dict)


def _botocore_exceptions() -> Any:
    """botocore's exception module if botocore is loaded, else None (an exception of it cannot exist then)."""
    return sys.modules.get("botocore.exceptions")


def _is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: 5xx, throttling, a dropped connection or a timeout."""
    if _is_answer(exc):
        code, status = _error_code(exc)
        return code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS
    if isinstance(exc, asyncio.TimeoutError | ConnectionError):
        return True
    boto = _botocore_exceptions()
    return boto is not None and isinstance(exc, boto.ConnectionError | boto.HTTPClientError)


_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnrecognizedClientException",
    }
)
_CONFIG_CODES = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)


def _error_class(exc: BaseException) -> type[BackendError]:
    """Which ``BackendError`` a failure is: unavailable (retry later), access denied, or configuration (fix it)."""
    if _is_answer(exc):
        code, status = _error_code(exc)
        if code in _DENIED_CODES or status in (401, 403):
            return AccessDeniedError
        if code in _CONFIG_CODES or status == 301:
            return BackendConfigError
        if _is_transient(exc):
            return BackendUnavailableError
        return BackendError
    if isinstance(exc, PermissionError):  # a transport found no credentials
        return AccessDeniedError
    boto = _botocore_exceptions()
    if boto is not None:
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            return AccessDeniedError
        bad = boto.EndpointResolutionError | boto.InvalidEndpointConfigurationError | boto.InvalidRegionError
        if isinstance(exc, bad | boto.NoRegionError):
            return BackendConfigError
    if isinstance(exc, ValueError):
        return BackendConfigError  # botocore says "Invalid endpoint" with a ValueError
    if _is_transient(exc):
        return BackendUnavailableError
    return BackendError


def _object_meta(item: Any, strip: int) -> ObjectMeta:
    """One ``Contents`` entry of ListObjectsV2 as ``ObjectMeta``, the backend's prefix (``strip`` chars) removed."""
    modified: datetime = item["LastModified"]
    if modified.tzinfo is None:  # botocore parses an aware time; be sure of it
        modified = modified.replace(tzinfo=UTC)
    etag = item.get("ETag")
    return ObjectMeta(item["Key"][strip:], int(item["Size"]), modified.astimezone(UTC), _quoted(etag) if etag else None)


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
    with every put. ``if_match_form`` (``auto``, ``quoted``, ``unquoted``) is
    the If-Match form to send; ``auto`` learns it from the server.
    ``conditional_delete`` (``auto``, ``true``, ``false``): whether the server
    honours If-Match on DeleteObject; ``auto`` probes once, on first need.
    Where it does not (MinIO, Ceph RGW), ``delete(if_match=...)`` raises
    ``ConditionalDeleteUnsupportedError`` and deletes nothing. ``retry`` bounds
    the retries of transient failures. ``client`` (``auto``, ``aioboto3``,
    ``boto3``) picks the transport: ``boto3`` runs botocore's synchronous
    client in worker threads (``s3_boto3``), which moto's in-process
    ``mock_aws`` serves; ``auto`` uses it while that mock is active, else aioboto3;
    ``obstore`` sends the same requests through Rust's object_store (the
    ``obstore`` extra; no conditional delete, no AWS profiles: see
    docs/s3-and-minio.md).
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
        if_match_form: str = "auto",
        conditional_delete: bool | str = "auto",
        profile: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        max_pool_connections: int = 10,
        list_page_size: int = 1000,
        client: str = "auto",
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
        if client not in S3_CLIENTS:
            raise InvalidInputError(f"client must be one of {', '.join(S3_CLIENTS)}, got {client!r}")
        self.client = client
        self.bucket = bucket.strip()
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or DEFAULT_TRANSIENT_RETRY
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self._if_match = _IfMatchForm(if_match_form)
        self._conditional_delete = _ConditionalDelete(conditional_delete)
        if client == "obstore":
            self._check_obstore_options(profile)
        self.profile = profile
        self.max_pool_connections = max_pool_connections
        self.list_page_size = list_page_size
        self.__credentials = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        # (key, ETag unquoted) -> the write-id header stored with that version (ids newest first). Keyed
        # by the key too: objects with the same bytes share an ETag but not a history.
        self._histories: LRU[tuple[str, str], str] = LRU(4096)
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._open_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._lock = forks.lock()
        _live_backends.add(self)
        forks.in_child(self, S3Backend._forget_parent_clients)

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        where = f", endpoint_url={_safe_endpoint(self.effective_endpoint_url)!r}" if self.effective_endpoint_url else ""
        prefix = f", prefix={self.prefix!r}" if self.prefix else ""
        return f"S3Backend(bucket={self.bucket!r}{where}{prefix})"

    @property
    def effective_endpoint_url(self) -> str | None:
        """The endpoint in use (``Settings`` fills it from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``)."""
        return self.endpoint_url

    @property
    def key_prefix(self) -> str:
        return self.prefix

    def object_key(self, key: str) -> str:
        return self.prefix + key

    @property
    def if_match_form(self) -> str:
        """The If-Match form sent now: ``quoted`` or ``unquoted`` (learnt, under ``auto``)."""
        return self._if_match.form

    @property
    def if_match_setting(self) -> str:
        """``auto``, ``quoted`` or ``unquoted``, as configured."""
        return self._if_match.setting

    @property
    def conditional_delete(self) -> str:
        """``auto``, ``true`` or ``false``, as configured; ``supports(Capability.CONDITIONAL_DELETE)`` answers."""
        return self._conditional_delete.setting

    # -- clients ---------------------------------------------------------------

    def _entries(self) -> list[_LoopClient]:
        with self._lock:
            return list(self._clients.values())

    def _forget_parent_clients(self) -> None:
        """In a forked child: every client belongs to the parent (its connections are shared); drop them unused.

        Never closed here (closing one would close the parent's connections); each loop of this
        process opens a client of its own on first use.
        """
        entries = list(self._clients.values())
        self._clients, self._open_locks = {}, {}
        for entry in entries:
            entry.closed = True  # not ours to close: the loop-shutdown hook then leaves it alone
            forks.disown_loop(entry.loop, entry)

    async def _client(self) -> S3ClientProtocol:
        """This event loop's client, opened on first use."""
        loop = asyncio.get_running_loop()
        transport = self.transport
        entry = self._clients.get(loop)
        if entry is not None and not entry.closed and entry.transport == transport:
            return entry.client
        with self._lock:
            lock = self._open_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            entry = self._clients.get(loop)
            if entry is not None and not entry.closed and entry.transport != transport:
                await self._shutdown(entry)  # moto's mock_aws started or stopped since it was opened
            if entry is None or entry.closed:
                entry = await self._open(loop, transport)
        return entry.client

    @property
    def transport(self) -> str:
        """The client in use now: ``aioboto3``, or ``boto3`` (set, or ``auto`` under moto's mock_aws)."""
        if self.client != "auto":
            return self.client
        if "moto.core.models" not in sys.modules:  # never import moto (or s3_boto3) where it is not loaded
            return "aioboto3"
        from .threaded import moto_mock_active

        return "boto3" if moto_mock_active() else "aioboto3"

    async def _open(self, loop: asyncio.AbstractEventLoop, transport: str = "aioboto3") -> _LoopClient:
        if transport == "boto3":
            return await self._open_threaded(loop)
        if transport == "obstore":
            return await self._open_obstore(loop)
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
            client = cast(
                "S3ClientProtocol",
                await stack.enter_async_context(session.client("s3", endpoint_url=self.endpoint_url, config=config)),
            )
        except Exception as exc:
            await stack.aclose()
            raise self._open_error(exc) from exc
        return await self._register(_LoopClient(loop, client, stack))

    async def _open_threaded(self, loop: asyncio.AbstractEventLoop) -> _LoopClient:
        """botocore's synchronous client in worker threads (``s3_boto3``): what moto's mock_aws serves."""
        from .threaded import moto_mock_active, open_threaded_client

        endpoint = self.effective_endpoint_url
        try:
            threaded = await open_threaded_client(
                loader=_shared_loader(),
                profile=self.profile,
                region=self.region,
                endpoint_url=self.endpoint_url,
                credentials=self.__credentials,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                max_pool_connections=self.max_pool_connections,
                path_style=bool(endpoint),
                mocked=moto_mock_active(),
            )
        except Exception as exc:
            raise self._open_error(exc) from exc
        stack = AsyncExitStack()
        stack.push_async_callback(threaded.close)
        client = cast("S3ClientProtocol", threaded)  # the same methods, arguments and answers
        return await self._register(_LoopClient(loop, client, stack, transport="boto3"))

    def _open_error(self, exc: Exception) -> BackendError:
        """What a client that cannot be opened is: unavailable or denied, else (its settings) misconfigured."""
        kind = _error_class(exc)
        kind = BackendConfigError if kind is BackendError else kind
        return kind(f"cannot open an S3 client for bucket {self.bucket!r} ({type(exc).__name__})")

    async def _register(self, entry: _LoopClient) -> _LoopClient:
        """Keep ``entry`` as its loop's client, closed when that loop shuts down."""
        loop = entry.loop
        # An async generator parked at its yield is closed by loop.shutdown_asyncgens(), which
        # asyncio.run (and asyncio.Runner) call before closing the loop: the client closes on its own loop.
        closer = self._close_with_loop(entry)
        await closer.__anext__()
        entry.closer = closer
        with self._lock:  # forget closed loops: their clients and locks (a loop whose client closed has only a lock)
            for old_loop in [lp for lp in (*self._clients, *self._open_locks) if lp.is_closed()]:
                self._clients.pop(old_loop, None)
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

    async def _retrying(self, call: Callable[[S3ClientProtocol], Awaitable[T]]) -> T:
        """Run ``call`` with this loop's client, retrying transient failures per ``self.retry``."""
        started = time.monotonic()
        budget: RetryBudget | None = None  # made on the first failure: most calls have none
        while True:
            entry = self._clients.get(asyncio.get_running_loop())  # the common case, without a coroutine
            if entry is not None and not entry.closed and entry.transport == self.transport:
                client = entry.client
            else:
                client = await self._client()
            try:
                return await call(client)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                if budget is None:
                    budget = self.retry.start(started)
                if not await budget.backoff():
                    raise
                reason = _error_code(exc)[0] or type(exc).__name__
                logger.debug("transient S3 failure (%s), attempt %d", reason, budget.tries)
                operation.note_retry()

    def _error(self, op: str, key: str, exc: BaseException) -> BackendError:
        """A ``BackendError`` naming the operation, key and S3 error code, never a server message or credential."""
        code, status = _error_code(exc)
        what = f"{code or 'error'} (HTTP {status})" if status else code or type(exc).__name__
        return _error_class(exc)(f"S3 {op} of {key!r} in bucket {self.bucket!r} failed: {what}")

    async def _get(self, key: str, if_none_match: str | None = None) -> tuple[Versioned, tuple[str, ...]] | None:
        """The object and its write-id history, or None if missing; ``NotModified`` (raised) on a 304."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if if_none_match is not None:
            args["IfNoneMatch"] = _quoted(if_none_match)

        async def call(client: S3ClientProtocol) -> tuple[Versioned, tuple[str, ...]]:
            response = await client.get_object(**args)
            async with response["Body"] as body:
                data = await body.read()
            return Versioned(data, _quoted(response["ETag"])), _parse_history(response.get("Metadata"))

        try:
            got = await self._retrying(call)
        except StateStoreError:
            raise
        except Exception as exc:
            code, status = _error_code(exc) if _is_answer(exc) else ("", None)
            if code == "NoSuchKey":
                return None
            if if_none_match is not None and status == 304:
                raise _Unchanged(_quoted(if_none_match)) from None
            raise self._error("get", key, exc) from exc
        self._histories.put((key, got[0].etag.strip('"')), ",".join(got[1]))
        return got

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        """The object, or None; with ``if_none_match`` (an ETag) a 304 gives ``NotModified`` and no body is sent.

        ``max_bytes``: a larger object raises ``StoredStateTooLargeError`` (checked once read, for now).
        """
        try:
            got = await self._get(key, if_none_match)
        except _Unchanged as unchanged:
            return NotModified(unchanged.etag)
        if got is not None and max_bytes is not None and len(got[0].data) > max_bytes:
            raise StoredStateTooLargeError(key, len(got[0].data), max_bytes, got[0].etag)
        return None if got is None else got[0]

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        """One put (two where ``auto`` learns the If-Match form) with the conditions S3 spells as two headers."""
        check_put_mode(mode)
        if_match = mode.etag if isinstance(mode, Update) else None
        write_id = os.urandom(8).hex()  # secrets.token_hex(8), without its two calls
        history = _next_history(write_id, self._histories.get((key, if_match.strip('"'))) if if_match else None)
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "Body": bytes(data),
            "Metadata": {WRITES_METADATA: history},
        }
        if isinstance(mode, Create):
            args["IfNoneMatch"] = "*"
        if self.sse is not None:
            args["ServerSideEncryption"] = self.sse
            if self.sse_kms_key_id is not None:
                args["SSEKMSKeyId"] = self.sse_kms_key_id
        forms: tuple[str, ...] = ()
        if if_match is not None:
            forms = (self._if_match.form,)
            args["IfMatch"] = _if_match_header(if_match, forms[0])
        while True:
            try:  # the client's own coroutine is awaited: no frame of ours between it and the retry loop
                etag = _quoted((await self._retrying(lambda client: client.put_object(**args)))["ETag"])
            except StateStoreError:
                raise
            except Exception as exc:
                try:
                    etag = await self._put_failed(key, args, write_id, if_match, exc)
                except _RejectedUnchanged:
                    other = self._if_match.alternative(forms[0]) if len(forms) == 1 else None
                    if other is None or if_match is None:  # only a refused If-Match gets here
                        raise self._rejected("put", key, forms) from None
                    logger.debug(
                        "S3 put of %r: %s If-Match rejected on an unchanged object; trying %s", key, *forms, other
                    )
                    forms += (other,)
                    args["IfMatch"] = _if_match_header(if_match, other)
                    continue
            else:
                self._histories.put((key, etag.strip('"')), history)
            if len(forms) == 2:
                self._if_match.learn(forms[1], self.describe())
            return PutResult(etag)

    async def _put_failed(
        self, key: str, args: dict[str, Any], write_id: str, if_match: str | None, exc: Exception
    ) -> str:
        """A PutObject failed (after transient retries): a failed condition is reconciled against the write id."""
        conditional = if_match is not None or "IfNoneMatch" in args
        code, status = _error_code(exc) if _is_answer(exc) else ("", None)
        if conditional and (code in _CONDITION_CODES or status in (412, 304) or (code == "NoSuchKey" and if_match)):
            # only a plain 412 can be a refused form; a 409 is another writer's request in flight
            refused = if_match if status == 412 else None
            return await self._reconcile(key, args["Body"], write_id, refused, f"{code or status}")
        if conditional and _is_transient(exc):
            return await self._settle(key, args["Body"], write_id, exc)
        raise self._error("put", key, exc) from exc

    def _rejected(self, op: str, key: str, forms: tuple[str, ...]) -> IfMatchRejectedError:
        tried = " and ".join(forms)
        return IfMatchRejectedError(
            f"S3 {op} of {key!r} in bucket {self.bucket!r}: the server rejected If-Match holding the object's "
            f"current ETag ({tried} form) although the object had not changed: it does not honour If-Match as "
            f"sent, so concurrent updates cannot be made safe this way. STATESTORE_S3_IF_MATCH is "
            f"{self._if_match.setting!r}; set it to the form this server honours (auto, quoted or unquoted). "
            "Nothing was changed"
        )

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

    async def _reconcile(self, key: str, data: bytes, write_id: str, refused: str | None, answer: str) -> str:
        """After a failed condition: did our own (resent) write land? Else raise ``PreconditionFailed``.

        ``_RejectedUnchanged`` when the 412 was to If-Match ``refused`` and the
        object still has that ETag: the server refused a condition that held.
        """
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
            if refused is not None and same_etag(current.etag, refused):
                raise _RejectedUnchanged(key)
        raise PreconditionFailed(key, current=None if got is None else got[0], current_known=True)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        if if_match is not None and not await self.supports(Capability.CONDITIONAL_DELETE):
            if self.client == "obstore":
                raise ConditionalDeleteUnsupportedError(
                    f"S3 delete of {key!r} in bucket {self.bucket!r}: the obstore transport cannot send If-Match on "
                    "DeleteObject, so a conditional delete cannot be made safe; nothing was deleted "
                    "(STATESTORE_S3_CLIENT=aioboto3 can send it)"
                )
            how = "probed" if self._conditional_delete.setting == "auto" else "STATESTORE_S3_CONDITIONAL_DELETE=false"
            raise ConditionalDeleteUnsupportedError(
                f"S3 delete of {key!r} in bucket {self.bucket!r}: the server ignores If-Match on DeleteObject "
                f"({how}), so a conditional delete cannot be made safe; nothing was deleted"
            )
        await self._delete(key, if_match)

    async def _delete(self, key: str, if_match: str | None) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if if_match is not None:
            args["IfMatch"] = _if_match_header(if_match, self._if_match.form)

        async def call(client: S3ClientProtocol) -> None:
            await client.delete_object(**args)

        try:
            await self._retrying(call)
        except StateStoreError:
            raise
        except Exception as exc:
            code, status = _error_code(exc) if _is_answer(exc) else ("", None)
            if if_match is not None and (code in _CONDITION_CODES or code == "NoSuchKey" or status == 412):
                got = await self._get(key)
                if got is not None and same_etag(got[0].etag, if_match) and status == 412:
                    raise self._rejected("delete", key, (self._if_match.form,)) from None
                raise PreconditionFailed(key, current=None if got is None else got[0], current_known=True) from None
            if code == "NoSuchKey":
                return
            raise self._error("delete", key, exc) from exc

    async def supports(self, capability: Capability) -> bool:
        """A conditional delete: as configured, or (``auto``) probed once per backend; versions: bucket versioning."""
        if capability is Capability.CONDITIONAL_DELETE:
            return await self._conditional_delete.supported(self._probe_conditional_delete)
        if self.transport == "obstore":  # object_store lists no versions: never asked, whatever the bucket keeps
            return False
        return await self._keeps_versions("supports", "")

    async def _probe_conditional_delete(self) -> bool:
        """Put a scratch object under the prefix, delete it with a wrong If-Match, see whether it survived.

        The scratch object is removed afterwards; nothing else is touched.
        """
        key = PROBE_PREFIX + secrets.token_hex(8)
        await self.put(key, b"statestore: conditional-delete probe", PutMode.CREATE)
        try:
            with suppress(PreconditionFailed):
                await self._delete(key, _WRONG_ETAG)
            survived = await self.get(key) is not None
        finally:
            try:
                await self._delete(key, None)
            except StateStoreError:
                logger.warning("could not remove the probe object %r in bucket %r", self.object_key(key), self.bucket)
        logger.info("%s %s If-Match on DeleteObject", self.describe(), "honours" if survived else "ignores")
        return survived

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        full_prefix = self.object_key(prefix)
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix, "MaxKeys": self.list_page_size}
            if token is not None:
                args["ContinuationToken"] = token

            async def call(client: S3ClientProtocol, args: dict[str, Any] = args) -> Any:
                return await client.list_objects_v2(**args)

            try:
                page = await self._retrying(call)
            except StateStoreError:
                raise
            except Exception as exc:
                raise self._error("list", prefix, exc) from exc
            contents = page.get("Contents", [])
            self._check_listed("list", full_prefix, (item["Key"] for item in contents))
            for item in contents:
                yield _object_meta(item, len(self.prefix))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _check_listed(self, op: str, full_prefix: str, keys: Iterable[str]) -> None:
        """``ListingOutOfPrefixError`` if a listed key is outside ``full_prefix``: the server ignored the prefix.

        Checked for a whole page before anything of it is used: whatever a caller would do with
        such a listing (prune, copy, clean up) could touch objects that are not this store's.
        """
        if all(key.startswith(full_prefix) for key in keys):
            return
        raise ListingOutOfPrefixError(
            f"S3 {op} of prefix {full_prefix!r} in bucket {self.bucket!r} answered keys outside that prefix: the "
            "server (or a proxy in front of it) ignored the prefix asked for, so the listing cannot be trusted and "
            "nothing was done with it ('statestore check' reports such a server as unsafe)",
            prefix=full_prefix,
        )

    # -- the obstore transport ---------------------------------------------------

    def _check_obstore_options(self, profile: str | None) -> None:
        """Refuse, at construction, what the obstore transport cannot honour."""
        if profile is not None:
            raise InvalidInputError(
                "the obstore S3 transport reads no AWS profiles: give the keys (or use the environment or an "
                "instance role), or use client='aioboto3'"
            )
        if self._conditional_delete.setting == "true":
            raise InvalidInputError(
                "conditional_delete='true' needs If-Match on DeleteObject, which the obstore S3 transport cannot "
                "send: use client='aioboto3' (STATESTORE_S3_CLIENT=aioboto3)"
            )
        self._conditional_delete.known = False  # never probed: the probe itself would need the conditional delete

    async def _open_obstore(self, loop: asyncio.AbstractEventLoop) -> _LoopClient:
        """An ``ObstoreS3Client`` (``s3_obstore``): Rust's object_store, no botocore."""
        try:
            from .obstore_client import open_obstore_client

            client = open_obstore_client(
                bucket=self.bucket,
                endpoint_url=self.endpoint_url,
                region=self.region,
                credentials=self.__credentials,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                sse=self.sse,
                sse_kms_key_id=self.sse_kms_key_id,
                max_pool_connections=self.max_pool_connections,
            )
        except S3ClientUnsupportedError:
            raise
        except ImportError as exc:
            raise BackendConfigError(
                "STATESTORE_S3_CLIENT=obstore needs obstore: pip install 'statestore[obstore]'"
            ) from exc
        except Exception as exc:
            raise self._open_error(exc) from exc
        stack = AsyncExitStack()
        stack.push_async_callback(client.close)
        return await self._register(_LoopClient(loop, client, stack, transport="obstore"))

    def with_client(self, client: str) -> S3Backend:
        """This backend's bucket, prefix, credentials and settings on another transport (a new backend)."""
        key_id, secret, token = self.__credentials
        return S3Backend(
            self.bucket,
            endpoint_url=self.endpoint_url,
            region=self.region,
            prefix=self.prefix,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retry=self.retry,
            sse=self.sse,
            sse_kms_key_id=self.sse_kms_key_id,
            if_match_form=self._if_match.setting,
            conditional_delete=self._conditional_delete.setting,
            profile=self.profile,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            max_pool_connections=self.max_pool_connections,
            list_page_size=self.list_page_size,
            client=client,
        )

    # -- kept versions (bucket versioning) -------------------------------------------

    #: Whether the bucket was seen with versioning on (it cannot be turned off again, only suspended).
    _versioning_seen: bool = False

    async def _require_versioning(self, op: str, key: str) -> None:
        """``VersionsUnsupportedError`` unless the bucket has (or had: suspended) versioning."""
        if not await self._keeps_versions(op, key):
            raise VersionsUnsupportedError(
                f"S3 bucket {self.bucket!r} does not keep versions (bucket versioning was never enabled), "
                "so there is no history; enable it with: aws s3api put-bucket-versioning "
                f"--bucket {self.bucket} --versioning-configuration Status=Enabled "
                "(versions are kept from then on)"
            )

    async def _keeps_versions(self, op: str, key: str) -> bool:
        """Whether the bucket has (or had: suspended) versioning; on is remembered (it cannot be turned off)."""
        if self._versioning_seen:
            return True

        async def call(client: S3ClientProtocol) -> Any:
            return await client.get_bucket_versioning(Bucket=self.bucket)

        try:
            response = await self._retrying(call)
        except StateStoreError:
            raise
        except Exception as exc:
            raise self._error(op, key, exc) from exc
        if response.get("Status") not in ("Enabled", "Suspended"):
            return False
        self._versioning_seen = True
        return True

    async def versions(self, key: str) -> builtins.list[ObjectVersion]:
        """The kept versions of ``key`` (ListObjectVersions, paged), newest first, delete markers included.

        In the listing's own order, whatever the page size: S3 lists a key's versions and delete
        markers as one sequence, newest first, but botocore (and moto) split each page into two
        lists, which ``_interleave`` merges back (docs/decisions/0037).
        """
        await self._require_versioning("versions", key)
        full_key = self.object_key(key)
        found: list[ObjectVersion] = []
        markers: dict[str, Any] = {}
        while True:
            page = await self._versions_page(key, full_key, markers)
            versions = [_object_version(item, deleted=False) for item in _key_entries(page, full_key, "Versions")]
            deleted = [_object_version(item, deleted=True) for item in _key_entries(page, full_key, "DeleteMarkers")]
            found += await self._interleave(key, full_key, versions, deleted)
            beyond = any(item["Key"] > full_key for item in (*page.get("Versions", []), *page.get("DeleteMarkers", [])))
            if beyond or not page.get("IsTruncated"):
                break
            markers = {"KeyMarker": page.get("NextKeyMarker"), "VersionIdMarker": page.get("NextVersionIdMarker")}
            if not markers["KeyMarker"]:
                break
        return found

    async def _versions_page(self, key: str, full_key: str, markers: dict[str, Any]) -> Any:
        """One page of ListObjectVersions for ``full_key``, from ``markers`` (KeyMarker, VersionIdMarker) on."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_key, "MaxKeys": self.list_page_size, **markers}

        async def call(client: S3ClientProtocol) -> Any:
            return await client.list_object_versions(**args)

        try:
            page = await self._retrying(call)
        except StateStoreError:
            raise
        except Exception as exc:
            raise self._error("versions", key, exc) from exc
        self._check_listed(
            "versions", full_key, (item["Key"] for item in (*page.get("Versions", []), *page.get("DeleteMarkers", [])))
        )
        return page

    async def _interleave(
        self, key: str, full_key: str, versions: builtins.list[ObjectVersion], deleted: builtins.list[ObjectVersion]
    ) -> builtins.list[ObjectVersion]:
        """One page's versions and delete markers (each list newest first) as one list in the listing's order.

        Their times order them where they differ. Where a delete marker and a version share a time
        (moto lists whole seconds; any server can give two writes one time), the server's order
        decides: a listing that starts after the marker (``VersionIdMarker``) shows which of those
        versions follow it. One request per such marker; none where times differ.
        """
        following: dict[str, set[str]] = {}
        for marker in deleted:
            tied = {v.version_id for v in versions if v.last_modified == marker.last_modified}
            if tied:
                following[marker.version_id] = await self._following(key, full_key, marker, tied)
        merged: list[ObjectVersion] = []
        v = d = 0
        while v < len(versions) and d < len(deleted):
            version, marker = versions[v], deleted[d]
            if version.last_modified == marker.last_modified:
                marker_first = version.version_id in following[marker.version_id]
            else:
                marker_first = marker.last_modified > version.last_modified
            merged.append(marker if marker_first else version)
            d, v = (d + 1, v) if marker_first else (d, v + 1)
        return merged + versions[v:] + deleted[d:]

    async def _following(self, key: str, full_key: str, marker: ObjectVersion, tied: set[str]) -> set[str]:
        """Which of the ``tied`` version ids the server lists after the delete ``marker``."""
        found: set[str] = set()
        markers: dict[str, Any] = {"KeyMarker": full_key, "VersionIdMarker": marker.version_id}
        while True:
            page = await self._versions_page(key, full_key, markers)
            listed = [*_key_entries(page, full_key, "Versions"), *_key_entries(page, full_key, "DeleteMarkers")]
            found |= tied & {str(item["VersionId"]) for item in _key_entries(page, full_key, "Versions")}
            older = any(_object_version(item, deleted=True).last_modified < marker.last_modified for item in listed)
            everything = len(listed) == len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
            if found == tied or older or not everything or not page.get("IsTruncated") or not page.get("NextKeyMarker"):
                return found  # the tied versions all follow the marker; after them come older ones, then other keys
            markers = {"KeyMarker": page.get("NextKeyMarker"), "VersionIdMarker": page.get("NextVersionIdMarker")}

    async def get_version(self, key: str, version_id: str) -> Versioned | None:
        """One kept version (GetObject with VersionId); None if there is none of that id or it is a delete marker."""
        await self._require_versioning("get_version", key)

        async def call(client: S3ClientProtocol) -> Versioned:
            response = await client.get_object(Bucket=self.bucket, Key=self.object_key(key), VersionId=version_id)
            async with response["Body"] as body:
                data = await body.read()
            return Versioned(data, _quoted(response["ETag"]))

        try:
            return await self._retrying(call)
        except StateStoreError:
            raise
        except Exception as exc:
            code, status = _error_code(exc)
            # NoSuchVersion; a malformed id is InvalidArgument (400); a delete marker answers 405
            if _is_answer(exc) and (
                code in ("NoSuchVersion", "NoSuchKey", "InvalidArgument", "MethodNotAllowed") or status in (404, 405)
            ):
                return None
            raise self._error("get_version", key, exc) from exc


def _key_entries(page: Any, full_key: str, part: str) -> builtins.list[Any]:
    """The entries of ``full_key`` in one list (``Versions`` or ``DeleteMarkers``) of a ListObjectVersions page."""
    return [item for item in page.get(part, []) if item["Key"] == full_key]


def _object_version(item: Any, *, deleted: bool) -> ObjectVersion:
    """One ``Versions`` or ``DeleteMarkers`` entry of ListObjectVersions as ``ObjectVersion``."""
    modified: datetime = item["LastModified"]
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    etag = item.get("ETag")
    return ObjectVersion(
        str(item["VersionId"]),
        _quoted(etag) if etag and not deleted else None,
        modified.astimezone(UTC),
        0 if deleted else int(item.get("Size", 0)),
        deleted,
    )
