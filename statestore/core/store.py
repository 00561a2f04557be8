"""``Store``: the public API of statestore on one backend for one app, and the checks on its input.

Each call checks its input before any I/O, then hands one change to the
``Coalescer`` (``coalesce.py``), which batches concurrent changes to one state
into one pass of the compare-and-swap loop (``CompareAndSwap`` in ``cas.py``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple

from .. import telemetry as _telemetry
from ..backends.base import ObjectBackend, PutMode
from ..check import CheckReport, check_backend
from ..config.settings import (
    DEFAULT_APP_NAME,
    DEFAULT_CACHE_BYTES,
    DEFAULT_MAX_STATE_BYTES,
    Settings,
    backend_from_settings,
)
from ..config.url import parse_store_url
from ..errors import (
    BackendError,
    ConditionalDeleteUnsupportedError,
    InvalidInputError,
    StateStoreError,
    VersionNotFoundError,
)
from ..util.offload import check_concurrency, is_small, offload, run_workers
from ..util.retry import RetryPolicy
from .cas import RESEAL, Change, CompareAndSwap, Expected, Merge, Replace, State, Update, UpdateFn
from .coalesce import Coalescer
from .codec import Codec, check_json
from .crypto import EncryptingCodec
from .paths import StateKey, listed_id, state_key, type_prefix, validate_app_name
from .statetype import StateType

__all__ = ["State", "StateInfo", "StateVersion", "Store", "UpdateFn", "VersionedState"]

logger = logging.getLogger(__name__)

_KEY_MEMO = 4096  # validated (id, type) pairs remembered per store
_MAX_VERSION_CHARS = 1024


class VersionedState(NamedTuple):
    """A state and its version: an opaque string to pass back as ``if_version=`` (None: no state stored)."""

    state: State
    version: str | None


class Store:
    """A state store: reads and compare-and-swap writes of JSON states on one backend for one app.

    ``Store`` objects are cheap to share: use one per backend for the life of
    the process, from any number of tasks, threads and event loops; close it
    with ``await store.aclose()`` or ``async with store:``.
    """

    def __init__(
        self,
        backend: ObjectBackend,
        *,
        app_name: str = DEFAULT_APP_NAME,
        codec: Codec | None = None,
        retry: RetryPolicy | None = None,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        cache_size: int = 1024,
        coalesce: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.app_name = validate_app_name(app_name)
        self.coalesce = coalesce
        codec = codec if codec is not None else EncryptingCodec()
        self._backend = backend
        if _telemetry.ENABLED:  # decided once at import: without opentelemetry the backend is not wrapped
            backend = _telemetry.TelemetryBackend(backend, self.app_name)
        self._cas = CompareAndSwap(backend, codec, retry or RetryPolicy(), max_state_bytes, cache_size, cache_bytes)
        self._coalescer: Coalescer[Change] = Coalescer(self._cas.apply)
        self._keys: dict[tuple[str, str], StateKey] = {}

    @property
    def backend(self) -> ObjectBackend:
        return self._backend

    @property
    def codec(self) -> Codec:
        return self._cas.codec

    @property
    def retry(self) -> RetryPolicy:
        return self._cas.retry

    @property
    def max_state_bytes(self) -> int:
        """The largest state (plain JSON) a write may store; a change that crosses it fails alone."""
        return self._cas.max_state_bytes

    @max_state_bytes.setter
    def max_state_bytes(self, value: int) -> None:
        self._cas.max_state_bytes = value

    def __repr__(self) -> str:
        return f"Store({self.backend.describe()}, app_name={self.app_name!r})"

    def key(self, id: str, type: StateType | str) -> StateKey:  # noqa: A002
        """Validate ``id`` and ``type`` and return where that state lives (validated pairs are remembered)."""
        if id.__class__ is not str or not isinstance(type, str):
            return state_key(self.app_name, type, id, key_prefix=self.backend.key_prefix)
        memo = (id, type)
        skey = self._keys.get(memo)
        if skey is None:
            skey = state_key(self.app_name, type, id, key_prefix=self.backend.key_prefix)
            if len(self._keys) >= _KEY_MEMO:
                self._keys.clear()
            self._keys[memo] = skey
        return skey

    # -- reading and saving ----------------------------------------------------

    async def get_state(self, id: str, type: StateType | str) -> State:  # noqa: A002
        """The stored state; ``{}`` only if it does not exist. Always asks the backend."""
        return await self._cas.read_state(self.key(id, type))

    async def save_state(
        self,
        key: str,
        value: Any,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> None:
        """Set one top-level ``key`` of the state to ``value``, keeping every other key.

        With ``if_version`` (from ``get_versioned_state``), only if that version is still
        stored; else ``VersionConflictError`` and nothing changes.
        """
        skey = self.key(id, type)
        if not isinstance(key, str):
            raise InvalidInputError(f"state key must be a string, not {key.__class__.__name__}")
        expected = _expected(if_version)
        values = {key: value}
        pending = self._check(skey, values, value)
        if pending is not None:
            await pending
        await self._submit(skey, Merge(values, large=pending is not None), returns=False, expected=expected)

    async def save_state_object(
        self,
        id: str,  # noqa: A002
        value: Mapping[str, Any],
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> State:
        """Shallow-merge ``value`` into the state and return the complete merged state.

        With ``if_version``, only if that version is still stored (else ``VersionConflictError``).
        """
        skey = self.key(id, type)
        expected = _expected(if_version)
        values = _as_dict(value)
        pending = self._check(skey, values, values)
        if pending is not None:
            await pending
        return await self._submit(skey, Merge(values, large=pending is not None), expected=expected)

    # -- updating, replacing, deleting, listing --------------------------------

    async def update_state(self, id: str, type: StateType | str, fn: UpdateFn) -> State:  # noqa: A002
        """Replace the state with ``fn(copy of state)`` and return what was stored.

        ``fn`` runs on the event loop, so keep it quick: nothing else on the loop runs while it
        does. It gets a deep copy of its own (made in a worker thread for large states) and may
        mutate and return it; its result is checked before it is stored. ``fn`` may run more
        than once: again after a conflict with another writer, and when a batch of coalesced
        changes is re-applied one by one (a change in it did not encode or crossed the size limit).
        Whatever ``fn`` raises, even a ``BaseException``, fails this call alone.
        """
        skey = self.key(id, type)
        if not callable(fn):
            raise InvalidInputError("fn must be callable")
        return await self._submit(skey, Update(fn))

    async def replace_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        value: Mapping[str, Any],
        *,
        if_version: str | None = None,
    ) -> State:
        """Store ``value`` as the whole state, whatever is stored now (also a corrupt state).

        With ``if_version``, only if that version is still stored (else ``VersionConflictError``).
        """
        skey = self.key(id, type)
        expected = _expected(if_version)
        values = _as_dict(value)
        pending = self._check(skey, values, values)
        if pending is not None:
            await pending
        return await self._submit(skey, Replace(values, large=pending is not None), expected=expected)

    async def delete_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
    ) -> None:
        """Remove the state; a missing state is not an error.

        With ``if_version``, only if that version is still stored, else ``VersionConflictError``
        (also when the state is gone). It needs a backend that honours a conditional delete:
        on a server that ignores it (MinIO, Ceph RGW) it raises ``ConditionalDeleteUnsupportedError``
        and deletes nothing.
        """
        skey = self.key(id, type)
        _expected(if_version)
        await self._cas.delete(skey, if_version)

    async def iter_states(self, type: StateType | str) -> AsyncIterator[str]:  # noqa: A002
        """Yield the ids of this app's states of ``type`` as the backend lists them (streaming, unsorted)."""
        stype = StateType.coerce(type)
        prefix = type_prefix(self.app_name, stype)
        try:
            where = self.backend.describe()
            async for key in self._cas.backend.list_keys(prefix):
                state_id = listed_id(prefix, key, where)
                if state_id is not None:
                    yield state_id
        except StateStoreError:
            raise
        except Exception as exc:
            raise BackendError(f"listing {stype.value} states failed ({exc.__class__.__name__})") from exc

    async def list_states(self, type: StateType | str) -> list[str]:  # noqa: A002
        """The ids of this app's states of ``type``, sorted."""
        return sorted([state_id async for state_id in self.iter_states(type)])

    async def reencrypt_states(
        self,
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Rewrite every state of ``type`` whose stored form is outdated; returns how many were outdated.

        Outdated means what the codec flags with ``reseal``: sealed under an
        old key (after a key rotation), plain JSON where encryption is now on,
        or encrypted where it is now off. Each rewrite is a conditional write
        through the normal compare-and-swap loop, so a concurrent update is
        never lost (if another writer rewrites a state first, its write counts
        and this one is skipped). A state that cannot be read (``DecryptionError``: a key
        nobody configured) stops the run with that error; states done before
        it stay done, and running again is safe. ``statestore reencrypt`` calls it.
        ``progress(done, total)`` is called after each state.
        """
        stype = StateType.coerce(type)
        check_concurrency(concurrency)
        if progress is not None and not callable(progress):
            raise InvalidInputError("progress must be callable")
        listed = await self.list_states(stype)
        ids = iter(listed)
        count = done = 0

        async def worker() -> None:
            nonlocal count, done
            for state_id in ids:  # a plain iterator shared by the workers: each id is taken once
                if await self._reseal(self.key(state_id, stype)):
                    count += 1
                done += 1
                if progress is not None:
                    progress(done, len(listed))

        await run_workers(worker, concurrency)
        return count

    async def aclose(self) -> None:
        """Close the backend's connections; the store opens new ones if used again."""
        await self.backend.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def check(self) -> CheckReport:
        """Probe the backend on scratch objects under this app's prefix: is compare-and-swap safe on it?

        Nothing stored is touched and the scratch objects are removed. The
        report names each probe, a verdict and the settings to use (for
        example the ``If-Match`` form an S3 server honours); see ``statestore.check``.
        """
        return await check_backend(self.backend, self.app_name)

    async def get_states(
        self,
        ids: Iterable[str],
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 16,
    ) -> dict[str, State]:
        """The states of ``ids``, read ``concurrency`` at a time: ``{id: state}``, ``{}`` for a missing one.

        Every requested id is a key, in the order first requested (a repeated id is read once).
        Every id and the type are checked before any request. Any failure (a corrupt state, the
        backend) raises, and the reads still running are cancelled: it never returns part of the answer.
        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidInputError(f"ids must be a collection of ids, not {ids.__class__.__name__}")
        check_concurrency(concurrency)
        stype = StateType.coerce(type)
        wanted: dict[str, None] = {}
        for state_id in ids:
            self.key(state_id, stype)  # raises for a bad id before anything is read
            wanted[state_id] = None
        found: dict[str, State] = {}
        queue = iter(wanted)

        async def worker() -> None:
            for state_id in queue:  # a plain iterator shared by the workers: each id is taken once
                found[state_id] = await self.get_state(state_id, stype)

        await run_workers(worker, min(concurrency, len(wanted)))
        return {state_id: found[state_id] for state_id in wanted}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Store:
        """A store on the backend ``url`` names (see ``statestore.url``); ``options`` go to ``Store``.

        ``file:///abs/path`` or ``file:relative/path``, ``memory://``, or
        ``s3://bucket[/prefix][?endpoint_url=...&region=...]`` (credentials from the AWS chain).
        The URL decides the backend and its place, as ``STATESTORE_URL`` does; the other backend
        settings (timeouts, SSE, If-Match form...) come from the environment, as for the default store.
        """
        settings = Settings.from_env(**parse_store_url(url).settings_fields())
        return cls(backend_from_settings(settings), **options)

    async def get_versioned_state(self, id: str, type: StateType | str) -> VersionedState:  # noqa: A002
        """The stored state and its version (``({}, None)`` if it does not exist). Always asks the backend.

        Pass the version back as ``if_version=`` to change the state only if nobody changed it
        meanwhile: a read-modify-write that spans your own code (a request, a human).
        """
        state, version = await self._cas.read_versioned(self.key(id, type))
        return VersionedState(state, version)

    async def create_state(self, id: str, type: StateType | str, value: Mapping[str, Any]) -> State:  # noqa: A002
        """Store ``value`` only if no state exists, else ``StateExistsError``; returns what was stored.

        Of concurrent creators (tasks, processes, machines) exactly one wins.
        """
        skey = self.key(id, type)
        values = _as_dict(value)
        pending = self._check(skey, values, values)
        if pending is not None:
            await pending
        return await self._submit(skey, Replace(values, large=pending is not None), expected=PutMode.CREATE)

    # -- the work behind the public API --------------------------------------------

    def _check(self, skey: StateKey, values: dict[str, Any], size_of: Any) -> Awaitable[None] | None:
        """Check what a call sets before any I/O: plain JSON that the codec accepts.

        A small value (judged on ``size_of``, the common case) is checked right here: None. For a
        large one, the awaitable that checks it in a worker thread, where the work on the change goes too.
        """
        if not is_small(size_of):
            return offload(True, self._check_values, skey, values)
        self._check_values(skey, values)
        return None

    def _check_values(self, skey: StateKey, values: dict[str, Any]) -> None:
        check_json(values, "value")
        self._cas.codec.check(skey, values)

    def _submit(
        self, skey: StateKey, change: Change, returns: bool = True, expected: Expected | None = None
    ) -> Awaitable[State]:
        """Apply one change, coalesced with concurrent changes to the same state unless ``coalesce`` is off.

        A versioned change (``expected``) is never coalesced: it is written alone, with its own precondition.
        Returns the coroutine that does it (no frame of its own on the path of every write).
        """
        if expected is not None:
            return self._versioned(skey, change, expected)
        if not self.coalesce:
            return self._coalescer.alone(skey, change)
        return self._coalescer.submit(skey, change, returns)

    async def _versioned(self, skey: StateKey, change: Change, expected: Expected) -> State:
        return (await self._cas.apply(skey, [change], expected)).own()

    async def _reseal(self, skey: StateKey) -> bool:
        """Rewrite one state if the codec says its stored form is outdated; True if it was."""
        if not await self._cas.outdated(skey):
            return False
        await self._submit(skey, RESEAL, returns=False)
        return True

    # -- metadata and pruning ------------------------------------------------------

    async def iter_state_info(self, type: StateType | str) -> AsyncIterator[StateInfo]:  # noqa: A002
        """Yield the id, version, size and last change of each state of ``type``, from the listing alone (unsorted).

        No state is read: ``version`` is the ETag where the listing carries it (S3, memory) and
        None where it does not (the local backend).
        """
        stype = StateType.coerce(type)
        prefix = type_prefix(self.app_name, stype)
        try:
            where = self.backend.describe()
            async for meta in self._cas.backend.list(prefix):
                state_id = listed_id(prefix, meta.key, where)
                if state_id is not None:
                    yield StateInfo(state_id, meta.etag, meta.size, meta.last_modified)
        except StateStoreError:
            raise
        except Exception as exc:
            raise BackendError(f"listing {stype.value} states failed ({exc.__class__.__name__})") from exc

    async def list_state_info(self, type: StateType | str) -> list[StateInfo]:  # noqa: A002
        """``iter_state_info``, sorted by id."""
        return sorted([info async for info in self.iter_state_info(type)], key=lambda info: info.id)

    async def prune_states(
        self,
        type: StateType | str,  # noqa: A002
        *,
        older_than: timedelta,
        dry_run: bool = False,
        allow_unconditional: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Delete the states of ``type`` last changed before now - ``older_than``; returns their ids, sorted.

        Each is deleted only if it is still the version listed (a conditional delete), so a state
        updated meanwhile is kept. Where the listing has no version (local), it is read, and kept
        unless a second listing shows it unchanged. Where the server ignores conditional deletes
        (MinIO, Ceph RGW) this raises ``ConditionalDeleteUnsupportedError`` before deleting anything,
        unless ``allow_unconditional``: then each is re-read and deleted unconditionally if unchanged,
        which can lose an update made in between (see docs/decisions/0034). ``dry_run`` deletes
        nothing and returns the ids a run would consider. ``progress(done, total)`` is called per state.
        """
        stype = StateType.coerce(type)
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise InvalidInputError(f"older_than must be a positive timedelta, not {older_than!r}")
        for name, flag in (("dry_run", dry_run), ("allow_unconditional", allow_unconditional)):
            if not isinstance(flag, bool):
                raise InvalidInputError(f"{name} must be True or False, not {flag!r}")
        if progress is not None and not callable(progress):
            raise InvalidInputError("progress must be callable")
        try:
            cutoff = datetime.now(UTC) - older_than
        except OverflowError:
            raise InvalidInputError(
                f"older_than is too long ({older_than.days} days): that is before the year 1, no state is that old"
            ) from None
        stale = sorted(
            [info async for info in self.iter_state_info(stype) if info.last_modified < cutoff], key=lambda i: i.id
        )
        if dry_run:
            return [info.id for info in stale]
        stale = await self._with_versions(stype, stale)
        pruned: list[str] = []
        conditional = True
        for done, info in enumerate(stale, 1):
            skey = self.key(info.id, stype)
            assert info.version is not None
            try:
                if conditional:
                    try:
                        deleted = await self._cas.delete_if(skey, info.version)
                    except ConditionalDeleteUnsupportedError as exc:
                        if not allow_unconditional:
                            raise ConditionalDeleteUnsupportedError(
                                f"{exc}; prune deletes only states unchanged since listed, which this server "
                                "cannot guarantee: pass allow_unconditional=True (statestore prune "
                                "--allow-unconditional) to accept losing an update made during the prune"
                            ) from exc
                        logger.warning(
                            "%s ignores conditional deletes: pruning unconditionally", self.backend.describe()
                        )
                        conditional = False
                if not conditional:
                    deleted = await self._cas.delete_if_unchanged(skey, info.version)
            except StateStoreError as exc:
                _annotate(exc, "prune_states", info.id, stype.value)
                raise
            if deleted:
                pruned.append(info.id)
            if progress is not None:
                progress(done, len(stale))
        return pruned

    async def _with_versions(self, stype: StateType, stale: list[StateInfo]) -> list[StateInfo]:
        """``stale`` with a version each: read where the listing had none, kept if a second listing agrees.

        A state read after it changed would give the new version; the second listing (after the
        reads) shows its change, so it is dropped rather than deleted.
        """
        unknown = [info for info in stale if info.version is None]
        if not unknown:
            return stale
        read: dict[str, str] = {}
        for info in unknown:
            etag = await self._cas.current_etag(self.key(info.id, stype))
            if etag is not None:
                read[info.id] = etag
        again = {info.id: info async for info in self.iter_state_info(stype)}
        kept: list[StateInfo] = []
        for info in stale:
            if info.version is not None:
                kept.append(info)
                continue
            now = again.get(info.id)
            if info.id in read and now is not None and (now.size, now.last_modified) == (info.size, info.last_modified):
                kept.append(info._replace(version=read[info.id]))
        return kept

    # -- history and restore (backends that keep versions) -----------------------------

    async def state_history(self, id: str, type: StateType | str) -> list[StateVersion]:  # noqa: A002
        """The kept versions of the state, newest first: version id, last change, size stored, deletion or not.

        Needs a backend that keeps versions (S3 with bucket versioning on); any other raises
        ``VersionsUnsupportedError``, saying how to enable them. A state never written has none.
        """
        skey = self.key(id, type)
        return [StateVersion(v.version_id, v.last_modified, v.size, v.deleted) for v in await self._cas.versions(skey)]

    async def get_state_version(self, id: str, type: StateType | str, version: str) -> State:  # noqa: A002
        """The state as it was at ``version`` (an id from ``state_history``), decrypted as a current read is.

        ``VersionNotFoundError`` if the state has no such version, or that version is a deletion.
        """
        skey = self.key(id, type)
        return await self._state_version(skey, _version_id(version))

    async def restore_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        version: str,
        *,
        if_version: str | None = None,
    ) -> State:
        """Make the state what it was at ``version`` (from ``state_history``) again; returns what was stored.

        The restore is a new write through the compare-and-swap loop, like ``replace_state``: it never
        overwrites blindly, credentials are sealed anew with the current key, and the version restored
        from stays in the history. With ``if_version`` (from ``get_versioned_state``) only if that version
        is still the current one (else ``VersionConflictError``). An unknown ``version`` raises
        ``VersionNotFoundError`` and writes nothing.
        """
        skey = self.key(id, type)
        version_id = _version_id(version)
        expected = _expected(if_version)
        values = await self._state_version(skey, version_id)
        pending = self._check(skey, values, values)
        if pending is not None:
            await pending
        return await self._submit(skey, Replace(values, large=pending is not None), expected=expected)

    async def _state_version(self, skey: StateKey, version_id: str) -> State:
        state = await self._cas.read_version(skey, version_id)
        if state is None:
            raise VersionNotFoundError(
                f"{skey} has no version {version_id!r} with content (not in its history, or a deletion); "
                "see state_history (statestore history ID)"
            )
        return state


