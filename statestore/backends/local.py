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
import errno
import fcntl
import hashlib
import logging
import os
import random
import stat
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, TypeVar

from ..errors import (
    AccessDeniedError,
    BackendConfigError,
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

logger = logging.getLogger(__name__)

T = TypeVar("T")

TEMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
_LIST_BATCH = 256  # the first batch a listing takes from the file system; later ones are larger
_LIST_BATCH_MAX = 1024
_READY_DIRS = 4096
_PIN_FILES = 128
_PIN_BYTES = 32 * 2**20
_SEEN_FILES = 4096  # statuses of files read, remembered per backend to answer conditional reads
_RACY_NS = 3 * 10**9  # a file changed more recently than this is not remembered (coarse clocks, skew)
_LOCK_POLL_MAX = 0.05  # seconds between tries of a held lock, at most
_CHECK_READ_MAX = 2**24  # a larger file a put's condition must see is hashed in chunks, never held whole
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a planted FIFO must not hang an open


Signature = tuple[int, int, int, int]
FullSignature = tuple[int, int, int, int, int]  # dev, inode, size, mtime, ctime


class _Pin(NamedTuple):
    fd: int
    sig: Signature
    etag: str
    owner: object


class _Pins:
    """Files written in this process, kept open: proves an ETag with a ``stat`` instead of a read.

    While we hold a descriptor of a file, no other file can be given its inode
    number; so if the object's path still names that inode, with the size and
    mtime seen at the write, it still holds those bytes (every writer replaces
    the file, none edits it in place). One registry per process, keyed by real
    path, so a delete through any backend closes the pin (and frees the space)
    at once. A pinned file that another process replaced or deleted keeps its
    space until the next operation on that object sees the change and closes
    the pin; at most ``files`` pins of ``nbytes`` bytes in all are kept, oldest
    closed first. Thread-safe. A forked child has none: their descriptors are closed there at
    once (``forks.open_fd``), or the child would keep replaced files on disk.
    """

    def __init__(self, files: int, nbytes: int) -> None:
        self.files, self.nbytes = files, nbytes
        self._items: OrderedDict[str, _Pin] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._released: list[object] = []  # owners whose backend was collected: their pins close on next use
        forks.in_child(self, _Pins._forget)

    def _forget(self) -> None:
        """In a forked child: the pins' descriptors are closed already; forget them."""
        self._items.clear()
        self._bytes = 0
        self._lock = threading.Lock()

    def pin(self, path: str, fd: int, etag: str, owner: object) -> None:
        """Remember ``fd`` (now ours to close) as the file at ``path`` holding ``etag``."""
        with self._lock:
            self._close_released()
            try:
                sig = _signature(os.fstat(fd))
            except BaseException:
                forks.close_fd(fd)
                raise
            self._close(path)
            if sig[2] > self.nbytes:
                forks.close_fd(fd)
                return
            self._items[path] = _Pin(fd, sig, etag, owner)
            self._bytes += sig[2]
            while len(self._items) > self.files or self._bytes > self.nbytes:
                self._close(next(iter(self._items)))

    def check(self, path: str, sig: Signature | None) -> str | None:
        """The pinned ETag if ``path`` (now ``sig``, None if missing) is still the pinned file; else drop the pin.

        Only a caller holding the object's lock may trust the answer: then no
        pin of ``path`` can be closed and made again between its stat and this check.
        """
        with self._lock:
            self._close_released()
            item = self._items.get(path)
            if item is None:
                return None
            if item.sig != sig:
                self._close(path)
                return None
            return item.etag

    def drop(self, path: str) -> None:
        with self._lock:
            self._close(path)

    def close_owned(self, owner: object) -> None:
        """Close the pins made through one backend."""
        with self._lock:
            self._released.append(owner)
            self._close_released()

    def release(self, owner: object) -> None:
        """Close the pins made through a backend that was collected, on the next use of the registry.

        Called by a finalizer, which the garbage collector may run on a thread that holds the lock:
        taking it here could deadlock, and appending to a list takes none.
        """
        self._released.append(owner)

    def _close_released(self) -> None:
        while self._released:
            owner = self._released.pop()
            for path in [path for path, item in self._items.items() if item.owner is owner]:
                self._close(path)

    def _close(self, path: str) -> None:
        item = self._items.pop(path, None)
        if item is not None:
            self._bytes -= item.sig[2]
            forks.close_fd(item.fd)


_PINS = _Pins(_PIN_FILES, _PIN_BYTES)


def _signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _full_signature(st: os.stat_result) -> FullSignature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _is_hidden(name: str) -> bool:
    """Temp and lock files start with a dot; a file named so is never an object."""
    return name.startswith(".")


class _Busy(Exception):
    """The object's lock is held elsewhere: wait on the event loop, then try again."""


class _TooLarge(Exception):
    """A file over a read's ``max_bytes``: ``size`` bytes (at least), status ``st``; its body was not read."""

    def __init__(self, size: int, st: os.stat_result) -> None:
        super().__init__(size)
        self.size, self.st = size, st


class _Dir:
    """An open directory below the root, reached without following any symlink.

    Every file operation is relative to ``fd``; ``rel`` is the directory's path
    below the root (``""`` for the root, else ending in ``/``) for messages.
    """

    def __init__(self, fd: int, rel: str) -> None:
        self.fd, self.rel = fd, rel

    def __enter__(self) -> _Dir:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        os.close(self.fd)

    @classmethod
    def walk(cls, root: str, parts: Sequence[str], make: int | None = None) -> _Dir | None:
        """Open ``root/parts``; None if something on the way is missing or a file (unless ``make``).

        With ``make`` (a mode), missing directories are created with that mode
        and existing ones below the root narrowed to it; the root and its
        parents are the user's, created if missing but never changed.
        """
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if make is None:
                return None
            _make_root(root, make)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError as exc:
            raise BackendConfigError(f"the root {root} is not a directory") from exc
        current: _Dir | None = cls(fd, "")
        for name in parts:
            if current is None:
                return None
            with current:
                current = current.child(name, make)
        return current

    def child(self, name: str, make: int | None = None) -> _Dir | None:
        """The subdirectory ``name``: None if missing or a file (unless ``make``), ``BackendError`` if a link."""
        try:
            fd = self._opendir(name)
        except FileNotFoundError:
            if make is None:
                return None
            with suppress(FileExistsError):
                os.mkdir(name, make, dir_fd=self.fd)
            fd = self._opendir(name)
        except NotADirectoryError:
            if make is None:
                return None  # a file where the key has a directory: no object there
            raise
        child = _Dir(fd, f"{self.rel}{name}/")
        if make is not None:
            child._narrow(make)
        return child

    def _opendir(self, name: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:  # O_NOFOLLOW on a link: ENOTDIR with O_DIRECTORY on Linux, ELOOP elsewhere
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                self.lstat(name)  # raises if it is a link
            raise

    def _narrow(self, mode: int) -> None:
        """Take away permission bits that ``mode`` lacks (credentials never sit in a world-readable directory)."""
        current = stat.S_IMODE(os.fstat(self.fd).st_mode)
        if current & 0o777 & ~mode:
            try:
                os.fchmod(self.fd, current & mode)
            except PermissionError:  # not our directory: write anyway, the file itself is file_mode
                logger.warning("cannot narrow the permissions of %s to %o", self.rel, mode)

    def lstat(self, name: str) -> os.stat_result | None:
        """``name``'s own status, None if missing; ``BackendError`` if it is a symbolic link."""
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise BackendError(f"{self.rel}{name} is a symbolic link; links below the root are never followed")
        return st

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """Open file ``name`` (close it with ``os.close``)."""
        return self._open(os.open, name, flags, mode)

    def open_held(self, name: str, flags: int, mode: int = 0o600) -> int:
        """Open file ``name`` to hold it (a lock, a file to pin): a forked child closes its copy at once.

        Close it with ``forks.close_fd``.
        """
        return self._open(forks.open_fd, name, flags, mode)

    def _open(self, opener: Callable[..., int], name: str, flags: int, mode: int) -> int:
        try:
            return opener(name, flags | _FILE_FLAGS, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.lstat(name)
            raise

    def read(self, name: str, max_bytes: int | None = None) -> tuple[bytes, os.stat_result] | None:
        """The bytes of regular file ``name`` and its status, or None if missing.

        A file over ``max_bytes`` raises ``_TooLarge``: at once if its status says so, else
        (it grows while read) after ``max_bytes + 1`` bytes.
        """
        try:
            fd = self.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BackendError(f"{self.rel}{name} is not a regular file")
            if max_bytes is not None and st.st_size > max_bytes:
                raise _TooLarge(st.st_size, st)
            cap = None if max_bytes is None else max_bytes + 1
            chunks: list[bytes] = []
            total = 0
            while True:
                want = max(st.st_size + 1, 65536) if cap is None else min(max(st.st_size + 1, 65536), cap - total)
                if want <= 0:
                    raise _TooLarge(total, st)
                chunk = os.read(fd, want)
                if not chunk:
                    return b"".join(chunks), st
                chunks.append(chunk)
                total += len(chunk)
        finally:
            os.close(fd)

    def md5(self, name: str) -> str | None:
        """The ETag of file ``name`` (None if missing), hashed in chunks: memory stays flat however large it is."""
        try:
            fd = self.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            digest = hashlib.md5(usedforsecurity=False)
            while chunk := os.read(fd, 2**20):
                digest.update(chunk)
            return f'"{digest.hexdigest()}"'
        finally:
            os.close(fd)

    def lock(self, name: str, mode: int) -> int:
        """Take the lock of object ``name`` without waiting (``_Busy`` if held); closing the fd releases it."""
        fd = self.open_held(f".{name}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            forks.close_fd(fd)
            raise _Busy from None
        except BaseException:
            forks.close_fd(fd)
            raise
        return fd

    def remove_stale_temps(self, name: str) -> None:
        """Temp files of object ``name`` left by a writer that died; we hold the lock, so none is live."""
        prefix = f".{name}."
        with os.scandir(self.fd) as entries:
            stale = [e.name for e in entries if e.name.startswith(prefix) and e.name.endswith(TEMP_SUFFIX)]
        for temp in stale:
            logger.debug("removing stale temp file %s%s", self.rel, temp)
            with suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=self.fd)

    def objects(self) -> Iterator[ObjectMeta]:
        """All visible regular files below, in no particular order; symlinks are skipped.

        Only the files cost a status call (``lstat``), for their size and time; the
        ETag is left out, as only reading the file could tell it.
        """
        meta, stamp, utc = ObjectMeta, datetime.fromtimestamp, UTC
        for rel, entry in self.files():
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # deleted since the directory was read
                continue
            yield meta(rel + entry.name, st.st_size, stamp(st.st_mtime, utc))

    def keys(self) -> Iterator[str]:
        """The keys (paths below this directory) of ``objects``, without a status call per file."""
        for rel, entry in self.files():
            yield rel + entry.name

    def files(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Each visible regular file below (its directory's ``rel`` and its entry), in no particular order.

        Depth first, holding one descriptor and one open listing per level and
        nothing per entry, so memory stays flat however many objects there are.
        Entry types come from the listing itself (``d_type``), so this costs no
        call per file; an entry is valid (its ``stat`` works) until the next one is taken.
        """
        levels: list[tuple[int, str, Iterator[os.DirEntry[str]]]] = []  # open directories: fd, rel, listing
        try:
            levels.append((self.fd, self.rel, os.scandir(self.fd)))
            while levels:
                fd, rel, entries = levels[-1]
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        name = entry.name
                        child = self._open_below(fd, rel, name)
                        if child >= 0:
                            try:
                                levels.append((child, f"{rel}{name}/", os.scandir(child)))
                            except BaseException:
                                os.close(child)
                                raise
                            break
                    elif entry.is_file(follow_symlinks=False):
                        if entry.name[0] != ".":  # temp and lock files (``_is_hidden``)
                            yield rel, entry
                    elif entry.is_symlink():
                        logger.warning(
                            "skipping %s%s: a symbolic link below the root is never followed", rel, entry.name
                        )
                else:  # this directory is done
                    levels.pop()
                    _close_level(self.fd, fd, entries)
        finally:
            for fd, _, entries in levels:
                _close_level(self.fd, fd, entries)

    @staticmethod
    def _open_below(parent: int, rel: str, name: str) -> int:
        """``child``'s open, on a bare descriptor: -1 if ``name`` is gone or a file now, ``BackendError`` if a link."""
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return -1
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            _Dir(parent, rel).lstat(name)  # raises if it is a link
            return -1


def _close_level(own: int, fd: int, entries: Iterator[os.DirEntry[str]]) -> None:
    """Close a listing of ``objects`` and its directory (but not ``own``, the caller's)."""
    close = getattr(entries, "close", None)
    if close is not None:
        close()
    if fd != own:
        os.close(fd)


def _make_root(root: str, mode: int) -> None:
    """Create the missing root and its missing parents, each with ``mode`` (``os.makedirs`` would not)."""
    missing = []
    path = root
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        with suppress(FileExistsError):
            os.mkdir(path, mode)


def _split(key: str) -> tuple[list[str], str]:
    """A key's directory parts and file name; refuses keys that are not plain relative paths or name temp/lock files."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or _is_hidden(parts[-1]):
        raise ValueError(f"not a valid object key: {key!r}")
    return parts[:-1], parts[-1]


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
        weakref.finalize(self, _PINS.release, self._owner)

    async def aclose(self) -> None:
        """Close the files kept open to prove ETags; the backend stays usable."""
        _PINS.close_owned(self._owner)

    def describe(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file of ``key``; refuses keys that are not plain relative paths or name a temp/lock file."""
        parts, name = _split(key)
        return self.root.joinpath(*parts, name)

    def _pin_key(self, key: str) -> str:
        return f"{self._real_root}/{key}"

    # -- reads -----------------------------------------------------------------

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        parts, name = _split(key)
        return await asyncio.to_thread(self._get_sync, key, parts, name, if_none_match, max_bytes)

    def _get_sync(
        self, key: str, parts: list[str], name: str, if_none_match: str | None, max_bytes: int | None
    ) -> Versioned | NotModified | None:
        try:
            directory = _Dir.walk(self._real_root, parts)
            if directory is None:
                found = None
            else:
                with directory:
                    if if_none_match is not None:
                        known = self._known_etag(key, directory.lstat(name))
                        if known is not None and same_etag(known, if_none_match):
                            return NotModified(known)
                    found = directory.read(name, max_bytes)
        except _TooLarge as big:
            assert max_bytes is not None
            raise StoredStateTooLargeError(key, big.size, max_bytes, self._known_etag(key, big.st)) from None
        except OSError as exc:
            raise _os_error(f"cannot read {key}: {exc.strerror}", exc) from exc
        _PINS.check(self._pin_key(key), _signature(found[1]) if found else None)  # closes a pin gone stale
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
        pinned = _PINS.check(self._pin_key(key), _signature(st))
        if pinned is not None:
            return pinned
        seen = self._seen.get(key)
        if seen is not None and seen[0] == _full_signature(st):
            return seen[1]
        return None

    def _note(self, key: str, st: os.stat_result, etag: str) -> None:
        """Remember the status of a file just read with its ETag, unless its last change is too recent to prove."""
        if time.time_ns() - st.st_ctime_ns > _RACY_NS:
            self._seen.put(key, (_full_signature(st), etag))
        else:
            self._seen.discard(key)

    # -- conditional writes ----------------------------------------------------

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        check_put_mode(mode)
        parts, name = _split(key)
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
            except _Busy:
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
            directory = _Dir.walk(self._real_root, parts, make=self.dir_mode)
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
                    _PINS.pin(self._pin_key(key), fd, etag, self._owner)
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
        parts, name = _split(key)
        mode = PutMode.OVERWRITE if if_match is None else PutMode.update(if_match)
        await self._when_locked(key, lambda: self._delete_sync(key, parts, name, mode))

    def _delete_sync(self, key: str, parts: list[str], name: str, mode: PutMode) -> None:
        try:
            directory = _Dir.walk(self._real_root, parts)
            if directory is None:
                if not isinstance(mode, Overwrite):
                    raise PreconditionFailed(key, current=None, current_known=True)
                return
            with directory:
                lock_fd = directory.lock(name, self.file_mode)
                try:
                    if self._check(directory, key, name, mode) is not None:
                        os.unlink(name, dir_fd=directory.fd)
                    _PINS.drop(self._pin_key(key))
                    self._seen.discard(key)
                    directory.remove_stale_temps(name)
                finally:
                    forks.close_fd(lock_fd)
        except OSError as exc:
            raise _os_error(f"cannot delete {key}: {exc.strerror}", exc) from exc

    def _check(self, directory: _Dir, key: str, name: str, mode: PutMode) -> os.stat_result | None:
        """Raise ``PreconditionFailed`` unless the object meets the condition; returns its status (None: missing).

        Also refuses a symbolic link in the object's place, whatever the condition.
        """
        found = directory.lstat(name)
        pinned = _PINS.check(self._pin_key(key), _signature(found) if found else None)
        if isinstance(mode, Overwrite) or (isinstance(mode, Update) and same_etag(pinned or "", mode.etag)):
            return found
        if found is not None and found.st_size > _CHECK_READ_MAX:  # planted, or written under a larger limit
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
        async with aclosing(self._batches(prefix, _Dir.objects)) as batches:
            async for batch in batches:
                for meta in batch:
                    if meta.key.startswith(prefix):
                        yield meta

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """The keys of ``list``, without a status call or an ``ObjectMeta`` per file."""
        async with aclosing(self._batches(prefix, _Dir.keys)) as batches:
            async for batch in batches:
                for key in batch:
                    if key.startswith(prefix):
                        yield key

    async def _batches(self, prefix: str, walk: Callable[[_Dir], Iterator[T]]) -> AsyncGenerator[Sequence[T], None]:
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

    def _walk(self, parts: Sequence[str], walk: Callable[[_Dir], Iterator[T]]) -> Iterator[T]:
        """What ``walk`` yields for the directory ``parts``: all visible files under it, in no particular order."""
        try:
            directory = _Dir.walk(self._real_root, parts)
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
