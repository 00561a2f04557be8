"""``LocalBackend``: objects as files under a root directory.

Writes go to a temp file in the same directory (created 0600), are fsynced and
then ``os.replace``-d over the object, so a reader sees the old or the new
bytes, never a partial file. An exclusive ``flock`` on a per-object lock file
makes "check the ETag, then replace" one step across threads and processes;
the kernel drops the lock when its holder dies. Disk work runs in a thread so
the event loop keeps ticking.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import stat
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import BackendError
from .base import ObjectBackend, PreconditionFailed, Versioned, md5_etag, same_etag

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
_LIST_BATCH = 256
_READY_DIRS = 4096
_PINS = 128


class _Pins:
    """Our last write per object, its file kept open: proves an ETag with a ``stat`` instead of a read.

    While we hold a descriptor of the file we wrote, no other file can be given
    its inode number; so if the object's path still names that inode, with the
    size and mtime we saw, it still holds our bytes (every writer replaces the
    file, none edits it in place). At most ``size`` pins; the oldest is closed
    first. Thread-safe.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[int, tuple[int, int, int, int], str]] = OrderedDict()
        self._lock = threading.Lock()

    def pin(self, path: str, fd: int, etag: str) -> None:
        """Remember ``fd`` (now ours to close) as the file at ``path`` holding ``etag``."""
        with self._lock:
            try:
                sig = _signature(os.fstat(fd))
            except BaseException:
                os.close(fd)
                raise
            old = self._items.pop(path, None)
            if old is not None:
                os.close(old[0])
            self._items[path] = (fd, sig, etag)
            while len(self._items) > self.size:
                os.close(self._items.popitem(last=False)[1][0])

    def proves(self, path: str, etag: str) -> bool:
        """Whether ``path`` is still the file we wrote with ``etag``; False means "read it to know"."""
        with self._lock:  # held across the stat, so no pin is closed (and its inode freed) meanwhile
            item = self._items.get(path)
            if item is None or not same_etag(item[2], etag):
                return False
            try:
                return _signature(os.stat(path)) == item[1]
            except OSError:
                return False

    def unpin(self, path: str) -> None:
        with self._lock:
            item = self._items.pop(path, None)
            if item is not None:
                os.close(item[0])

    def close(self) -> None:
        with self._lock:
            while self._items:
                os.close(self._items.popitem()[1][0])


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _is_hidden(name: str) -> bool:
    """Temp and lock files start with a dot; a file named so is never an object."""
    return name.startswith(".")


