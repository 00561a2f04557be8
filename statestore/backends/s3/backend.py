"""``S3Backend``: objects in an S3 bucket (AWS S3, MinIO, Ceph RGW, moto), the S3 semantics over any transport.

- ``get`` is one GetObject (If-None-Match; an object above ``max_bytes`` refused from
  its Content-Length, body unread); ``put`` one PutObject with If-Match /
  If-None-Match: *; ``delete`` DeleteObject (If-Match when asked); ``list`` pages
  ListObjectsV2 (``listing``).
- Every way S3 says "your condition failed" (412, 409, 404 on an If-Match put) is
  ``PreconditionFailed`` carrying the current object; a put that landed although its
  answer was lost is found by its write id (``writes``).
- Before the first write, ``verify`` proves the server honours the conditions; an
  unsafe server makes every write raise ``UnsafeBackendError`` (reads still work).
- Servers differ: the If-Match form and the conditional delete are learnt once
  (``conditions``).
- Transient failures (no answer, 5xx, 429 and other throttling) are retried here, the
  transports never retry; failures are classified by ``classify``, the one classifier.

The transport (``transport.Transport``: aioboto3, botocore in threads, or obstore) is
opened per event loop by ``clients.LoopClients``; this module never knows which it is.
"""

from __future__ import annotations

import builtins
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from functools import partial
from typing import TypeVar

from ...errors import (
    BackendError,
    BackendUnavailableError,
    ConditionalDeleteUnsupportedError,
    CredentialsNotFoundError,
    EndpointUnreachableError,
    IfMatchRejectedError,
    InvalidInputError,
    PreconditionFailed,
    StateStoreError,
    StoredStateTooLargeError,
    UnsafeBackendError,
    VersionsUnsupportedError,
)
from ...util import operation
from ...util.retry import RetryBudget, RetryPolicy
from ..base import (
    Capability,
    Create,
    NotModified,
    ObjectBackend,
    ObjectMeta,
    ObjectVersion,
    PutMode,
    PutResult,
    Update,
    Versioned,
    check_put_mode,
    same_etag,
)
from .classify import Kind, classify, error_class, is_transient
from .clients import S3_CLIENTS, LoopClients, check_transport_options, safe_endpoint
from .conditions import CONDITIONAL_DELETE_MODES, IF_MATCH_FORMS, IfMatchForm, OnceAnswer, conditional_delete_mode
from .conditions import if_match_header as _if_match_header
from .listing import list_objects, list_versions
from .transport import ClientOptions, NoAnswer, S3Error, S3Object, Stored, Transport, Unchanged
from .verify import PROBE_PREFIX, Retrying, Verdict, Verification, passed_before, remember_pass, unsafe_message
from .writes import HISTORY, WRITES_METADATA, Histories, RejectedUnchanged, reconcile, settle

__all__ = [
    "CONDITIONAL_DELETE_MODES",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_TRANSIENT_RETRY",
    "HISTORY",
    "IF_MATCH_FORMS",
    "PROBE_PREFIX",
    "S3_CLIENTS",
    "SSE_MODES",
    "WRITES_METADATA",
    "IfMatchRejectedError",
    "S3Backend",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SSE_MODES = ("AES256", "aws:kms")
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
#: Transient failures (no answer, 5xx, throttling) are retried this way.
DEFAULT_TRANSIENT_RETRY = RetryPolicy(attempts=4, base_delay=0.1, max_delay=2.0, deadline=30.0)
_WRONG_ETAG = '"00000000000000000000000000000000"'
#: Where the AWS chain (botocore, object_store) looks for credentials, for "no credentials found".
_CREDENTIAL_PLACES = (
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE, ~/.aws/credentials, ~/.aws/config), "
    "web identity, or a container or instance role"
)


