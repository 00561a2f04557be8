"""Copying an app's states from one store to another: ``copy_states`` and its ``CopyReport``.

Each state is read through the source store (decrypted with the source's keys) and written
through the destination store (sealed with the destination's codec and key), so a credentials
state never lands in plain JSON where the destination encrypts. Writes are conditional: a create
where the destination has nothing, and with ``overwrite`` a compare-and-swap replace of the
version just read. A rerun skips what an earlier run copied. ``statestore copy`` calls it.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .core.store import State, Store
from .errors import InvalidInputError, PlaintextCopyError, StateExistsError, StateStoreError
from .keys.statetype import StateType
from .util.offload import check_concurrency, is_small, offload, run_check, run_workers

__all__ = ["CopyFailure", "CopyItem", "CopyReport", "copy_states"]

logger = logging.getLogger(__name__)


class CopyItem(NamedTuple):
    """One state of a copy: its type (value, e.g. ``"workflows"``), its id, and why it was skipped if it was."""

    type: str
    id: str
    reason: str = ""


class CopyFailure(NamedTuple):
    """A state that could not be copied, and the typed error that stopped it (its message holds no secret).

    ``side``: the store the error came from, ``"source"`` (reading it) or ``"destination"``.
    """

    type: str
    id: str
    error: StateStoreError
    side: Literal["source", "destination"] = "source"


@dataclass
class CopyReport:
    """What ``copy_states`` did (or, with ``dry_run``, would do), each list sorted by type and id.

    ``copied``: written to the destination (``overwritten`` says which of them replaced a state there).
    ``skipped``: left alone, with a reason (``exists``, ``identical``, ``gone``).
    ``failed``: not copied, with the error; the other states were still copied.
    """

    dry_run: bool = False
    copied: list[CopyItem] = field(default_factory=list)
    overwritten: list[CopyItem] = field(default_factory=list)
    skipped: list[CopyItem] = field(default_factory=list)
    failed: list[CopyFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if no state failed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON (what ``statestore copy --json`` prints)."""
        return {
            "dry_run": self.dry_run,
            "counts": {"copied": len(self.copied), "skipped": len(self.skipped), "failed": len(self.failed)},
            "copied": [{"type": i.type, "id": i.id} for i in self.copied],
            "overwritten": [{"type": i.type, "id": i.id} for i in self.overwritten],
            "skipped": [{"type": i.type, "id": i.id, "reason": i.reason} for i in self.skipped],
            "failed": [
                {"type": f.type, "id": f.id, "side": f.side, "error": type(f.error).__name__, "message": str(f.error)}
                for f in self.failed
            ],
        }

    def _sort(self) -> None:
        for items in (self.copied, self.overwritten, self.skipped):
            items.sort(key=lambda i: (i.type, i.id))
        self.failed.sort(key=lambda f: (f.type, f.id))


def _types(types: StateType | str | Iterable[StateType | str] | None) -> list[StateType]:
    if types is None or types == "all":
        return [StateType.WORKFLOWS, StateType.CREDENTIALS]
    if isinstance(types, str):  # a StateType is a str too
        return [StateType.coerce(types)]
    if isinstance(types, (bytes, bytearray)) or not isinstance(types, Iterable):
        raise InvalidInputError(f"types must be a state type, 'all' or a collection of state types, not {types!r}")
    chosen = [StateType.coerce(t) for t in types]
    if not chosen:
        raise InvalidInputError("types names no state type")
    return list(dict.fromkeys(chosen))


