"""S3 failure paths over real HTTP: lost responses, 409s, 5xx, failed reads, 403, wrong bucket, stopped server.

``FaultProxy`` (tests/fault_proxy.py) between the backend and the server drops the response of a committed
request, answers 503 after committing, 409 / 500 without forwarding, or rejects one If-Match form (as Ceph RGW).
The lost-response tests run on the S3 target (``s3_server``: moto, or Ceph RGW) with each If-Match form.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from conftest import S3Location, S3Target, s3_backend
from fault_proxy import SLOW_SECONDS, Fault, FaultProxy

from statestore import BackendConfigError, BackendError, BackendUnavailableError, PutMode, RetryPolicy, StateType, Store
from statestore.backends.base import md5_etag
from statestore.backends.s3.backend import WRITES_METADATA, S3Backend
from statestore.codec.jsonio import encode
from statestore.errors import ConditionalDeleteUnsupportedError, PreconditionFailed
from statestore.testing import MotoServer

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    p = FaultProxy(moto_server.endpoint_url).start()
    yield p
    p.stop()


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    return moto_server.create_bucket()


def via_proxy(moto_server: MotoServer, proxy: FaultProxy, bucket: str, **options: Any) -> S3Backend:
    return s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url, retry=FAST_RETRY, **options)


def bump(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


async def assert_saves_fail(store: Store) -> None:
    """Every kind of save on ``w1`` raises ``BackendError`` (the caller then checks nothing was written)."""
    for save in (
        store.save_state("k", "lost?", "w1", StateType.WORKFLOWS),
        store.save_state_object("w1", {"k": "lost?"}, StateType.WORKFLOWS),
        store.update_state("w1", StateType.WORKFLOWS, bump),
    ):
        with pytest.raises(BackendError):
            await save


# -- lost responses --------------------------------------------------------------

#: (if_match_form, If-Match forms the proxy rejects): the server as it is, the unquoted form pinned, and a
#: server that honours only the unquoted form (as Ceph RGW) behind ``auto``.
FORMS = [
    pytest.param("auto", frozenset(), id="auto"),
    pytest.param("unquoted", frozenset(), id="unquoted"),
    pytest.param("auto", frozenset({"quoted"}), id="auto-rejects-quoted"),
]


@pytest.fixture
def target_proxy(s3_target: S3Target) -> Iterator[FaultProxy]:
    p = FaultProxy(s3_target.endpoint_url).start()
    yield p
    p.stop()


def through(target: S3Target, proxy: FaultProxy, form: str, reject: frozenset[str], **options: Any) -> S3Backend:
    """A backend on a fresh location of ``target``, talking through ``proxy`` (which rejects ``reject``)."""
    proxy.reject_if_match = reject
    return target.backend(
        target.new_location(), endpoint_url=proxy.endpoint_url, retry=FAST_RETRY, if_match_form=form, **options
    )


def direct(target: S3Target, backend: S3Backend) -> S3Backend:
    """A backend on the same objects as ``backend``, without the proxy."""
    return target.backend(S3Location(backend.bucket, backend.prefix.rstrip("/")))


@pytest.mark.s3_server
@pytest.mark.parametrize(("form", "reject"), FORMS)
@pytest.mark.parametrize("action", ["drop-after", "503-after", "slow-after"])
async def test_update_whose_response_was_lost_is_applied_once(
    s3_target: S3Target, target_proxy: FaultProxy, action: str, form: str, reject: frozenset[str]
) -> None:
    """The put lands, its answer is lost (connection dropped, 503, read timeout), the resend gets 412:
    still one success and one increment."""
    backend = through(s3_target, target_proxy, form, reject, read_timeout=SLOW_SECONDS / 2)
    async with Store(backend) as store:
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 1
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 2  # the If-Match form settles
        target_proxy.reset_counts()
        target_proxy.add(Fault("PUT", action))
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 3
        assert target_proxy.faulted["PUT"] == 1
        assert target_proxy.forwarded["PUT"] == 2  # the faulted put reached the server twice
        fresh = Store(direct(s3_target, backend))
        assert await fresh.get_state("w1", StateType.WORKFLOWS) == {"n": 3}
        await fresh.aclose()


@pytest.mark.s3_server
async def test_create_whose_response_was_lost_is_applied_once(s3_target: S3Target, target_proxy: FaultProxy) -> None:
    backend = through(s3_target, target_proxy, "auto", frozenset())
    async with Store(backend) as store:
        await backend.verify_conditions()  # the safety probes first: the fault is for the state's own create
        target_proxy.reset_counts()
        target_proxy.add(Fault("PUT", "drop-after"))
        assert await store.update_state("w1", StateType.WORKFLOWS, bump) == {"n": 1}
        assert target_proxy.forwarded["PUT"] == 2
        assert await store.get_state("w1", StateType.WORKFLOWS) == {"n": 1}


@pytest.mark.s3_server
@pytest.mark.parametrize(("form", "reject"), FORMS)
async def test_lost_response_of_a_write_already_replaced(
    s3_target: S3Target, target_proxy: FaultProxy, form: str, reject: frozenset[str]
) -> None:
    """Ours landed, another writer built on it before the resend: success with a non-current ETag."""
    backend = through(s3_target, target_proxy, form, reject)
    other = direct(s3_target, backend)
    raw = s3_target.client()

    def other_writer_on_top() -> None:
        head = raw.get_object(Bucket=backend.bucket, Key=backend.object_key(KEY))
        history = head["Metadata"][WRITES_METADATA]
        raw.put_object(
            Bucket=backend.bucket, Key=backend.object_key(KEY), Body=b"theirs",
            Metadata={WRITES_METADATA: "0123456789abcdef," + history},
        )  # fmt: skip

    try:
        first = (await backend.put(KEY, b"base", PutMode.CREATE)).etag
        first = (await backend.put(KEY, b"base, again", PutMode.update(first))).etag  # the If-Match form settles
        target_proxy.add(Fault("PUT", "drop-after", after_forward=other_writer_on_top))
        etag = (await backend.put(KEY, b"mine", PutMode.update(first))).etag
        current = await other.get(KEY)
        assert current is not None and current.data == b"theirs"
        assert etag == md5_etag(b"mine") and etag != current.etag
        with pytest.raises(PreconditionFailed):  # the caller's next CAS re-reads instead of overwriting
            await backend.put(KEY, b"next", PutMode.update(etag))
    finally:
        raw.close()
        await backend.aclose()
        await other.aclose()


@pytest.mark.s3_server
@pytest.mark.parametrize(("form", "reject"), FORMS)
async def test_objects_with_identical_bytes_keep_their_own_write_histories(
    s3_target: S3Target, target_proxy: FaultProxy, form: str, reject: frozenset[str]
) -> None:
    """Our put to A lands and its answer is lost; before the resend, a writer in the same process reads B
    (the very same bytes, so the same ETag) and builds on A. A's history must still hold our write id:
    the increment counts once."""
    backend = through(s3_target, target_proxy, form, reject)
    loop = asyncio.get_running_loop()
    a = "persistent-artifacts/apps/default/workflows/a/config.json"
    b = "persistent-artifacts/apps/default/workflows/b/config.json"
    setup = direct(s3_target, backend)
    await setup.put(a, encode({"n": 0}))

    async def same_process_writer_on_a() -> None:
        current = await backend.get(a)  # {"n": 2}: our write landed
        assert current is not None and json.loads(current.data) == {"n": 2}
        await setup.put(b, current.data)  # another tool copies those very bytes to B
        assert await backend.get(b) == (current.data, current.etag)  # same bytes, same ETag
        await backend.put(a, encode({"n": 3}), PutMode.update(current.etag))

    def on_commit() -> None:
        asyncio.run_coroutine_threadsafe(same_process_writer_on_a(), loop).result(timeout=30)

    store = Store(backend)
    try:
        assert await store.update_state("a", StateType.WORKFLOWS, bump) == {"n": 1}  # the If-Match form settles
        target_proxy.add(Fault("PUT", "drop-after", path="/a/", after_forward=on_commit))
        await store.update_state("a", StateType.WORKFLOWS, bump)
        assert target_proxy.faulted["PUT"] == 1
        got = await setup.get(a)
        assert got is not None and json.loads(got.data) == {"n": 3}  # 1 -> 2 (ours, once) -> 3 (theirs)
    finally:
        await store.aclose()
        await setup.aclose()


async def test_412_from_someone_else_is_a_conflict_with_the_current_object(
    moto_server: MotoServer, bucket: str
) -> None:
    async with aclosing(s3_backend(moto_server, bucket)) as backend:
        first = (await backend.put(KEY, b"1")).etag
        await backend.put(KEY, b"2", PutMode.update(first))
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"3", PutMode.update(first))
        assert info.value.current_known and info.value.current is not None and info.value.current.data == b"2"
        with pytest.raises(PreconditionFailed) as missing:  # If-Match on a missing key: 404 NoSuchKey
            await backend.put("other/key", b"3", PutMode.update(first))
        assert missing.value.current_known and missing.value.current is None


# -- 409 and 5xx -------------------------------------------------------------------


async def test_409_conditional_request_conflict_is_precondition_failed(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    async with aclosing(via_proxy(moto_server, proxy, bucket)) as backend:
        etag = (await backend.put(KEY, b"1")).etag
        proxy.add(Fault("PUT", "409"))
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"2", PutMode.update(etag))
        assert info.value.current_known and info.value.current is not None and info.value.current.data == b"1"
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1"


async def test_409_through_the_store_is_retried_and_applied_once(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    async with Store(via_proxy(moto_server, proxy, bucket)) as store:
        await store.update_state("w1", StateType.WORKFLOWS, bump)
        proxy.reset_counts()
        proxy.add(Fault("PUT", "409", times=2))
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 2
        assert proxy.faulted["PUT"] == 2 and proxy.forwarded["PUT"] == 1
        assert await store.get_state("w1", StateType.WORKFLOWS) == {"n": 2}


async def test_transient_5xx_is_retried(moto_server: MotoServer, proxy: FaultProxy, bucket: str) -> None:
    async with aclosing(via_proxy(moto_server, proxy, bucket)) as backend:
        await backend.put(KEY, b"1")
        proxy.add(Fault("GET", "500", times=2))
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1"
        assert proxy.faulted["GET"] == 2


async def test_429_is_throttling_retried_with_backoff(moto_server: MotoServer, proxy: FaultProxy, bucket: str) -> None:
    """HTTP 429 (Too Many Requests) is retried like 503 SlowDown; if it persists, BackendUnavailableError (exit 5)."""
    async with aclosing(via_proxy(moto_server, proxy, bucket)) as backend:
        await backend.put(KEY, b"1")
        proxy.add(Fault("GET", "429", times=2))
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1" and proxy.faulted["GET"] == 2
        proxy.add(Fault("GET", "429", times=100))
        with pytest.raises(BackendUnavailableError, match=r"\(HTTP 429\)"):
            await backend.get(KEY)
        assert proxy.faulted["GET"] == 2 + FAST_RETRY.attempts


async def test_a_server_error_code_reaches_no_message_unescaped(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    """Whatever a server puts in <Code> (escape sequences, 300 characters), the error keeps at most 64 of its
    letters, digits and ``._-``: nothing a terminal would act on."""
    async with aclosing(via_proxy(moto_server, proxy, bucket)) as backend:
        proxy.add(Fault("GET", "418"))
        with pytest.raises(BackendError) as info:
            await backend.get(KEY)
    message = str(info.value)
    chain = [message, *(str(e) for e in (info.value.__cause__, info.value.__context__) if e is not None)]
    assert not any(ch in text for text in chain for ch in "\x1b\x07\r")
    assert "(HTTP 418)" in message and len(message) < 300


async def test_failed_read_is_an_error_and_the_save_writes_nothing(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    async with (
        Store(s3_backend(moto_server, bucket), cache_size=0) as direct,
        Store(via_proxy(moto_server, proxy, bucket), cache_size=0) as store,
    ):
        await direct.save_state_object("w1", {"keep": "me"}, StateType.WORKFLOWS)
        proxy.add(Fault("GET", "500", times=100))
        with pytest.raises(BackendError, match=r"get of .*\(HTTP 500\)") as info:
            await store.get_state("w1", StateType.WORKFLOWS)
        assert info.value.__cause__ is not None
        await assert_saves_fail(store)
        assert proxy.forwarded["PUT"] == 0
        assert await direct.get_state("w1", StateType.WORKFLOWS) == {"keep": "me"}


async def test_access_denied_is_a_backend_error_and_nothing_is_forwarded(moto_server: MotoServer, bucket: str) -> None:
    direct = Store(s3_backend(moto_server, bucket))
    await direct.save_state_object("w1", {"keep": "me"}, StateType.WORKFLOWS)
    with FaultProxy(moto_server.endpoint_url, deny=lambda method, path: True) as proxy:
        async with Store(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url)) as store:
            with pytest.raises(BackendError, match="AccessDenied"):
                await store.get_state("w1", StateType.WORKFLOWS)
            await assert_saves_fail(store)
    assert proxy.forwarded == Counter()
    assert await direct.get_state("w1", StateType.WORKFLOWS) == {"keep": "me"}
    await direct.aclose()


async def test_5xx_on_put_that_never_landed_gives_up_with_backend_error(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    async with aclosing(via_proxy(moto_server, proxy, bucket)) as backend:
        await backend.verify_conditions()
        proxy.reset_counts()
        proxy.add(Fault("PUT", "500", times=100))
        with pytest.raises(BackendError, match=r"put of .*\(HTTP 500\)"):
            await backend.put(KEY, b"1", PutMode.CREATE)
        assert proxy.faulted["PUT"] == FAST_RETRY.attempts
        assert await backend.get(KEY) is None


# -- wrong bucket, stopped server --------------------------------------------------


async def test_wrong_bucket_is_a_backend_error(moto_server: MotoServer) -> None:
    async with Store(s3_backend(moto_server, "no-such-bucket-statestore")) as store:
        for call in (
            store.get_state("w1", StateType.WORKFLOWS),
            store.save_state("a", 1, "w1", StateType.WORKFLOWS),
            store.save_state_object("w1", {"a": 1}, StateType.WORKFLOWS),
            store.update_state("w1", StateType.WORKFLOWS, bump),
            store.list_states(StateType.WORKFLOWS),
        ):
            with pytest.raises(BackendError, match=r"NoSuchBucket \(HTTP 404\)"):
                await call


async def test_wrong_bucket_with_conditions_is_not_a_conflict(moto_server: MotoServer, s3_transport: str) -> None:
    async with aclosing(s3_backend(moto_server, "no-such-bucket-statestore")) as backend:
        with pytest.raises(BackendConfigError, match="NoSuchBucket"):  # typed on both transports
            await backend.put(KEY, b"1", PutMode.update('"0123456789abcdef0123456789abcdef"'))
        if s3_transport == "obstore":  # refused before any request: obstore cannot send it
            with pytest.raises(ConditionalDeleteUnsupportedError, match="obstore"):
                await backend.delete(KEY, if_match='"0123456789abcdef0123456789abcdef"')
            return
        with pytest.raises(BackendError, match="NoSuchBucket"):
            await backend.delete(KEY, if_match='"0123456789abcdef0123456789abcdef"')


async def test_no_credentials_anywhere_is_a_backend_error(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "ACCESS_KEY_ID",
        "SECRET_ACCESS_KEY",
        "SESSION_TOKEN",
        "PROFILE",
        "CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(f"AWS_{name}", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    for name, value in (("SHARED_CREDENTIALS_FILE", tmp_path / "none"), ("CONFIG_FILE", tmp_path / "none")):
        monkeypatch.setenv(f"AWS_{name}", str(value))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    backend = S3Backend(moto_server.create_bucket(), endpoint_url=moto_server.endpoint_url, region="us-east-1")
    async with Store(backend) as store:
        with pytest.raises(BackendError, match="NoCredentialsError"):
            await store.get_state("w1", StateType.WORKFLOWS)
    with pytest.raises(BackendError, match="ProfileNotFound"):
        await Store(S3Backend("b", endpoint_url=moto_server.endpoint_url, profile="nope")).get_state("w", "workflows")


def test_the_cli_says_what_is_wrong_with_a_wrong_port_and_missing_credentials(
    moto_server: MotoServer, cli_run: Any, tmp_path: Path, s3_transport: str
) -> None:
    """Nothing listens on the port: "cannot connect to ENDPOINT (is it running?)", exit 5, not "try again later".
    No credentials anywhere: "no credentials found" and where they are looked for, exit 6, not "access denied"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = {"STATESTORE_BACKEND": "s3", "STATESTORE_BUCKET": "b", "STATESTORE_S3_MAX_ATTEMPTS": "1"}
    env = {**base, **moto_server.fake_credentials(), "STATESTORE_S3_CLIENT": s3_transport}
    wrong_port = cli_run("get", "wf-1", env={**env, "STATESTORE_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    assert wrong_port.code == 5, wrong_port
    assert f"cannot connect to http://127.0.0.1:{port}" in wrong_port.err and "is it running?" in wrong_port.err
    assert "try again later" not in wrong_port.err
    if s3_transport == "obstore":  # object_store's chain would ask the instance metadata address: not from a test
        return
    nowhere = {
        **base,
        "STATESTORE_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "STATESTORE_S3_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    missing = cli_run("get", "wf-1", env=nowhere)
    assert missing.code == 6, missing
    assert "no credentials found" in missing.err and "AWS_ACCESS_KEY_ID" in missing.err
    assert "access denied" not in missing.err


async def test_server_stopped_mid_run(moto_server: MotoServer) -> None:
    """Every call fails with BackendError, never ``{}``; a later server sees the state unchanged."""
    server = MotoServer().start()
    bucket = server.create_bucket()
    store = Store(s3_backend(server, bucket, retry=FAST_RETRY, connect_timeout=1, read_timeout=2))
    try:
        await store.save_state_object("w1", {"a": 1}, StateType.WORKFLOWS)
        server.stop()
        with pytest.raises(BackendError, match="get of") as info:
            await store.get_state("w1", StateType.WORKFLOWS)
        assert info.value.__cause__ is not None
        await assert_saves_fail(store)
    finally:
        server.stop()
        await store.aclose()
    # moto keeps its data in this process: the session server shows the same bucket
    async with Store(s3_backend(moto_server, bucket)) as check:
        assert await check.get_state("w1", StateType.WORKFLOWS) == {"a": 1}
