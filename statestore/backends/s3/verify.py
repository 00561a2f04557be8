"""Safe by default: before a backend's first write, prove that the server honours the conditions CAS relies on.

The probes run on scratch objects under ``.statestore-probe/<random>/`` (after the
backend's prefix: never a state's key, never listed as one) and remove them
afterwards; no other key is touched. In order, on one scratch key:

1. create (If-None-Match: *) -- must land;
2. create again -- must be refused (else the server ignores If-None-Match);
3. If-Match with the current ETag -- must land, in the configured form or (``auto``)
   the other one, which is then kept (Ceph RGW wants it bare);
4. If-Match with a stale ETag -- must be refused (else the server ignores If-Match);
5. If-Match on a missing key -- must be refused, nothing created.

Six requests on a server that passes (one more where the If-Match form is learnt,
and one per version to remove on a versioned bucket). A pass is kept for the life of
the process, per server and bucket (``remember_pass``): a process that builds a
backend per job verifies each bucket once. A server that fails makes every write of
that backend raise ``UnsafeBackendError``. A probe that fails for another reason
(unreachable, denied) raises that error and leaves the verdict unknown: the next
write tries again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from ...errors import StateStoreError
from .classify import Kind, classify
from .conditions import IfMatchForm, if_match_header
from .transport import S3Error, S3Object, Stored, Transport

logger = logging.getLogger(__name__)

#: Scratch objects of the probes live under this key (after the backend's prefix).
PROBE_PREFIX = ".statestore-probe/"
_STALE_ETAG = "00000000000000000000000000000000"
_RUN_CHECK = "run 'statestore check' for the full report"


@dataclass(frozen=True)
class Verdict:
    """The outcome: ``problems`` empty means safe."""

    problems: tuple[str, ...]

    @property
    def safe(self) -> bool:
        return not self.problems


#: The servers that passed in this process -- (transport, endpoint, region, bucket, If-Match setting) -- with the
#: If-Match form each honours. Only passes are kept: a backend built anew on a server that failed asks again.
_PASSED: dict[tuple[str, ...], str] = {}


def passed_before(server: tuple[str, ...]) -> str | None:
    """The If-Match form ``server`` honoured when it passed in this process, or None if it has not passed."""
    return _PASSED.get(server)


def remember_pass(server: tuple[str, ...], form: str) -> None:
    """Keep, for this process, that ``server`` passed, honouring If-Match in ``form``."""
    _PASSED[server] = form


#: Runs one request on the backend's transport, retrying transient failures; raises ``S3Error``.
Retrying = Callable[[Callable[[Transport], Awaitable[object]]], Awaitable[object]]


class Verification:
    """The probes of one backend, through its transport with its retries (``retrying``)."""

    def __init__(
        self, retrying: Retrying, full_key: Callable[[str], str], versions_retrying: Callable[[], Awaitable[Retrying]]
    ) -> None:
        self._retrying = retrying
        self._full_key = full_key
        self._versions_retrying = versions_retrying  #: a transport that can delete versions (aioboto3 for obstore)
        self.requests = 0

    async def _send(self, fn: Callable[[Transport], Awaitable[object]]) -> tuple[object | None, S3Error | None, int]:
        """One probe request: ``(answer, None, tries)``, or ``(None, error, tries)`` for a refused condition or a
        missing key. Any other failure is raised: it says nothing about the server's conditions."""
        tries = 0

        async def counted(transport: Transport) -> object:
            nonlocal tries
            tries += 1
            self.requests += 1
            return await fn(transport)

        try:
            return await self._retrying(counted), None, tries
        except S3Error as exc:
            if classify(exc) is Kind.CONDITION_FAILED or exc.code == "NoSuchKey":
                return None, exc, tries
            raise

    async def _landed(self, key: str, body: bytes) -> Stored | None:
        """After a refusal of a resent put: whether an earlier try of it landed (its answer was lost)."""
        got, _, _ = await self._send(lambda t: t.get(key))
        if isinstance(got, S3Object) and got.data == body:
            return Stored(got.etag, got.version_id)
        return None

    async def run(self, form: IfMatchForm, where: str) -> Verdict:
        scratch = PROBE_PREFIX + os.urandom(8).hex() + "/"
        key, missing = self._full_key(scratch + "cas"), self._full_key(scratch + "missing")
        versions: list[tuple[str, str]] = []
        written: set[str] = set()

        async def put(k: str, body: bytes, **conditions: object) -> tuple[Stored | None, S3Error | None]:
            written.add(k)
            body = body[:-1] + b', "n": "' + os.urandom(4).hex().encode() + b'"}'  # each put's bytes its own
            answer, error, tries = await self._send(lambda t: t.put(k, body, **conditions))  # type: ignore[arg-type]
            stored = answer if isinstance(answer, Stored) else None
            if error is not None and tries > 1 and (stored := await self._landed(k, body)) is not None:
                error = None
            if stored is not None and stored.version_id:
                versions.append((k, stored.version_id))
            return stored, error

        problems: list[str] = []
        try:
            first, error = await put(key, b'{"probe": 1}', create=True)
            if first is None:
                return Verdict((f"it refuses If-None-Match: * on a new key ({error.reason if error else ''})",))
            again, _ = await put(key, b'{"probe": 2}', create=True)
            etag = first.etag
            if again is not None:
                problems.append("it ignores If-None-Match: * (a second create of one key was accepted)")
                etag = again.etag
            current = await self._if_match_current(put, key, etag, form, where)
            if current is None:
                tried = "form" if form.setting != "auto" else "quoted and unquoted forms"
                problems.append(
                    f"it refuses If-Match holding the object's current ETag ({tried}; STATESTORE_S3_IF_MATCH "
                    f"is {form.setting!r})"
                )
            else:
                stale, _ = await put(key, b'{"probe": 4}', if_match=if_match_header(_STALE_ETAG, form.form))
                if stale is not None:
                    problems.append("it ignores If-Match (a write with a stale ETag was accepted)")
            created, _ = await put(missing, b'{"probe": 5}', if_match=if_match_header(_STALE_ETAG, form.form))
            if created is not None:
                problems.append("it ignores If-Match on a missing key (the write created it)")
        finally:
            await self._remove(written, versions)
        return Verdict(tuple(problems))

    async def _if_match_current(
        self,
        put: Callable[..., Awaitable[tuple[Stored | None, S3Error | None]]],
        key: str,
        etag: str,
        form: IfMatchForm,
        where: str,
    ) -> Stored | None:
        """If-Match with the current ETag in the form in use, then (``auto``) the other; the form that lands is kept."""
        tried = form.form
        stored, _ = await put(key, b'{"probe": 3}', if_match=if_match_header(etag, tried))
        other = form.alternative(tried)
        if stored is None and other is not None:
            stored, _ = await put(key, b'{"probe": 3}', if_match=if_match_header(etag, other))
            if stored is not None:
                form.learn(other, where)
        return stored

    async def _remove(self, written: set[str], versions: list[tuple[str, str]]) -> None:
        """Delete the scratch objects (each version made, on a versioned bucket); never any other key."""
        try:
            if versions:  # a versioned bucket: each version made, so no version or delete marker stays
                retrying = await self._versions_retrying()
                for key, version in versions:
                    self.requests += 1
                    await retrying(partial(_delete, key=key, version_id=version))
                return
            for key in sorted(written):
                self.requests += 1
                await self._retrying(partial(_delete, key=key, version_id=None))
        except (S3Error, StateStoreError) as exc:
            logger.warning("could not remove the verification's scratch objects (%s)", exc)


async def _delete(transport: Transport, *, key: str, version_id: str | None) -> str | None:
    return await transport.delete(key, version_id=version_id)


def unsafe_message(where: str, verdict: Verdict) -> str:
    return (
        f"{where} does not honour the conditional requests that keep concurrent updates safe: "
        f"{'; '.join(verdict.problems)}. Nothing was written; reads still work; {_RUN_CHECK}. "
        "If you verified this server otherwise, STATESTORE_S3_VERIFY=false turns this verification off "
        "(concurrent updates may then be lost silently)"
    )
