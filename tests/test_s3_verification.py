"""Safe by default: the first write through an S3 backend is preceded by a verification of the server's conditions.

Against moto (which honours them: nothing changes but a few requests once), a proxy in front of moto that strips
If-Match / If-None-Match, and s3rver (which accepts both headers and ignores them): every write is refused with
``UnsafeBackendError`` and nothing is lost, reads still work, the CLI exits 4, ``check`` still says UNSAFE.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import pytest
import s3rver as s3rver_module
from conftest import S3_TRANSPORTS, s3_backend
from fault_proxy import FaultProxy
from s3rver import S3rver

from statestore import LocalBackend, S3Backend, Settings, StateType, Store
from statestore.backends.s3.verify import PROBE_PREFIX
from statestore.check import Verdict, check_backend
from statestore.config.build import backend_from_settings
from statestore.copying import copy_states
from statestore.errors import StateStoreError, UnsafeBackendError
from statestore.testing import MotoServer

WF = StateType.WORKFLOWS
STRIPPED = ("If-Match", "If-None-Match")
transports = pytest.mark.parametrize("client", S3_TRANSPORTS)


@pytest.fixture
def s3rver() -> Iterator[S3rver]:
    """A fresh s3rver per test (about 1 s): contention without the verification can leave its files broken."""
    exe = s3rver_module.executable()
    if exe is None:
        pytest.skip("npm or node is not installed, so s3rver cannot be installed (npm install s3rver)")
    server = S3rver("statestore").start(exe)
    yield server
    server.stop()


@pytest.fixture
def stripping(moto_server: MotoServer) -> Iterator[FaultProxy]:
    """A proxy in front of moto that drops If-Match and If-None-Match from every PUT, as an old server ignores them."""
    proxy = FaultProxy(moto_server.endpoint_url, drop_on_put=STRIPPED).start()
    yield proxy
    proxy.stop()


def probe_keys(server: MotoServer, bucket: str) -> list[str]:
    with closing(server.client()) as client:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=PROBE_PREFIX).get("Contents", [])
    return [item["Key"] for item in listed]


def puts(proxy: FaultProxy, under: str = "") -> int:
    return sum(1 for method, path in proxy.paths if method == "PUT" and under in path)


@transports
async def test_a_server_that_ignores_conditions_refuses_every_write_and_reads_still_work(
    moto_server: MotoServer, stripping: FaultProxy, client: str
) -> None:
    bucket = moto_server.create_bucket()
    async with Store(s3_backend(moto_server, bucket, client=client)) as direct:
        await direct.save_state_object("w1", {"keep": "me"}, WF)
    backend = s3_backend(moto_server, bucket, endpoint_url=stripping.endpoint_url, client=client)
    async with Store(backend) as store:
        assert await store.get_state("w1", WF) == {"keep": "me"}  # reads need no verification
        stripping.reset_counts()
        results = await asyncio.gather(
            *(store.save_state(f"k{i}", i, f"w{i % 2}", WF) for i in range(8)), return_exceptions=True
        )
        assert all(isinstance(r, UnsafeBackendError) for r in results), results
        message = str(results[0])
        assert "ignores If-None-Match" in message and "ignores If-Match" in message
        assert "statestore check" in message and "STATESTORE_S3_VERIFY=false" in message
        assert puts(stripping, PROBE_PREFIX) == puts(stripping) == 5  # one verification for 8 concurrent writes
        stripping.reset_counts()
        for write in (
            store.update_state("w1", WF, lambda s: {**s, "n": 1}),
            store.delete_state("w1", WF),
            store.replace_state("w1", WF, {}),
        ):
            with pytest.raises(UnsafeBackendError):
                await write
        assert stripping.paths == [] or all(method == "GET" for method, _ in stripping.paths)  # remembered
        assert await store.get_state("w1", WF) == {"keep": "me"}
    assert probe_keys(moto_server, bucket) == []  # the scratch objects are gone


async def test_a_server_that_ignores_only_if_match_is_unsafe_for_that_alone(moto_server: MotoServer) -> None:
    """If-None-Match honoured, If-Match dropped: the stale write and the write to a missing key are the problems."""
    bucket = moto_server.create_bucket()
    with FaultProxy(moto_server.endpoint_url, drop_on_put=("If-Match",)) as proxy:
        async with Store(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url)) as store:
            with pytest.raises(UnsafeBackendError) as caught:
                await store.save_state("k", 1, "w1", WF)
    message = str(caught.value)
    assert "a write with a stale ETag was accepted" in message and "on a missing key" in message
    assert "If-None-Match" not in message
    assert probe_keys(moto_server, bucket) == []
    with closing(moto_server.client()) as client:
        assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # nothing written, not even the state


async def test_listing_history_and_copy_from_an_unsafe_server_need_no_opt_out(
    moto_server: MotoServer, stripping: FaultProxy, tmp_path: Path
) -> None:
    """Only writes verify: list, history and copy out of a server that ignores the conditions just work."""
    bucket = moto_server.create_bucket()
    with closing(moto_server.client()) as client:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    async with Store(s3_backend(moto_server, bucket), app_name="app") as direct:
        await direct.save_state_object("w1", {"n": 1}, WF)
        await direct.save_state_object("w1", {"n": 2}, WF)
    source = Store(s3_backend(moto_server, bucket, endpoint_url=stripping.endpoint_url), app_name="app")
    async with source, Store(LocalBackend(tmp_path / "copy"), app_name="app") as destination:
        assert await source.list_states(WF) == ["w1"]
        assert [v.deleted for v in await source.state_history("w1", WF)] == [False, False]
        report = await copy_states(source, destination, types=WF)
        assert len(report.copied) == 1 and report.failed == [], report
        assert await destination.get_state("w1", WF) == {"n": 2}
        with pytest.raises(UnsafeBackendError):
            await source.save_state("k", 1, "w1", WF)
    assert puts(stripping, PROBE_PREFIX) == 5  # the one write verified; the reads and the copy did not


def test_the_cli_exits_4_and_check_still_reports_unsafe(
    moto_server: MotoServer, stripping: FaultProxy, cli_run: Any
) -> None:
    bucket = moto_server.create_bucket()
    env = {
        **moto_server.fake_credentials(),
        "STATESTORE_BACKEND": "s3",
        "STATESTORE_BUCKET": bucket,
        "STATESTORE_S3_ENDPOINT_URL": stripping.endpoint_url,
    }
    result = cli_run("merge", "wf-1", '{"n": 1}', env=env)
    assert result.code == 4, result
    assert "unsafe backend" in result.err and "ignores If-None-Match" in result.err
    assert cli_run("get", "wf-1", env=env).code == 0  # reads still work
    checked = cli_run("check", env=env)
    assert checked.code == 4 and "verdict: UNSAFE" in checked.out
    with closing(moto_server.client()) as s3:
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # nothing written, nothing left


@transports
async def test_the_opt_out_writes_without_verification(
    moto_server: MotoServer, stripping: FaultProxy, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = moto_server.create_bucket()
    for name, value in moto_server.fake_credentials().items():
        monkeypatch.setenv(name, value)
    env = {
        **moto_server.fake_credentials(),
        "STATESTORE_BACKEND": "s3",
        "STATESTORE_BUCKET": bucket,
        "STATESTORE_S3_ENDPOINT_URL": stripping.endpoint_url,
        "STATESTORE_S3_CLIENT": client,
    }
    for n, settings in enumerate(
        (
            Settings.from_env({**env, "STATESTORE_S3_VERIFY": "false"}),
            Settings.from_env(
                {**env, "STATESTORE_URL": f"s3://{bucket}?verify=false&endpoint_url={stripping.endpoint_url}"}
            ),
        )
    ):
        assert settings.s3_verify is False
        async with Store(backend_from_settings(settings)) as store:
            stripping.reset_counts()
            await store.save_state("a", n, "w1", WF)
            assert puts(stripping, PROBE_PREFIX) == 0 and puts(stripping) == 1
    assert Settings.from_env(env).s3_verify is True


@transports
async def test_on_a_safe_server_the_first_write_costs_one_verification(moto_server: MotoServer, client: str) -> None:
    """moto honours the conditions: 5 PUTs and 2 DELETEs once, then nothing more; no scratch left."""
    bucket = moto_server.create_bucket()
    with FaultProxy(moto_server.endpoint_url) as proxy:
        backend = s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url, client=client)
        async with Store(backend) as store:
            started = time.perf_counter()
            await asyncio.gather(*(store.save_state(f"k{i}", i, "w1", WF) for i in range(8)))
            elapsed = time.perf_counter() - started
            first = Counter(method for method, path in proxy.paths if PROBE_PREFIX in path or "?delete" in path)
            assert first == {"PUT": 5, "POST" if client == "obstore" else "DELETE": 2}, first  # obstore: DeleteObjects
            proxy.reset_counts()
            await backend.verify_conditions()
            await store.update_state("w1", WF, lambda s: {**s, "n": 1})
            assert puts(proxy, PROBE_PREFIX) == 0 and puts(proxy) == 1
            assert await store.get_state("w1", WF) == {**{f"k{i}": i for i in range(8)}, "n": 1}
    assert probe_keys(moto_server, bucket) == []
    print(f"\n[verification] {client}: first write with verification {elapsed * 1000:.0f} ms, requests {dict(first)}")


async def test_a_pass_is_kept_per_server_and_bucket_for_the_process(moto_server: MotoServer) -> None:
    """A backend built anew on a bucket that passed writes at once; another bucket, or a pinned If-Match form,
    is verified again (what passed was the server with that bucket and that form)."""
    bucket, other = moto_server.create_bucket(), moto_server.create_bucket()
    with FaultProxy(moto_server.endpoint_url) as proxy:

        async def probe_puts(target: str, **options: Any) -> int:
            proxy.reset_counts()
            async with Store(s3_backend(moto_server, target, endpoint_url=proxy.endpoint_url, **options)) as store:
                await store.save_state("k", os.urandom(4).hex(), "w1", WF)  # a change: a write
            return puts(proxy, PROBE_PREFIX)

        assert await probe_puts(bucket) == 5
        assert await probe_puts(bucket) == 0
        assert await probe_puts(other) == 5
        assert await probe_puts(bucket, if_match_form="unquoted") == 5
        assert await probe_puts(bucket, if_match_form="unquoted") == 0


async def test_a_server_that_refuses_if_match_with_the_current_etag_is_unsafe(moto_server: MotoServer) -> None:
    """As Ceph RGW 16 on a versioned bucket: If-None-Match ignored, If-Match refused in both forms."""
    bucket = moto_server.create_bucket()
    with closing(moto_server.client()) as s3:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with FaultProxy(moto_server.endpoint_url, drop_on_put=("If-None-Match",)) as proxy:
        proxy.reject_if_match = frozenset({"quoted", "unquoted"})
        async with Store(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url)) as store:
            with pytest.raises(UnsafeBackendError) as info:
                await store.save_state("a", 1, "w1", WF)
    message = str(info.value)
    assert "ignores If-None-Match" in message and "refuses If-Match holding the object's current ETag" in message
    with closing(moto_server.client()) as s3:  # every version the probes made is gone too
        versions = s3.list_object_versions(Bucket=bucket)
        assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


# -- contention: several processes through a server that ignores the conditions --------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from statestore import S3Backend, Store
    from statestore.errors import BackendError, CorruptStateError, UnsafeBackendError

    async def main(spec):
        backend = S3Backend(
            spec["bucket"], endpoint_url=spec["endpoint_url"], region="us-east-1", client=spec["client"],
            aws_access_key_id=spec["key"], aws_secret_access_key=spec["secret"], verify=spec["verify"],
        )
        counts = {"ok": 0, "refused": 0, "failed": 0, "torn": 0}
        async with Store(backend, app_name="rel") as store:
            for _ in range(spec["updates"]):
                try:
                    await store.update_state(spec["id"], "workflows", lambda s: {**s, "n": s.get("n", 0) + 1})
                    counts["ok"] += 1
                except UnsafeBackendError:
                    counts["refused"] += 1
                except BackendError:  # s3rver answers 500 now and then under contention: failed, not lost
                    counts["failed"] += 1
                except CorruptStateError:  # without verification: s3rver serves a torn object mid-write
                    counts["torn"] += 1
        print(json.dumps(counts))

    spec = json.loads(sys.argv[1])
    deadline = time.monotonic() + 60
    while not os.path.exists(spec["go"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    asyncio.run(main(spec))
    """
)