class S3Backend(ObjectBackend):
    """Objects under ``prefix`` in ``bucket`` of AWS S3 or an S3-compatible server (``endpoint_url``).

    Credentials and region come from the standard AWS chain (environment, profiles,
    instance roles) unless given here; ``profile`` picks a profile. ``endpoint_url``
    selects MinIO, Ceph RGW or moto, with path-style addressing. ``sse`` (``"AES256"``
    or ``"aws:kms"`` with ``sse_kms_key_id``) is sent with every put. ``if_match_form``
    (``auto``, ``quoted``, ``unquoted``): the If-Match form to send; ``auto`` learns it.
    ``conditional_delete`` (``auto``, ``true``, ``false``): whether the server honours
    If-Match on DeleteObject; ``auto`` probes once, on first need; where it does not,
    ``delete(if_match=...)`` raises ``ConditionalDeleteUnsupportedError``. ``verify``
    (default True): prove before the first write that the server honours conditional
    writes, else refuse every write (``UnsafeBackendError``). ``retry`` bounds the
    retries of transient failures. ``client`` (``auto``, ``aioboto3``, ``boto3``,
    ``obstore``) picks the transport: ``auto`` is ``boto3`` (botocore in threads) while
    moto's in-process ``mock_aws`` is on, else aioboto3; ``obstore`` is Rust's
    object_store (no conditional delete, no versions, no profiles: docs/s3-and-minio.md).
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
        verify: bool = True,
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
        if not isinstance(verify, bool):
            raise InvalidInputError(f"verify must be True or False, got {verify!r}")
        delete_mode = conditional_delete_mode(conditional_delete)
        check_transport_options(client, delete_mode, profile)
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
        self.verify = verify
        self.profile = profile
        self.max_pool_connections = max_pool_connections
        self.list_page_size = list_page_size
        self._if_match = IfMatchForm(if_match_form)
        self._delete_setting = delete_mode
        self._delete_known: OnceAnswer[bool] = OnceAnswer(None if delete_mode == "auto" else delete_mode == "true")
        self._verdict: OnceAnswer[Verdict] = OnceAnswer(Verdict(()) if not verify else None)
        self._safe = not verify
        self._versioning_seen = False  # on is remembered: versioning can be suspended, never turned off
        self._histories = Histories()
        self.__credentials = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        sse_args = {"ServerSideEncryption": sse} if sse is not None else {}
        if sse_kms_key_id is not None:
            sse_args["SSEKMSKeyId"] = sse_kms_key_id
        options = ClientOptions(
            bucket=self.bucket,
            endpoint_url=self.endpoint_url,
            region=self.region,
            profile=profile,
            credentials=self.__credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            sse=sse_args,
        )
        self._clients = LoopClients(client, options, self.describe())

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        where = f", endpoint_url={safe_endpoint(self.endpoint_url)!r}" if self.endpoint_url else ""
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
    def transport(self) -> str:
        """The transport in use now: ``aioboto3``, ``boto3`` or ``obstore`` (``auto`` resolved)."""
        return self._clients.name

    @property
    def if_match_form(self) -> str:
        """The If-Match form sent now: ``quoted`` or ``unquoted`` (learnt, under ``auto``)."""
        return self._if_match.form

    @property
    def if_match_setting(self) -> str:
        return self._if_match.setting

    @property
    def conditional_delete(self) -> str:
        """``auto``, ``true`` or ``false``, as configured; ``supports(Capability.CONDITIONAL_DELETE)`` answers."""
        return self._delete_setting

    async def open_transport(self) -> Transport:
        """This event loop's transport (opened on first use): ``statestore check`` and ``init`` talk to it raw."""
        return await self._clients.get()

    async def aclose(self) -> None:
        """Close the transports; the backend opens new ones if used again."""
        await self._clients.aclose(self.connect_timeout)

    # -- calls -----------------------------------------------------------------------

    async def _retrying(self, fn: Callable[[Transport], Awaitable[T]]) -> T:
        """``fn`` on this loop's transport, resent after transient failures per ``self.retry``; raises ``S3Error``."""
        started = time.monotonic()
        budget: RetryBudget | None = None  # made on the first failure: most calls have none
        while True:
            transport = self._clients.current() or await self._clients.get()
            try:
                return await fn(transport)
            except S3Error as exc:
                if not is_transient(exc):
                    raise
                if budget is None:
                    budget = self.retry.start(started)
                if not await budget.backoff():
                    raise
                logger.debug("transient S3 failure (%s), attempt %d", exc.reason, budget.tries)
                operation.note_retry()

    async def call(self, op: str, key: str, fn: Callable[[Transport], Awaitable[T]]) -> T:
        """``_retrying``, with a failure raised as the ``BackendError`` it is."""
        try:
            return await self._retrying(fn)
        except S3Error as exc:
            raise self._error(op, key, exc) from exc

    def _where(self) -> str:
        return safe_endpoint(self.endpoint_url) or f"AWS S3{f' ({self.region})' if self.region else ''}"

    def _error(self, op: str, key: str, exc: S3Error) -> BackendError:
        """A ``BackendError`` naming the operation, key and what failed; never a server message or a credential."""
        what = f"S3 {op} of {key!r} in bucket {self.bucket!r}" if key else f"S3 {op} in bucket {self.bucket!r}"
        kind = classify(exc)
        if exc.no_answer is NoAnswer.CONNECT:
            why = f" ({exc.detail})" if exc.detail.startswith(("the ", "its ")) else ""
            return EndpointUnreachableError(f"cannot connect to {self._where()}{why} (is it running?): {what} failed")
        if exc.no_answer is NoAnswer.TIMEOUT:
            return BackendUnavailableError(f"{self._where()} did not answer in time: {what} failed")
        if kind is Kind.NO_CREDENTIALS:
            return CredentialsNotFoundError(
                f"no credentials found ({exc.detail or 'none'}): {what} was not sent; they are looked for in "
                f"{_CREDENTIAL_PLACES}"
            )
        if exc.code == "NoSuchBucket":
            return error_class(kind)(
                f"{what} failed: NoSuchBucket (HTTP {exc.status}): the bucket {self.bucket!r} does not exist; "
                "'statestore init' creates it"
            )
        return error_class(kind)(f"{what} failed: {exc.reason}")

    # -- reads -------------------------------------------------------------------------

    async def _read(
        self, key: str, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> S3Object | Unchanged | None:
        """The object (None if missing); its write-id history is remembered for the next put."""
        full = self.prefix + key
        quoted = None if if_none_match is None else _quoted(if_none_match)
        try:
            got = await self._retrying(lambda t: t.get(full, if_none_match=quoted, max_bytes=max_bytes))
        except S3Error as exc:
            if classify(exc) is Kind.NOT_FOUND and exc.code != "NoSuchBucket":
                return None
            raise self._error("get", key, exc) from exc
        if isinstance(got, S3Object) and got.data is not None:
            self._histories.remember(key, got.etag, got.writes)
        return got

    async def _read_whole(self, key: str) -> S3Object | None:
        got = await self._read(key)
        return got if isinstance(got, S3Object) else None

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        """The object, or None; a 304 gives ``NotModified``; above ``max_bytes``: refused before its body is read."""
        got = await self._read(key, if_none_match, max_bytes)
        if got is None:
            return None
        if isinstance(got, Unchanged):
            return NotModified(got.etag)
        if got.data is None:
            raise StoredStateTooLargeError(key, got.size, max_bytes or 0, got.etag)
        return Versioned(got.data, got.etag)

    # -- writes ------------------------------------------------------------------------

    async def _ensure_safe(self) -> None:
        """Verify the server once (concurrent first writes wait for it); ``UnsafeBackendError`` if it fails."""
        verdict = await self._verdict.get(self._verification)
        if not verdict.safe:
            raise UnsafeBackendError(unsafe_message(f"S3 bucket {self.bucket!r} at {self._where()}", verdict))
        self._safe = True  # the check every write makes: one attribute

    async def verify_conditions(self) -> None:
        """Run the verification the first write would run, now: ``UnsafeBackendError`` if unsafe.

        Once per backend, and not at all where a backend on the same server and bucket passed in this process.

        A no-op with ``verify=False``. For a service that would rather fail at start-up than at its first write.
        """
        await self._ensure_safe()

    async def _verification(self) -> Verdict:
        server = (self.client, self.endpoint_url or "", self.region or "", self.bucket, self._if_match.setting)
        form = passed_before(server)
        if form is not None:
            self._if_match.learn(form, self.describe())
            return Verdict(())
        helper: list[S3Backend] = []

        async def versions_retrying() -> Retrying:
            if (await self._clients.get()).can_list_versions:
                return self._retrying
            helper.append(self.with_client("aioboto3"))  # obstore deletes no versions: botocore does, this once
            return helper[0]._retrying

        probes = Verification(self._retrying, self.object_key, versions_retrying)
        started = time.perf_counter()
        try:
            verdict = await probes.run(self._if_match, self.describe())
        except S3Error as exc:
            raise self._error("verification", PROBE_PREFIX, exc) from exc
        finally:
            for backend in helper:
                await backend.aclose()
        logger.info(
            "%s: conditional writes %s (%d requests, %.0f ms)",
            self.describe(),
            "verified" if verdict.safe else "NOT honoured: " + "; ".join(verdict.problems),
            probes.requests,
            (time.perf_counter() - started) * 1000,
        )
        if verdict.safe:
            remember_pass(server, self._if_match.form)
        return verdict

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        """One put (two where ``auto`` learns the If-Match form) with the conditions S3 spells as two headers."""
        check_put_mode(mode)
        if not self._safe:
            await self._ensure_safe()
        if_match = mode.etag if isinstance(mode, Update) else None
        create = isinstance(mode, Create)
        write_id = os.urandom(8).hex()
        header = self._histories.header_after(key, write_id, if_match)
        full, body, metadata = self.prefix + key, bytes(data), {WRITES_METADATA: header}
        forms: tuple[str, ...] = (self._if_match.form,) if if_match is not None else ()
        sent = _if_match_header(if_match, forms[0]) if if_match is not None else None
        while True:
            try:
                stored = await self._retrying(
                    partial(_put, full=full, body=body, if_match=sent, create=create, metadata=metadata)
                )
                etag = stored.etag
                self._histories.remember(key, etag, header)
            except S3Error as exc:
                try:
                    etag = await self._put_failed(key, body, write_id, if_match, create, exc)
                except RejectedUnchanged:
                    other = self._if_match.alternative(forms[0]) if len(forms) == 1 else None
                    if other is None or if_match is None:
                        raise self._rejected("put", key, forms) from None
                    logger.debug(
                        "S3 put of %r: %s If-Match rejected on an unchanged object; trying %s", key, *forms, other
                    )
                    forms += (other,)
                    sent = _if_match_header(if_match, other)
                    continue
            if len(forms) == 2:
                self._if_match.learn(forms[1], self.describe())
            return PutResult(etag)

    async def _put_failed(
        self, key: str, body: bytes, write_id: str, if_match: str | None, create: bool, exc: S3Error
    ) -> str:
        """A PutObject failed (after transient retries): a failed condition is reconciled against the write id."""
        kind = classify(exc)
        conditional = if_match is not None or create
        if conditional and (
            kind in (Kind.CONDITION_FAILED, Kind.NOT_MODIFIED) or (exc.code == "NoSuchKey" and if_match is not None)
        ):
            refused = if_match if exc.status == 412 else None  # a 409 is another writer's request in flight
            return await reconcile(self._read_whole, key, body, write_id, refused, exc.reason)
        if conditional and kind is Kind.UNAVAILABLE:
            try:
                landed = await settle(self._read_whole, key, body, write_id)
            except StateStoreError:
                landed = None
            if landed is not None:
                return landed
        raise self._error("put", key, exc) from exc

    def _rejected(self, op: str, key: str, forms: tuple[str, ...]) -> IfMatchRejectedError:
        return IfMatchRejectedError(
            f"S3 {op} of {key!r} in bucket {self.bucket!r}: the server rejected If-Match holding the object's "
            f"current ETag ({' and '.join(forms)} form) although the object had not changed: it does not honour "
            f"If-Match as sent, so concurrent updates cannot be made safe this way. STATESTORE_S3_IF_MATCH is "
            f"{self._if_match.setting!r}; set it to the form this server honours (auto, quoted or unquoted). "
            "Nothing was changed"
        )

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        if if_match is not None and not await self.supports(Capability.CONDITIONAL_DELETE):
            transport = await self._clients.get()
            if not transport.can_delete_conditionally:
                raise ConditionalDeleteUnsupportedError(
                    f"S3 delete of {key!r} in bucket {self.bucket!r}: the {transport.name} transport cannot send "
                    "If-Match on DeleteObject, so a conditional delete cannot be made safe; nothing was deleted "
                    "(STATESTORE_S3_CLIENT=aioboto3 can send it)"
                )
            how = "probed" if self._delete_setting == "auto" else "STATESTORE_S3_CONDITIONAL_DELETE=false"
            raise ConditionalDeleteUnsupportedError(
                f"S3 delete of {key!r} in bucket {self.bucket!r}: the server does not honour If-Match on "
                f"DeleteObject ({how}), so a conditional delete cannot be made safe; nothing was deleted"
            )
        if not self._safe:
            await self._ensure_safe()
        await self._delete(key, if_match)

    async def _delete(self, key: str, if_match: str | None) -> None:
        full = self.prefix + key
        sent = None if if_match is None else _if_match_header(if_match, self._if_match.form)
        try:
            await self._retrying(lambda t: t.delete(full, if_match=sent))
        except S3Error as exc:
            kind = classify(exc)
            if if_match is not None and (kind is Kind.CONDITION_FAILED or exc.code == "NoSuchKey"):
                got = await self._read_whole(key)
                if got is not None and same_etag(got.etag, if_match) and exc.status == 412:
                    raise self._rejected("delete", key, (self._if_match.form,)) from None
                shown = None if got is None or got.data is None else Versioned(got.data, got.etag)
                raise PreconditionFailed(key, current=shown, current_known=True) from None
            if exc.code == "NoSuchKey":
                return
            if if_match is not None and kind is Kind.UNSUPPORTED:
                raise ConditionalDeleteUnsupportedError(
                    f"S3 delete of {key!r} in bucket {self.bucket!r}: the server answered {exc.reason} to If-Match on "
                    "DeleteObject, so a conditional delete cannot be made safe; nothing was deleted"
                ) from None
            raise self._error("delete", key, exc) from exc

    # -- capabilities ------------------------------------------------------------------

    async def supports(self, capability: Capability) -> bool:
        """A conditional delete: as configured, or (``auto``) probed once per backend; versions: bucket versioning."""
        transport = await self._clients.get()
        if capability is Capability.CONDITIONAL_DELETE:
            if not transport.can_delete_conditionally:
                return False
            return await self._delete_known.get(self._probe_conditional_delete)
        if not transport.can_list_versions:  # never asked, whatever the bucket keeps
            return False
        return await self._keeps_versions("supports", "")

    async def _probe_conditional_delete(self) -> bool:
        """Put a scratch object under ``PROBE_PREFIX``, delete it with a wrong If-Match, see whether it survived."""
        key = PROBE_PREFIX + os.urandom(8).hex()
        await self.put(key, b"statestore: conditional-delete probe", PutMode.CREATE)
        try:
            with suppress(PreconditionFailed):
                await self._delete(key, _WRONG_ETAG)
            survived = await self._read_whole(key) is not None
        except ConditionalDeleteUnsupportedError:  # 501 NotImplemented (LocalStack): not honoured either
            survived = False
        finally:
            try:
                await self._delete(key, None)
            except StateStoreError:
                logger.warning("could not remove the probe object %r in bucket %r", self.object_key(key), self.bucket)
        logger.info("%s %s If-Match on DeleteObject", self.describe(), "honours" if survived else "does not honour")
        return survived

    async def _keeps_versions(self, op: str, key: str) -> bool:
        """Whether the bucket has (or had: suspended) versioning; on is remembered."""
        if self._versioning_seen:
            return True
        status = await self.call(op, key, lambda t: t.bucket_versioning())
        self._versioning_seen = status in ("Enabled", "Suspended")
        return self._versioning_seen

    async def _require_versioning(self, op: str, key: str) -> None:
        if not await self._keeps_versions(op, key):
            raise VersionsUnsupportedError(
                f"S3 bucket {self.bucket!r} does not keep versions (bucket versioning was never enabled), "
                f"so there is no history; enable it with: statestore init --versioning (or aws s3api "
                f"put-bucket-versioning --bucket {self.bucket} --versioning-configuration Status=Enabled); "
                "versions are kept from then on"
            )

    # -- listings ----------------------------------------------------------------------

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async for meta in list_objects(self, prefix, len(self.prefix)):
            yield meta

    async def versions(self, key: str) -> builtins.list[ObjectVersion]:
        """The kept versions of ``key`` (ListObjectVersions, paged), newest first, delete markers included."""
        await self._require_versioning("versions", key)
        return await list_versions(self, key)

    async def get_version(self, key: str, version_id: str) -> Versioned | None:
        """One kept version; None if there is none of that id or it is a delete marker."""
        await self._require_versioning("get_version", key)
        full = self.prefix + key
        try:
            got = await self._retrying(lambda t: t.get(full, version_id=version_id))
        except S3Error as exc:
            # NoSuchVersion; a malformed id is InvalidArgument (400); a delete marker answers 405
            if (
                classify(exc) is Kind.NOT_FOUND
                or exc.code in ("InvalidArgument", "MethodNotAllowed")
                or exc.status == 405
            ):
                return None
            raise self._error("get_version", key, exc) from exc
        if not isinstance(got, S3Object) or got.data is None:
            return None
        return Versioned(got.data, got.etag)

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
            conditional_delete=self._delete_setting,
            verify=self.verify,
            profile=self.profile,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            max_pool_connections=self.max_pool_connections,
            list_page_size=self.list_page_size,
            client=client,
        )


async def _put(
    transport: Transport, *, full: str, body: bytes, if_match: str | None, create: bool, metadata: dict[str, str]
) -> Stored:
    return await transport.put(full, body, if_match=if_match, create=create, metadata=metadata)


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'