def _expected(version: str | None) -> Expected | None:
    """The precondition ``if_version=`` asks for (None: none); ``InvalidInputError`` for anything but a version."""
    if version is None:
        return None
    if (
        version.__class__ is not str
        or not version.strip('"')
        or len(version) > _MAX_VERSION_CHARS
        or not (version.isascii() and version.isprintable())
    ):
        shown = repr(version) if len(repr(version)) <= 80 else repr(version)[:76] + "..."
        raise InvalidInputError(
            f"if_version must be a version from get_versioned_state (a non-empty string), not {shown}"
        )
    return PutMode.update(version)


def _as_dict(value: Any) -> dict[str, Any]:
    """A mapping a call sets, as a dict of its own."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"value must be a dict, not {value.__class__.__name__}")
    return dict(value)


def _version_id(version: Any) -> str:
    """``version`` if it can be a kept version's id (a short printable string), else ``InvalidInputError``."""
    if (
        version.__class__ is not str
        or not version
        or len(version) > _MAX_VERSION_CHARS
        or not (version.isascii() and version.isprintable())
    ):
        shown = repr(version) if len(repr(version)) <= 80 else repr(version)[:76] + "..."
        raise InvalidInputError(f"version must be a version id from state_history (a non-empty string), not {shown}")
    return version


