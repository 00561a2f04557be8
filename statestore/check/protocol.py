"""The conditional-write probes through the ``ObjectBackend`` API: for memory, local and any other backend."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar

from ..backends.base import Capability, ObjectBackend, PreconditionFailed, PutMode, Versioned, same_etag
from ..backends.memory import MemoryBackend
from ..errors import ListingOutOfPrefixError, StateStoreError
from .report import LOST_UPDATES, CheckReport, CheckRun, StopCheck, Verdict, scratch_prefix

logger = logging.getLogger(__name__)

T = TypeVar("T")


PROTOCOL_PROBES = (
    "put",
    "get",
    "list",
    "list-prefix",
    "create-if-absent",
    "if-match",
    "stale-if-match",
    "if-match-missing",
    "conditional-delete",
)


class ProtocolProbes:
    """The conditional-write probes through the ``ObjectBackend`` API; failures of I/O become ``failure``."""

    def __init__(self, run: CheckRun, backend: ObjectBackend, scratch: str, failure: Verdict) -> None:
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
            raise StopCheck(probe, self.failure, f"{type(exc).__name__}: {exc}") from None

    async def _create(self, probe: str, key: str, data: bytes) -> str:
        """A create of a fresh scratch key, which must succeed."""
        self.written.append(key)
        try:
            return (await self._io(probe, self.backend.put(key, data, PutMode.CREATE))).etag
        except PreconditionFailed:
            raise StopCheck(
                probe, Verdict.UNSAFE, "a create of a new key was refused: no state can be created"
            ) from None

    async def writes(self) -> None:
        """Everything up to (not including) the final delete; leaves the main scratch object in place."""
        b, run = self.backend, self.run
        v1, v2 = b'{"statestore-check": 1}', b'{"statestore-check": 2}'
        etag1 = await self._create("put", self.main, v1)
        run.ok("put", "a new object was written")
        got = await self._io("get", b.get(self.main))
        if not isinstance(got, Versioned) or got.data != v1 or not same_etag(got.etag, etag1):
            raise StopCheck("get", Verdict.UNSAFE, "the object read back is not the one written")
        run.ok("get", "the object reads back with the ETag the write returned")
        keys = await self._listed("list", self.scratch)
        if keys is not None and self.main in keys:
            run.ok("list", "the object is listed")
        else:
            run.fail("list", "the object just written is not listed: list_states may miss a state just written")
        empty = self.scratch + "list-prefix/"  # nothing is stored under it
        under_empty = await self._listed("list-prefix", empty)
        answers = ((keys, self.scratch), (under_empty, empty))
        if any(got is None or not all(key.startswith(asked) for key in got) for got, asked in answers):
            run.unsafe(
                "list-prefix",
                "a listing answered keys outside the prefix asked for",
                "the backend ignores the prefix of a listing: list, prune, copy and reencrypt would see objects "
                "that are not this app's (statestore refuses such listings)",
            )
        else:
            run.ok("list-prefix", "listings answer only keys under the prefix asked for")

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
            raise StopCheck("if-match", Verdict.UNSAFE, "a write with the current ETag was refused") from None
        run.ok("if-match", "a write with the current ETag succeeded")
        try:
            await self._io("stale-if-match", b.put(self.main, b'{"stale": 1}', PutMode.update(etag1)))
        except PreconditionFailed:
            got = await self._io("stale-if-match", b.get(self.main))
            if isinstance(got, Versioned) and got.data == v2:
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

        if not await self._io("conditional-delete", b.supports(Capability.CONDITIONAL_DELETE)):
            run.skipped("conditional-delete", "the backend says it has no conditional delete")
            return
        try:
            await self._io("conditional-delete", b.delete(self.main, if_match=fake_etag("wrong")))
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

    async def _listed(self, probe: str, prefix: str) -> list[str] | None:
        """The keys the backend lists under ``prefix``; None if it refused its own listing (keys outside it)."""
        try:
            return [meta.key async for meta in self.backend.list(prefix)]
        except ListingOutOfPrefixError:
            return None
        except StateStoreError as exc:
            raise StopCheck(probe, self.failure, f"{type(exc).__name__}: {exc}") from None

    async def delete(self) -> None:
        """Remove every scratch object (the "delete" probe); ``StopCheck`` if that fails."""
        for key in self.written:
            await self._io("delete", self.backend.delete(key))
        left = [key for key in await self._listed("delete", self.scratch) or [] if key.startswith(self.scratch)]
        if left:
            raise StopCheck("delete", self.failure, f"deleted objects are still listed: {', '.join(left)}")
        self.run.ok("delete", f"{len(self.written)} scratch objects were removed")

    async def cleanup(self) -> None:
        """Best effort after a stop: remove what may have been written."""
        for key in self.written:
            try:
                await self.backend.delete(key)
            except Exception:
                logger.debug("removing scratch object %s failed", key, exc_info=True)


def fake_etag(text: str) -> str:
    return '"' + hashlib.md5(f"statestore-check {text}".encode(), usedforsecurity=False).hexdigest() + '"'


async def _protocol_check(
    backend: ObjectBackend, app: str, kind: str, first: Sequence[str], notes: Iterable[tuple[str, str]], safe: str
) -> CheckReport:
    run = CheckRun([*first, *PROTOCOL_PROBES, "delete"])
    for name, detail in notes:
        run.ok(name, detail)
    proto = ProtocolProbes(run, backend, scratch_prefix(app), Verdict.UNREACHABLE)
    try:
        await proto.writes()
        await proto.delete()
    except StopCheck as stop:
        run.stop(stop)
        await proto.cleanup()
    return run.report(backend.describe(), kind, {}, safe)


async def check_memory(backend: MemoryBackend, app: str) -> CheckReport:
    """An in-process dict under one lock: trivially safe; the protocol probes still run."""
    scope = (
        "scope",
        "an in-process dictionary: only this process sees its states, and they are gone when it exits",
    )
    safe = "trivially: one process, one dictionary under a lock; states do not outlive the process"
    return await _protocol_check(backend, app, "memory", ["scope"], [scope], safe)


async def check_other(backend: ObjectBackend, app: str) -> CheckReport:
    """A backend statestore does not know: only what its ``ObjectBackend`` API shows."""
    note = ("backend", f"{type(backend).__name__}: probed through the ObjectBackend API only")
    safe = "as far as its ObjectBackend API shows"
    return await _protocol_check(backend, app, "other", ["backend"], [note], safe)
