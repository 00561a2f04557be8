"""The local backend under attack: symlinks below the root, locks held by a stuck process, pinned files.

Nothing below the root is used through a symbolic link (refused, naming it; its target untouched). A lock held by
another process delays writers by at most ``lock_timeout``, can be cancelled and holds no thread. Files pinned to
prove ETags never keep a deleted state's disk space beyond the next operation on it.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import statestore
from statestore import BackendError, LocalBackend, RetryPolicy, StateType, Store
from statestore.backends import local, localfs
from statestore.errors import LockTimeoutError

W = StateType.WORKFLOWS
TYPE_DIR = "persistent-artifacts/apps/app/workflows"


def snapshot(path: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under ``path`` (and ``path`` itself): its full mode and its content or link target."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        content: bytes | str | None = None
        if stat.S_ISLNK(st.st_mode):
            content = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            content = p.read_bytes()
        out[str(p.relative_to(path))] = (st.st_mode, content)
    return out


def outside_dir(tmp_path: Path) -> Path:
    """A world-writable sticky directory outside the root, like /tmp: the target an attacker would pick."""
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o1777)
    (outside / "config.json").write_bytes(b'{"outside": true}')
    (outside / "config.json").chmod(0o644)
    return outside


# -- symlinks ----------------------------------------------------------------------------------------------

LINK_AT = [
    "persistent-artifacts",
    "persistent-artifacts/apps/app",
    TYPE_DIR,  # the type directory
    f"{TYPE_DIR}/victim",  # the state's own directory
]


@pytest.mark.parametrize("link_at", LINK_AT)
async def test_a_symlinked_directory_is_refused_and_its_target_untouched(tmp_path: Path, link_at: str) -> None:
    root = tmp_path / "root"
    outside = outside_dir(tmp_path)
    link = root / link_at
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    store = Store(LocalBackend(root), app_name="app")
    for call in (
        store.get_state("victim", W),
        store.save_state("k", 1, "victim", W),
        store.save_state_object("victim", {"k": 1}, W),
        store.replace_state("victim", W, {"k": 1}),
        store.update_state("victim", W, lambda s: {**s, "k": 1}),
        store.delete_state("victim", W),
    ):
        with pytest.raises(BackendError, match=f"{link_at}.*symbolic link"):
            await call
    assert snapshot(outside) == before
    assert stat.S_IMODE(outside.stat().st_mode) == 0o1777  # the sticky bit and o+w are still there
    if link_at != f"{TYPE_DIR}/victim":  # the listing starts at the type directory: a link there is refused too
        with pytest.raises(BackendError, match="symbolic link"):
            await store.list_states(W)
    else:  # a linked state directory inside it is skipped, not followed
        await store.save_state("k", 1, "real", W)
        assert await store.list_states(W) == ["real"]
    assert snapshot(outside) == before


def linked_in_slot(tmp_path: Path, name: str) -> tuple[Store, Path, Path]:
    """A store whose state ``victim`` has ``name`` linked to a file outside: (store, slot, outside directory)."""
    outside = outside_dir(tmp_path)
    slot = tmp_path / "root" / TYPE_DIR / "victim"
    slot.mkdir(parents=True)
    (slot / name).symlink_to(outside / "config.json")
    return Store(LocalBackend(tmp_path / "root"), app_name="app"), slot, outside


async def test_a_symlinked_state_file_is_refused(tmp_path: Path) -> None:
    store, slot, outside = linked_in_slot(tmp_path, "config.json")
    before = snapshot(outside)
    with pytest.raises(BackendError, match=f"{TYPE_DIR}/victim/config.json.*symbolic link"):
        await store.get_state("victim", W)
    for call in [
        store.save_state("k", 1, "victim", W),
        store.replace_state("victim", W, {"k": 1}),
        store.delete_state("victim", W),
    ]:
        with pytest.raises(BackendError, match="symbolic link"):
            await call
    with pytest.raises(BackendError, match="symbolic link"):  # an unconditional put neither follows nor replaces it
        await store.backend.put(f"{TYPE_DIR}/victim/config.json", b"{}")
    assert await store.list_states(W) == []  # a linked state file is skipped by listings
    assert snapshot(outside) == before
    assert (slot / "config.json").is_symlink()


async def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    store, slot, outside = linked_in_slot(tmp_path, f".config.json{localfs.LOCK_SUFFIX}")
    before = snapshot(outside)
    with pytest.raises(BackendError, match="symbolic link"):
        await store.save_state("k", 1, "victim", W)
    assert snapshot(outside) == before
    assert not (slot / "config.json").exists()


async def test_a_symlinked_root_is_resolved_once(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    link = tmp_path / "root-link"
    link.symlink_to(first, target_is_directory=True)
    store = Store(LocalBackend(link), app_name="app")
    await store.save_state("k", 1, "wf", W)
    link.unlink()
    link.symlink_to(second, target_is_directory=True)  # repointed after the backend was made
    await store.save_state("k", 2, "wf2", W)
    assert await store.list_states(W) == ["wf", "wf2"]
    assert sorted(p.name for p in (first / TYPE_DIR).iterdir()) == ["wf", "wf2"]
    assert list(second.iterdir()) == []


async def test_directories_are_still_made_and_narrowed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / TYPE_DIR).mkdir(parents=True, mode=0o755)
    (root / TYPE_DIR).chmod(0o755)
    store = Store(LocalBackend(root), app_name="app")
    await store.save_state("k", 1, "wf", W)
    assert stat.S_IMODE((root / TYPE_DIR).stat().st_mode) == 0o700
    assert stat.S_IMODE((root / TYPE_DIR / "wf").stat().st_mode) == 0o700
    assert await store.get_state("wf", W) == {"k": 1}


async def test_a_lone_writer_still_proves_its_etag_without_a_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(LocalBackend(tmp_path), app_name="app")
    await store.save_state("k", 0, "wf", W)
    reads = 0
    real = localfs.Dir.read

    def counting(self: localfs.Dir, name: str, max_bytes: int | None = None) -> Any:
        nonlocal reads
        reads += 1
        return real(self, name, max_bytes)

    monkeypatch.setattr(localfs.Dir, "read", counting)
    for i in range(1, 6):
        await store.save_state("k", i, "wf", W)
    assert reads == 0
    assert await Store(LocalBackend(tmp_path), app_name="app").get_state("wf", W) == {"k": 5}


# -- locks held by another process --------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    slots, lock_name, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
    held = []
    for state_id in ids:
        os.makedirs(os.path.join(slots, state_id), exist_ok=True)
        fd = os.open(os.path.join(slots, state_id, lock_name), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin or kills us
    """
)


