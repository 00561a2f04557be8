"""``statestore check``: probe a backend and say whether statestore's compare-and-swap is safe on it.

Every probe works on scratch objects under the app's own prefix,
``persistent-artifacts/apps/<app>/.statestore-check/<random>/``, and removes
them afterwards (also when a probe fails); no state a user stored is read or
written. The result is a ``CheckReport``: one ``Probe`` per question asked, a
``Verdict``, and the settings to use on this backend.

- S3: raw requests through the backend's own client, so the report says what
  the *server* does (not what the backend's workarounds make of it):
  reachable, bucket, SSE when configured, put/get/list/delete permissions,
  create-if-absent, ``If-Match`` with the current ETag quoted and unquoted, a
  stale ``If-Match``, ``If-Match`` on a missing key, 1.7 KB of user metadata,
  and a conditional delete.
- Local: the root (exists or can be created, is a directory, writable), no
  symbolic link on the way to the app's states, the backend's conditional
  writes, ``flock`` exclusion, file and directory modes.
- Memory: trivially safe (one process, one dict); the protocol probes run anyway.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import stat
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .backends.base import ObjectBackend, PreconditionFailed, PutMode, same_etag
from .backends.local import LOCK_SUFFIX, LocalBackend
from .backends.memory import MemoryBackend
from .backends.s3 import HISTORY, WRITES_METADATA, S3Backend
from .backends.wrappers import WrapperBackend
from .errors import BackendError, StateStoreError
from .hygiene import redact_url
from .paths import KEY_ROOT
from .statetype import StateType

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The directory, below ``persistent-artifacts/apps/<app>/``, that holds the scratch objects.
SCRATCH_DIR = ".statestore-check"
IF_MATCH_SETTING = "STATESTORE_S3_IF_MATCH"
CONDITIONAL_DELETE_SETTING = "STATESTORE_S3_CONDITIONAL_DELETE"
LOST_UPDATES = "concurrent updates would be lost"


class Outcome(StrEnum):
    """What one probe found."""

    OK = "ok"  # the backend did what statestore needs
    FAIL = "fail"  # it did not (a quirk the settings handle, or a problem the verdict names)
    SKIPPED = "skipped"  # not asked: not configured, or an earlier probe stopped the check
    UNSAFE = "unsafe"  # it accepted what it must refuse: with it, updates can be lost


class Verdict(StrEnum):
    """Whether statestore is safe on the backend; the CLI's exit code follows it (0, 4, 1, 2)."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    UNREACHABLE = "unreachable"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True)
class Probe:
    """One question asked of the backend, and the answer."""

    name: str
    outcome: Outcome
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome.value, "detail": self.detail}


