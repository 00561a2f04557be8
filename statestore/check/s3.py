"""The S3 probes: raw requests through the backend's own client, so the answers are the server's own."""

from __future__ import annotations

import logging
import secrets
import socket
from typing import TYPE_CHECKING, Any, cast

from ..backends.s3.backend import HISTORY, WRITES_METADATA, S3Backend
from ..codec.secrets import redact_url
from ..errors import BackendError
from .protocol import _fake_etag
from .report import (
    CONDITIONAL_DELETE_SETTING,
    IF_MATCH_SETTING,
    LOST_UPDATES,
    CheckReport,
    Verdict,
    _Run,
    _scratch_prefix,
    _Stop,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

logger = logging.getLogger(__name__)


_S3_PROBES = (
    "reachable",
    "bucket",
    "sse",
    "put",
    "get",
    "list",
    "list-prefix",
    "create-if-absent",
    "if-match-quoted",
    "if-match-unquoted",
    "stale-if-match",
    "if-match-missing",
    "metadata",
    "conditional-delete",
    "delete",
)
_FORMS = ("quoted", "unquoted")
_VERSION_LISTS = ("Versions", "DeleteMarkers")  # the two lists of a ListObjectVersions answer
_BAD_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId"}
)
_REFUSED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_ACTIONS = {
    "s3:PutObject": "write objects",
    "s3:GetObject": "read objects",
    "s3:ListBucket": "list the bucket",
    "s3:DeleteObject": "delete objects",
    "s3:ListBucketVersions": "list object versions",
    "s3:DeleteObjectVersion": "delete object versions",
}


def _show_endpoint(url: str | None) -> str:
    """The endpoint for messages: no user name or password in it."""
    return redact_url(url) if url else "AWS S3"


def _code(exc: BaseException) -> tuple[str, int | None]:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(response.get("Error", {}).get("Code", "")), status if isinstance(status, int) else None


def _answer(exc: BaseException | None) -> str:
    """An S3 error answer in a few words, e.g. ``412 PreconditionFailed``."""
    if exc is None:
        return "200"
    code, status = _code(exc)
    if code and code != str(status):
        return f"{status} {code}" if status else code
    return str(status) if status else type(exc).__name__


def _refused(exc: BaseException | None, missing_ok: bool = False) -> bool:
    """Whether an S3 error says "your condition failed" (or, with ``missing_ok``, "no such key")."""
    if exc is None:
        return False
    code, status = _code(exc)
    if code in _REFUSED or status in (409, 412):
        return True
    return missing_ok and (code == "NoSuchKey" or status == 404)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        inner = getattr(e, "kwargs", {}).get("error") if isinstance(getattr(e, "kwargs", None), dict) else None
        os_error = getattr(e, "os_error", None)  # aiohttp's connection errors
        for more in (e.__cause__, e.__context__, inner, os_error):
            if isinstance(more, BaseException):
                todo.append(more)
    return seen


