"""No bulk operation acts on a key outside the prefix it listed: a listing that answers other keys is refused.

``FaultProxy(drop_list_prefix=True)`` (tests/fault_proxy.py) stands for a server or gateway that ignores the
``prefix`` parameter of ListObjectsV2 and ListObjectVersions: it answers every key of the bucket. The bucket
holds the states of two apps and an unrelated object; every object and version is counted straight on moto
before and after. ``statestore check`` must say UNSAFE (exit 4) and delete nothing of it; every other bulk
operation must raise ``ListingOutOfPrefixError`` and delete or write nothing. On both S3 transports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_TRANSPORTS, CliResult, s3_backend
from fault_proxy import FaultProxy
from test_cli import clean_env

from statestore import MemoryBackend, ObjectBackend, StateType, Store
from statestore.backends import ObjectMeta
from statestore.backends.base import NotModified, PutMode, PutResult, Versioned
from statestore.check import Verdict
from statestore.copying import copy_states
from statestore.errors import ListingOutOfPrefixError, S3ClientUnsupportedError
from statestore.testing import MotoServer

W, C = StateType.WORKFLOWS, StateType.CREDENTIALS
UNRELATED = "unrelated/other-app-data.bin"
OLD = timedelta(milliseconds=1)  # every state is older than this by the time prune lists it

two_transports = pytest.mark.parametrize("s3_transport", S3_TRANSPORTS, indirect=True)
versioning = pytest.mark.parametrize("versioned", [False, True], ids=["plain-bucket", "versioned-bucket"])


def snapshot(server: MotoServer, bucket: str) -> dict[str, Any]:
    """Every object and every version (delete markers too) in ``bucket``, read straight from moto."""
    client = server.client()
    try:
        objects = {
            item["Key"]: (item["ETag"], item["LastModified"])
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])
        }
        versions = {
            (item["Key"], item["VersionId"], part)
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket)
            for part in ("Versions", "DeleteMarkers")
            for item in page.get(part, [])
        }
    finally:
        client.close()
    return {"objects": objects, "versions": versions}


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    p = FaultProxy(moto_server.endpoint_url, drop_list_prefix=True).start()
    yield p
    p.stop()


@pytest.fixture
async def bucket(moto_server: MotoServer, versioned: bool) -> str:
    """A bucket with the states of two apps and an unrelated object (versioned: two versions of some states)."""
    name = moto_server.create_bucket()
    client = moto_server.client()
    try:
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        client.put_object(Bucket=name, Key=UNRELATED, Body=b"\x00not statestore's")
    finally:
        client.close()
    for app in ("app", "other"):
        async with Store(s3_backend(moto_server, name), app_name=app) as store:
            for n in range(3):
                await store.replace_state(f"wf-{n}", W, {"n": n})
                await store.replace_state(f"wf-{n}", W, {"n": n, "again": True})
            await store.replace_state("db", C, {"host": "db.internal"})
    return name


@pytest.fixture
async def store(moto_server: MotoServer, proxy: FaultProxy, bucket: str) -> AsyncIterator[Store]:
    """The app's store, through the proxy that drops the listing prefix."""
    s = Store(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url), app_name="app")
    yield s
    await s.aclose()


def assert_refused(caught: pytest.ExceptionInfo[ListingOutOfPrefixError]) -> None:
    message = str(caught.value)
    assert "ignored the prefix" in message and caught.value.prefix in message
    assert caught.value.prefix.startswith("persistent-artifacts/apps/app/")
    assert "test-secret" not in message and "AWS_SECRET" not in message


# -- statestore check --------------------------------------------------------------------


