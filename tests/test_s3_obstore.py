"""The obstore S3 transport: what it refuses, what it never loads, and conditional reads on both transports.

The shared S3 semantics are proven on obstore by running the conformance, fault-proxy and ``s3_server`` tests
on both transports (see conftest.py); this file holds what is particular to the transport choice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest
from conftest import S3_TRANSPORTS, S3Target, s3_backend
from fault_proxy import FaultProxy

from statestore import BackendUnavailableError, InvalidInputError, PutMode, RetryPolicy, S3Backend, Settings
from statestore.backends import Versioned
from statestore.backends.base import Capability, NotModified
from statestore.check import Verdict, check_backend
from statestore.config.build import backend_from_settings
from statestore.errors import ConditionalDeleteUnsupportedError, S3ClientUnsupportedError
from statestore.testing import MotoServer

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"
SDK_MODULES = ("botocore", "aiobotocore", "aioboto3", "boto3")


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    p = FaultProxy(moto_server.endpoint_url).start()
    yield p
    p.stop()


# -- selection and settings --------------------------------------------------------


def test_settings_select_the_transport_and_refuse_what_obstore_cannot_do() -> None:
    env = {"STATESTORE_BACKEND": "s3", "STATESTORE_BUCKET": "b", "STATESTORE_S3_CLIENT": "OBSTORE"}
    settings = Settings.from_env(env)
    assert settings.s3_client == "obstore"
    backend = backend_from_settings(settings)
    assert isinstance(backend, S3Backend) and backend.transport == "obstore"
    assert asyncio.run(backend.supports(Capability.CONDITIONAL_DELETE)) is False
    with pytest.raises(InvalidInputError, match="STATESTORE_S3_CLIENT must be one of"):
        Settings.from_env({**env, "STATESTORE_S3_CLIENT": "rust"})
    with pytest.raises(InvalidInputError, match="STATESTORE_S3_CONDITIONAL_DELETE=true"):
        Settings.from_env({**env, "STATESTORE_S3_CONDITIONAL_DELETE": "true"})
    with pytest.raises(InvalidInputError, match="conditional_delete='true'"):
        S3Backend("b", client="obstore", conditional_delete=True)
    with pytest.raises(InvalidInputError, match="no AWS profiles"):
        S3Backend("b", client="obstore", profile="dev")


async def test_obstore_reads_credentials_and_region_from_the_environment(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No keys given: object_store's own chain finds AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION."""
    for name, value in moto_server.fake_credentials().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    async with aclosing(
        S3Backend(moto_server.create_bucket(), endpoint_url=moto_server.endpoint_url, client="obstore")
    ) as backend:
        etag = (await backend.put(KEY, b"1", PutMode.CREATE)).etag
        assert await backend.get(KEY) == Versioned(b"1", etag)


# -- what obstore cannot do: typed errors, no request ----------------------------------


async def test_obstore_refuses_calls_it_cannot_make_before_any_request(
    moto_server: MotoServer, proxy: FaultProxy
) -> None:
    bucket = moto_server.create_bucket()
    async with aclosing(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url, client="obstore")) as backend:
        etag = (await backend.put(KEY, b"1", PutMode.CREATE)).etag
        proxy.reset_counts()
        assert await backend.supports(Capability.CONDITIONAL_DELETE) is False  # known without a probe
        with pytest.raises(ConditionalDeleteUnsupportedError, match=r"obstore.*nothing was deleted"):
            await backend.delete(KEY, if_match=etag)
        transport = await backend.open_transport()
        for call in (
            transport.list_versions_page("", max_keys=10),
            transport.bucket_versioning(),
            transport.head_bucket(),
            transport.create_bucket(None),
            transport.put_bucket_versioning(True),
            transport.get(KEY, version_id="v1"),
            transport.delete(KEY, if_match=etag),
            transport.delete(KEY, version_id="v1"),
        ):
            with pytest.raises(S3ClientUnsupportedError, match="STATESTORE_S3_CLIENT=aioboto3"):
                await call
        assert proxy.paths == []  # nothing was sent
        assert await backend.get(KEY) == Versioned(b"1", etag)  # and nothing changed


async def test_obstore_lists_a_prefix_that_ends_inside_a_segment_in_pages(moto_server: MotoServer) -> None:
    """object_store lists whole path segments; S3's string prefixes and paging are kept on top of it."""
    keys = ["p/ab", "p/ab/x", "p/abc", "p/abd/y", "p/ac", "p/b", "pa/ab"]
    async with aclosing(
        s3_backend(moto_server, moto_server.create_bucket(), client="obstore", list_page_size=1)
    ) as backend:
        for key in keys:
            await backend.put(key, b"1")
        assert [m.key async for m in backend.list("p/ab")] == ["p/ab", "p/ab/x", "p/abc", "p/abd/y"]
        assert [m.key async for m in backend.list("p/")] == keys[:-1]
        assert [m.key async for m in backend.list("p")] == keys
        assert [m.key async for m in backend.list("q")] == []