class StateInfo(NamedTuple):
    """What the listing says of one state: ``version`` is its ETag (None where the listing cannot know it).

    ``size`` is the bytes stored (sealed, if encrypted), not the plain JSON.
    """

    id: str
    version: str | None
    size: int
    last_modified: datetime  # timezone-aware, UTC


class StateVersion(NamedTuple):
    """One kept version of a state (``state_history``): its id, when it was written, bytes stored, deletion or not.

    ``size`` is the bytes stored (sealed, if encrypted); a deletion has no content (size 0).
    """

    version: str
    last_modified: datetime  # timezone-aware, UTC
    size: int
    deleted: bool = False


# -- which state an error is about -------------------------------------------------

_NOT_ANNOTATED = frozenset({"aclose", "check"})


def _annotate(exc: StateStoreError, operation: str, state_id: Any, state_type: Any) -> None:
    """Say on ``exc`` which call failed, and for which state where known (an inner call's state is kept)."""
    exc.operation = operation
    if exc.state_id is None and isinstance(state_id, str):
        exc.state_id = state_id
    if exc.state_type is None:
        if isinstance(state_type, StateType):
            exc.state_type = state_type.value
        elif isinstance(state_type, str):
            exc.state_type = state_type


def _wrapped(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` traced where opentelemetry is installed, then every ``StateStoreError`` it raises annotated.

    The outer wrapper is always an ``async def`` (or an async generator): each method stays a coroutine function.
    """
    signature = inspect.signature(method)
    annotates = name not in _NOT_ANNOTATED
    if _telemetry.ENABLED:  # a span per operation (statestore.telemetry), only where opentelemetry is installed
        method = _telemetry.traced(name, method)

    def about(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        try:
            bound = signature.bind(*args, **kwargs).arguments
        except TypeError:
            return None, None
        return bound.get("id"), bound.get("type")

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async with contextlib.aclosing(method(*args, **kwargs)) as items:  # closed when our consumer stops
                    async for item in items:
                        yield item
            except StateStoreError as exc:
                if annotates:
                    _annotate(exc, name, *about(args, kwargs))
                raise

        return iterate

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except StateStoreError as exc:
            if annotates:
                _annotate(exc, name, *about(args, kwargs))
            raise

    return call


for _name, _method in list(vars(Store).items()):
    if not _name.startswith("_") and (inspect.iscoroutinefunction(_method) or inspect.isasyncgenfunction(_method)):
        setattr(Store, _name, _wrapped(_name, _method))
