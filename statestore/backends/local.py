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
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import BackendError
from .base import ObjectBackend, PreconditionFailed, Versioned, md5_etag, same_etag

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
_LIST_BATCH = 256


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
            data = path.read_bytes()
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
        try:
            self._makedirs(path.parent)
            with self._locked(path):
                self._check(path, if_match, if_none_match)
                self._remove_stale_temps(path)
                tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}{TEMP_SUFFIX}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                if self.durable:
                    self._fsync_dir(path.parent)
        except (PreconditionFailed, BackendError):
            raise
        except OSError as exc:
            raise BackendError(f"cannot write {path}: {exc.strerror}") from exc
        return md5_etag(data)

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


def _take(iterator: Iterator[str], n: int) -> list[str]:
    out: list[str] = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out