# -- the CLI on obstore loads no botocore -----------------------------------------------


@pytest.mark.parametrize("transport", S3_TRANSPORTS)
def test_the_cli_on_obstore_never_imports_botocore(
    transport: str, s3_target: S3Target, tmp_path: Path, moto_server: MotoServer
) -> None:
    """``statestore merge`` and ``get`` on S3 with obstore: no AWS SDK module loaded (aioboto3: the control)."""
    location = s3_target.new_location()
    env = s3_target.env(location)
    env["STATESTORE_S3_CLIENT"] = transport
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ.update({env!r})
        from statestore.cli import main
        for args in (["merge", "wf-1", '{{"n": 1}}'], ["--json", "get", "wf-1"]):
            sys.argv = ["statestore", *args]
            try:
                main()
            except SystemExit as exc:
                assert not exc.code, exc.code
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({SDK_MODULES!r})))
        """
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STATESTORE_", "AWS_"))}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == '{"n":1}' or lines[-2] == '{"n":1}', result.stdout
    loaded = lines[-1]
    if transport == "obstore":
        assert loaded == "[]", loaded
    else:
        assert "botocore" in loaded and "aioboto3" in loaded


# -- conditional reads, both transports ------------------------------------------------


@pytest.mark.parametrize("s3_transport", S3_TRANSPORTS, indirect=True)
async def test_conditional_read_of_an_unchanged_object_is_a_bodiless_304(
    moto_server: MotoServer, proxy: FaultProxy, s3_transport: str
) -> None:
    """``get(key, if_none_match=etag)``: 304 and ``NotModified`` while unchanged; the new body once changed."""
    big = b"x" * 1_000_000
    backend = s3_backend(moto_server, moto_server.create_bucket(), endpoint_url=proxy.endpoint_url)
    assert backend.transport == s3_transport
    try:
        etag = (await backend.put(KEY, big, PutMode.CREATE)).etag
        proxy.reset_counts()
        for form in (etag, etag.strip('"')):  # quoted or bare, as the caller holds it
            assert await backend.get(KEY, if_none_match=form) == NotModified(etag)
        assert proxy.answered == {"GET 304": 2}
        assert proxy.body_bytes["GET"] == 0
        full = await backend.get(KEY)
        assert full == Versioned(big, etag) and proxy.body_bytes["GET"] == len(big)
        newer = (await backend.put(KEY, b"small", PutMode.update(etag))).etag
        assert await backend.get(KEY, if_none_match=etag) == Versioned(b"small", newer)
        await backend.delete(KEY)
        assert await backend.get(KEY, if_none_match=newer) is None
    finally:
        await backend.aclose()


async def test_check_probes_the_server_through_aioboto3_when_obstore_is_selected(moto_server: MotoServer) -> None:
    """``check`` sends raw S3 requests obstore cannot all make: it probes the same server through aioboto3."""
    async with aclosing(s3_backend(moto_server, moto_server.create_bucket(), client="obstore")) as backend:
        report = await check_backend(backend, "app")
        assert report.verdict is Verdict.SAFE, report


async def test_obstore_refused_connection_and_timeout_are_told_apart(moto_server: MotoServer) -> None:
    """No server: a connection failure (not a timeout); a server that answers late: a timeout. Both transient."""
    one_try = {"client": "obstore", "retry": RetryPolicy(attempts=1, deadline=5)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it
    endpoint = f"http://127.0.0.1:{port}"
    async with aclosing(s3_backend(moto_server, "b-refused", endpoint_url=endpoint, **one_try)) as refused:
        with pytest.raises(
            BackendUnavailableError, match=r"cannot connect to http://127\.0\.0\.1:\d+ \(is it running\?\)"
        ):
            await refused.get(KEY)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with aclosing(
            s3_backend(moto_server, "b-late", endpoint_url=endpoint, read_timeout=0.3, **one_try)
        ) as late:
            with pytest.raises(BackendUnavailableError, match=r"did not answer in time"):
                await late.get(KEY)


def test_the_cli_on_obstore_exits_cleanly_every_time(s3_target: S3Target, tmp_path: Path) -> None:
    """obstore's runtime threads once raced interpreter exit (SIGABRT in about 1 run of 4): the client drops its
    store while the event loop still runs."""
    exe = shutil.which("statestore", path=str(Path(sys.executable).parent))
    assert exe is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATESTORE_", "AWS_"))}
    env.update(s3_target.env(s3_target.new_location()))
    env["STATESTORE_S3_CLIENT"] = "obstore"
    first = subprocess.run([exe, "merge", "wf-1", '{"n": 1}'], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    codes = [
        subprocess.run([exe, "get", "wf-1"], env=env, capture_output=True, text=True, timeout=60).returncode
        for _ in range(12)
    ]
    assert codes == [0] * 12
