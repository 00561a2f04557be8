"""The local backend's probes: the root, no symbolic links, the protocol probes, ``flock`` locking, file modes."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from ..backends.local import LocalBackend
from ..backends.localfs import LOCK_SUFFIX
from ..keys.paths import KEY_ROOT
from ..keys.statetype import StateType
from .protocol import PROTOCOL_PROBES, ProtocolProbes
from .report import LOST_UPDATES, CheckReport, CheckRun, StopCheck, Verdict, scratch_prefix

logger = logging.getLogger(__name__)


_LOCAL_PROBES = ("root", "symlinks", *PROTOCOL_PROBES, "locking", "permissions", "delete")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class _LocalCheck:
    def __init__(self, backend: LocalBackend, app: str) -> None:
        self.backend = backend
        self.run = CheckRun(_LOCAL_PROBES)
        self.root = Path(backend.root)
        self.app = app
        self.scratch = scratch_prefix(app)
        self.scratch_dir = self.root / self.scratch
        self.app_dir = self.root / KEY_ROOT / app
        # Directories the check creates (removed again), and the modes of those it finds (put back).
        self.created: list[Path] = []
        self.modes: dict[Path, int] = {}
        self.noted = False

    async def __call__(self) -> CheckReport:
        run = self.run
        proto = ProtocolProbes(run, self.backend, self.scratch, Verdict.MISCONFIGURED)
        try:
            await asyncio.to_thread(self.probe_root)
            await asyncio.to_thread(self.probe_symlinks)
            await proto.writes()
            await asyncio.to_thread(self.probe_locking)
            await asyncio.to_thread(self.probe_permissions)
            await proto.delete()
        except StopCheck as stop:
            run.stop(stop)
            await proto.cleanup()
        finally:
            await asyncio.to_thread(self.remove_scratch)
        return run.report(self.backend.describe(), "local", {}, "writes are atomic and locked across processes")

    def probe_root(self) -> None:
        root = self.root
        if os.path.lexists(root):
            if not root.is_dir():
                raise StopCheck("root", Verdict.MISCONFIGURED, f"the root {root} is not a directory")
            if not os.access(root, os.W_OK | os.X_OK):
                raise StopCheck("root", Verdict.MISCONFIGURED, f"the root {root} is not writable by this user")
            link = f" (a link to {os.path.realpath(root)}, resolved once)" if root.is_symlink() else ""
            self.note_dirs()
            self.run.ok("root", f"{root} is a writable directory{link}")
            return
        parent = root.parent
        while not os.path.lexists(parent) and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise StopCheck(
                "root", Verdict.MISCONFIGURED, f"cannot create the root {root}: {parent} is not a directory"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StopCheck("root", Verdict.MISCONFIGURED, f"cannot create the root {root}: {parent} is not writable")
        self.note_dirs()
        self.run.ok("root", f"{root} does not exist yet and can be created (the first write creates it)")

    def note_dirs(self) -> None:
        """Record which directories on the way to the scratch directory are missing, and the modes of the others."""
        self.noted = True
        for directory in [self.scratch_dir, *self.scratch_dir.parents]:
            if not os.path.lexists(directory):
                self.created.append(directory)  # deepest first
                continue
            if directory == self.root or self.root not in directory.parents:
                return  # the root and above are the user's
            if directory.is_dir() and not directory.is_symlink():
                self.modes[directory] = _mode(directory)

    def probe_symlinks(self) -> None:
        """No symbolic link (or file) where the app's directories go: the backend never follows links below the root."""
        base = self.root / KEY_ROOT
        on_the_way = [self.root / KEY_ROOT.split("/")[0], base, self.app_dir]
        on_the_way += [self.app_dir / t.value for t in StateType]
        for path in on_the_way:
            rel = path.relative_to(self.root)
            if path.is_symlink():
                raise StopCheck(
                    "symlinks",
                    Verdict.MISCONFIGURED,
                    f"{rel} is a symbolic link; links below the root are never followed, so states there "
                    "cannot be read or written: make it a directory, or make the root the link's target",
                )
            if os.path.lexists(path) and not path.is_dir():
                raise StopCheck("symlinks", Verdict.MISCONFIGURED, f"{rel} is a file where a directory must be")
        self.run.ok("symlinks", f"no symbolic link below the root on the way to {self.app_dir.relative_to(self.root)}")

    def probe_locking(self) -> None:
        """Two open file descriptions of the scratch object's lock file: the second must not get the lock."""
        lock = self.scratch_dir / f".probe{LOCK_SUFFIX}"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        first = os.open(lock, flags, 0o600)
        second = os.open(lock, flags, 0o600)
        try:
            try:
                fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self.run.unsafe(
                    "locking",
                    f"flock fails on this file system ({errno.errorcode.get(exc.errno or 0, exc.errno)})",
                    f"the local backend cannot lock its files here: {LOST_UPDATES} between processes",
                )
                return
            try:
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                self.run.unsafe(
                    "locking",
                    "flock let a second holder take a lock already held",
                    f"locks do not exclude on this file system: {LOST_UPDATES} between processes",
                )
                return
            os.close(first)
            first = -1
            try:
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.run.fail(
                    "locking",
                    "a lock stayed held after its holder closed it",
                    Verdict.UNREACHABLE,
                    "locks are not released on this file system: writes would time out",
                )
                return
            self.run.ok("locking", "flock excludes a second holder and is released when its holder closes")
        finally:
            for fd in (first, second):
                if fd >= 0:
                    os.close(fd)

    def probe_permissions(self) -> None:
        """The scratch object's mode and those of the directories on its way (below the root)."""
        file_mode = _mode(self.scratch_dir / "probe")
        problems = []
        if file_mode & 0o077:
            problems.append(f"files are created {file_mode:04o}, readable by other users")
        wide = []
        narrowed = []
        directory = self.scratch_dir
        while directory != self.root and self.root in directory.parents:
            mode = _mode(directory)
            if mode & 0o077:
                wide.append(f"{directory.relative_to(self.root)} is {mode:04o}")
            before = self.modes.get(directory)
            if before is not None and before != mode:
                narrowed.append(f"{directory.relative_to(self.root)} was {before:04o}")
            directory = directory.parent
        if wide:
            problems.append("directories are open to other users: " + ", ".join(wide))
        if problems:
            self.run.fail("permissions", "; ".join(problems), Verdict.MISCONFIGURED)
            return
        detail = f"files are created {file_mode:04o}, directories {_mode(self.scratch_dir):04o}"
        if narrowed:
            detail += (
                f"; the backend narrows existing directories on its first write there ({', '.join(narrowed)}; "
                "the check put their modes back)"
            )
        self.run.ok("permissions", detail)

    def remove_scratch(self) -> None:
        """Remove the scratch directory with its lock and temp files, the directories made, and restore modes."""
        directory = self.scratch_dir
        if not self.noted:
            return  # the root probe stopped the check: nothing was made
        try:
            with os.scandir(directory) as entries:
                names = [e.name for e in entries if not e.is_dir(follow_symlinks=False)]
            for name in names:
                os.unlink(directory / name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError:
            logger.warning("cannot empty the scratch directory %s", directory, exc_info=True)
        for path in [directory, directory.parent, *self.created]:
            if path == self.scratch_dir.parent and path not in self.created:
                continue  # .statestore-check existed before: another check may be using it
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                logger.debug("leaving %s in place", path, exc_info=True)
        for path, mode in self.modes.items():
            try:
                if os.path.isdir(path) and _mode(path) != mode:
                    os.chmod(path, mode)
            except OSError:
                logger.debug("cannot restore the mode of %s", path, exc_info=True)


async def check_local(backend: LocalBackend, app: str) -> CheckReport:
    return await _LocalCheck(backend, app)()
