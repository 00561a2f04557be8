"""``LocalBackend``: objects as files under a root directory.

Writes go to a temp file in the same directory (created 0600), are fsynced and
then ``os.replace``-d over the object, so a reader sees the old or the new
bytes, never a partial file. An exclusive ``flock`` on a per-object lock file
makes "check the ETag, then replace" one step across threads and processes;
the kernel drops the lock when its holder dies. A forked child closes its copies
of the lock and temp (later pinned) file descriptors at once (``forks.open_fd``):
a copy would keep the parent's lock held, or a replaced file on disk. Disk work runs in a thread so
the event loop keeps ticking; a lock held elsewhere is waited for on the event
loop (bounded by ``lock_timeout``, cancellable), never in a thread.

Below the root nothing follows a symbolic link: every path is walked one
directory descriptor at a time (``O_NOFOLLOW``), and a link where a directory,
state file or lock file should be is a ``BackendError``. The root itself may
be a link; it is resolved once, when the backend is made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import stat
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing, suppress
from pathlib import Path
from typing import TypeVar

from ..errors import (
    AccessDeniedError,
    BackendError,
    InvalidInputError,
    LockTimeoutError,
    StoredStateTooLargeError,
)
from ..util import forks, operation
from ..util.lru import LRU
from ..util.retry import RetryPolicy
from .base import (
    NotModified,
    ObjectBackend,
    ObjectMeta,
    Overwrite,
    PreconditionFailed,
    PutMode,
    PutResult,
    Update,
    Versioned,
    check_put_mode,
    md5_etag,
    same_etag,
)
from .localfs import (
    CHECK_READ_MAX,
    PINS,
    TEMP_SUFFIX,
    Busy,
    Dir,
    FullSignature,
    TooLarge,
    full_signature,
    signature,
    split_key,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_LIST_BATCH = 256  # the first batch a listing takes from the file system; later ones are larger
_LIST_BATCH_MAX = 1024
_READY_DIRS = 4096
_SEEN_FILES = 4096  # statuses of files read, remembered per backend to answer conditional reads
_RACY_NS = 3 * 10**9  # a file changed more recently than this is not remembered (coarse clocks, skew)
_LOCK_POLL_MAX = 0.05  # seconds between tries of a held lock, at most


class LocalBackend(ObjectBackend):
    """Objects as files under ``root``; new files are ``file_mode``, new directories ``dir_mode``.

    ``durable`` also fsyncs the directory after a rename so that the rename
    itself survives a power cut, at the cost of a second fsync per write.
    ``lock_timeout`` bounds the wait for an object's lock held by another
    process or thread (default: the store's retry deadline); then the write
    or delete raises ``LockTimeoutError``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        file_mode: int = 0o600,
        dir_mode: int = 0o700,
        durable: bool = True,
        lock_timeout: float = RetryPolicy.deadline,
    ) -> None:
        if not lock_timeout >= 0:
            raise InvalidInputError(f"lock_timeout must be a number of seconds >= 0, not {lock_timeout!r}")
        self.root = Path(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.durable = durable
        self.lock_timeout = lock_timeout
        self._real_root = os.path.realpath(root)  # resolved once: a link below it is never followed
        # Directories (relative to the root) this backend has swept of dead writers' temp files.
        self._ready: set[str] = set()
        self._owner = object()  # marks the pins made through this backend
        # key -> (status, ETag) of files read, to answer a conditional read with a stat (``_known_etag``).
        self._seen: LRU[str, tuple[FullSignature, str]] = LRU(_SEEN_FILES)
        weakref.finalize(self, PINS.release, self._owner)

    async def aclose(self) -> None:
        """Close the files kept open to prove ETags; the backend stays usable."""
        PINS.close_owned(self._owner)

    def describe(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file of ``key``; refuses keys that are not plain relative paths or name a temp/lock file."""
        parts, name = split_key(key)
        return self.root.joinpath(*parts, name)

    def _pin_key(self, key: str) -> str:
        return f"{self._real_root}/{key}"

    # -- reads -----------------------------------------------------------------

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        parts, name = split_key(key)
        return await asyncio.to_thread(self._get_sync, key, parts, name, if_none_match, max_bytes)

    def _get_sync(
        self, key: str, parts: list[str], name: str, if_none_match: str | None, max_bytes: int | None
    ) -> Versioned | NotModified | None:
        try:
            directory = Dir.walk(self._real_root, parts)
            if directory is None:
                found = None
            else:
                with directory:
                    if if_none_match is not None:
                        known = self._known_etag(key, directory.lstat(name))
                        if known is not None and same_etag(known, if_none_match):
                            return NotModified(known)
                    found = directory.read(name, max_bytes)
        except TooLarge as big:
            assert max_bytes is not None
            raise StoredStateTooLargeError(key, big.size, max_bytes, self._known_etag(key, big.st)) from None
        except OSError as exc:
            raise _os_error(f"cannot read {key}: {exc.strerror}", exc) from exc
        PINS.check(self._pin_key(key), signature(found[1]) if found else None)  # closes a pin gone stale
        if found is None:
            self._seen.discard(key)
            return None
        etag = md5_etag(found[0])
        self._note(key, found[1], etag)
        return Versioned(found[0], etag)

    def _known_etag(self, key: str, st: os.stat_result | None) -> str | None:
        """The ETag of the file whose status is ``st``, if a pin or the status memo proves it without a read.

        A pin holds the file open, so its inode number cannot name another file
        meanwhile (a pin made since our ``lstat`` names a file renamed into place
        during this call: still a version current during it). A memo entry was
        noted only for a file whose last change (``st_ctime``) was at least
        ``_RACY_NS`` old: any file made since has a later ctime, so an equal
        status is the same, unchanged file (writers replace files, and an edit
        in place moves the ctime too).
        """
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        pinned = PINS.check(self._pin_key(key), signature(st))
        if pinned is not None:
            return pinned
        seen = self._seen.get(key)
        if seen is not None and seen[0] == full_signature(st):
            return seen[1]
        return None

    def _note(self, key: str, st: os.stat_result, etag: str) -> None:
        """Remember the status of a file just read with its ETag, unless its last change is too recent to prove."""
        if time.time_ns() - st.st_ctime_ns > _RACY_NS:
            self._seen.put(key, (full_signature(st), etag))
        else:
            self._seen.discard(key)

    # -- conditional writes ----------------------------------------------------

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        check_put_mode(mode)
        parts, name = split_key(key)
        data = bytes(data)
        return PutResult(await self._when_locked(key, lambda: self._put_sync(key, parts, name, data, mode)))

    async def _when_locked(self, key: str, work: Callable[[], T]) -> T:
        """Run ``work`` (which takes the object's lock) in a thread; while the lock is held elsewhere, wait here.

        The wait ends after ``lock_timeout``, or sooner when the operation it serves must end (a store's deadline).
        """
        bound = operation.seconds_left(self.lock_timeout)
        deadline = time.monotonic() + bound
        delay = 0.001
        while True:
            try:
                return await asyncio.to_thread(work)
            except Busy:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeoutError(
                    f"gave up on {key} after waiting {max(bound, 0):.2g} s for its lock, "
                    "held by another process or thread"
                )
            logger.debug("lock of %s is held elsewhere; trying again", key)
            await asyncio.sleep(min(left, random.uniform(delay / 2, delay)))
            delay = min(delay * 2, _LOCK_POLL_MAX)

    def _put_sync(self, key: str, parts: list[str], name: str, data: bytes, mode: PutMode) -> str:
        """Check the condition and replace the file, all under the object's lock; one thread hop per put."""
        etag = md5_etag(data)
        try:
            directory = Dir.walk(self._real_root, parts, make=self.dir_mode)
            assert directory is not None  # made
            with directory:
                lock_fd = directory.lock(name, self.file_mode)
                try:
                    self._check(directory, key, name, mode)
                    if directory.rel not in self._ready:
                        directory.remove_stale_temps(name)
                        self._remember(directory.rel)
                    tmp = f".{name}.{os.getpid()}-{os.urandom(4).hex()}{TEMP_SUFFIX}"
                    fd = directory.open_held(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
                    try:
                        _write_all(fd, data)
                        os.fsync(fd)
                        os.replace(tmp, name, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
                    except BaseException:
                        forks.close_fd(fd)
                        with suppress(OSError):
                            os.unlink(tmp, dir_fd=directory.fd)
                        raise
                    PINS.pin(self._pin_key(key), fd, etag, self._owner)
                    if self.durable:
                        os.fsync(directory.fd)
                finally:
                    forks.close_fd(lock_fd)  # closing the descriptor releases the lock
        except OSError as exc:
            raise _os_error(f"cannot write {key}: {exc.strerror}", exc) from exc
        return etag

    def _remember(self, rel: str) -> None:
        """Note a directory as swept by this backend (a bounded set: forgetting only costs a sweep)."""
        if len(self._ready) >= _READY_DIRS:
            self._ready.clear()
        self._ready.add(rel)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        parts, name = split_key(key)
        mode = PutMode.OVERWRITE if if_match is None else PutMode.update(if_match)
        await self._when_locked(key, lambda: self._delete_sync(key, parts, name, mode))

    def _delete_sync(self, key: str, parts: list[str], name: str, mode: PutMode) -> None:
        try:
            directory = Dir.walk(self._real_root, parts)
            if directory is None:
                if not isinstance(mode, Overwrite):
                    raise PreconditionFailed(key, current=None, current_known=True)
                return
            with directory:
                lock_fd = directory.lock(name, self.file_mode)
                try:
                    if self._check(directory, key, name, mode) is not None:
                        os.unlink(name, dir_fd=directory.fd)
                    PINS.drop(self._pin_key(key))
                    self._seen.discard(key)
                    directory.remove_stale_temps(name)
                finally:
                    forks.close_fd(lock_fd)
        except OSError as exc:
            raise _os_error(f"cannot delete {key}: {exc.strerror}", exc) from exc

    def _check(self, directory: Dir, key: str, name: str, mode: PutMode) -> os.stat_result | None:
        """Raise ``PreconditionFailed`` unless the object meets the condition; returns its status (None: missing).

        Also refuses a symbolic link in the object's place, whatever the condition.
        """
        found = directory.lstat(name)
        pinned = PINS.check(self._pin_key(key), signature(found) if found else None)
        if isinstance(mode, Overwrite) or (isinstance(mode, Update) and same_etag(pinned or "", mode.etag)):
            return found
        if found is not None and found.st_size > CHECK_READ_MAX:  # planted, or written under a larger limit
            if not isinstance(mode, Update) or not same_etag(directory.md5(name) or "", mode.etag):
                raise PreconditionFailed(key)
            return found
        read = directory.read(name) if found is not None else None
        current = Versioned(read[0], md5_etag(read[0])) if read is not None else None
        if not mode.allows(None if current is None else current.etag):
            raise PreconditionFailed(key, current=current, current_known=True)
        return found

    # -- listing ---------------------------------------------------------------

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async with aclosing(self._batches(prefix, Dir.objects)) as batches:
            async for batch in batches:
                for meta in batch:
                    if meta.key.startswith(prefix):
                        yield meta

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """The keys of ``list``, without a status call or an ``ObjectMeta`` per file."""
        async with aclosing(self._batches(prefix, Dir.keys)) as batches:
            async for batch in batches:
                for key in batch:
                    if key.startswith(prefix):
                        yield key

    async def _batches(self, prefix: str, walk: Callable[[Dir], Iterator[T]]) -> AsyncGenerator[Sequence[T], None]:
        """What ``walk`` yields for the directory of ``prefix``, in batches taken by a thread."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        parts = base.split("/") if base else []
        if any(p in ("", ".", "..") for p in parts):
            return  # no valid key lies below such a directory (and ".." must not lead out of the root)
        walker = self._walk(parts, walk)
        size = _LIST_BATCH
        batch = await asyncio.to_thread(_take, walker, size)
        while True:
            # The thread walks on while the caller takes this batch: listing streams at the file system's pace.
            more = len(batch) >= size
            if more:
                size = min(size * 4, _LIST_BATCH_MAX)
                ahead = asyncio.ensure_future(asyncio.to_thread(_take, walker, size))
                ahead.add_done_callback(_retrieved)
            yield batch  # a caller that stops early leaves the thread to finish its batch alone
            if not more:
                return
            batch = await ahead

    def _walk(self, parts: Sequence[str], walk: Callable[[Dir], Iterator[T]]) -> Iterator[T]:
        """What ``walk`` yields for the directory ``parts``: all visible files under it, in no particular order."""
        try:
            directory = Dir.walk(self._real_root, parts)
            if directory is None:
                return
            with directory:
                yield from walk(directory)
        except OSError as exc:
            raise _os_error(f"cannot list {'/'.join(parts) or 'the root'}: {exc.strerror}", exc) from exc


def _os_error(message: str, exc: OSError) -> BackendError:
    """The ``BackendError`` for a failed file operation: ``AccessDeniedError`` where permission was denied."""
    if isinstance(exc, PermissionError):
        return AccessDeniedError(message)
    return BackendError(message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _retrieved(future: asyncio.Future[list[T]]) -> None:
    """Mark a read-ahead's error as seen, for a caller that stopped listing before it."""
    if not future.cancelled():
        future.exception()


def _take(iterator: Iterator[T], n: int) -> list[T]:
    out: list[T] = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out