@dataclass(frozen=True)
class CheckReport:
    """The result of ``Store.check()``: the probes, the verdict, and the settings to use on this backend.

    ``settings`` maps ``STATESTORE_*`` variables to the values the probes found
    right for this server (empty when nothing needs setting).
    """

    backend: str
    kind: str  # "s3", "local", "memory", or "other"
    verdict: Verdict
    message: str
    probes: list[Probe] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        return self.verdict is Verdict.SAFE

    def probe(self, name: str) -> Probe | None:
        """The probe called ``name``, if the check has one."""
        return next((p for p in self.probes if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "backend": self.backend,
            "kind": self.kind,
            "verdict": self.verdict.value,
            "message": self.message,
            "settings": dict(self.settings),
            "probes": [p.to_dict() for p in self.probes],
        }


class _Stop(Exception):
    """A probe found a problem that makes the remaining probes pointless."""

    def __init__(self, probe: str, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.probe, self.verdict, self.detail = probe, verdict, detail


_PRECEDENCE = (Verdict.UNSAFE, Verdict.MISCONFIGURED, Verdict.UNREACHABLE)


class _Run:
    """Collects probe results in a fixed order, and the problems that decide the verdict."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.results: dict[str, Probe] = {}
        self.problems: list[tuple[Verdict, str]] = []
        self.stopped: str | None = None

    def ok(self, name: str, detail: str) -> None:
        self.results[name] = Probe(name, Outcome.OK, detail)

    def skipped(self, name: str, detail: str) -> None:
        self.results[name] = Probe(name, Outcome.SKIPPED, detail)

    def fail(self, name: str, detail: str, verdict: Verdict | None = None, problem: str | None = None) -> None:
        """A failed probe; with ``verdict`` it decides the verdict (``problem``, else ``detail``, says why)."""
        self.results[name] = Probe(name, Outcome.FAIL, detail)
        if verdict is not None:
            self.problems.append((verdict, problem or detail))

    def unsafe(self, name: str, detail: str, problem: str) -> None:
        self.results[name] = Probe(name, Outcome.UNSAFE, detail)
        self.problems.append((Verdict.UNSAFE, problem))

    def stop(self, stop: _Stop) -> None:
        self.fail(stop.probe, stop.detail, stop.verdict)
        self.stopped = stop.probe

    def report(self, backend: str, kind: str, settings: dict[str, str], safe_message: str) -> CheckReport:
        reason = f"not run: the {self.stopped!r} probe stopped the check" if self.stopped else "not run"
        probes = [self.results.get(name) or Probe(name, Outcome.SKIPPED, reason) for name in self.names]
        probes += [p for name, p in self.results.items() if name not in self.names]
        found = {verdict for verdict, _ in self.problems}
        verdict = next((v for v in _PRECEDENCE if v in found), Verdict.SAFE)
        if verdict is Verdict.SAFE:
            message = safe_message
        else:
            message = "; ".join(dict.fromkeys(text for v, text in self.problems if v is verdict))
            if verdict is Verdict.UNSAFE:
                message = f"{message}. Do not use statestore on this backend as it is"
        return CheckReport(backend, kind, verdict, message, probes, settings)


def _scratch_prefix(app: str) -> str:
    """A fresh directory key for one check's scratch objects (ends with ``/``)."""
    return f"{KEY_ROOT}/{app}/{SCRATCH_DIR}/{secrets.token_hex(8)}/"


async def check_backend(backend: ObjectBackend, app_name: str) -> CheckReport:
    """Probe ``backend`` for the app ``app_name`` and report whether statestore is safe on it.

    Wrappers (counting, latency, faults) are looked through: the check is of
    the backend underneath.
    """
    inner = backend
    while isinstance(inner, WrapperBackend):
        inner = inner.inner
    if isinstance(inner, S3Backend):
        return await _check_s3(inner, app_name)
    if isinstance(inner, LocalBackend):
        return await _check_local(inner, app_name)
    if isinstance(inner, MemoryBackend):
        return await _check_memory(inner, app_name)
    return await _check_other(inner, app_name)


def configuration_report(backend: str, problem: str) -> CheckReport:
    """The report when no backend can even be built (a missing bucket setting, a bad ``STATESTORE_*`` value)."""
    run = _Run(["configuration"])
    run.fail("configuration", problem, Verdict.MISCONFIGURED)
    return run.report(backend, "unknown", {}, "")


# -- the backend protocol (memory, local, any other backend) --------------------

_PROTOCOL_PROBES = (
    "put",
    "get",
    "list",
    "create-if-absent",
    "if-match",
    "stale-if-match",
    "if-match-missing",
    "conditional-delete",
)


class _Protocol:
    """The conditional-write probes through the ``ObjectBackend`` API; failures of I/O become ``failure``."""

    def __init__(self, run: _Run, backend: ObjectBackend, scratch: str, failure: Verdict) -> None:
        self.run, self.backend, self.failure = run, backend, failure
        self.main, self.create, self.missing = scratch + "probe", scratch + "create", scratch + "missing"
        self.scratch = scratch
        self.written: list[str] = []

    async def _io(self, probe: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except PreconditionFailed:
            raise
        except StateStoreError as exc:
            raise _Stop(probe, self.failure, f"{type(exc).__name__}: {exc}") from None

    async def _create(self, probe: str, key: str, data: bytes) -> str:
        """A create of a fresh scratch key, which must succeed."""
        self.written.append(key)
        try:
            return (await self._io(probe, self.backend.put(key, data, PutMode.CREATE))).etag
        except PreconditionFailed:
            raise _Stop(probe, Verdict.UNSAFE, "a create of a new key was refused: no state can be created") from None

    async def writes(self) -> None:
        """Everything up to (not including) the final delete; leaves the main scratch object in place."""
        b, run = self.backend, self.run
        v1, v2 = b'{"statestore-check": 1}', b'{"statestore-check": 2}'
        etag1 = await self._create("put", self.main, v1)
        run.ok("put", "a new object was written")
        got = await self._io("get", b.get(self.main))
        if got is None or got.data != v1 or not same_etag(got.etag, etag1):
            raise _Stop("get", Verdict.UNSAFE, "the object read back is not the one written")
        run.ok("get", "the object reads back with the ETag the write returned")
        keys = [meta.key async for meta in b.list(self.scratch)]
        if self.main in keys:
            run.ok("list", "the object is listed")
        else:
            run.fail("list", "the object just written is not listed: list_states may miss a state just written")

        await self._create("create-if-absent", self.create, b"{}")
        try:
            await self._io("create-if-absent", b.put(self.create, b'{"second": 1}', PutMode.CREATE))
        except PreconditionFailed:
            run.ok("create-if-absent", "a second create of the same key was refused")
        else:
            run.unsafe(
                "create-if-absent",
                "a second create of the same key was accepted",
                f"creating a missing object is not exclusive: {LOST_UPDATES}",
            )

        try:
            etag2 = (await self._io("if-match", b.put(self.main, v2, PutMode.update(etag1)))).etag
        except PreconditionFailed:
            raise _Stop("if-match", Verdict.UNSAFE, "a write with the current ETag was refused") from None
        run.ok("if-match", "a write with the current ETag succeeded")
        try:
            await self._io("stale-if-match", b.put(self.main, b'{"stale": 1}', PutMode.update(etag1)))
        except PreconditionFailed:
            got = await self._io("stale-if-match", b.get(self.main))
            if got is not None and got.data == v2:
                run.ok("stale-if-match", "a write with a stale ETag was refused; the object is unchanged")
            else:
                run.unsafe(
                    "stale-if-match", "a refused write changed the object", f"refused writes land: {LOST_UPDATES}"
                )
        else:
            run.unsafe(
                "stale-if-match",
                "a write with a stale ETag was accepted",
                f"writes with a stale ETag are accepted: {LOST_UPDATES}",
            )
        self.written.append(self.missing)
        try:
            await self._io("if-match-missing", b.put(self.missing, b"{}", PutMode.update(etag2)))
        except PreconditionFailed:
            if await self._io("if-match-missing", b.get(self.missing)) is None:
                run.ok("if-match-missing", "a write with an ETag to a missing key was refused; nothing was created")
            else:
                run.unsafe("if-match-missing", "a refused write created the object", "refused writes create objects")
        else:
            run.unsafe(
                "if-match-missing",
                "a write with an ETag to a missing key created it",
                "a state deleted meanwhile is recreated by a stale update",
            )

        if not b.supports_conditional_delete:
            run.skipped("conditional-delete", "the backend says it has no conditional delete")
            return
        try:
            await self._io("conditional-delete", b.delete(self.main, if_match=_fake_etag("wrong")))
        except PreconditionFailed:
            if await self._io("conditional-delete", b.get(self.main)) is not None:
                run.ok("conditional-delete", "a delete with a wrong ETag was refused; the object is kept")
            else:
                run.unsafe("conditional-delete", "a refused delete removed the object", "refused deletes land")
        else:
            run.unsafe(
                "conditional-delete",
                "a delete with a wrong ETag removed the object",
                "the backend claims a conditional delete it ignores",
            )

    async def delete(self) -> None:
        """Remove every scratch object (the "delete" probe); ``_Stop`` if that fails."""
        for key in self.written:
            await self._io("delete", self.backend.delete(key))
        left = [meta.key async for meta in self.backend.list(self.scratch)]
        if left:
            raise _Stop("delete", self.failure, f"deleted objects are still listed: {', '.join(left)}")
        self.run.ok("delete", f"{len(self.written)} scratch objects were removed")

    async def cleanup(self) -> None:
        """Best effort after a stop: remove what may have been written."""
        for key in self.written:
            try:
                await self.backend.delete(key)
            except Exception:
                logger.debug("removing scratch object %s failed", key, exc_info=True)


def _fake_etag(text: str) -> str:
    return '"' + hashlib.md5(f"statestore-check {text}".encode(), usedforsecurity=False).hexdigest() + '"'


async def _protocol_check(
    backend: ObjectBackend, app: str, kind: str, first: Sequence[str], notes: Iterable[tuple[str, str]], safe: str
) -> CheckReport:
    run = _Run([*first, *_PROTOCOL_PROBES, "delete"])
    for name, detail in notes:
        run.ok(name, detail)
    proto = _Protocol(run, backend, _scratch_prefix(app), Verdict.UNREACHABLE)
    try:
        await proto.writes()
        await proto.delete()
    except _Stop as stop:
        run.stop(stop)
        await proto.cleanup()
    return run.report(backend.describe(), kind, {}, safe)


async def _check_memory(backend: MemoryBackend, app: str) -> CheckReport:
    """An in-process dict under one lock: trivially safe; the protocol probes still run."""
    scope = (
        "scope",
        "an in-process dictionary: only this process sees its states, and they are gone when it exits",
    )
    safe = "trivially: one process, one dictionary under a lock; states do not outlive the process"
    return await _protocol_check(backend, app, "memory", ["scope"], [scope], safe)


async def _check_other(backend: ObjectBackend, app: str) -> CheckReport:
    """A backend statestore does not know: only what its ``ObjectBackend`` API shows."""
    note = ("backend", f"{type(backend).__name__}: probed through the ObjectBackend API only")
    safe = "as far as its ObjectBackend API shows"
    return await _protocol_check(backend, app, "other", ["backend"], [note], safe)


# -- local ------------------------------------------------------------------------

_LOCAL_PROBES = ("root", "symlinks", *_PROTOCOL_PROBES, "locking", "permissions", "delete")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class _LocalCheck:
    def __init__(self, backend: LocalBackend, app: str) -> None:
        self.backend = backend
        self.run = _Run(_LOCAL_PROBES)
        self.root = Path(backend.root)
        self.app = app
        self.scratch = _scratch_prefix(app)
        self.scratch_dir = self.root / self.scratch
        self.app_dir = self.root / KEY_ROOT / app
        # Directories the check creates (removed again), and the modes of those it finds (put back).
        self.created: list[Path] = []
        self.modes: dict[Path, int] = {}
        self.noted = False

    async def __call__(self) -> CheckReport:
        run = self.run
        proto = _Protocol(run, self.backend, self.scratch, Verdict.MISCONFIGURED)
        try:
            await asyncio.to_thread(self.probe_root)
            await asyncio.to_thread(self.probe_symlinks)
            await proto.writes()
            await asyncio.to_thread(self.probe_locking)
            await asyncio.to_thread(self.probe_permissions)
            await proto.delete()
        except _Stop as stop:
            run.stop(stop)
            await proto.cleanup()
        finally:
            await asyncio.to_thread(self.remove_scratch)
        return run.report(self.backend.describe(), "local", {}, "writes are atomic and locked across processes")

    def probe_root(self) -> None:
        root = self.root
        if os.path.lexists(root):
            if not root.is_dir():
                raise _Stop("root", Verdict.MISCONFIGURED, f"the root {root} is not a directory")
            if not os.access(root, os.W_OK | os.X_OK):
                raise _Stop("root", Verdict.MISCONFIGURED, f"the root {root} is not writable by this user")
            link = f" (a link to {os.path.realpath(root)}, resolved once)" if root.is_symlink() else ""
            self.note_dirs()
            self.run.ok("root", f"{root} is a writable directory{link}")
            return
        parent = root.parent
        while not os.path.lexists(parent) and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise _Stop("root", Verdict.MISCONFIGURED, f"cannot create the root {root}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise _Stop("root", Verdict.MISCONFIGURED, f"cannot create the root {root}: {parent} is not writable")
        self.note_dirs()
        self.run.ok("root", f"{root} does not exist yet and can be created (the first write creates it)")

    def note_dirs(self) -> None:
        """Record which directories on the way to the scratch directory are missing, and the modes of the others."""
        self.noted = True
        for directory in [self.scratch_dir, *self.scratch_dir.parents]:
            if not os.path.lexists(directory):
                self.created.append(directory)  # deepest first
                continue
            if directory == self.root or self.root not in directory.parents:
                return  # the root and above are the user's
            if directory.is_dir() and not directory.is_symlink():
                self.modes[directory] = _mode(directory)

    def probe_symlinks(self) -> None:
        """No symbolic link (or file) where the app's directories go: the backend never follows links below the root."""
        base = self.root / KEY_ROOT
        on_the_way = [self.root / KEY_ROOT.split("/")[0], base, self.app_dir]
        on_the_way += [self.app_dir / t.value for t in StateType]
        for path in on_the_way:
            rel = path.relative_to(self.root)
            if path.is_symlink():
                raise _Stop(
                    "symlinks",
                    Verdict.MISCONFIGURED,
                    f"{rel} is a symbolic link; links below the root are never followed, so states there "
                    "cannot be read or written: make it a directory, or make the root the link's target",
                )
            if os.path.lexists(path) and not path.is_dir():
                raise _Stop("symlinks", Verdict.MISCONFIGURED, f"{rel} is a file where a directory must be")
        self.run.ok("symlinks", f"no symbolic link below the root on the way to {self.app_dir.relative_to(self.root)}")

    def probe_locking(self) -> None:
        """Two open file descriptions of the scratch object's lock file: the second must not get the lock."""
        lock = self.scratch_dir / f".probe{LOCK_SUFFIX}"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        first = os.open(lock, flags, 0o600)
        second = os.open(lock, flags, 0o600)
        try:
            try:
                fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self.run.unsafe(
                    "locking",
                    f"flock fails on this file system ({errno.errorcode.get(exc.errno or 0, exc.errno)})",
                    f"the local backend cannot lock its files here: {LOST_UPDATES} between processes",
                )
                return
            try:
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                self.run.unsafe(
                    "locking",
                    "flock let a second holder take a lock already held",
                    f"locks do not exclude on this file system: {LOST_UPDATES} between processes",
                )
                return
            os.close(first)
            first = -1
            try:
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.run.fail(
                    "locking",
                    "a lock stayed held after its holder closed it",
                    Verdict.UNREACHABLE,
                    "locks are not released on this file system: writes would time out",
                )
                return
            self.run.ok("locking", "flock excludes a second holder and is released when its holder closes")
        finally:
            for fd in (first, second):
                if fd >= 0:
                    os.close(fd)

    def probe_permissions(self) -> None:
        """The scratch object's mode and those of the directories on its way (below the root)."""
        file_mode = _mode(self.scratch_dir / "probe")
        problems = []
        if file_mode & 0o077:
            problems.append(f"files are created {file_mode:04o}, readable by other users")
        wide = []
        narrowed = []
        directory = self.scratch_dir
        while directory != self.root and self.root in directory.parents:
            mode = _mode(directory)
            if mode & 0o077:
                wide.append(f"{directory.relative_to(self.root)} is {mode:04o}")
            before = self.modes.get(directory)
            if before is not None and before != mode:
                narrowed.append(f"{directory.relative_to(self.root)} was {before:04o}")
            directory = directory.parent
        if wide:
            problems.append("directories are open to other users: " + ", ".join(wide))
        if problems:
            self.run.fail("permissions", "; ".join(problems), Verdict.MISCONFIGURED)
            return
        detail = f"files are created {file_mode:04o}, directories {_mode(self.scratch_dir):04o}"
        if narrowed:
            detail += (
                f"; the backend narrows existing directories on its first write there ({', '.join(narrowed)}; "
                "the check put their modes back)"
            )
        self.run.ok("permissions", detail)

    def remove_scratch(self) -> None:
        """Remove the scratch directory with its lock and temp files, the directories made, and restore modes."""
        directory = self.scratch_dir
        if not self.noted:
            return  # the root probe stopped the check: nothing was made
        try:
            with os.scandir(directory) as entries:
                names = [e.name for e in entries if not e.is_dir(follow_symlinks=False)]
            for name in names:
                os.unlink(directory / name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError:
            logger.warning("cannot empty the scratch directory %s", directory, exc_info=True)
        for path in [directory, directory.parent, *self.created]:
            if path == self.scratch_dir.parent and path not in self.created:
                continue  # .statestore-check existed before: another check may be using it
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                logger.debug("leaving %s in place", path, exc_info=True)
        for path, mode in self.modes.items():
            try:
                if os.path.isdir(path) and _mode(path) != mode:
                    os.chmod(path, mode)
            except OSError:
                logger.debug("cannot restore the mode of %s", path, exc_info=True)


async def _check_local(backend: LocalBackend, app: str) -> CheckReport:
    return await _LocalCheck(backend, app)()


# -- S3 -----------------------------------------------------------------------------

_S3_PROBES = (
    "reachable",
    "bucket",
    "sse",
    "put",
    "get",
    "list",
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
        if self.main not in [item["Key"] for item in page.get("Contents", [])]:
            run.fail("list", "the object just written is not listed: list_states may miss a state just written")
        else:
            run.ok("list", "ListObjectsV2 is allowed (s3:ListBucket); the object is listed")

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
        """Delete every scratch object (and its versions on a versioned bucket); returns what is left."""
        prefix = self.backend.object_key(self.scratch)
        keys = set(self.written)
        listing = {"Bucket": self.bucket, "Prefix": prefix}
        page, error = await self.request("delete", "s3:ListBucket", "list_objects_v2", denied_ok=True, **listing)
        if error is None:
            keys.update(item["Key"] for item in page.get("Contents", []))
        for key in sorted(keys):
            _, error = await self.request("delete", "s3:DeleteObject", "delete_object", Bucket=self.bucket, Key=key)
            code, status = _code(error) if error is not None else ("", None)
            if error is not None and code != "NoSuchKey" and status != 404:
                raise _Stop("delete", Verdict.MISCONFIGURED, f"DeleteObject answered {_answer(error)}")
        if self.versioned:
            await self.remove_versions(prefix)
        page, error = await self.request("delete", "s3:ListBucket", "list_objects_v2", denied_ok=True, **listing)
        return [] if error is not None else [item["Key"] for item in page.get("Contents", [])]

    async def remove_versions(self, prefix: str) -> None:
        page, error = await self.request(
            "delete", "s3:ListBucketVersions", "list_object_versions", Bucket=self.bucket, Prefix=prefix
        )
        if error is not None:
            raise _Stop("delete", Verdict.MISCONFIGURED, f"ListObjectVersions answered {_answer(error)}")
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            _, error = await self.request(
                "delete",
                "s3:DeleteObjectVersion",
                "delete_object",
                Bucket=self.bucket,
                Key=item["Key"],
                VersionId=item["VersionId"],
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