@two_transports
@versioning
def test_check_on_a_server_that_ignores_the_prefix_is_unsafe_and_deletes_nothing(
    moto_server: MotoServer,
    proxy: FaultProxy,
    bucket: str,
    tmp_path: Path,
    versioned: bool,
    s3_transport: str,
    cli_run: Callable[..., CliResult],
) -> None:
    before = snapshot(moto_server, bucket)
    assert (len(before["objects"]), len(before["versions"])) == (9, 15 if versioned else 9)
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", proxy.endpoint_url, "--app", "app"]
    env = clean_env(**moto_server.fake_credentials(), STATESTORE_S3_CLIENT=s3_transport)

    result = cli_run(*args, "check", cwd=tmp_path, env=env)
    assert result.code == 4, result.out + result.err
    assert "verdict: UNSAFE" in result.out and "ignores the prefix of a listing" in result.out
    assert snapshot(moto_server, bucket) == before

    result = cli_run(*args, "--json", "check", cwd=tmp_path, env=env)
    report = json.loads(result.out)
    assert (result.code, report["verdict"]) == (4, "unsafe")
    outcomes = {p["name"]: p["outcome"] for p in report["probes"]}
    assert outcomes["list-prefix"] == "unsafe" and outcomes["delete"] == "ok", report
    assert [v for v, o in outcomes.items() if o == "unsafe"] == ["list-prefix"]
    assert snapshot(moto_server, bucket) == before  # the scratch objects (and versions) are gone, nothing else


@two_transports
@versioning
def test_check_on_a_server_that_honours_the_prefix_says_so(
    moto_server: MotoServer,
    bucket: str,
    tmp_path: Path,
    versioned: bool,
    s3_transport: str,
    cli_run: Callable[..., CliResult],
) -> None:
    before = snapshot(moto_server, bucket)
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", moto_server.endpoint_url, "--app", "app"]
    env = clean_env(**moto_server.fake_credentials(), STATESTORE_S3_CLIENT=s3_transport)
    result = cli_run(*args, "--json", "check", cwd=tmp_path, env=env)
    report = json.loads(result.out)
    assert (result.code, report["verdict"]) == (0, "safe"), report
    probe = next(p for p in report["probes"] if p["name"] == "list-prefix")
    assert probe["outcome"] == "ok"
    assert ("ListObjectVersions" in probe["detail"]) is versioned
    assert snapshot(moto_server, bucket) == before


# -- the bulk operations -------------------------------------------------------------------


@two_transports
@versioning
async def test_listing_states_refuses_keys_outside_the_prefix(
    moto_server: MotoServer, bucket: str, store: Store
) -> None:
    before = snapshot(moto_server, bucket)
    for stype in (W, C):
        with pytest.raises(ListingOutOfPrefixError) as caught:
            await store.list_states(stype)
        assert_refused(caught)
        with pytest.raises(ListingOutOfPrefixError):
            await store.list_state_info(stype)
        with pytest.raises(ListingOutOfPrefixError):
            [info async for info in store.iter_state_info(stype)]
    assert snapshot(moto_server, bucket) == before


@two_transports
@versioning
@pytest.mark.parametrize("allow_unconditional", [False, True])
async def test_prune_refuses_a_listing_outside_the_prefix_and_deletes_nothing(
    moto_server: MotoServer, bucket: str, store: Store, allow_unconditional: bool
) -> None:
    before = snapshot(moto_server, bucket)
    for dry_run in (True, False):
        with pytest.raises(ListingOutOfPrefixError) as caught:
            await store.prune_states(W, older_than=OLD, dry_run=dry_run, allow_unconditional=allow_unconditional)
        assert_refused(caught)
    assert snapshot(moto_server, bucket) == before


@two_transports
@versioning
async def test_copy_refuses_a_listing_outside_the_prefix_and_writes_nothing(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str, store: Store
) -> None:
    before = snapshot(moto_server, bucket)
    async with Store(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url), app_name="copy") as dst:
        for dry_run in (True, False):
            with pytest.raises(ListingOutOfPrefixError):
                await copy_states(store, dst, dry_run=dry_run)
    async with Store(s3_backend(moto_server, bucket), app_name="direct") as src:  # the destination's listing too
        with pytest.raises(ListingOutOfPrefixError):
            await copy_states(src, store, dry_run=True)
    assert snapshot(moto_server, bucket) == before


@two_transports
@versioning
async def test_reencrypt_refuses_a_listing_outside_the_prefix_and_writes_nothing(
    moto_server: MotoServer, bucket: str, store: Store
) -> None:
    before = snapshot(moto_server, bucket)
    for stype in (W, C):
        with pytest.raises(ListingOutOfPrefixError):
            await store.reencrypt_states(stype)
    assert snapshot(moto_server, bucket) == before


