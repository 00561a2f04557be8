"""The backend protocol, once, against every backend (``backend_kind`` in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from statestore import (
    ConditionalDeleteUnsupportedError,
    InvalidInputError,
    ObjectBackend,
    ObjectMeta,
    PreconditionFailed,
    PutMode,
)
from statestore.backends.base import same_etag

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"


async def test_get_missing_is_none(backend: ObjectBackend) -> None:
    assert await backend.get(KEY) is None


async def test_put_get_roundtrip_and_quoted_md5_etag(backend: ObjectBackend) -> None:
    etag = (await backend.put(KEY, b'{"a":1}')).etag
    assert etag.startswith('"') and etag.endswith('"')
    got = await backend.get(KEY)
    assert got is not None
    assert got.data == b'{"a":1}'
    assert got.etag.strip('"') == etag.strip('"')


async def test_create_creates_only_once(backend: ObjectBackend) -> None:
    await backend.put(KEY, b"1", PutMode.CREATE)
    with pytest.raises(PreconditionFailed):
        await backend.put(KEY, b"2", PutMode.CREATE)
    got = await backend.get(KEY)
    assert got is not None and got.data == b"1"


async def test_update_with_current_etag_succeeds_stale_fails(backend: ObjectBackend) -> None:
    first = (await backend.put(KEY, b"1")).etag
    second = (await backend.put(KEY, b"2", PutMode.update(first))).etag
    assert second.strip('"') != first.strip('"')
    with pytest.raises(PreconditionFailed) as info:
        await backend.put(KEY, b"3", PutMode.update(first))
    if info.value.current_known:
        assert info.value.current is not None and info.value.current.data == b"2"
    got = await backend.get(KEY)
    assert got is not None and got.data == b"2"


async def test_update_accepts_unquoted_etag(backend: ObjectBackend) -> None:
    etag = (await backend.put(KEY, b"1")).etag
    await backend.put(KEY, b"2", PutMode.update(etag.strip('"')))
    got = await backend.get(KEY)
    assert got is not None and got.data == b"2"


async def test_update_of_missing_key_fails(backend: ObjectBackend) -> None:
    with pytest.raises(PreconditionFailed):
        await backend.put(KEY, b"1", PutMode.update('"0123456789abcdef0123456789abcdef"'))
    assert await backend.get(KEY) is None


async def test_delete(backend: ObjectBackend) -> None:
    await backend.delete(KEY)  # missing: fine
    await backend.put(KEY, b"1")
    await backend.delete(KEY)
    assert await backend.get(KEY) is None


async def test_conditional_delete(backend: ObjectBackend) -> None:
    """A stale If-Match never deletes: either the backend honours it, or it refuses every conditional delete."""
    first = (await backend.put(KEY, b"1")).etag
    await backend.put(KEY, b"2", PutMode.update(first))
    current = await backend.get(KEY)
    assert current is not None
    try:
        with pytest.raises(PreconditionFailed):
            await backend.delete(KEY, if_match=first)
    except ConditionalDeleteUnsupportedError:  # a server that ignores If-Match on delete (Ceph RGW, MinIO)
        assert backend.supports_conditional_delete is False
        with pytest.raises(ConditionalDeleteUnsupportedError):
            await backend.delete(KEY, if_match=current.etag)
        assert await backend.get(KEY) == current
        return
    assert await backend.get(KEY) == current
    await backend.delete(KEY, if_match=current.etag)
    assert await backend.get(KEY) is None


async def test_list_by_prefix(backend: ObjectBackend) -> None:
    keys = [
        "persistent-artifacts/apps/a/workflows/w1/config.json",
        "persistent-artifacts/apps/a/workflows/w2/config.json",
        "persistent-artifacts/apps/a/credentials/c1/config.json",
        "persistent-artifacts/apps/b/workflows/w3/config.json",
    ]
    for key in keys:
        await backend.put(key, b"{}")
    listed = [m.key async for m in backend.list("persistent-artifacts/apps/a/workflows/")]
    assert sorted(listed) == keys[:2]
    assert [m.key async for m in backend.list("persistent-artifacts/apps/none/")] == []


async def test_list_streams_many(backend: ObjectBackend) -> None:
    keys = sorted(f"p/x/{i:04d}/config.json" for i in range(600))
    for key in keys:
        await backend.put(key, b"{}")
    assert sorted([m.key async for m in backend.list("p/x/")]) == keys


async def test_binary_and_empty_payloads(backend: ObjectBackend) -> None:
    await backend.put(KEY, b"")
    got = await backend.get(KEY)
    assert got is not None and got.data == b""
    blob = bytes(range(256)) * 100
    await backend.put(KEY, blob)
    got = await backend.get(KEY)
    assert got is not None and got.data == blob


async def test_list_yields_metadata(backend: ObjectBackend) -> None:
    """Each listed object carries its size, an aware UTC last-modified time and, if known, its ETag."""
    before = datetime.now(UTC) - timedelta(minutes=5)  # servers' clocks drift a little
    small = (await backend.put("m/a/config.json", b"{}")).etag
    await backend.put("m/b/config.json", bytes(1000))
    listed = {m.key: m async for m in backend.list("m/")}
    assert sorted(listed) == ["m/a/config.json", "m/b/config.json"]
    assert [listed[k].size for k in sorted(listed)] == [2, 1000]
    for meta in listed.values():
        assert isinstance(meta, ObjectMeta)
        assert meta.last_modified.utcoffset() == timedelta(0)
        assert before <= meta.last_modified <= datetime.now(UTC) + timedelta(minutes=5)
    etag = listed["m/a/config.json"].etag
    assert etag is None or same_etag(etag, small)


async def test_overwrite_is_the_default_and_replaces_any_version(backend: ObjectBackend) -> None:
    await backend.put(KEY, b"1", PutMode.CREATE)
    await backend.put(KEY, b"2")
    await backend.put(KEY, b"3", PutMode.OVERWRITE)
    got = await backend.get(KEY)
    assert got is not None and got.data == b"3"


async def test_a_mode_that_is_not_a_put_mode_is_refused(backend: ObjectBackend) -> None:
    with pytest.raises(InvalidInputError, match="PutMode"):
        await backend.put(KEY, b"1", "create")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        PutMode.update("")
    assert await backend.get(KEY) is None