def contend(spec: dict[str, Any], workers: int, tmp_path: Path) -> Counter[str]:
    go = tmp_path / f"go-{time.monotonic_ns()}"
    spec = {**spec, "go": str(go)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(workers)
    ]
    time.sleep(0.5)
    go.touch()
    total: Counter[str] = Counter()
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
        total.update(json.loads(out.decode().strip().splitlines()[-1]))
    return total


async def final_count(backend: S3Backend, state_id: str = "shared") -> int:
    async with Store(backend, app_name="rel") as store:
        return int((await store.get_state(state_id, WF)).get("n", 0))


def run_contention(
    endpoint: str, bucket: str, key: str, secret: str, client: str, verify: bool, tmp_path: Path, direct: S3Backend
) -> tuple[Counter[str], int]:
    spec = {"bucket": bucket, "endpoint_url": endpoint, "key": key, "secret": secret, "client": client}
    counts = contend({**spec, "verify": verify, "updates": 25, "id": "shared"}, 4, tmp_path)
    return counts, asyncio.run(final_count(direct))


@transports
def test_contention_through_a_stripping_proxy_loses_nothing(
    moto_server: MotoServer, stripping: FaultProxy, tmp_path: Path, client: str
) -> None:
    bucket = moto_server.create_bucket()
    creds = moto_server.fake_credentials()
    counts, final = run_contention(
        stripping.endpoint_url,
        bucket,
        creds["AWS_ACCESS_KEY_ID"],
        creds["AWS_SECRET_ACCESS_KEY"],
        client,
        True,
        tmp_path,
        s3_backend(moto_server, bucket),
    )
    print(f"\n[verification] stripping proxy, {client}, 4 x 25 updates: {dict(counts)}, stored n = {final}")
    assert counts["ok"] + counts["refused"] == 100
    assert counts["ok"] == final  # 0 lost: every update either landed exactly or was refused
    assert counts["refused"] == 100 and final == 0


