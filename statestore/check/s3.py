"""The S3 probes: raw requests through the backend's own client, so the answers are the server's own."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from ..backends.s3.backend import HISTORY, WRITES_METADATA, S3Backend
from ..backends.s3.classify import BAD_CREDENTIAL_CODES, Kind, classify
from ..backends.s3.transport import NoAnswer, S3Error, S3Object, Stored, Transport
from ..codec.secrets import redact_url
from ..errors import BackendError, S3ClientUnsupportedError
from .protocol import fake_etag
from .report import (
    CONDITIONAL_DELETE_SETTING,
    IF_MATCH_SETTING,
    LOST_UPDATES,
    CheckReport,
    CheckRun,
    StopCheck,
    Verdict,
    scratch_prefix,
)

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


def _answer(exc: S3Error | None) -> str:
    """An S3 error answer in a few words, e.g. ``412 PreconditionFailed`` (a sanitized code: never server text)."""
    if exc is None:
        return "200"
    if exc.no_answer is not None:
        return exc.reason
    code, status = exc.code, exc.status
    if code and code != str(status):
        return f"{status} {code}" if status else code
    return str(status) if status else "error"


def _refused(exc: S3Error | None, missing_ok: bool = False) -> bool:
    """Whether an S3 error says "your condition failed" (or, with ``missing_ok``, "no such key")."""
    if exc is None:
        return False
    kind = classify(exc)
    return kind is Kind.CONDITION_FAILED or (missing_ok and kind is Kind.NOT_FOUND)


class _S3Check:
    """The S3 probes: raw requests through the backend's client, so the answers are the server's own."""

    def __init__(self, backend: S3Backend, app: str) -> None:
        self.backend = backend
        self.bucket = backend.bucket
        self.run = CheckRun(_S3_PROBES)
        self.scratch = scratch_prefix(app)
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
        self.client: Transport | None = None
        self.etag = ""  # the main scratch object's current ETag, unquoted
        self.first_etag = ""

    # -- requests

    def fatal(self, exc: BaseException, probe: str, permission: str | None) -> StopCheck | None:
        """The ``StopCheck`` for an error no probe can go on after (unreachable, denied, no bucket), else None."""
        if isinstance(exc, S3ClientUnsupportedError):
            return StopCheck(probe, Verdict.MISCONFIGURED, str(exc))
        if isinstance(exc, BackendError):  # the client could not be opened, for a reason not named below
            cause = exc.__cause__
            if isinstance(cause, S3Error):
                return self.fatal(cause, probe, permission)
            return StopCheck(probe, Verdict.MISCONFIGURED, "cannot open an S3 client: check the S3 settings")
        if not isinstance(exc, S3Error):
            return None
        if exc.no_answer is NoAnswer.NO_CREDENTIALS:
            return StopCheck(
                probe,
                Verdict.MISCONFIGURED,
                "no AWS credentials found (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role)",
            )
        if exc.no_answer is NoAnswer.CONFIG:
            if exc.detail == "ProfileNotFound":
                return StopCheck(probe, Verdict.MISCONFIGURED, "the AWS profile named (AWS_PROFILE) does not exist")
            if exc.detail == "NoRegionError":
                return StopCheck(probe, Verdict.MISCONFIGURED, "no region: set STATESTORE_S3_REGION or AWS_REGION")
            return StopCheck(
                probe, Verdict.MISCONFIGURED, f"cannot open an S3 client ({exc.detail}): check the S3 settings"
            )
        if exc.no_answer is not None:
            why = {
                NoAnswer.TIMEOUT: "it did not answer in time",
                NoAnswer.CONNECT: exc.detail if exc.detail.startswith(("the ", "its ")) else "the connection failed",
            }.get(exc.no_answer, f"the connection failed ({exc.reason})")
            return StopCheck(probe, Verdict.UNREACHABLE, f"cannot reach {self.endpoint}: {why} (is it running?)")
        return self.fatal_answer(exc, probe, permission)

    def fatal_answer(self, exc: S3Error, probe: str, permission: str | None) -> StopCheck | None:
        code, status = exc.code, exc.status
        if code in BAD_CREDENTIAL_CODES:
            return StopCheck(probe, Verdict.MISCONFIGURED, f"the server does not accept the credentials ({code})")
        if code == "NoSuchBucket":
            return StopCheck(probe, Verdict.MISCONFIGURED, self.no_bucket())
        if status == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
            return StopCheck(
                probe,
                Verdict.MISCONFIGURED,
                f"the bucket {self.bucket!r} is in another region ({_answer(exc)}): set STATESTORE_S3_REGION",
            )
        if code == "AccessDenied" or status == 403:
            action = _ACTIONS.get(permission or "", "do this")
            return StopCheck(
                probe,
                Verdict.MISCONFIGURED,
                f"the credentials are not allowed to {action} ({permission}): {_answer(exc)}",
            )
        if classify(exc) is Kind.UNAVAILABLE:
            return StopCheck(probe, Verdict.UNREACHABLE, f"the server failed: {_answer(exc)}")
        return None

    def no_bucket(self) -> str:
        return f"the bucket {self.bucket!r} does not exist: 'statestore init' creates it"

    async def request(
        self, probe: str, permission: str | None, fn: Callable[[Transport], Awaitable[Any]], *, denied_ok: bool = False
    ) -> tuple[Any, S3Error | None]:
        """Send one request: ``(answer, None)`` or ``(None, S3Error)``; ``StopCheck`` on a fatal error."""
        assert self.client is not None
        try:
            return await fn(self.client), None
        except S3Error as exc:
            if denied_ok and exc.status == 403:
                return None, exc
            stop = self.fatal(exc, probe, permission)
            if stop is not None:
                raise stop from None
            return None, exc

    async def put(self, probe: str, key: str, body: bytes, **conditions: Any) -> tuple[Stored | None, S3Error | None]:
        self.written.append(key)
        response, error = await self.request(probe, "s3:PutObject", lambda t: t.put(key, body, **conditions))
        if isinstance(response, Stored) and response.version_id:
            self.versioned = True
            self.versions.add((key, response.version_id))
        return response, error

    async def delete(self, probe: str, permission: str, key: str, **args: Any) -> S3Error | None:
        version, error = await self.request(probe, permission, lambda t: t.delete(key, **args))
        if version and "version_id" not in args:
            self.versions.add((key, str(version)))
        return error

    async def read(self, probe: str, key: str) -> S3Object | None:
        """GetObject: the object, or None if there is no such key."""
        response, error = await self.request(probe, "s3:GetObject", lambda t: t.get(key))
        if error is None:
            assert isinstance(response, S3Object)
            return response
        if classify(error) is Kind.NOT_FOUND:
            return None
        raise StopCheck(probe, Verdict.MISCONFIGURED, f"GetObject answered {_answer(error)}")

    async def body(self, probe: str, key: str) -> bytes | None:
        got = await self.read(probe, key)
        return None if got is None else got.data

    async def listed(self, probe: str, prefix: str, *, denied_ok: bool = False) -> tuple[list[str], S3Error | None]:
        """The keys of one ListObjectsV2 page of ``prefix`` (at most 100)."""
        page, error = await self.request(
            probe, "s3:ListBucket", lambda t: t.list_page(prefix, max_keys=100), denied_ok=denied_ok
        )
        return ([] if page is None else [item.key for item in page.items]), error

    async def listed_versions(self, probe: str, prefix: str) -> tuple[list[tuple[str, str]], S3Error | None]:
        """(key, version id) of one ListObjectVersions page of ``prefix`` (versions and delete markers)."""
        page, error = await self.request(
            probe, "s3:ListBucketVersions", lambda t: t.list_versions_page(prefix, max_keys=100)
        )
        if page is None:
            return [], error
        return [(item.key, item.version_id) for item in (*page.versions, *page.delete_markers)], error

    # -- the probes, in order

    async def __call__(self) -> CheckReport:
        run = self.run
        try:
            try:
                self.client = await self.backend.open_transport()
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
        except StopCheck as stop:
            run.stop(stop)
            if stop.probe != "delete":
                await self.cleanup()
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        safe = "compare-and-swap works on this server" + (f" with {settings}" if settings else "")
        return run.report(self.backend.describe(), "s3", self.settings, safe)

    async def probe_bucket(self) -> None:
        run = self.run
        _, error = await self.request("reachable", "s3:ListBucket", lambda t: t.head_bucket(), denied_ok=True)
        status = error.status if error is not None else 200
        run.ok("reachable", f"{self.endpoint} answered (HTTP {status})")
        if error is None:
            run.ok("bucket", f"the bucket {self.bucket!r} exists")
        elif status == 404:
            raise StopCheck("bucket", Verdict.MISCONFIGURED, self.no_bucket())
        else:
            run.skipped("bucket", f"HeadBucket answered {_answer(error)}: cannot tell; the object probes decide")

    async def probe_sse(self) -> None:
        sse = self.backend.sse
        if sse is None:
            self.run.skipped("sse", "not configured (STATESTORE_S3_SSE is not set)")
            return
        response, error = await self.put("sse", self.main, b'{"statestore-check": 0}')
        if error is not None:
            raise StopCheck(
                "sse",
                Verdict.MISCONFIGURED,
                f"the server refuses ServerSideEncryption={sse} ({_answer(error)}): "
                "unset STATESTORE_S3_SSE or configure encryption on the server",
            )
        if response is None or response.sse != sse:
            raise StopCheck(
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
            raise StopCheck("put", Verdict.MISCONFIGURED, f"PutObject answered {_answer(error)}")
        assert response is not None
        self.etag = response.etag.strip('"')
        self.first_etag = self.etag
        run.ok("put", "PutObject is allowed (s3:PutObject)")
        if await self.body("get", self.main) != v1:
            raise StopCheck("get", Verdict.UNSAFE, "GetObject returned other bytes than were put")
        run.ok("get", "GetObject is allowed (s3:GetObject); the bytes round-trip")
        prefix = self.backend.object_key(self.scratch)
        listed, error = await self.listed("list", prefix)
        if error is not None:
            raise StopCheck("list", Verdict.MISCONFIGURED, f"ListObjectsV2 answered {_answer(error)}")
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
        names = ["ListObjectsV2"]
        ignored = {"ListObjectsV2"} if any(not key.startswith(scratch) for key in listed) else set()
        keys, error = await self.listed("list-prefix", empty)
        if error is not None:
            raise StopCheck("list-prefix", Verdict.MISCONFIGURED, f"ListObjectsV2 answered {_answer(error)}")
        if any(not key.startswith(empty) for key in keys):
            ignored.add("ListObjectsV2")
        if self.versioned:  # history lists versions; a bucket without versioning keeps none
            names.append("ListObjectVersions")
            versions, error = await self.listed_versions("list-prefix", empty)
            if error is not None:
                raise StopCheck("list-prefix", Verdict.MISCONFIGURED, f"ListObjectVersions answered {_answer(error)}")
            if any(not key.startswith(empty) for key, _ in versions):
                ignored.add("ListObjectVersions")
        if ignored:
            self.run.unsafe(
                "list-prefix",
                f"{' and '.join(sorted(ignored))} answered keys outside the prefix asked for",
                "the server ignores the prefix of a listing: list, prune, copy, reencrypt and history would see "
                "objects that are not this app's (statestore refuses such listings)",
            )
        else:
            asked = " and ".join(names)
            self.run.ok("list-prefix", f"{asked} answered only keys under the prefix asked for")

    async def probe_create(self) -> None:
        run = self.run
        _, first = await self.put("create-if-absent", self.create, b'{"create": 1}', create=True)
        if first is not None:
            problem = f"the server refuses If-None-Match: * on a new key ({_answer(first)}): no state can be created"
            run.fail("create-if-absent", f"the first create answered {_answer(first)}", Verdict.UNSAFE, problem)
            return
        _, second = await self.put("create-if-absent", self.create, b'{"create": 2}', create=True)
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
            response, error = await self.put(f"if-match-{form}", self.main, body, if_match=value)
            after = await self.body(f"if-match-{form}", self.main)
            shown = 'If-Match: "<current ETag>"' if form == "quoted" else "If-Match: <current ETag> (unquoted)"
            if error is None:
                current_ok[form] = after == body
                self.etag = response.etag.strip('"') if response is not None else self.etag
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
        stale = self.first_etag if self.first_etag != self.etag else fake_etag("stale").strip('"')
        stale_ok: dict[str, bool] = {}  # True: the stale write was refused and changed nothing
        answers = []
        for form in _FORMS:
            value = f'"{stale}"' if form == "quoted" else stale
            before = await self.body("stale-if-match", self.main)
            response, error = await self.put("stale-if-match", self.main, b'{"stale": 1}', if_match=value)
            after = await self.body("stale-if-match", self.main)
            if response is not None:
                self.etag = response.etag.strip('"')
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
        _, error = await self.put("if-match-missing", self.missing, b'{"missing": 1}', if_match=value)
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
            "metadata", self.main, b'{"statestore-check": "metadata"}', metadata={WRITES_METADATA: history}
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
        assert response is not None
        self.etag = response.etag.strip('"')
        got = await self.read("metadata", self.main)
        stored = got.writes if got is not None else ""
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
        wrong = self.form(form, fake_etag("wrong").strip('"'))
        error = await self.delete("conditional-delete", "s3:DeleteObject", self.main, if_match=wrong)
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
        error = await self.delete("conditional-delete", "s3:DeleteObject", self.main, if_match=right)
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
        listed, error = await self.listed("delete", prefix, denied_ok=True)
        if error is None:
            keys.update(key for key in listed if key.startswith(prefix))
        for key in sorted(keys):
            error = await self.delete("delete", "s3:DeleteObject", key)
            if error is not None and classify(error) is not Kind.NOT_FOUND:
                raise StopCheck("delete", Verdict.MISCONFIGURED, f"DeleteObject answered {_answer(error)}")
        if self.versioned:
            await self.remove_versions(prefix)
        listed, error = await self.listed("delete", prefix, denied_ok=True)
        return [] if error is not None else [key for key in listed if key.startswith(prefix)]

    async def remove_versions(self, prefix: str) -> None:
        """Delete the versions the check made (recorded), and any other a listing shows under ``prefix``."""
        listed, error = await self.listed_versions("delete", prefix)
        if error is not None:
            raise StopCheck("delete", Verdict.MISCONFIGURED, f"ListObjectVersions answered {_answer(error)}")
        found = {(key, version) for key, version in self.versions if key.startswith(prefix)}
        found.update((key, version) for key, version in listed if key.startswith(prefix))
        for key, version in sorted(found):
            error = await self.delete("delete", "s3:DeleteObjectVersion", key, version_id=version)
            if error is not None:
                raise StopCheck("delete", Verdict.MISCONFIGURED, f"deleting a version answered {_answer(error)}")

    async def probe_delete(self) -> None:
        try:
            left = await self.remove()
        except StopCheck as stop:
            raise StopCheck("delete", stop.verdict, f"{stop.detail}; {self.leftovers()}") from None
        if left:
            raise StopCheck("delete", Verdict.MISCONFIGURED, f"deleted objects are still listed: {', '.join(left)}")
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
        except StopCheck as stop:
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


async def check_s3(backend: S3Backend, app: str) -> CheckReport:
    if backend.transport != "obstore":
        return await _S3Check(backend, app)()
    # The probes are raw S3 requests obstore cannot all make (HeadBucket, conditional delete): the server
    # is probed through aioboto3 with the same settings.
    sdk = backend.with_client("aioboto3")
    try:
        return await _S3Check(sdk, app)()
    finally:
        await sdk.aclose()
