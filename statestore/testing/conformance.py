"""``BackendTests``: the backend contract as a pytest class that any ``ObjectBackend`` subclasses to prove it.

Usage (see docs/testing.md)::

    from statestore.testing import BackendTests

    class TestMyBackend(BackendTests):
        @pytest.fixture
        def backend(self) -> MyBackend:
            return MyBackend()  # fresh and empty for every test

The fixture may also be ``async`` (and may ``yield``, to clean up): under
pytest-asyncio's ``auto`` mode as is, in ``strict`` mode decorated with
``@pytest_asyncio.fixture``. The tests are coroutines marked
``pytest.mark.asyncio``, so pytest-asyncio (the ``test`` extra) must be
installed. This module imports pytest; ``statestore.testing`` imports it only
when ``BackendTests`` is asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ..backends.base import Capability, NotModified, ObjectBackend, ObjectMeta, PutMode, Versioned, same_etag
from ..errors import ConditionalDeleteUnsupportedError, PreconditionFailed, StoredStateTooLargeError

__all__ = ["BackendTests"]

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"
_NEVER_AN_ETAG = '"0123456789abcdef0123456789abcdef"'
_CLOCK_SKEW = timedelta(minutes=5)  # a server's clock may differ a little from ours


async def _listed(backend: ObjectBackend, prefix: str) -> list[ObjectMeta]:
    return [meta async for meta in backend.list(prefix)]


async def _exactly_one_won(backend: ObjectBackend, outcomes: Sequence[object]) -> None:
    """Of puts ``b"0"``, ``b"1"``, ... racing on ``KEY``: one landed, every other failed its condition."""
    winners = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, BaseException)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, PreconditionFailed) for i, o in enumerate(outcomes) if i != winners[0]), outcomes
    got = await backend.get(KEY)
    assert isinstance(got, Versioned) and got.data == b"%d" % winners[0]


class BackendTests:
    """The ``ObjectBackend`` contract: get, put in each ``PutMode``, delete, list with metadata, concurrency.

    Subclass it as ``Test<Something>`` and define one fixture, ``backend``,
    giving a fresh, empty backend per test. Every test uses only the public
    protocol, so it holds for a backend of any storage (a dict, a database, a
    cloud store).
    """

    pytestmark = pytest.mark.asyncio

    @pytest.fixture
    def backend(self) -> ObjectBackend:
        """Override: a fresh, empty backend for each test."""
        raise NotImplementedError("subclass BackendTests and define a `backend` fixture returning a fresh backend")

    # -- get and put -------------------------------------------------------------

    async def test_get_missing_is_none(self, backend: ObjectBackend) -> None:
        assert await backend.get(KEY) is None

    async def test_put_get_roundtrip_and_quoted_etag(self, backend: ObjectBackend) -> None:
        result = await backend.put(KEY, b'{"a":1}')
        assert result.etag.startswith('"') and result.etag.endswith('"')
        got = await backend.get(KEY)
        assert isinstance(got, Versioned)
        assert got.data == b'{"a":1}'
        assert same_etag(got.etag, result.etag)

    async def test_overwrite_is_the_default_and_replaces_any_version(self, backend: ObjectBackend) -> None:
        await backend.put(KEY, b"1", PutMode.CREATE)
        await backend.put(KEY, b"2")
        await backend.put(KEY, b"3", PutMode.OVERWRITE)
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b"3"

    async def test_create_creates_only_once(self, backend: ObjectBackend) -> None:
        await backend.put(KEY, b"1", PutMode.CREATE)
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"2", PutMode.CREATE)
        if info.value.current_known:
            assert info.value.current is not None and info.value.current.data == b"1"
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b"1"

    async def test_update_with_current_etag_succeeds_stale_fails(self, backend: ObjectBackend) -> None:
        first = (await backend.put(KEY, b"1")).etag
        second = (await backend.put(KEY, b"2", PutMode.update(first))).etag
        assert not same_etag(first, second)
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"3", PutMode.update(first))
        if info.value.current_known:
            assert info.value.current is not None and info.value.current.data == b"2"
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b"2" and same_etag(got.etag, second)

    async def test_update_accepts_an_unquoted_etag(self, backend: ObjectBackend) -> None:
        etag = (await backend.put(KEY, b"1")).etag
        await backend.put(KEY, b"2", PutMode.update(etag.strip('"')))
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b"2"

    async def test_update_of_a_missing_key_fails_and_creates_nothing(self, backend: ObjectBackend) -> None:
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"1", PutMode.update(_NEVER_AN_ETAG))
        if info.value.current_known:
            assert info.value.current is None
        assert await backend.get(KEY) is None

    async def test_binary_and_empty_payloads(self, backend: ObjectBackend) -> None:
        await backend.put(KEY, b"")
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b""
        blob = bytes(range(256)) * 100
        await backend.put(KEY, blob)
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == blob

    # -- delete ------------------------------------------------------------------

    async def test_delete(self, backend: ObjectBackend) -> None:
        await backend.delete(KEY)  # missing: fine
        await backend.put(KEY, b"1")
        await backend.delete(KEY)
        assert await backend.get(KEY) is None
        assert await _listed(backend, KEY) == []

    async def test_conditional_delete(self, backend: ObjectBackend) -> None:
        """A stale If-Match never deletes: either the backend honours it, or it refuses every conditional delete."""
        first = (await backend.put(KEY, b"1")).etag
        await backend.put(KEY, b"2", PutMode.update(first))
        current = await backend.get(KEY)
        assert isinstance(current, Versioned)
        try:
            with pytest.raises(PreconditionFailed):
                await backend.delete(KEY, if_match=first)
        except ConditionalDeleteUnsupportedError:  # a server that ignores If-Match on delete (Ceph RGW, MinIO)
            assert await backend.supports(Capability.CONDITIONAL_DELETE) is False
            with pytest.raises(ConditionalDeleteUnsupportedError):
                await backend.delete(KEY, if_match=current.etag)
            assert await backend.get(KEY) == current
            return
        assert await backend.supports(Capability.CONDITIONAL_DELETE) is True
        assert await backend.get(KEY) == current
        await backend.delete(KEY, if_match=current.etag)
        assert await backend.get(KEY) is None

    # -- list --------------------------------------------------------------------

    async def test_list_by_prefix(self, backend: ObjectBackend) -> None:
        keys = [
            "persistent-artifacts/apps/a/workflows/w1/config.json",
            "persistent-artifacts/apps/a/workflows/w2/config.json",
            "persistent-artifacts/apps/a/credentials/c1/config.json",
            "persistent-artifacts/apps/b/workflows/w3/config.json",
        ]
        for key in keys:
            await backend.put(key, b"{}")
        listed = await _listed(backend, "persistent-artifacts/apps/a/workflows/")
        assert sorted(meta.key for meta in listed) == keys[:2]
        assert await _listed(backend, "persistent-artifacts/apps/none/") == []
        assert sorted(meta.key for meta in await _listed(backend, "")) == sorted(keys)

    async def test_list_yields_metadata(self, backend: ObjectBackend) -> None:
        """Each listed object has its size, an aware UTC last-modified time and, where known, its current ETag."""
        before = datetime.now(UTC) - _CLOCK_SKEW
        small = (await backend.put("m/a/config.json", b"{}")).etag
        first = (await backend.put("m/b/config.json", bytes(1000))).etag
        big = (await backend.put("m/b/config.json", bytes(1500), PutMode.update(first))).etag
        listed = {meta.key: meta for meta in await _listed(backend, "m/")}
        assert sorted(listed) == ["m/a/config.json", "m/b/config.json"]
        assert [listed[key].size for key in sorted(listed)] == [2, 1500]
        for meta in listed.values():
            assert isinstance(meta, ObjectMeta)
            assert meta.last_modified.utcoffset() == timedelta(0)
            assert before <= meta.last_modified <= datetime.now(UTC) + _CLOCK_SKEW
        for key, etag in (("m/a/config.json", small), ("m/b/config.json", big)):
            listed_etag = listed[key].etag
            assert listed_etag is None or same_etag(listed_etag, etag)

    async def test_list_streams_many(self, backend: ObjectBackend) -> None:
        keys = sorted(f"p/x/{i:04d}/config.json" for i in range(600))
        for start in range(0, len(keys), 20):  # 20 at a time: the listing is under test, not the puts
            await asyncio.gather(*(backend.put(key, b"{}") for key in keys[start : start + 20]))
        assert sorted(meta.key for meta in await _listed(backend, "p/x/")) == keys

    # -- capabilities and lifecycle ------------------------------------------------

    async def test_capabilities_and_description(self, backend: ObjectBackend) -> None:
        for capability in Capability:
            assert isinstance(await backend.supports(capability), bool)
        assert isinstance(backend.key_prefix, str)
        assert isinstance(backend.describe(), str) and backend.describe()

    async def test_usable_after_aclose(self, backend: ObjectBackend) -> None:
        await backend.put(KEY, b"1")
        await backend.aclose()
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b"1"

    # -- concurrency of conditional puts -------------------------------------------

    async def test_concurrent_creates_exactly_one_wins(self, backend: ObjectBackend) -> None:
        outcomes = await asyncio.gather(
            *(backend.put(KEY, b"%d" % i, PutMode.CREATE) for i in range(8)), return_exceptions=True
        )
        await _exactly_one_won(backend, outcomes)

    async def test_concurrent_updates_of_one_version_exactly_one_wins(self, backend: ObjectBackend) -> None:
        base = (await backend.put(KEY, b"base")).etag
        outcomes = await asyncio.gather(
            *(backend.put(KEY, b"%d" % i, PutMode.update(base)) for i in range(8)), return_exceptions=True
        )
        await _exactly_one_won(backend, outcomes)

    async def test_compare_and_swap_increments_are_never_lost(self, backend: ObjectBackend) -> None:
        """Writers that read, add one and put with ``update`` (retrying on a failed condition) lose no increment."""
        await backend.put(KEY, b"0", PutMode.CREATE)

        async def increment() -> None:
            while True:
                current = await backend.get(KEY)
                assert isinstance(current, Versioned)
                await asyncio.sleep(0)  # let the other writers run between the read and the write
                try:
                    await backend.put(KEY, b"%d" % (int(current.data) + 1), PutMode.update(current.etag))
                    return
                except PreconditionFailed:
                    await asyncio.sleep(0)

        await asyncio.gather(*(increment() for _ in range(4 * 5)))
        got = await backend.get(KEY)
        assert isinstance(got, Versioned) and got.data == b"20"

    # -- conditional reads -----------------------------------------------------------

    async def test_get_if_none_match_of_the_current_version(self, backend: ObjectBackend) -> None:
        """The current ETag (quoted or not): ``NotModified``, or the whole object where the backend cannot tell."""
        etag = (await backend.put(KEY, b"1")).etag
        for asked in (etag, etag.strip('"')):
            got = await backend.get(KEY, if_none_match=asked)
            assert isinstance(got, NotModified | Versioned), got
            assert same_etag(got.etag, etag)
            if isinstance(got, Versioned):
                assert got.data == b"1"

    async def test_get_if_none_match_of_a_replaced_version_returns_the_new_one(self, backend: ObjectBackend) -> None:
        first = (await backend.put(KEY, b"1")).etag
        await backend.get(KEY, if_none_match=first)
        second = (await backend.put(KEY, b"2")).etag  # same size: only the content tells them apart
        for asked in (first, _NEVER_AN_ETAG):
            got = await backend.get(KEY, if_none_match=asked)
            assert isinstance(got, Versioned), got
            assert got.data == b"2" and same_etag(got.etag, second)

    async def test_get_if_none_match_of_a_missing_key_is_none(self, backend: ObjectBackend) -> None:
        assert await backend.get(KEY, if_none_match=_NEVER_AN_ETAG) is None
        etag = (await backend.put(KEY, b"1")).etag
        assert await backend.get(KEY, if_none_match=etag) is not None
        await backend.delete(KEY)
        assert await backend.get(KEY, if_none_match=etag) is None

    # -- bounded reads -----------------------------------------------------------------

    async def test_get_refuses_an_object_over_max_bytes(self, backend: ObjectBackend) -> None:
        """``StoredStateTooLargeError`` with the object's size, decided before its body is read (from the size
        the store tells first: ``fstat``, ``Content-Length``), so that memory stays bounded by ``max_bytes``."""
        data = bytes(range(256)) * 400  # 102,400 bytes
        etag = (await backend.put(KEY, data)).etag
        with pytest.raises(StoredStateTooLargeError) as refused:
            await backend.get(KEY, max_bytes=len(data) - 1)
        error = refused.value
        assert (error.key, error.size, error.limit) == (KEY, len(data), len(data) - 1)
        assert error.etag is None or same_etag(error.etag, etag)  # told where known without reading
        for limit in (len(data), len(data) + 1, None):
            got = await backend.get(KEY, max_bytes=limit)
            assert isinstance(got, Versioned) and got.data == data and same_etag(got.etag, etag)
        assert await backend.get("p/missing/config.json", max_bytes=1) is None
        assert await backend.get(KEY) == await backend.get(KEY, max_bytes=len(data))

    async def test_get_max_bytes_with_if_none_match(self, backend: ObjectBackend) -> None:
        """The current version: ``NotModified`` (no body, whatever its size) or, where the backend sends the
        whole object instead, the same refusal; another version over the limit is refused."""
        etag = (await backend.put(KEY, b"x" * 5000)).etag
        try:
            got = await backend.get(KEY, if_none_match=etag, max_bytes=10)
        except StoredStateTooLargeError as exc:
            assert exc.size == 5000
        else:
            assert isinstance(got, NotModified) and same_etag(got.etag, etag)
        with pytest.raises(StoredStateTooLargeError):
            await backend.get(KEY, if_none_match=_NEVER_AN_ETAG, max_bytes=10)

    # -- keys only -------------------------------------------------------------------

    async def test_list_keys_yields_the_keys_of_list(self, backend: ObjectBackend) -> None:
        keys = ["p/a/config.json", "p/b/config.json", "p/b/c/config.json", "q/config.json"]
        for key in keys:
            await backend.put(key, b"1")
        for prefix in ("p/", "p/b", "", "none/"):
            listed = sorted(meta.key for meta in await _listed(backend, prefix))
            assert sorted([key async for key in backend.list_keys(prefix)]) == listed
            assert listed == sorted(k for k in keys if k.startswith(prefix))