@two_transports
@pytest.mark.parametrize("versioned", [True], ids=["versioned-bucket"])
async def test_history_refuses_a_version_listing_outside_the_prefix(
    moto_server: MotoServer, bucket: str, store: Store, s3_transport: str
) -> None:
    """ListObjectVersions without its prefix answers other keys' versions: refused (obstore cannot list them)."""
    before = snapshot(moto_server, bucket)
    expected = ListingOutOfPrefixError if s3_transport == "aioboto3" else S3ClientUnsupportedError
    for state_id in ("wf-1", "never-written"):
        with pytest.raises(expected):
            await store.state_history(state_id, W)
    assert snapshot(moto_server, bucket) == before


@two_transports
@pytest.mark.parametrize("versioned", [False], ids=["plain-bucket"])
def test_cli_list_and_prune_fail_and_delete_nothing(
    moto_server: MotoServer,
    proxy: FaultProxy,
    bucket: str,
    tmp_path: Path,
    s3_transport: str,
    cli_run: Callable[..., CliResult],
) -> None:
    before = snapshot(moto_server, bucket)
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", proxy.endpoint_url, "--app", "app"]
    env = clean_env(**moto_server.fake_credentials(), STATESTORE_S3_CLIENT=s3_transport)
    for command in (["list"], ["list", "--long"], ["prune", "--older-than", "1s"]):
        result = cli_run(*args, *command, cwd=tmp_path, env=env)
        assert result.code == 1, result.out + result.err
        assert result.out == "" and "ignored the prefix" in result.err, result.err
    assert snapshot(moto_server, bucket) == before


# -- any backend: the store refuses what the backend should have refused ----------------------------


class IgnoresPrefix(ObjectBackend):
    """A third-party backend whose listing ignores the prefix (everything else is a ``MemoryBackend``'s)."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner

    async def get(
        self, key: str, *, if_none_match: str | None = None, max_bytes: int | None = None
    ) -> Versioned | NotModified | None:
        return await self.inner.get(key, if_none_match=if_none_match, max_bytes=max_bytes)

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        return await self.inner.put(key, data, mode)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        await self.inner.delete(key, if_match=if_match)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async for meta in self.inner.list(""):
            yield meta

    @property
    def supports_conditional_delete(self) -> bool:
        return True


async def test_the_store_refuses_a_third_party_listing_outside_the_prefix() -> None:
    memory = MemoryBackend()
    for app in ("app", "other"):
        await Store(memory, app_name=app).replace_state("wf-1", W, {"app": app})
    await memory.put("unrelated/other-app-data.bin", b"x")
    before = [(meta.key, meta.etag) async for meta in memory.list("")]
    store = Store(IgnoresPrefix(memory), app_name="app")
    for call in (
        store.list_states(W),
        store.list_state_info(W),
        store.prune_states(W, older_than=OLD),
        store.reencrypt_states(W),
        copy_states(store, Store(memory, app_name="copy")),
    ):
        with pytest.raises(ListingOutOfPrefixError) as caught:
            await call
        assert caught.value.prefix == "persistent-artifacts/apps/app/workflows/"
        assert "IgnoresPrefix" in str(caught.value)
    assert [(meta.key, meta.etag) async for meta in memory.list("")] == before


async def test_a_well_prefixed_key_that_is_no_state_is_still_skipped() -> None:
    memory = MemoryBackend()
    store = Store(memory, app_name="app")
    await store.replace_state("wf-1", W, {"n": 1})
    await memory.put("persistent-artifacts/apps/app/workflows/wf-1/notes.txt", b"other tool's file")
    await memory.put("persistent-artifacts/apps/app/workflows/bad\x01id/config.json", b"{}")
    assert await store.list_states(W) == ["wf-1"]


async def test_check_of_a_third_party_backend_that_ignores_the_prefix_is_unsafe() -> None:
    memory = MemoryBackend()
    await Store(memory, app_name="other").replace_state("wf-1", W, {"keep": True})
    before = [(meta.key, meta.etag) async for meta in memory.list("")]
    report = await Store(IgnoresPrefix(memory), app_name="app").check()
    assert report.verdict is Verdict.UNSAFE and "ignores the prefix of a listing" in report.message
    probe = report.probe("list-prefix")
    assert probe is not None and probe.outcome == "unsafe"
    assert [(meta.key, meta.etag) async for meta in memory.list("")] == before