@contextmanager
def locks_held_by_another_process(root: Path, ids: list[str]) -> Iterator[None]:
    """A real second process holding the ``flock`` of each id's state (as a stuck writer would)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root / TYPE_DIR), f".config.json{localfs.LOCK_SUFFIX}", *ids],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        yield
    finally:
        holder.kill()
        holder.wait(timeout=30)


async def test_the_stores_deadline_bounds_a_lock_wait(tmp_path: Path) -> None:
    """Hardening II item 6: a store built with a 2 s deadline gives up on a lock held elsewhere after 2 s, not 30."""
    root = tmp_path / "root"
    store = Store(LocalBackend(root), app_name="app", retry=RetryPolicy(deadline=2.0))
    assert store.backend.lock_timeout == 30.0  # type: ignore[attr-defined]  # the backend's own bound is longer
    with locks_held_by_another_process(root, ["stuck"]):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="after waiting 2 s"):
            await store.save_state("k", 1, "stuck", W)
        elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 6.0
    assert await store.get_state("stuck", W) == {}


async def test_lock_wait_ends_with_a_typed_error_naming_the_state(tmp_path: Path) -> None:
    assert issubclass(LockTimeoutError, BackendError)
    with pytest.raises(statestore.InvalidInputError, match="lock_timeout"):
        LocalBackend(tmp_path, lock_timeout=-1)
    root = tmp_path / "root"
    ids = [f"stuck-{i}" for i in range(6)]
    store = Store(LocalBackend(root, lock_timeout=1.0), app_name="app")
    await store.save_state("k", "before", "stuck-0", W)
    with locks_held_by_another_process(root, ids):
        started = time.monotonic()
        saves = asyncio.gather(*(store.save_state("k", "after", i, W) for i in ids), return_exceptions=True)
        await asyncio.sleep(0.2)
        # meanwhile another state is served at once, and a read of a locked one does not wait at all
        await asyncio.wait_for(store.save_state("k", 1, "free", W), 5)
        assert await asyncio.wait_for(store.get_state("free", W), 5) == {"k": 1}
        assert await asyncio.wait_for(store.get_state("stuck-0", W), 5) == {"k": "before"}
        results = await asyncio.wait_for(saves, 10)
        elapsed = time.monotonic() - started
        for state_id, result in zip(ids, results, strict=True):
            assert isinstance(result, LockTimeoutError)
            assert f"/{state_id}/config.json" in str(result) and "1 s" in str(result)
        assert 0.9 <= elapsed < 4.0
        with pytest.raises(LockTimeoutError):
            await store.delete_state("stuck-1", W)
    assert await store.get_state("stuck-0", W) == {"k": "before"}
    await store.save_state("k", "after", "stuck-0", W)  # the holder is gone: the lock is free again
    assert await store.get_state("stuck-0", W) == {"k": "after"}


async def test_many_blocked_writers_hold_no_thread_and_cancel_at_once(tmp_path: Path) -> None:
    """More blocked states than the default thread pool has threads: other states stay fast."""
    root = tmp_path / "root"
    ids = [f"stuck-{i}" for i in range(40)]
    store = Store(LocalBackend(root), app_name="app")  # the default timeout: 30 s
    with locks_held_by_another_process(root, ids):
        blocked = [asyncio.create_task(store.save_state("k", 1, i, W)) for i in ids]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for n in range(5):
            await asyncio.wait_for(store.save_state("n", n, "free", W), 5)
            assert await asyncio.wait_for(store.get_state("free", W), 5) == {"n": n}
        await asyncio.wait_for(asyncio.gather(*(store.save_state("k", 1, f"other-{i}", W) for i in range(40))), 10)
        assert time.monotonic() - started < 10
        assert not any(task.done() for task in blocked)
        for task in blocked:
            task.cancel()
        done, pending = await asyncio.wait(blocked, timeout=2)
        assert not pending and all(task.cancelled() for task in done)
        # nothing of theirs was written, and no worker thread is left waiting on a lock
        assert await store.list_states(W) == sorted(["free", *(f"other-{i}" for i in range(40))])
        await asyncio.wait_for(asyncio.gather(*(store.get_state(f"other-{i}", W) for i in range(40))), 10)


# -- pinned files and disk space ----------------------------------------------------------------------------


def held_files(root: Path) -> dict[str, tuple[int, int]]:
    """Descriptors of this process on files under ``root``: path -> (size, link count)."""
    real = os.path.realpath(root)
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            st = os.fstat(int(name))
        except OSError:
            continue
        if target.startswith(real + "/") and stat.S_ISREG(st.st_mode):
            out[f"{name}:{target}"] = (st.st_size, st.st_nlink)
    return out


def deleted_held(root: Path) -> list[str]:
    return [path for path, (_size, links) in held_files(root).items() if links == 0]


BIG = "x" * 200_000

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@needs_proc
async def test_delete_through_another_backend_frees_the_space_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    writer, deleter = Store(LocalBackend(root), app_name="app"), Store(LocalBackend(root), app_name="app")
    for i in range(4):
        await writer.save_state("big", BIG, f"s{i}", W)
    assert len(held_files(root)) == 4  # the writer's pins: its ETag proofs
    for i in range(4):
        await deleter.delete_state(f"s{i}", W)
    assert deleted_held(root) == []
    assert held_files(root) == {}


@pytest.mark.parametrize("change", ["delete", "replace"])
@needs_proc
async def test_a_state_changed_by_another_process_is_released_on_the_next_operation(
    tmp_path: Path, change: str
) -> None:
    root = tmp_path / "root"
    store = Store(LocalBackend(root), app_name="app")
    await store.save_state("big", BIG, "s", W)
    other = textwrap.dedent(
        f"""
        import asyncio, sys
        from statestore import LocalBackend, StateType, Store
        store = Store(LocalBackend(sys.argv[1]), app_name="app")
        if {change!r} == "delete":
            asyncio.run(store.delete_state("s", StateType.WORKFLOWS))
        else:
            asyncio.run(store.replace_state("s", StateType.WORKFLOWS, {{"small": 1}}))
        """
    )
    subprocess.run([sys.executable, "-c", other, str(root)], check=True, timeout=60)
    assert len(deleted_held(root)) == 1  # our pin still holds the old file: the bounded cost
    assert await store.get_state("s", W) == ({} if change == "delete" else {"small": 1})
    assert deleted_held(root) == []


@needs_proc
async def test_pinned_bytes_are_bounded(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root", durable=False)
    chunk = b"y" * (4 * 2**20)
    for i in range(10):
        await backend.put(f"s{i}/config.json", chunk)
    held = held_files(tmp_path / "root")
    assert 0 < sum(size for size, _links in held.values()) <= 32 * 2**20
    await backend.aclose()
    assert held_files(tmp_path / "root") == {}


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)  # lazy: a failed test may still hold files


async def test_deleted_states_free_a_full_disk_at_once(small_tmpfs: Path) -> None:
    writer = Store(LocalBackend(small_tmpfs), app_name="app")
    deleter = Store(LocalBackend(small_tmpfs), app_name="app")
    for i in range(4):  # 4 x 200 KB on a 1 MiB file system
        await writer.save_state("big", BIG, f"s{i}", W)
    for i in range(4):
        await deleter.delete_state(f"s{i}", W)
    for i in range(4):  # fits only if the deleted files' space came back
        await deleter.save_state("big", BIG, f"t{i}", W)
    assert await writer.list_states(W) == ["t0", "t1", "t2", "t3"]
    await writer.aclose()
    await deleter.aclose()


# -- a planted huge file ------------------------------------------------------------------------------


def bytes_read() -> int:
    """What this process has read through ``read`` calls so far (``rchar`` of ``/proc/self/io``)."""
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


async def test_a_planted_huge_file_is_refused_unread(tmp_path: Path) -> None:
    """A sparse 128 MiB ``config.json`` put below the root by hand, under a 1 MiB limit: reads and merges refuse
    it from its size before reading it (read ``rchar`` stays small); ``replace_state`` and ``delete_state``
    recover without reading it."""
    root = tmp_path / "root"
    store = Store(LocalBackend(root), app_name="app", max_state_bytes=2**20)
    planted = root / TYPE_DIR / "wf/config.json"
    planted.parent.mkdir(parents=True)
    with open(planted, "wb") as f:
        f.truncate(128 * 2**20)
    before = bytes_read()
    with pytest.raises(statestore.errors.StoredStateTooLargeError, match="workflows state 'wf'") as refused:
        await store.get_state("wf", W)
    assert isinstance(refused.value, statestore.CorruptStateError)
    assert (refused.value.size, refused.value.limit, refused.value.etag) == (128 * 2**20, 2 * 2**20 + 65536, None)
    for write in (
        store.save_state("k", 1, "wf", W),
        store.update_state("wf", W, lambda st: st),
        store.get_versioned_state("wf", W),
    ):
        with pytest.raises(statestore.errors.StoredStateTooLargeError):
            await write
    with pytest.raises(statestore.StateExistsError, match="too large to read"):
        await store.create_state("wf", W, {"k": 1})
    assert bytes_read() - before < 2**20  # not one read of the file's body
    assert planted.stat().st_size == 128 * 2**20  # untouched
    with pytest.raises(statestore.VersionConflictError, match="too large to read"):  # hashed in chunks, not held
        await store.replace_state("wf", W, {"k": 1}, if_version='"0123456789abcdef0123456789abcdef"')
    assert planted.stat().st_size == 128 * 2**20
    before = bytes_read()
    assert await store.replace_state("wf", W, {"k": 1}) == {"k": 1}
    assert bytes_read() - before < 2**20
    assert await store.get_state("wf", W) == {"k": 1}
    with open(planted, "wb") as f:
        f.truncate(128 * 2**20)
    await store.delete_state("wf", W)
    assert not planted.exists()


def test_a_file_that_grows_while_read_is_refused_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size seen first was within the limit; the file then grew: the read stops after limit + 1 bytes."""
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    real_fstat = os.fstat

    def small_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, *st[1:6], 10, *st[7:]))  # as it was when it held 10 bytes

    monkeypatch.setattr(local.os, "fstat", small_fstat)
    with localfs.Dir.walk(str(tmp_path), []) as directory:  # type: ignore[union-attr]
        assert directory.read("f", max_bytes=100_000) is not None
        with pytest.raises(localfs.TooLarge) as refused:
            directory.read("f", max_bytes=50_000)
    assert refused.value.size == 50_001
