"""Conditional reads: a get of an unchanged object answers ``NotModified`` without its bytes, never a stale one.

Local and memory prove it strictly (no file read); ``get_state`` of a cached, unchanged state costs no
body bytes, and a state changed elsewhere (another store, another process) is always read anew.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from statestore import LocalBackend, MemoryBackend, StateType, Store
from statestore.backends import local as local_module
from statestore.backends import localfs
from statestore.backends.base import NotModified, ObjectBackend, Versioned
from statestore.backends.wrappers import LoggingBackend
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS
KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the object files the local backend reads (its one read path, ``Dir.read``)."""
    reads: list[str] = []
    real = localfs.Dir.read

    def spy(self: Any, name: str, max_bytes: int | None = None) -> Any:
        reads.append(name)
        return real(self, name, max_bytes)

    monkeypatch.setattr(localfs.Dir, "read", spy)
    return reads


def replace_in_other_process(root: Path, key: str, data: bytes) -> None:
    """Write ``data`` over ``key`` from another process, through its own LocalBackend."""
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]);"
        "from statestore import LocalBackend;"
        "asyncio.run(LocalBackend(sys.argv[2]).put(sys.argv[3], sys.argv[4].encode()))"
    )
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(root), key, data.decode()], check=True, timeout=60)


@pytest.fixture
async def settled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalBackend, Versioned]:
    """A file written by another process longer ago than the (shortened) margin, and its first read."""
    monkeypatch.setattr(local_module, "_RACY_NS", 200_000_000)
    replace_in_other_process(tmp_path, KEY, b"v1")
    time.sleep(0.3)  # older than the margin: its status can prove it
    backend = LocalBackend(tmp_path)
    got = await backend.get(KEY)
    assert isinstance(got, Versioned) and got.data == b"v1"
    return backend, got


async def test_memory_answers_not_modified() -> None:
    backend = MemoryBackend()
    etag = (await backend.put(KEY, b"1")).etag
    assert await backend.get(KEY, if_none_match=etag) == NotModified(etag)
    assert await backend.get(KEY, if_none_match=etag.strip('"')) == NotModified(etag)
    await backend.put(KEY, b"2")
    got = await backend.get(KEY, if_none_match=etag)
    assert isinstance(got, Versioned) and got.data == b"2"


async def test_local_file_written_here_is_proven_without_reading_it(tmp_path: Path, file_reads: list[str]) -> None:
    backend = LocalBackend(tmp_path)
    etag = (await backend.put(KEY, b"1" * 1000)).etag
    assert await backend.get(KEY, if_none_match=etag) == NotModified(etag)
    assert file_reads == []
    got = await backend.get(KEY)  # an unconditional get still reads
    assert isinstance(got, Versioned) and file_reads == ["config.json"]


async def test_local_file_read_long_ago_is_proven_without_reading_it(
    tmp_path: Path, file_reads: list[str], settled: tuple[LocalBackend, Versioned]
) -> None:
    backend, got = settled
    assert await backend.get(KEY, if_none_match=got.etag) == NotModified(got.etag)
    assert file_reads == ["config.json"]
    # Replaced by another process with as many bytes, at once: the new version is read.
    replace_in_other_process(tmp_path, KEY, b"v2")
    again = await backend.get(KEY, if_none_match=got.etag)
    assert isinstance(again, Versioned) and again.data == b"v2"


async def test_local_file_edited_in_place_is_read(settled: tuple[LocalBackend, Versioned]) -> None:
    backend, got = settled
    with open(backend.path(KEY), "r+b") as f:  # same inode, same size: only the times tell
        f.write(b"v9")
    again = await backend.get(KEY, if_none_match=got.etag)
    assert isinstance(again, Versioned) and again.data == b"v9"


async def test_local_file_changed_just_now_is_not_trusted(tmp_path: Path, file_reads: list[str]) -> None:
    """A file whose last change is within the margin may share its status with a later one: read it."""
    replace_in_other_process(tmp_path, KEY, b"v1")
    backend = LocalBackend(tmp_path)
    got = await backend.get(KEY)
    assert isinstance(got, Versioned)
    again = await backend.get(KEY, if_none_match=got.etag)
    assert isinstance(again, Versioned) and again.data == b"v1"
    assert file_reads == ["config.json", "config.json"]