class _S3Check:
    """The S3 probes: raw requests through the backend's client, so the answers are the server's own."""

    def __init__(self, backend: S3Backend, app: str) -> None:
        self.backend = backend
        self.bucket = backend.bucket
        self.run = _Run(_S3_PROBES)
        self.scratch = _scratch_prefix(app)
        self.main = backend.object_key(self.scratch + "probe")
        self.create = backend.object_key(self.scratch + "create")
        self.missing = backend.object_key(self.scratch + "missing")
        self.endpoint = _show_endpoint(backend.effective_endpoint_url)
        self.written: list[str] = []  # object keys a put was sent for (it may have landed)
        self.versions: set[tuple[str, str]] = set()  # (key, version id) of each version a put or delete made
        self.versioned = False
        self.sse: dict[str, Any] = {}
        if backend.sse is not None:
            self.sse["ServerSideEncryption"] = backend.sse
            if backend.sse_kms_key_id is not None:
                self.sse["SSEKMSKeyId"] = backend.sse_kms_key_id
        self.settings: dict[str, str] = {}
        self.client: S3Client | None = None
        self.etag = ""  # the main scratch object's current ETag, unquoted
        self.first_etag = ""

    # -- requests

    def fatal(self, exc: BaseException, probe: str, permission: str | None) -> _Stop | None:
        """The ``_Stop`` for an error no probe can go on after (unreachable, denied, no bucket), else None."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            return self.fatal_answer(exc, probe, permission)
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import (
            HTTPClientError,
            NoCredentialsError,
            NoRegionError,
            PartialCredentialsError,
            ProfileNotFound,
        )

        chain = _chain(exc)
        if any(isinstance(e, NoCredentialsError | PartialCredentialsError) for e in chain):
            return _Stop(
                probe,
                Verdict.MISCONFIGURED,
                "no AWS credentials found (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role)",
            )
        if any(isinstance(e, ProfileNotFound) for e in chain):
            return _Stop(probe, Verdict.MISCONFIGURED, "the AWS profile named (AWS_PROFILE) does not exist")
        if any(isinstance(e, NoRegionError) for e in chain):
            return _Stop(probe, Verdict.MISCONFIGURED, "no region: set STATESTORE_S3_REGION or AWS_REGION")
        if any(isinstance(e, BotoConnectionError | HTTPClientError | OSError) for e in chain):
            if any(isinstance(e, socket.gaierror) for e in chain):
                why = "its host name does not resolve"
            elif any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
                why = "it did not answer in time"
            elif any(isinstance(e, ConnectionRefusedError) for e in chain):
                why = "the connection was refused"
            else:
                why = f"the connection failed ({type(exc).__name__})"
            return _Stop(probe, Verdict.UNREACHABLE, f"cannot reach {self.endpoint}: {why}")
        if isinstance(exc, BackendError):  # the client could not be opened, for a reason not named above
            cause = exc.__cause__
            detail = type(cause).__name__ if cause is not None else "an error"
            return _Stop(probe, Verdict.MISCONFIGURED, f"cannot open an S3 client ({detail}): check the S3 settings")
        return None

    def fatal_answer(self, exc: BaseException, probe: str, permission: str | None) -> _Stop | None:
        code, status = _code(exc)
        if code in _BAD_CREDENTIALS:
            return _Stop(probe, Verdict.MISCONFIGURED, f"the server does not accept the credentials ({code})")
        if code == "NoSuchBucket":
            return _Stop(probe, Verdict.MISCONFIGURED, f"the bucket {self.bucket!r} does not exist")
        if status == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
            return _Stop(
                probe,
                Verdict.MISCONFIGURED,
                f"the bucket {self.bucket!r} is in another region ({_answer(exc)}): set STATESTORE_S3_REGION",
            )
        if code == "AccessDenied" or status == 403:
            action = _ACTIONS.get(permission or "", "do this")
            return _Stop(
                probe,
                Verdict.MISCONFIGURED,
                f"the credentials are not allowed to {action} ({permission}): {_answer(exc)}",
            )
        if status is not None and status >= 500 and status != 501:
            return _Stop(probe, Verdict.UNREACHABLE, f"the server failed: {_answer(exc)}")
        return None

    async def request(
        self, probe: str, permission: str | None, method: str, *, denied_ok: bool = False, **args: Any
    ) -> tuple[Any, Any]:
        """Send one request: ``(response, None)`` or ``(None, ClientError)``; ``_Stop`` on a fatal error."""
        from botocore.exceptions import ClientError

        assert self.client is not None
        try:
            response = await getattr(self.client, method)(**args)
            if method in ("put_object", "delete_object") and "VersionId" not in args and response.get("VersionId"):
                self.versions.add((args["Key"], str(response["VersionId"])))
            if method == "get_object":
                async with response["Body"] as body:
                    response = {**response, "Body": await body.read()}
            return response, None
        except ClientError as exc:
            if denied_ok and _code(exc)[1] == 403:
                return None, exc
            stop = self.fatal(exc, probe, permission)
            if stop is not None:
                raise stop from None
            return None, exc
        except Exception as exc:
            stop = self.fatal(exc, probe, permission)
            if stop is not None:
                raise stop from None
            raise

    async def put(self, probe: str, key: str, body: bytes, **args: Any) -> tuple[Any, Any]:
        self.written.append(key)
        response, error = await self.request(
            probe, "s3:PutObject", "put_object", Bucket=self.bucket, Key=key, Body=body, **self.sse, **args
        )
        if response is not None and response.get("VersionId"):
            self.versioned = True
        return response, error

    async def read(self, probe: str, key: str) -> Any:
        """GetObject: the response with the body read, or None if there is no such key."""
        response, error = await self.request(probe, "s3:GetObject", "get_object", Bucket=self.bucket, Key=key)
        if error is None:
            return response
        code, status = _code(error)
        if code == "NoSuchKey" or status == 404:
            return None
        raise _Stop(probe, Verdict.MISCONFIGURED, f"GetObject answered {_answer(error)}")

    async def body(self, probe: str, key: str) -> bytes | None:
        got = await self.read(probe, key)
        return None if got is None else bytes(got["Body"])

    # -- the probes, in order

    async def __call__(self) -> CheckReport:
        run = self.run
        try:
            try:
                self.client = cast("S3Client", await self.backend._client())
            except Exception as exc:
                stop = self.fatal(exc, "reachable", None)
                if stop is None:
                    raise
                raise stop from None
            await self.probe_bucket()
            await self.probe_sse()
            await self.probe_basics()
            await self.probe_create()
            form = await self.probe_if_match()
            await self.probe_missing(form)
            await self.probe_metadata()
            await self.probe_conditional_delete(form)
            await self.probe_delete()
        except _Stop as stop:
            run.stop(stop)
            if stop.probe != "delete":
                await self.cleanup()
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        safe = "compare-and-swap works on this server" + (f" with {settings}" if settings else "")
        return run.report(self.backend.describe(), "s3", self.settings, safe)

    async def probe_bucket(self) -> None:
        run = self.run
        _, error = await self.request("reachable", "s3:ListBucket", "head_bucket", denied_ok=True, Bucket=self.bucket)
        status = _code(error)[1] if error is not None else 200
        run.ok("reachable", f"{self.endpoint} answered (HTTP {status})")
        if error is None:
            run.ok("bucket", f"the bucket {self.bucket!r} exists")
        elif status == 404:
            raise _Stop("bucket", Verdict.MISCONFIGURED, f"the bucket {self.bucket!r} does not exist")
        else:
            run.skipped("bucket", f"HeadBucket answered {_answer(error)}: cannot tell; the object probes decide")

    async def probe_sse(self) -> None:
        sse = self.backend.sse
        if sse is None:
            self.run.skipped("sse", "not configured (STATESTORE_S3_SSE is not set)")
            return
        response, error = await self.put("sse", self.main, b'{"statestore-check": 0}')
        if error is not None:
            raise _Stop(
                "sse",
                Verdict.MISCONFIGURED,
                f"the server refuses ServerSideEncryption={sse} ({_answer(error)}): "
                "unset STATESTORE_S3_SSE or configure encryption on the server",
            )
        if response.get("ServerSideEncryption") != sse:
            raise _Stop(
                "sse",
                Verdict.MISCONFIGURED,
                f"the server stored the object without confirming ServerSideEncryption={sse}",
            )
        self.run.ok("sse", f"objects are stored with ServerSideEncryption={sse}")

    async def probe_basics(self) -> None:
        run = self.run
        v1 = b'{"statestore-check": 1}'
        response, error = await self.put("put", self.main, v1)
        if error is not None:
            raise _Stop("put", Verdict.MISCONFIGURED, f"PutObject answered {_answer(error)}")
        self.etag = str(response["ETag"]).strip('"')
        self.first_etag = self.etag
        run.ok("put", "PutObject is allowed (s3:PutObject)")
        if await self.body("get", self.main) != v1:
            raise _Stop("get", Verdict.UNSAFE, "GetObject returned other bytes than were put")
        run.ok("get", "GetObject is allowed (s3:GetObject); the bytes round-trip")
        prefix = self.backend.object_key(self.scratch)
        page, error = await self.request(
            "list", "s3:ListBucket", "list_objects_v2", Bucket=self.bucket, Prefix=prefix, MaxKeys=100
        )
        if error is not None:
            raise _Stop("list", Verdict.MISCONFIGURED, f"ListObjectsV2 answered {_answer(error)}")
        listed = [item["Key"] for item in page.get("Contents", [])]
        if self.main not in listed:
            run.fail("list", "the object just written is not listed: list_states may miss a state just written")
        else:
            run.ok("list", "ListObjectsV2 is allowed (s3:ListBucket); the object is listed")
        await self.probe_list_prefix(prefix, listed)

    async def probe_list_prefix(self, scratch: str, listed: list[str]) -> None:
        """Listings answer only keys under the prefix asked: the scratch one's, and one with nothing under it.

        A server (or a proxy in front of it) that ignores the prefix answers other keys, even in an
        otherwise empty bucket; a bulk operation acting on them would touch objects not its own.
        """
        empty = scratch + "list-prefix/"
        calls: list[tuple[str, str, str, tuple[str, ...]]] = [
            ("ListObjectsV2", "s3:ListBucket", "list_objects_v2", ("Contents",))
        ]
        if self.versioned:  # history lists versions; a bucket without versioning keeps none
            calls.append(("ListObjectVersions", "s3:ListBucketVersions", "list_object_versions", _VERSION_LISTS))
        ignored = {"ListObjectsV2"} if any(not key.startswith(scratch) for key in listed) else set()
        for name, permission, method, parts in calls:
            page, error = await self.request(
                "list-prefix", permission, method, Bucket=self.bucket, Prefix=empty, MaxKeys=100
            )
            if error is not None:
                raise _Stop("list-prefix", Verdict.MISCONFIGURED, f"{name} answered {_answer(error)}")
            if any(not item["Key"].startswith(empty) for part in parts for item in page.get(part, [])):
                ignored.add(name)
        if ignored:
            self.run.unsafe(
                "list-prefix",
                f"{' and '.join(sorted(ignored))} answered keys outside the prefix asked for",
                "the server ignores the prefix of a listing: list, prune, copy, reencrypt and history would see "
                "objects that are not this app's (statestore refuses such listings)",
            )
        else:
            asked = " and ".join(name for name, *_ in calls)
            self.run.ok("list-prefix", f"{asked} answered only keys under the prefix asked for")

    async def probe_create(self) -> None:
        run = self.run
        _, first = await self.put("create-if-absent", self.create, b'{"create": 1}', IfNoneMatch="*")
        if first is not None:
            problem = f"the server refuses If-None-Match: * on a new key ({_answer(first)}): no state can be created"
            run.fail("create-if-absent", f"the first create answered {_answer(first)}", Verdict.UNSAFE, problem)
            return
        _, second = await self.put("create-if-absent", self.create, b'{"create": 2}', IfNoneMatch="*")
        if second is None:
            run.unsafe(
                "create-if-absent",
                "a second create of the same key (If-None-Match: *) was accepted: the condition is ignored",
                f"the server ignores If-None-Match on PUT: {LOST_UPDATES}",
            )
        elif not _refused(second):
            problem = f"the server answers a second create with {_answer(second)}, not 412"
            run.fail("create-if-absent", f"the second create answered {_answer(second)}", Verdict.UNSAFE, problem)
        elif await self.body("create-if-absent", self.create) != b'{"create": 1}':
            run.unsafe(
                "create-if-absent",
                f"the second create answered {_answer(second)} but replaced the object",
                f"refused creates land: {LOST_UPDATES}",
            )
        else:
            run.ok("create-if-absent", f"a second create was refused ({_answer(second)}); the first is unchanged")

    async def probe_if_match(self) -> str | None:
        """If-Match with the current ETag in both forms, then a stale one in both; returns the form to use."""
        run = self.run
        current_ok: dict[str, bool] = {}
        for n, form in enumerate(_FORMS):
            value = f'"{self.etag}"' if form == "quoted" else self.etag
            before = await self.body(f"if-match-{form}", self.main)
            body = f'{{"statestore-check": {n + 2}}}'.encode()
            response, error = await self.put(f"if-match-{form}", self.main, body, IfMatch=value)
            after = await self.body(f"if-match-{form}", self.main)
            shown = 'If-Match: "<current ETag>"' if form == "quoted" else "If-Match: <current ETag> (unquoted)"
            if error is None:
                current_ok[form] = after == body
                self.etag = str(response["ETag"]).strip('"')
                if after == body:
                    run.ok(f"if-match-{form}", f"{shown} was accepted")
                else:
                    run.fail(f"if-match-{form}", f"{shown} was answered 200 but the object was not replaced")
            else:
                current_ok[form] = False
                unchanged = "the object is unchanged" if after == before else "yet the object changed"
                run.fail(
                    f"if-match-{form}",
                    f"{shown} was refused ({_answer(error)}); {unchanged}",
                )
        stale = self.first_etag if self.first_etag != self.etag else _fake_etag("stale").strip('"')
        stale_ok: dict[str, bool] = {}  # True: the stale write was refused and changed nothing
        answers = []
        for form in _FORMS:
            value = f'"{stale}"' if form == "quoted" else stale
            before = await self.body("stale-if-match", self.main)
            response, error = await self.put("stale-if-match", self.main, b'{"stale": 1}', IfMatch=value)
            after = await self.body("stale-if-match", self.main)
            if response is not None:
                self.etag = str(response["ETag"]).strip('"')
            stale_ok[form] = error is not None and _refused(error) and after == before
            answers.append(f"{form}: {_answer(error) if error is not None else 'accepted, the object replaced'}")
        usable = [form for form in _FORMS if current_ok[form] and stale_ok[form]]
        chosen = usable[0] if usable else None
        detail = "If-Match with a stale ETag, " + ", ".join(answers)
        if chosen is None and not all(stale_ok.values()):
            run.unsafe("stale-if-match", detail, f"the server ignores If-Match on PUT: {LOST_UPDATES}")
        elif chosen is None:
            run.ok("stale-if-match", detail)
            problem = "the server refuses If-Match with the current ETag in both forms: no state can be updated"
            self.run.problems.append((Verdict.UNSAFE, problem))
        elif not all(stale_ok.values()):
            run.fail("stale-if-match", f"{detail}; safe only with {IF_MATCH_SETTING}={chosen} pinned")
        else:
            run.ok("stale-if-match", detail + "; the object is unchanged")
        if chosen is not None:
            self.settings[IF_MATCH_SETTING] = chosen
        return chosen

    def form(self, form: str | None, etag: str) -> str:
        return etag if form == "unquoted" else f'"{etag}"'

    async def probe_missing(self, form: str | None) -> None:
        run = self.run
        value = self.form(form, self.etag)
        _, error = await self.put("if-match-missing", self.missing, b'{"missing": 1}', IfMatch=value)
        created = await self.read("if-match-missing", self.missing) is not None
        if error is None or created:
            how = "accepted and created it" if error is None else f"answered {_answer(error)} but created it"
            run.unsafe(
                "if-match-missing",
                f"If-Match on a missing key was {how}",
                "If-Match on a missing key creates the object: a stale update recreates a state deleted meanwhile",
            )
        elif _refused(error, missing_ok=True):
            run.ok("if-match-missing", f"If-Match on a missing key was refused ({_answer(error)}); nothing was created")
        else:
            run.fail("if-match-missing", f"If-Match on a missing key answered {_answer(error)}; nothing was created")

    async def probe_metadata(self) -> None:
        run = self.run
        history = ",".join(secrets.token_hex(8) for _ in range(HISTORY))
        response, error = await self.put(
            "metadata", self.main, b'{"statestore-check": "metadata"}', Metadata={WRITES_METADATA: history}
        )
        if error is not None:
            problem = f"the server refuses {len(history)} bytes of user metadata ({_answer(error)}): every write fails"
            run.fail(
                "metadata",
                f"PutObject with {len(history)} bytes of metadata: {_answer(error)}",
                Verdict.UNSAFE,
                problem,
            )
            return
        self.etag = str(response["ETag"]).strip('"')
        got = await self.read("metadata", self.main)
        stored = (got or {}).get("Metadata", {}).get(WRITES_METADATA, "")
        if stored == history:
            run.ok("metadata", f"{len(history)} bytes of x-amz-meta-{WRITES_METADATA} round-trip")
        else:
            run.fail(
                "metadata",
                f"{len(history)} bytes of user metadata came back as {len(stored)} different bytes",
                Verdict.UNSAFE,
                "user metadata does not round-trip: a write whose response was lost could be applied twice",
            )

    async def probe_conditional_delete(self, form: str | None) -> None:
        run = self.run
        wrong = self.form(form, _fake_etag("wrong").strip('"'))
        _, error = await self.request(
            "conditional-delete", "s3:DeleteObject", "delete_object", Bucket=self.bucket, Key=self.main, IfMatch=wrong
        )
        kept = await self.read("conditional-delete", self.main) is not None
        if error is None and not kept:
            self.settings[CONDITIONAL_DELETE_SETTING] = "false"
            run.fail(
                "conditional-delete",
                f"a DeleteObject with a wrong If-Match deleted the object: the condition is ignored "
                f"({CONDITIONAL_DELETE_SETTING}=false)",
            )
            return
        if not _refused(error) or not kept:
            self.settings[CONDITIONAL_DELETE_SETTING] = "false"
            run.fail(
                "conditional-delete",
                f"a DeleteObject with a wrong If-Match answered {_answer(error)} "
                f"({'object kept' if kept else 'object deleted'}): not usable ({CONDITIONAL_DELETE_SETTING}=false)",
            )
            return
        right = self.form(form, self.etag)
        _, error = await self.request(
            "conditional-delete", "s3:DeleteObject", "delete_object", Bucket=self.bucket, Key=self.main, IfMatch=right
        )
        gone = await self.read("conditional-delete", self.main) is None
        if error is None and gone:
            self.settings[CONDITIONAL_DELETE_SETTING] = "true"
            run.ok("conditional-delete", "a wrong If-Match on DeleteObject was refused (412), the current one accepted")
        else:
            self.settings[CONDITIONAL_DELETE_SETTING] = "false"
            run.fail(
                "conditional-delete",
                f"a wrong If-Match on DeleteObject was refused, but the current one answered {_answer(error)} "
                f"({CONDITIONAL_DELETE_SETTING}=false)",
            )

    # -- removing the scratch objects

    async def remove(self) -> list[str]:
        """Delete every scratch object (and its versions on a versioned bucket); returns what is left.

        Only keys under the scratch prefix are ever deleted: those written, and those a listing of the
        prefix answers (a server that ignores the prefix answers others too: they are left alone).
        """
        prefix = self.backend.object_key(self.scratch)
        keys = {key for key in self.written if key.startswith(prefix)}
        listing = {"Bucket": self.bucket, "Prefix": prefix}
        page, error = await self.request("delete", "s3:ListBucket", "list_objects_v2", denied_ok=True, **listing)
        if error is None:
            keys.update(_under(prefix, page.get("Contents", [])))
        for key in sorted(keys):
            _, error = await self.request("delete", "s3:DeleteObject", "delete_object", Bucket=self.bucket, Key=key)
            code, status = _code(error) if error is not None else ("", None)
            if error is not None and code != "NoSuchKey" and status != 404:
                raise _Stop("delete", Verdict.MISCONFIGURED, f"DeleteObject answered {_answer(error)}")
        if self.versioned:
            await self.remove_versions(prefix)
        page, error = await self.request("delete", "s3:ListBucket", "list_objects_v2", denied_ok=True, **listing)
        return [] if error is not None else _under(prefix, page.get("Contents", []))

    async def remove_versions(self, prefix: str) -> None:
        """Delete the versions the check made (recorded), and any other a listing shows under ``prefix``."""
        page, error = await self.request(
            "delete", "s3:ListBucketVersions", "list_object_versions", Bucket=self.bucket, Prefix=prefix
        )
        if error is not None:
            raise _Stop("delete", Verdict.MISCONFIGURED, f"ListObjectVersions answered {_answer(error)}")
        found = {(key, version) for key, version in self.versions if key.startswith(prefix)}
        for item in [item for part in _VERSION_LISTS for item in page.get(part, [])]:
            if item["Key"].startswith(prefix):
                found.add((item["Key"], str(item["VersionId"])))
        for key, version in sorted(found):
            _, error = await self.request(
                "delete",
                "s3:DeleteObjectVersion",
                "delete_object",
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
            )
            if error is not None:
                raise _Stop("delete", Verdict.MISCONFIGURED, f"deleting a version answered {_answer(error)}")

    async def probe_delete(self) -> None:
        try:
            left = await self.remove()
        except _Stop as stop:
            raise _Stop("delete", stop.verdict, f"{stop.detail}; {self.leftovers()}") from None
        if left:
            raise _Stop("delete", Verdict.MISCONFIGURED, f"deleted objects are still listed: {', '.join(left)}")
        versions = " and their versions" if self.versioned else ""
        self.run.ok("delete", f"DeleteObject is allowed (s3:DeleteObject); the scratch objects{versions} are gone")

    def leftovers(self) -> str:
        return f"remove the scratch objects under s3://{self.bucket}/{self.backend.object_key(self.scratch)} by hand"

    async def cleanup(self) -> None:
        """After a stop: remove what may have been written; a failure becomes the "delete" probe."""
        if not self.written or self.client is None:
            return
        try:
            left = await self.remove()
        except _Stop as stop:
            self.run.fail("delete", f"{stop.detail}; {self.leftovers()}")
            return
        except Exception as exc:
            logger.debug("removing the scratch objects failed", exc_info=True)
            self.run.fail("delete", f"removing the scratch objects failed ({type(exc).__name__}); {self.leftovers()}")
            return
        if left:
            self.run.fail("delete", f"could not remove {', '.join(left)}; {self.leftovers()}")
        else:
            self.run.ok("delete", "the scratch objects written before the stop are gone")


def _under(prefix: str, items: list[Any]) -> list[str]:
    """The keys of the listed ``items`` under ``prefix``: the only ones the check may act on."""
    return [item["Key"] for item in items if item["Key"].startswith(prefix)]


async def _check_s3(backend: S3Backend, app: str) -> CheckReport:
    if backend.transport != "obstore":
        return await _S3Check(backend, app)()
    # The probes are raw S3 requests obstore cannot all make (HeadBucket, conditional delete): the server
    # is probed through aioboto3 with the same settings.
    sdk = backend.with_client("aioboto3")
    try:
        return await _S3Check(sdk, app)()
    finally:
        await sdk.aclose()