async def copy_states(
    src: Store,
    dst: Store,
    *,
    types: StateType | str | Iterable[StateType | str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    concurrency: int = 8,
    allow_plaintext: bool = False,
) -> CopyReport:
    """Copy the states of ``types`` (default both; ``"all"`` too) from ``src``'s app to ``dst``'s app.

    A state the destination already has is skipped, unless ``overwrite``: then it is replaced by a
    compare-and-swap write of the version read just before (a concurrent update there makes that
    state fail with ``VersionConflictError``; it is never overwritten blindly), and skipped if it
    already holds the same content. A state that cannot be read or written fails alone, with its
    typed error in ``failed`` (for example ``SecretPolicyError`` where the destination refuses raw
    secrets in plain JSON); the others are still copied. ``dry_run`` reads both sides and writes
    nothing. ``progress(done, total)`` is called after each state.

    Where ``src`` encrypts a type and ``dst`` would store it as plain JSON (it has no key), the copy
    is refused before any I/O with ``PlaintextCopyError``, also in a dry run: a copy never takes
    the encryption off states by surprise. ``allow_plaintext=True`` decrypts them deliberately (the
    destination's secret policy still applies). See docs/decisions/0040.
    """
    for name, flag in (("overwrite", overwrite), ("dry_run", dry_run), ("allow_plaintext", allow_plaintext)):
        if not isinstance(flag, bool):
            raise InvalidInputError(f"{name} must be True or False, not {flag!r}")
    if progress is not None and not callable(progress):
        raise InvalidInputError("progress must be callable")
    check_concurrency(concurrency)
    if src is dst or (
        src.backend.describe() == dst.backend.describe()
        and src.app_name == dst.app_name
        and type(src.backend) is type(dst.backend)
    ):
        raise InvalidInputError("the source and the destination are the same store: nothing to copy")
    chosen = _types(types)
    if not allow_plaintext:
        _refuse_decrypting(src, dst, chosen)
    todo: list[tuple[StateType, str]] = []
    for stype in chosen:
        todo.extend((stype, state_id) for state_id in await src.list_states(stype))
    report = CopyReport(dry_run=dry_run)
    existing: dict[StateType, set[str]] = {}
    if dry_run:  # what the destination holds, from its listing: a dry run reads no destination state
        existing = {stype: set(await dst.list_states(stype)) for stype in chosen}
    queue = iter(todo)
    done = 0

    async def worker() -> None:
        nonlocal done
        for stype, state_id in queue:  # a plain iterator shared by the workers: each state is taken once
            held: list[State] = []  # the states read and written, freed in the offload thread if large
            side: Literal["source", "destination"] = "source"
            try:
                read = await _read_source(src, stype, state_id, held)
                if read is None:  # deleted at the source since it was listed
                    report.skipped.append(CopyItem(stype.value, state_id, "gone"))
                else:
                    side = "destination"
                    state, epoch = read
                    await _copy_one(
                        dst, stype, state_id, state, epoch, overwrite, existing if dry_run else None, report, held
                    )
            except StateStoreError as exc:
                logger.debug(
                    "copying %s state %r failed at the %s: %s", stype.value, state_id, side, type(exc).__name__
                )
                report.failed.append(CopyFailure(stype.value, state_id, exc, side))
            finally:
                await offload(bool(held) and not is_small(held[0]), held.clear)  # freeing 1 MB of JSON takes ms
            done += 1
            if progress is not None:
                progress(done, len(todo))

    await run_workers(worker, min(concurrency, len(todo)))
    report._sort()
    return report


def _seals(store: Store, stype: StateType) -> bool:
    """Whether ``store`` stores states of ``stype`` in another form than their plain JSON (encrypted).

    Asked of the codec itself (it seals an empty state), so it holds for any codec and key setup.
    """
    probe = b"{}"
    return store.codec.seal(store.key("statestore-copy-probe", stype), probe) != probe


def _refuse_decrypting(src: Store, dst: Store, chosen: list[StateType]) -> None:
    """``PlaintextCopyError`` if a chosen type is encrypted by ``src`` and would be plain JSON in ``dst``."""
    exposed = [stype.value for stype in chosen if _seals(src, stype) and not _seals(dst, stype)]
    if exposed:
        what = " and ".join(exposed)
        raise PlaintextCopyError(
            f"the source store encrypts {what} states and the destination would store them as plain JSON "
            "(it has no encryption key): nothing was copied. Give the destination a key (statestore copy: "
            "--dest-key-env VAR), copy other types only, or pass allow_plaintext=True (statestore copy "
            "--allow-plaintext) to store them decrypted on purpose"
        )


async def _read_source(src: Store, stype: StateType, state_id: str, held: list[State]) -> tuple[State, int] | None:
    """The state to copy and its fence epoch, or None if it is gone; the state goes into ``held`` (freed later)."""
    state, version = await src.get_versioned_state(state_id, stype)
    held.append(state)
    if version is None:
        return None
    return state, await src.get_fence_epoch(state_id, stype)  # the fence goes with the state (a 304: just read)


async def _copy_one(
    dst: Store,
    stype: StateType,
    state_id: str,
    state: State,
    epoch: int,
    overwrite: bool,
    existing: dict[StateType, set[str]] | None,
    report: CopyReport,
    held: list[State],
) -> None:
    """Write one state read from the source into ``dst``; a typed error fails it alone (the caller records it).

    ``existing`` (a dry run): the ids the destination lists; then nothing is written. Every state
    read or returned is put in ``held``, so that the caller frees them (off the loop if large).
    """
    dry_run = existing is not None
    if not overwrite:
        if existing is not None:
            await run_check(state, lambda: _check_writable(dst, stype, state_id, state))
            if state_id in existing[stype]:
                report.skipped.append(CopyItem(stype.value, state_id, "exists"))
            else:
                report.copied.append(CopyItem(stype.value, state_id))
            return
        try:
            held.append(await dst.create_state(state_id, stype, state, fence_epoch=epoch))
        except StateExistsError:
            report.skipped.append(CopyItem(stype.value, state_id, "exists"))
            return
        report.copied.append(CopyItem(stype.value, state_id))
        return
    current, current_version = await dst.get_versioned_state(state_id, stype)
    held.append(current)
    if current_version is not None and await offload(not is_small(state), operator.eq, current, state):
        report.skipped.append(CopyItem(stype.value, state_id, "identical"))
        return
    if dry_run:
        await run_check(state, lambda: _check_writable(dst, stype, state_id, state))
    elif current_version is None:
        held.append(await dst.create_state(state_id, stype, state, fence_epoch=epoch))
    else:
        held.append(await dst.replace_state(state_id, stype, state, if_version=current_version, fence_epoch=epoch))
    report.copied.append(CopyItem(stype.value, state_id))
    if current_version is not None:
        report.overwritten.append(CopyItem(stype.value, state_id))


def _check_writable(dst: Store, stype: StateType, state_id: str, state: State) -> None:
    """What a write would refuse before any I/O (the destination's secret policy, reserved keys), for a dry run.

    It walks the whole state (the secret scan): the callers run it in the offload thread for a large one.
    """
    try:
        dst.codec.check(dst.key(state_id, stype), state)
    except StateStoreError as exc:
        exc.state_id, exc.state_type, exc.operation = state_id, stype.value, "copy_states"
        raise
