"""``Store``: the public API of statestore on one backend for one app, and the checks on its input.

Each call is one operation (``with Boundary(...)``): it checks its input before any I/O, then hands its change to the
``Coalescer`` (``coalesce.py``), which batches concurrent changes to one state into one pass of the
compare-and-swap loop (``CompareAndSwap`` in ``cas.py``). The boundary is where an error is told which call and
state it is about, where the operation's deadline starts, and where telemetry records it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from .. import telemetry as _telemetry
from ..backends.base import ObjectBackend, PutMode
from ..check import CheckReport, check_backend
from ..codec.crypto import EncryptingCodec
from ..codec.jsonio import Codec, check_json
from ..codec.record import Fence
from ..config.build import store_options
from ..config.settings import Settings
from ..config.url import parse_store_url
from ..errors import BackendError, InvalidInputError, StateStoreError
from ..keys.paths import StateKey, state_key, validate_app_name
from ..keys.statetype import StateType
from ..util import operation
from ..util.offload import check_concurrency, in_worker, is_small, run_workers
from ..util.retry import RetryPolicy
from . import maintenance
from .boundary import (
    Boundary,
    annotate,
    as_dict,
    callable_or_none,
    checked_epoch,
    checked_fence,
    expected_version,
    version_id,
)
from .cas import DEFAULT_CACHE_BYTES, CompareAndSwap, Expected
from .changes import RESEAL, Acquire, Change, Merge, Replace, State, Update, UpdateFn
from .coalesce import Coalescer
from .maintenance import StateInfo, StateVersion

__all__ = ["Fence", "State", "StateInfo", "StateVersion", "Store", "UpdateFn", "VersionedState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_APP_NAME = "default"
DEFAULT_MAX_STATE_BYTES = 8 * 1024 * 1024
_KEY_MEMO = 4096  # validated (id, type) pairs remembered per store


class VersionedState(NamedTuple):
    """A state and its version: an opaque string to pass back as ``if_version=`` (None: no state stored)."""

    state: State
    version: str | None


class Store:
    """A state store: reads and compare-and-swap writes of JSON states on one backend for one app.

    ``Store`` objects are cheap to share: use one per backend for the life of the process, from any number of
    tasks, threads and event loops; close it with ``await store.aclose()`` or ``async with store:``.
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
        self._backend = backend
        # where OpenTelemetry is installed, requests are counted by a wrapper and operations recorded
        observed, self._telemetry = _telemetry.for_store(self.app_name, backend)
        codec = codec if codec is not None else EncryptingCodec()
        self._cas = CompareAndSwap(observed, codec, retry or RetryPolicy(), max_state_bytes, cache_size, cache_bytes)
        self._coalescer = Coalescer(self._cas.apply)
        # each public call runs as ``with self._boundary(name, id, type):`` (decision 46)
        self._boundary = functools.partial(Boundary, self._telemetry, self._cas.retry.deadline)
        self._keys: dict[tuple[str, str], StateKey] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Store:
        """A store on the backend ``url`` names, configured like the default store; ``options`` override ``Store``'s.

        ``file:///abs/path`` or ``file:relative/path``, ``memory://``, or
        ``s3://bucket[/prefix][?endpoint_url=...&region=...]`` (credentials from the AWS chain). The URL decides the
        backend and its place, as ``STATESTORE_URL`` does; everything else (keys, limits, S3 timeouts, SSE,
        If-Match form...) comes from the environment, as for ``build_store()``.
        """
        settings = Settings.from_env(**parse_store_url(url).settings_fields())
        return cls(**{**store_options(settings), **options})

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
        with self._boundary("get_state", id, type):
            return await self._cas.read_state(self.key(id, type))

    async def save_state(
        self,
        key: str,
        value: Any,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Set one top-level ``key`` of the state to ``value``, keeping every other key.

        With ``if_version`` (from ``get_versioned_state``), only if that version is still stored; else
        ``VersionConflictError`` and nothing changes. With ``fence`` (from ``acquire_fence``), only while no newer
        fence was acquired; else ``FencedError`` and nothing changes.
        """
        with self._boundary("save_state", id, type):
            skey = self.key(id, type)
            if not isinstance(key, str):
                raise InvalidInputError(f"state key must be a string, not {key.__class__.__name__}")
            values = {key: value}
            large = await self._checked(skey, values, value)
            change = Merge(values, large, checked_fence(fence, skey))
            await self._submit(skey, change, returns=False, expected=expected_version(if_version))

    async def save_state_object(
        self,
        id: str,  # noqa: A002
        value: Mapping[str, Any],
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
        fence: Fence | None = None,
    ) -> State:
        """Shallow-merge ``value`` into the state and return the complete merged state.

        With ``if_version`` only at that version (else ``VersionConflictError``); with ``fence`` only while it
        holds (else ``FencedError``).
        """
        with self._boundary("save_state_object", id, type):
            skey = self.key(id, type)
            values = as_dict(value)
            large = await self._checked(skey, values, values)
            return await self._submit(
                skey, Merge(values, large, checked_fence(fence, skey)), expected=expected_version(if_version)
            )

    # -- updating, replacing, creating, deleting ----------------------------------

    async def update_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        fn: UpdateFn,
        *,
        fence: Fence | None = None,
    ) -> State:
        """Replace the state with ``fn(copy of state)`` and return what was stored.

        ``fn`` runs on the event loop, so keep it quick: nothing else on the loop runs while it does. It gets a
        deep copy of its own (made in a worker thread for large states) and may mutate and return it; its result
        is checked before it is stored. ``fn`` may run more than once: again after a conflict with another writer,
        and when a batch of coalesced changes is re-applied one by one (a change in it did not encode or crossed
        the size limit). Whatever ``fn`` raises, even a ``BaseException``, fails this call alone. With ``fence``,
        only while it holds (else ``FencedError``).
        """
        with self._boundary("update_state", id, type):
            skey = self.key(id, type)
            if not callable(fn):
                raise InvalidInputError("fn must be callable")
            return await self._submit(skey, Update(fn, checked_fence(fence, skey)))

    async def replace_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        value: Mapping[str, Any],
        *,
        if_version: str | None = None,
        fence: Fence | None = None,
        fence_epoch: int = 0,
    ) -> State:
        """Store ``value`` as the whole state, whatever is stored now (also a corrupt state).

        With ``if_version`` only at that version (else ``VersionConflictError``); with ``fence`` only while it
        holds (else ``FencedError``). ``fence_epoch``: keep at least this fence epoch, from ``get_fence_epoch``
        of the same state in another store (how ``copy_states`` carries fences over).
        """
        with self._boundary("replace_state", id, type):
            skey = self.key(id, type)
            values = as_dict(value)
            large = await self._checked(skey, values, values)
            change = Replace(values, large, checked_fence(fence, skey), checked_epoch(fence_epoch))
            return await self._submit(skey, change, expected=expected_version(if_version))

    async def create_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        value: Mapping[str, Any],
        *,
        fence_epoch: int = 0,
    ) -> State:
        """Store ``value`` only if no state exists, else ``StateExistsError``; returns what was stored.

        Of concurrent creators (tasks, processes, machines) exactly one wins. ``fence_epoch``: as for
        ``replace_state``.
        """
        with self._boundary("create_state", id, type):
            skey = self.key(id, type)
            values = as_dict(value)
            large = await self._checked(skey, values, values)
            return await self._submit(
                skey, Replace(values, large, epoch=checked_epoch(fence_epoch)), expected=PutMode.CREATE
            )

    async def delete_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        *,
        if_version: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Remove the state; a missing state is not an error.

        With ``if_version``, only if that version is still stored, else ``VersionConflictError`` (also when the
        state is gone); with ``fence``, only while it holds, else ``FencedError``. Either needs a backend that
        honours a conditional delete: on a server that ignores it (MinIO, Ceph RGW) it raises
        ``ConditionalDeleteUnsupportedError`` and deletes nothing.
        """
        with self._boundary("delete_state", id, type):
            skey = self.key(id, type)
            expected_version(if_version)
            await self._cas.delete(skey, if_version, checked_fence(fence, skey))

    async def acquire_fence(self, id: str, type: StateType | str) -> Fence:  # noqa: A002
        """A new fence for the state: its epoch is greater than every epoch acquired before for it.

        One compare-and-swap write (it creates an empty state where none is stored). From then on a write that
        carries an older fence raises ``FencedError`` and writes nothing: a paused or zombie writer that wakes up
        cannot roll the state back. Writes without ``fence=`` are not fenced. See docs/temporal.md.
        """
        with self._boundary("acquire_fence", id, type):
            skey = self.key(id, type)
            outcome = await self._cas.apply(skey, [Acquire()])
            outcome.own()
            return Fence(skey.app, skey.type, skey.id, outcome.fence)

    async def get_fence_epoch(self, id: str, type: StateType | str) -> int:  # noqa: A002
        """The epoch of the state's newest fence (0: none was acquired, or no state is stored). Always asks the backend.

        For tools that move states (``copy_states`` passes it as ``fence_epoch=``) and for diagnostics; a writer
        proves its right to write with the ``Fence`` that ``acquire_fence`` gave it, never with this number.
        """
        with self._boundary("get_fence_epoch", id, type):
            return await self._cas.read_fence(self.key(id, type))

    # -- reading several, listing ------------------------------------------------

    async def get_versioned_state(self, id: str, type: StateType | str) -> VersionedState:  # noqa: A002
        """The stored state and its version (``({}, None)`` if it does not exist). Always asks the backend.

        Pass the version back as ``if_version=`` to change the state only if nobody changed it meanwhile: a
        read-modify-write that spans your own code (a request, a human). A version names one write: a state
        rewritten with the same content has another version.
        """
        with self._boundary("get_versioned_state", id, type):
            state, version = await self._cas.read_versioned(self.key(id, type))
            return VersionedState(state, version)

    async def get_states(
        self,
        ids: Iterable[str],
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 16,
    ) -> dict[str, State]:
        """The states of ``ids``, read ``concurrency`` at a time: ``{id: state}``, ``{}`` for a missing one.

        Every requested id is a key, in the order first requested (a repeated id is read once). Every id and the
        type are checked before any request. Any failure (a corrupt state, the backend) raises, and the reads still
        running are cancelled: it never returns part of the answer.
        """
        with self._boundary("get_states", None, type):
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
                raise InvalidInputError(f"ids must be a collection of ids, not {ids.__class__.__name__}")
            check_concurrency(concurrency)
            stype = StateType.coerce(type)
            wanted = {self.key(state_id, stype).id: None for state_id in ids}  # a bad id raises before any read
            found: dict[str, State] = {}
            queue = iter(wanted)

            async def worker() -> None:
                for state_id in queue:  # a plain iterator shared by the workers: each id is taken once
                    found[state_id] = await self.get_state(state_id, stype)

            await run_workers(worker, min(concurrency, len(wanted)))
            return {state_id: found[state_id] for state_id in wanted}

    def iter_states(self, type: StateType | str) -> AsyncIterator[str]:  # noqa: A002
        """Yield the ids of this app's states of ``type`` as the backend lists them (streaming, unsorted)."""
        stype = StateType.coerce(type)
        return self._listing("iter_states", stype, maintenance.list_ids(self._cas.backend, self.app_name, stype))

    async def list_states(self, type: StateType | str) -> list[str]:  # noqa: A002
        """The ids of this app's states of ``type``, sorted."""
        with self._boundary("list_states", None, type):
            return sorted([state_id async for state_id in self.iter_states(type)])

    def iter_state_info(self, type: StateType | str) -> AsyncIterator[StateInfo]:  # noqa: A002
        """Yield id, version, size and last change of each state of ``type``, from the listing alone (unsorted).

        No state is read: ``version`` is the ETag where the listing carries it (S3, memory) and None where it does
        not (the local backend).
        """
        stype = StateType.coerce(type)
        infos = maintenance.list_infos(self._cas.backend, self.app_name, stype)
        return self._listing("iter_state_info", stype, infos)

    async def list_state_info(self, type: StateType | str) -> list[StateInfo]:  # noqa: A002
        """``iter_state_info``, sorted by id."""
        with self._boundary("list_state_info", None, type):
            return sorted([info async for info in self.iter_state_info(type)], key=lambda info: info.id)

    async def _listing(self, name: str, stype: StateType, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """A listing as one operation: its errors told their call, recorded by telemetry; closed when dropped."""
        op = operation.Operation(name, float("inf"))
        if self._telemetry is not None:
            self._telemetry.begin(op, stype.value, None, current=False)
        outcome = "ok"
        try:
            while True:
                token = operation.enter(op)  # current while the listing runs, never across a yield
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
                except StateStoreError as exc:
                    annotate(exc, name, None, stype)
                    raise
                except Exception as exc:
                    raise BackendError(f"listing {stype.value} states failed ({exc.__class__.__name__})") from exc
                finally:
                    operation.leave(token)
                yield item
        except GeneratorExit:  # the consumer stopped early: not an error
            raise
        except BaseException as exc:
            outcome = exc.__class__.__name__
            raise
        finally:
            await items.aclose()  # type: ignore[attr-defined]
            if self._telemetry is not None:
                self._telemetry.end(op, outcome)

    # -- maintenance: re-encryption, pruning, history --------------------------------

    async def reencrypt_states(
        self,
        type: StateType | str,  # noqa: A002
        *,
        concurrency: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Rewrite every state of ``type`` whose stored form is outdated; returns how many were outdated.

        Outdated means what the codec flags with ``reseal``: sealed under an old key (after a key rotation), plain
        JSON where encryption is now on, or encrypted where it is now off. Each rewrite is a conditional write
        through the compare-and-swap loop, so a concurrent update is never lost (if another writer rewrites a state
        first, its write counts and this one is skipped). A state that cannot be read (``DecryptionError``: a key
        nobody configured) stops the run with that error; states done before it stay done, and running again is
        safe. ``progress(done, total)`` is called after each state.
        """
        with self._boundary("reencrypt_states", None, type):
            stype = StateType.coerce(type)
            check_concurrency(concurrency)
            callable_or_none(progress, "progress")

            async def reseal(state_id: str) -> bool:
                skey = self.key(state_id, stype)
                if not await self._cas.outdated(skey):
                    return False
                await self._submit(skey, RESEAL, returns=False)
                return True

            return await maintenance.for_each(await self.list_states(stype), reseal, concurrency, progress)

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

        Each is deleted only if it is still the version listed (a conditional delete), so a state updated
        meanwhile (even to the same content: versions never repeat) is kept. Where the listing has no version
        (local), it is read, and kept unless a second listing shows it unchanged. Where the server ignores
        conditional deletes (MinIO, Ceph RGW) this raises ``ConditionalDeleteUnsupportedError`` before deleting
        anything, unless ``allow_unconditional``: then each is re-read and deleted unconditionally if unchanged,
        which can lose an update made in between (docs/decisions/0034). ``dry_run`` deletes nothing and returns the
        ids a run would consider. ``progress(done, total)`` is called per state.
        """
        with self._boundary("prune_states", None, type):
            stype = StateType.coerce(type)
            if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
                raise InvalidInputError(f"older_than must be a positive timedelta, not {older_than!r}")
            for name, flag in (("dry_run", dry_run), ("allow_unconditional", allow_unconditional)):
                if not isinstance(flag, bool):
                    raise InvalidInputError(f"{name} must be True or False, not {flag!r}")
            callable_or_none(progress, "progress")
            pruner = maintenance.Pruner(self._cas, self.key, self.iter_state_info)
            return await pruner.run(stype, older_than, dry_run, allow_unconditional, progress)

    async def state_history(self, id: str, type: StateType | str) -> list[StateVersion]:  # noqa: A002
        """The kept versions of the state, newest first: version id, last change, size stored, deletion or not.

        Needs a backend that keeps versions (S3 with bucket versioning on); any other raises
        ``VersionsUnsupportedError``, saying how to enable them. A state never written has none.
        """
        with self._boundary("state_history", id, type):
            versions = await self._cas.versions(self.key(id, type))
            return [StateVersion(v.version_id, v.last_modified, v.size, v.deleted) for v in versions]

    async def get_state_version(self, id: str, type: StateType | str, version: str) -> State:  # noqa: A002
        """The state as it was at ``version`` (an id from ``state_history``), decrypted as a current read is.

        ``VersionNotFoundError`` if the state has no such version, or that version is a deletion.
        """
        with self._boundary("get_state_version", id, type):
            return await maintenance.read_version(self._cas, self.key(id, type), version_id(version))

    async def restore_state(
        self,
        id: str,  # noqa: A002
        type: StateType | str,  # noqa: A002
        version: str,
        *,
        if_version: str | None = None,
    ) -> State:
        """Make the state what it was at ``version`` (from ``state_history``) again; returns what was stored.

        The restore is a new write through the compare-and-swap loop, like ``replace_state``: it never overwrites
        blindly, credentials are sealed anew with the current key, and the version restored from stays in the
        history. With ``if_version`` only if that version is still the current one (else
        ``VersionConflictError``). An unknown ``version`` raises ``VersionNotFoundError`` and writes nothing.
        """
        with self._boundary("restore_state", id, type):
            skey = self.key(id, type)
            expected = expected_version(if_version)
            values = await maintenance.read_version(self._cas, skey, version_id(version))
            large = await self._checked(skey, values, values)
            return await self._submit(skey, Replace(values, large), expected=expected)

    # -- the store itself ------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Probe the backend on scratch objects under this app's prefix: is compare-and-swap safe on it?

        Nothing stored is touched and the scratch objects are removed. The report names each probe, a verdict
        and the settings to use (for example the ``If-Match`` form an S3 server honours); see ``statestore.check``.
        """
        return await check_backend(self.backend, self.app_name)

    async def aclose(self) -> None:
        """Close the backend's connections; the store opens new ones if used again."""
        await self.backend.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- the work behind the public API ------------------------------------------------

    async def _checked(self, skey: StateKey, values: dict[str, Any], size_of: Any) -> bool:
        """Check what a call sets before any I/O (plain JSON the codec accepts); True if it is large.

        A small value (judged on ``size_of``: the common case) is checked right here; a large one in the worker
        thread, where the work on the change goes too.
        """
        if is_small(size_of):
            self._check_values(skey, values)
            return False
        await in_worker(self._check_values, skey, values)
        return True

    def _check_values(self, skey: StateKey, values: dict[str, Any]) -> None:
        check_json(values, "value")
        self._cas.codec.check(skey, values)

    def _submit(
        self, skey: StateKey, change: Change, returns: bool = True, expected: Expected | None = None
    ) -> Awaitable[State]:
        """Apply one change, coalesced with concurrent changes to the same state unless ``coalesce`` is off.

        A versioned change (``expected``) is never coalesced: it is written alone, with its own precondition.
        """
        if expected is None and self.coalesce:
            return self._coalescer.submit(skey, change, returns)
        return self._coalescer.alone(skey, change, expected)
