"""Typed backend failures (unavailable, access denied, misconfigured), and the state an error is about."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import CliResult, s3_backend
from fault_proxy import Fault, FaultProxy
from test_cli import clean_env, failed

from statestore import (
    AccessDeniedError,
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    CorruptStateError,
    InvalidInputError,
    LocalBackend,
    RetryPolicy,
    StateStoreError,
    StateType,
    Store,
)
from statestore.cli.exit_codes import EXIT_ACCESS_DENIED, EXIT_BACKEND_CONFIG, EXIT_UNAVAILABLE, describe_error
from statestore.testing import MotoServer

W = StateType.WORKFLOWS
SECRET = "s3cr3t-Value-0f-the-key"  # a secret access key that must never show
QUICK = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01, deadline=2.0)


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    p = FaultProxy(moto_server.endpoint_url).start()
    yield p
    p.stop()


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def assert_clean(exc: BaseException) -> None:
    """No credential in the message or the attributes."""
    shown = " ".join(str(v) for v in (exc, exc.args, vars(exc)))
    assert SECRET not in shown


def where(exc: StateStoreError) -> tuple[str | None, str | None, str | None]:
    return exc.state_id, exc.state_type, exc.operation


def test_the_error_tree() -> None:
    for kind in (BackendUnavailableError, AccessDeniedError, BackendConfigError):
        assert issubclass(kind, BackendError) and issubclass(kind, StateStoreError)
    assert BackendUnavailableError.retryable is True
    assert AccessDeniedError.retryable is False and BackendConfigError.retryable is False
    assert StateStoreError("x").state_id is None and StateStoreError("x").operation is None


async def test_s3_403_is_access_denied(moto_server: MotoServer, proxy: FaultProxy) -> None:
    bucket = moto_server.create_bucket()
    backend = s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url, aws_secret_access_key=SECRET)
    async with Store(backend, app_name="appName") as store:
        proxy.add(Fault("GET", "403"))
        with pytest.raises(AccessDeniedError) as caught:
            await store.get_state("wf-1", W)
        assert not caught.value.retryable
        assert where(caught.value) == ("wf-1", "workflows", "get_state")
        assert "AccessDenied" in str(caught.value)
        assert_clean(caught.value)
        proxy.add(Fault("PUT", "403"))
        with pytest.raises(AccessDeniedError) as caught:
            await store.save_state("k", 1, "wf-2", W)
        assert where(caught.value) == ("wf-2", "workflows", "save_state")


async def test_s3_503_once_retries_are_spent_is_unavailable(moto_server: MotoServer, proxy: FaultProxy) -> None:
    bucket = moto_server.create_bucket()
    backend = s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url, retry=QUICK)
    async with Store(backend, app_name="appName") as store:
        await store.save_state_object("wf", {"n": 1}, W)
        proxy.add(Fault("GET", "503", times=2))
        with pytest.raises(BackendUnavailableError) as caught:
            await store.get_state("wf", W)
        assert caught.value.retryable and caught.value.state_id == "wf"
        assert await store.get_state("wf", W) == {"n": 1}  # the server is back
        proxy.add(Fault("GET", "503", path="list-type", times=2))
        with pytest.raises(BackendUnavailableError) as listing:
            await store.list_states(W)
        assert where(listing.value) == (None, "workflows", "list_states")


@pytest.mark.parametrize(
    ("endpoint", "bucket", "error", "match"),
    [
        ("http://127.0.0.1:CLOSED", "bucket", BackendUnavailableError, None),
        (None, "no-such-bucket-statestore", BackendConfigError, "NoSuchBucket"),
        ("not-a-url", "bucket", BackendConfigError, None),
        ("http://exa mple.com", "bucket", BackendConfigError, None),
        ("ftp://127.0.0.1:1", "bucket", BackendConfigError, None),
    ],
)
async def test_unreachable_or_bad_endpoint_and_missing_bucket_are_typed(
    moto_server: MotoServer, endpoint: str | None, bucket: str, error: type[BackendError], match: str | None
) -> None:
    """Unreachable: unavailable (retryable); a bad endpoint or a missing bucket: a config error; no secret shown."""
    url = endpoint.replace("CLOSED", str(closed_port())) if endpoint else moto_server.endpoint_url
    backend = s3_backend(moto_server, bucket, endpoint_url=url, retry=QUICK, aws_secret_access_key=SECRET)
    async with Store(backend, app_name="appName") as store:
        for operation, call in (
            ("get_state", store.get_state("wf", W)),
            ("save_state_object", store.save_state_object("wf", {"n": 1}, W)),
            ("replace_state", store.replace_state("wf", W, {"n": 1})),
        ):
            with pytest.raises(error, match=match) as caught:
                await call
            assert where(caught.value) == ("wf", "workflows", operation)
            assert caught.value.retryable is (error is BackendUnavailableError)
            assert_clean(caught.value)
        with pytest.raises(error):
            await store.list_states(W)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_local_permission_denied_is_access_denied(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with Store(LocalBackend(root), app_name="appName") as store:
        await store.save_state_object("wf", {"n": 1}, W)
        root.chmod(0o000)
        try:
            with pytest.raises(AccessDeniedError) as caught:
                await store.get_state("wf", W)
        finally:
            root.chmod(0o700)
        assert caught.value.operation == "get_state"


async def test_every_state_error_names_its_state(store: Store) -> None:
    with pytest.raises(InvalidInputError) as bad_id:
        await store.save_state("k", 1, "../escape", W)
    assert where(bad_id.value) == ("../escape", "workflows", "save_state")
    with pytest.raises(InvalidInputError) as bad_value:
        await store.save_state_object("wf", {"n": {1, 2}}, "workflows")
    assert where(bad_value.value) == ("wf", "workflows", "save_state_object")
    await store.backend.put(store.key("broken", W).object_key, b"\x00not json")
    with pytest.raises(CorruptStateError) as corrupt:
        await store.update_state("broken", W, lambda s: s)
    assert where(corrupt.value) == ("broken", "workflows", "update_state")
    with pytest.raises(CorruptStateError) as bulk:
        await store.get_states(["fine", "broken"], W)
    assert where(bulk.value) == ("broken", "workflows", "get_states")


def test_cli_exit_codes_per_kind() -> None:
    assert describe_error(BackendUnavailableError("x"))[1] == EXIT_UNAVAILABLE == 5
    assert describe_error(AccessDeniedError("x"))[1] == EXIT_ACCESS_DENIED == 6
    assert describe_error(BackendConfigError("x"))[1] == EXIT_BACKEND_CONFIG == 7
    assert describe_error(BackendError("x"))[1] == 1


def test_cli_maps_denied_and_missing_bucket(
    tmp_path: Path, moto_server: MotoServer, proxy: FaultProxy, cli_run: Callable[..., CliResult]
) -> None:
    env = clean_env(
        **{**moto_server.fake_credentials(), "AWS_SECRET_ACCESS_KEY": SECRET}, STATESTORE_S3_MAX_ATTEMPTS="1"
    )
    bucket = moto_server.create_bucket()
    args = ["--backend", "s3", "--bucket", bucket, "--endpoint-url", proxy.endpoint_url]
    proxy.add(Fault("GET", "403"))
    line = failed(cli_run(*args, "get", "wf", cwd=tmp_path, env=env), EXIT_ACCESS_DENIED, "access denied")
    assert SECRET not in line
    proxy.add(Fault("GET", "403"))
    as_json = cli_run(*args, "--json", "get", "wf", cwd=tmp_path, env=env)
    assert as_json.code == 6 and orjson.loads(as_json.err)["error"] == "AccessDeniedError"
    missing = ["--backend", "s3", "--bucket", "no-such-bucket-cli", "--endpoint-url", moto_server.endpoint_url]
    failed(cli_run(*missing, "list", cwd=tmp_path, env=env), EXIT_BACKEND_CONFIG, "misconfigured", "NoSuchBucket")
