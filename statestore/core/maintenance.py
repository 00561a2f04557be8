"""The work behind ``Store``'s listings and maintenance calls: listing ids, pruning, reading kept versions.

Each piece takes what it needs of a store (its backend, its compare-and-swap loop, a function from id to key), so
``store.py`` keeps to the operations and their checks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from ..backends.base import ObjectBackend
from ..errors import ConditionalDeleteUnsupportedError, InvalidInputError, StateStoreError, VersionNotFoundError
from ..keys.paths import StateKey, listed_id, type_prefix
from ..keys.statetype import StateType
from ..util.offload import run_workers
from .cas import CompareAndSwap
from .changes import State

logger = logging.getLogger(__name__)


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


async def list_ids(backend: ObjectBackend, app: str, stype: StateType) -> AsyncIterator[str]:
    """The ids of the app's states of ``stype``, as the backend lists their keys."""
    prefix = type_prefix(app, stype)
    where = backend.describe()
    async for key in backend.list_keys(prefix):
        state_id = listed_id(prefix, key, where)
        if state_id is not None:
            yield state_id


async def list_infos(backend: ObjectBackend, app: str, stype: StateType) -> AsyncIterator[StateInfo]:
    """What the listing says of each state of ``stype``: id, version, size and last change."""
    prefix = type_prefix(app, stype)
    where = backend.describe()
    async for meta in backend.list(prefix):
        state_id = listed_id(prefix, meta.key, where)
        if state_id is not None:
            yield StateInfo(state_id, meta.etag, meta.size, meta.last_modified)


async def for_each(
    ids: list[str],
    work: Callable[[str], Awaitable[bool]],
    concurrency: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Run ``work`` on each id, ``concurrency`` at a time; returns how many answered True."""
    queue = iter(ids)
    count = done = 0

    async def worker() -> None:
        nonlocal count, done
        for state_id in queue:  # a plain iterator shared by the workers: each id is taken once
            if await work(state_id):
                count += 1
            done += 1
            if progress is not None:
                progress(done, len(ids))

    await run_workers(worker, concurrency)
    return count


class Pruner:
    """Deletes the states last changed before a cutoff, each only if it is still the version listed."""

    def __init__(
        self,
        cas: CompareAndSwap,
        key: Callable[[str, StateType], StateKey],
        listing: Callable[[StateType], AsyncIterator[StateInfo]],
    ) -> None:
        self.cas = cas
        self.key = key
        self.listing = listing

    async def run(
        self,
        stype: StateType,
        older_than: timedelta,
        dry_run: bool,
        allow_unconditional: bool,
        progress: Callable[[int, int], None] | None,
    ) -> list[str]:
        try:
            cutoff = datetime.now(UTC) - older_than
        except OverflowError:
            raise InvalidInputError(
                f"older_than is too long ({older_than.days} days): that is before the year 1, no state is that old"
            ) from None
        listed = [info async for info in self.listing(stype) if info.last_modified < cutoff]
        stale = sorted(listed, key=lambda info: info.id)
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
                        deleted = await self.cas.delete_if(skey, info.version)
                    except ConditionalDeleteUnsupportedError as exc:
                        if not allow_unconditional:
                            raise ConditionalDeleteUnsupportedError(
                                f"{exc}; prune deletes only states unchanged since listed, which this server "
                                "cannot guarantee: pass allow_unconditional=True (statestore prune "
                                "--allow-unconditional) to accept losing an update made during the prune"
                            ) from exc
                        logger.warning(
                            "%s ignores conditional deletes: pruning unconditionally", self.cas.backend.describe()
                        )
                        conditional = False
                if not conditional:
                    deleted = await self.cas.delete_if_unchanged(skey, info.version)
            except StateStoreError as exc:
                exc.state_id = info.id
                raise
            if deleted:
                pruned.append(info.id)
            if progress is not None:
                progress(done, len(stale))
        return pruned

    async def _with_versions(self, stype: StateType, stale: list[StateInfo]) -> list[StateInfo]:
        """``stale`` with a version each: read where the listing had none, kept if a second listing agrees.

        A state read after it changed would give the new version; the second listing (after the reads) shows its
        change, so it is dropped rather than deleted.
        """
        unknown = [info for info in stale if info.version is None]
        if not unknown:
            return stale
        read: dict[str, str] = {}
        for info in unknown:
            etag = await self.cas.current_etag(self.key(info.id, stype))
            if etag is not None:
                read[info.id] = etag
        again = {info.id: info async for info in self.listing(stype)}
        kept: list[StateInfo] = []
        for info in stale:
            if info.version is not None:
                kept.append(info)
                continue
            now = again.get(info.id)
            if info.id in read and now is not None and (now.size, now.last_modified) == (info.size, info.last_modified):
                kept.append(info._replace(version=read[info.id]))
        return kept


async def read_version(cas: CompareAndSwap, skey: StateKey, version_id: str) -> State:
    """The state as it was at ``version_id``; ``VersionNotFoundError`` if there is no such version with content."""
    state = await cas.read_version(skey, version_id)
    if state is None:
        raise VersionNotFoundError(
            f"{skey} has no version {version_id!r} with content (not in its history, or a deletion)"
        )
    return state
