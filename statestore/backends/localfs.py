"""The file system under ``LocalBackend``: directories walked without following links, and pinned files.

``Dir`` is an open directory below the root, reached one descriptor at a time (``O_NOFOLLOW``): nothing below the
root follows a symbolic link, and a link where a directory, state file or lock file should be is a
``BackendError``. ``Pins`` keeps files this process wrote open, to prove an ETag with a ``stat`` instead of a read.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import NamedTuple

from ..errors import BackendConfigError, BackendError
from ..util import forks
from .base import ObjectMeta

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
PIN_FILES = 128
PIN_BYTES = 32 * 2**20
CHECK_READ_MAX = 2**24  # a larger file a put's condition must see is hashed in chunks, never held whole
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a planted FIFO must not hang an open


Signature = tuple[int, int, int, int]
FullSignature = tuple[int, int, int, int, int]  # dev, inode, size, mtime, ctime


class Pin(NamedTuple):
    fd: int
    sig: Signature
    etag: str
    owner: object


class Pins:
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
        self._items: OrderedDict[str, Pin] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._released: list[object] = []  # owners whose backend was collected: their pins close on next use
        forks.in_child(self, Pins._forget)

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
                sig = signature(os.fstat(fd))
            except BaseException:
                forks.close_fd(fd)
                raise
            self._close(path)
            if sig[2] > self.nbytes:
                forks.close_fd(fd)
                return
            self._items[path] = Pin(fd, sig, etag, owner)
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


PINS = Pins(PIN_FILES, PIN_BYTES)


def signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def full_signature(st: os.stat_result) -> FullSignature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def is_hidden(name: str) -> bool:
    """Temp and lock files start with a dot; a file named so is never an object."""
    return name.startswith(".")


class Busy(Exception):
    """The object's lock is held elsewhere: wait on the event loop, then try again."""


class TooLarge(Exception):
    """A file over a read's ``max_bytes``: ``size`` bytes (at least), status ``st``; its body was not read."""

    def __init__(self, size: int, st: os.stat_result) -> None:
        super().__init__(size)
        self.size, self.st = size, st


class Dir:
    """An open directory below the root, reached without following any symlink.

    Every file operation is relative to ``fd``; ``rel`` is the directory's path
    below the root (``""`` for the root, else ending in ``/``) for messages.
    """

    def __init__(self, fd: int, rel: str) -> None:
        self.fd, self.rel = fd, rel

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        os.close(self.fd)

    @classmethod
    def walk(cls, root: str, parts: Sequence[str], make: int | None = None) -> Dir | None:
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
            make_root(root, make)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError as exc:
            raise BackendConfigError(f"the root {root} is not a directory") from exc
        current: Dir | None = cls(fd, "")
        for name in parts:
            if current is None:
                return None
            with current:
                current = current.child(name, make)
        return current

    def child(self, name: str, make: int | None = None) -> Dir | None:
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
        child = Dir(fd, f"{self.rel}{name}/")
        if make is not None:
            child._narrow(make)
        return child

    def _opendir(self, name: str) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=self.fd)
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
            return opener(name, flags | FILE_FLAGS, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.lstat(name)
            raise

    def read(self, name: str, max_bytes: int | None = None) -> tuple[bytes, os.stat_result] | None:
        """The bytes of regular file ``name`` and its status, or None if missing.

        A file over ``max_bytes`` raises ``TooLarge``: at once if its status says so, else
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
                raise TooLarge(st.st_size, st)
            cap = None if max_bytes is None else max_bytes + 1
            chunks: list[bytes] = []
            total = 0
            while True:
                want = max(st.st_size + 1, 65536) if cap is None else min(max(st.st_size + 1, 65536), cap - total)
                if want <= 0:
                    raise TooLarge(total, st)
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
        """Take the lock of object ``name`` without waiting (``Busy`` if held); closing the fd releases it."""
        fd = self.open_held(f".{name}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            forks.close_fd(fd)
            raise Busy from None
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
                        if entry.name[0] != ".":  # temp and lock files (``is_hidden``)
                            yield rel, entry
                    elif entry.is_symlink():
                        logger.warning(
                            "skipping %s%s: a symbolic link below the root is never followed", rel, entry.name
                        )
                else:  # this directory is done
                    levels.pop()
                    close_level(self.fd, fd, entries)
        finally:
            for fd, _, entries in levels:
                close_level(self.fd, fd, entries)

    @staticmethod
    def _open_below(parent: int, rel: str, name: str) -> int:
        """``child``'s open, on a bare descriptor: -1 if ``name`` is gone or a file now, ``BackendError`` if a link."""
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return -1
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            Dir(parent, rel).lstat(name)  # raises if it is a link
            return -1


def close_level(own: int, fd: int, entries: Iterator[os.DirEntry[str]]) -> None:
    """Close a listing of ``objects`` and its directory (but not ``own``, the caller's)."""
    close = getattr(entries, "close", None)
    if close is not None:
        close()
    if fd != own:
        os.close(fd)


def make_root(root: str, mode: int) -> None:
    """Create the missing root and its missing parents, each with ``mode`` (``os.makedirs`` would not)."""
    missing = []
    path = root
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        with suppress(FileExistsError):
            os.mkdir(path, mode)


def split_key(key: str) -> tuple[list[str], str]:
    """A key's directory parts and file name; refuses keys that are not plain relative paths or name temp/lock files."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or is_hidden(parts[-1]):
        raise ValueError(f"not a valid object key: {key!r}")
    return parts[:-1], parts[-1]