async def test_local_status_memo_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "_RACY_NS", 0)
    monkeypatch.setattr(local_module, "_SEEN_FILES", 3)
    backend = LocalBackend(tmp_path)
    for i in range(10):
        await backend.put(f"k/{i}", b"x")
        await backend.get(f"k/{i}")
    assert 0 < len(backend._seen) <= 3
    await backend.delete("k/9")
    assert backend._seen.get("k/9") is None


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_get_state_of_an_unchanged_state_reads_no_body(kind: str, tmp_path: Path) -> None:
    inner: ObjectBackend = MemoryBackend() if kind == "memory" else LocalBackend(tmp_path)
    counting = CountingBackend(inner)
    async with Store(counting) as store:
        await store.save_state_object("w1", {"blob": "x" * 100_000}, W)
        counting.reset()
        for _ in range(10):
            assert (await store.get_state("w1", W))["blob"] == "x" * 100_000
        assert counting.counts["get"] == 10
        assert counting.bytes_read == 0 and counting.not_modified == 10


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_get_state_sees_a_change_made_by_another_store(kind: str, tmp_path: Path) -> None:
    inner: ObjectBackend = MemoryBackend() if kind == "memory" else LocalBackend(tmp_path)
    async with Store(inner) as mine, Store(inner) as theirs:
        await mine.save_state_object("w1", {"n": 1}, W)
        assert await mine.get_state("w1", W) == {"n": 1}
        await theirs.save_state("n", 2, "w1", W)
        assert await mine.get_state("w1", W) == {"n": 2}
        await theirs.delete_state("w1", W)
        assert await mine.get_state("w1", W) == {}


async def test_get_state_sees_a_change_made_by_another_process(tmp_path: Path) -> None:
    async with Store(LocalBackend(tmp_path)) as store:
        await store.save_state_object("w1", {"n": 1}, W)
        key = store.key("w1", W).object_key
        replace_in_other_process(tmp_path, key, b'{"n":2}')
        assert await store.get_state("w1", W) == {"n": 2}


async def test_a_save_that_changes_nothing_is_confirmed_by_a_conditional_read() -> None:
    counting = CountingBackend(MemoryBackend())
    async with Store(counting) as store:
        await store.save_state_object("w1", {"blob": "x" * 10_000}, W)
        counting.reset()
        await store.save_state("blob", "x" * 10_000, "w1", W)  # the same value: nothing to write
        assert counting.counts == {"get": 1} and counting.bytes_read == 0 and counting.not_modified == 1


async def test_counting_backend_counts_bytes() -> None:
    counting = CountingBackend(MemoryBackend())
    etag = (await counting.put(KEY, b"12345")).etag
    await counting.get(KEY)
    await counting.get(KEY, if_none_match=etag)
    assert (counting.bytes_written, counting.bytes_read, counting.not_modified) == (5, 5, 1)


async def test_a_state_too_large_to_cache_is_read_whole() -> None:
    """A state the byte-bounded cache does not keep has no version to ask about: every read returns its body."""
    counting = CountingBackend(MemoryBackend())
    async with Store(counting, cache_bytes=80_000) as store:  # keeps states up to 10,000 bytes
        await store.save_state_object("big", {"blob": "x" * 50_000}, W)
        await store.save_state_object("small", {"blob": "x" * 1_000}, W)
        counting.reset()
        await store.get_state("big", W)
        await store.get_state("big", W)
        assert counting.bytes_read > 100_000 and counting.not_modified == 0
        counting.reset()
        await store.get_state("small", W)
        assert counting.bytes_read == 0 and counting.not_modified == 1


async def test_logging_backend_logs_a_not_modified_answer(caplog: pytest.LogCaptureFixture) -> None:
    backend = LoggingBackend(MemoryBackend())
    etag = (await backend.put(KEY, b"1")).etag
    with caplog.at_level(logging.DEBUG, logger="statestore.backends.wrappers"):
        assert await backend.get(KEY, if_none_match=etag) == NotModified(etag)
    assert "not modified" in caplog.text