class LocalBackend(ObjectBackend):
    """Objects as files under ``root``; new files are ``file_mode``, new directories ``dir_mode``.

    ``durable`` also fsyncs the directory after a rename so that the rename
    itself survives a power cut, at the cost of a second fsync per write.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        file_mode: int = 0o600,
        dir_mode: int = 0o700,
        durable: bool = True,
    ) -> None:
        self.root = Path(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.durable = durable
        # Directories this backend has made (or found) and swept of dead writers' temp files.
        self._ready: set[Path] = set()
        self._pins = _Pins(_PINS)
        weakref.finalize(self, self._pins.close)

    async def aclose(self) -> None:
        """Close the files kept open to prove ETags; the backend stays usable."""
        self._pins.close()

    def describe(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file of ``key``; refuses keys that are not plain relative paths or name a temp/lock file."""
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or _is_hidden(parts[-1]):
            raise ValueError(f"not a valid object key: {key!r}")
        return self.root.joinpath(*parts)

    # -- reads -----------------------------------------------------------------

    async def get(self, key: str) -> Versioned | None:
        path = self.path(key)
        return await asyncio.to_thread(self._get_sync, path)

    def _get_sync(self, path: Path) -> Versioned | None:
        try:
            data = _read_all(str(path))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            self._check_root()
            return None  # a file where the key has a directory: no object there
        except OSError as exc:
            raise BackendError(f"cannot read {path}: {exc.strerror}") from exc
        return Versioned(data, md5_etag(data))

    # -- conditional writes ----------------------------------------------------

    async def put(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        path = self.path(key)
        return await asyncio.to_thread(self._put_sync, path, bytes(data), if_match, if_none_match)

    def _put_sync(self, path: Path, data: bytes, if_match: str | None, if_none_match: bool) -> str:
        """Check the condition and replace the file, all under the object's lock; one thread hop per put."""
        target, parent, etag = str(path), path.parent, md5_etag(data)
        try:
            lock_fd = self._open_lock(path)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                self._check(path, if_match, if_none_match)
                if parent not in self._ready:
                    self._remove_stale_temps(path)
                    self._remember(parent)
                tmp = f"{parent}/.{path.name}.{os.getpid()}-{os.urandom(4).hex()}{TEMP_SUFFIX}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.file_mode)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                    os.replace(tmp, target)
                except BaseException:
                    os.close(fd)
                    with suppress(OSError):
                        os.unlink(tmp)
                    raise
                self._pins.pin(target, fd, etag)
                if self.durable:
                    self._fsync_dir(parent)
            finally:
                os.close(lock_fd)  # closing the descriptor releases the lock
        except (PreconditionFailed, BackendError):
            raise
        except OSError as exc:
            raise BackendError(f"cannot write {path}: {exc.strerror}") from exc
        return etag

    def _open_lock(self, path: Path) -> int:
        """Open (creating) the object's lock file; its directory is made on first use."""
        lock = f"{path.parent}/.{path.name}{LOCK_SUFFIX}"
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        if path.parent not in self._ready:
            self._makedirs(path.parent)
        try:
            return os.open(lock, flags, self.file_mode)
        except FileNotFoundError:  # the directory was removed since we made it
            self._makedirs(path.parent)
            return os.open(lock, flags, self.file_mode)

    def _remember(self, directory: Path) -> None:
        """Note a directory as made and swept by this backend (a bounded set: forgetting only costs a sweep)."""
        if len(self._ready) >= _READY_DIRS:
            self._ready.clear()
        self._ready.add(directory)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self.path(key)
        await asyncio.to_thread(self._delete_sync, path, if_match)

    def _delete_sync(self, path: Path, if_match: str | None) -> None:
        if not path.parent.is_dir():
            if if_match is not None:
                raise PreconditionFailed(str(path), current=None, current_known=True)
            return
        try:
            with self._locked(path):
                self._check(path, if_match, False)
                path.unlink(missing_ok=True)
                self._pins.unpin(str(path))
                self._remove_stale_temps(path)
        except (PreconditionFailed, BackendError):
            raise
        except OSError as exc:
            raise BackendError(f"cannot delete {path}: {exc.strerror}") from exc

    def _check_root(self) -> None:
        """Raise ``BackendError`` if the root exists but is not a directory: every read would look empty."""
        if self.root.exists() and not self.root.is_dir():
            raise BackendError(f"the root {self.root} is not a directory")

    def _check(self, path: Path, if_match: str | None, if_none_match: bool) -> None:
        if if_match is None and not if_none_match:
            return
        if if_match is not None and self._pins.proves(str(path), if_match):
            return
        current = self._get_sync(path)
        if (if_none_match and current is not None) or (
            if_match is not None and (current is None or not same_etag(current.etag, if_match))
        ):
            raise PreconditionFailed(str(path), current=current, current_known=True)

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        fd = os.open(path.with_name(f".{path.name}{LOCK_SUFFIX}"), os.O_RDWR | os.O_CREAT, self.file_mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _remove_stale_temps(self, path: Path) -> None:
        """Temp files of this object left by a writer that died; we hold the lock, so none is live."""
        prefix = f".{path.name}."
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX):
                    logger.debug("removing stale temp file %s", entry.path)
                    Path(entry.path).unlink(missing_ok=True)

    def _makedirs(self, directory: Path) -> None:
        """Create ``directory`` and its missing parents, each with ``dir_mode`` (``makedirs`` would not).

        Directories below the root that already exist with wider permissions
        (made by another tool, or under a lax umask) are narrowed to
        ``dir_mode``, so credentials never sit in a world-readable directory.
        The root and its parents are the user's and are left as they are.
        """
        inside = self.root in directory.parents
        try:
            mode: int | None = directory.stat().st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not inside:
            return
        self._makedirs(directory.parent)
        if mode is None:
            with suppress(FileExistsError):
                directory.mkdir(mode=self.dir_mode)
        elif stat.S_ISDIR(mode) and mode & 0o777 & ~self.dir_mode:
            try:
                os.chmod(directory, mode & 0o777 & self.dir_mode)
            except PermissionError:  # not our directory: write anyway, the file itself is file_mode
                logger.warning("cannot narrow the permissions of %s to %o", directory, self.dir_mode)

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- listing ---------------------------------------------------------------

    async def list(self, prefix: str) -> AsyncIterator[str]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base.split("/")) if base else self.root
        walker = self._walk(start)
        while True:
            batch = await asyncio.to_thread(_take, walker, _LIST_BATCH)
            for key in batch:
                if key.startswith(prefix):
                    yield key
            if len(batch) < _LIST_BATCH:
                return

    def _walk(self, start: Path) -> Iterator[str]:
        """Keys of all visible files under ``start``, in key order."""
        try:
            entries = sorted(os.scandir(start), key=lambda e: e.name)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            self._check_root()
            return
        except OSError as exc:
            raise BackendError(f"cannot list {start}: {exc.strerror}") from exc
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False) and not _is_hidden(entry.name):
                yield Path(entry.path).relative_to(self.root).as_posix()


def _read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, max(size + 1, 65536))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _take(iterator: Iterator[str], n: int) -> list[str]:
    out: list[str] = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out