def s3rver_backend(server: S3rver, **options: Any) -> S3Backend:
    return S3Backend(
        server.bucket,
        endpoint_url=server.endpoint_url,
        region="us-east-1",
        aws_access_key_id=s3rver_module.KEY_ID,
        aws_secret_access_key=s3rver_module.SECRET,
        **options,
    )


@transports
def test_contention_on_s3rver_loses_nothing(s3rver: S3rver, tmp_path: Path, client: str) -> None:
    """s3rver ignores both conditions: without the verification most updates are lost (printed); with it, none."""
    spec = {"bucket": s3rver.bucket, "endpoint_url": s3rver.endpoint_url, "client": client, "updates": 25}
    spec |= {"key": s3rver_module.KEY_ID, "secret": s3rver_module.SECRET}
    before = contend({**spec, "verify": False, "id": "unverified"}, 4, tmp_path)
    try:  # only printed: under unverified contention s3rver may break the object itself (HTTP 500 afterwards)
        stored = asyncio.run(final_count(s3rver_backend(s3rver), "unverified"))
        lost = f"{stored} stored, {before['ok'] - stored} lost"
    except StateStoreError as exc:
        lost = f"the object unreadable afterwards ({type(exc).__name__})"
    after = contend({**spec, "verify": True, "id": "verified"}, 4, tmp_path)
    stored_after = asyncio.run(final_count(s3rver_backend(s3rver), "verified"))
    print(
        f"\n[verification] s3rver, {client}, 4 processes x 25 updates: verify off: {before['ok']} reported done, "
        f"{lost}; verify on: {dict(after)}, {stored_after} stored, {after['ok'] - stored_after} lost"
    )
    assert sum(after.values()) == 100 and after["refused"] > 0 and after["torn"] == 0
    assert after["ok"] == stored_after == 0  # 0 lost: nothing reported done, nothing written


async def test_check_on_s3rver_says_unsafe(s3rver: S3rver) -> None:
    async with aclosing(s3rver_backend(s3rver)) as backend:
        report = await check_backend(backend, "app")
    assert report.verdict is Verdict.UNSAFE, report


def test_no_resource_warning_at_exit_with_an_unclosed_sync_store(moto_server: MotoServer) -> None:
    """A ``SyncStore`` and the default store never closed, on each transport: nothing printed at exit."""
    bucket = moto_server.create_bucket()
    for client in S3_TRANSPORTS:
        code = textwrap.dedent(
            f"""
            import asyncio
            from statestore import S3Backend, StateStore, Store
            from statestore.sync import SyncStore
            creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region="us-east-1")
            backend = S3Backend({bucket!r}, endpoint_url={moto_server.endpoint_url!r}, client={client!r}, **creds)
            store = SyncStore(Store(backend))
            store.save_state("a", 1, "w1", "workflows")
            print(store.get_state("w1", "workflows"))
            """
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STATESTORE_"))}
        env["PYTHONWARNINGS"] = "always"  # ResourceWarning shown
        for _ in range(3):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "{'a': 1}"
            assert "Unclosed" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr
