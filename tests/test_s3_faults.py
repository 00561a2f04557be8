"""S3 failure paths over real HTTP: lost responses, 409s, 5xx, failed reads, wrong bucket, stopped server.

``FaultProxy`` sits between the backend and the moto server on 127.0.0.1 and
forwards every request, except that a queued fault can drop the response of a
request the server has already committed (closing the connection instead of
answering), answer 503 after committing, or answer 409 / 500 without
forwarding at all.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from conftest import s3_backend

from statestore import BackendError, PreconditionFailed, RetryPolicy, StateType, Store
from statestore.backends.base import md5_etag
from statestore.backends.s3 import WRITES_METADATA, S3Backend
from statestore.testing import MotoServer

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"
SLOW_SECONDS = 1.0
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "content-length"}

_ERRORS = {
    409: ("ConditionalRequestConflict", "A conflicting conditional operation is currently in progress."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


class _Answer(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Fault:
    """What to do to the next ``times`` requests with ``method`` whose path contains ``path``."""

    method: str
    action: str  # "drop-after" | "503-after" | "slow-after" | "409" | "500"
    path: str = ""
    times: int = 1
    after_forward: Callable[[], None] | None = None


class FaultProxy:
    """A forwarding HTTP proxy on 127.0.0.1 with queued faults; counts what reached the server."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.forwarded: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path in path and fault.times > 0:
                    fault.times -= 1
                    self.faulted[method] += 1
                    return fault
        return None

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body if body or method in ("PUT", "POST") else None, headers=headers)
            response = conn.getresponse()
            answer = _Answer(response.status, response.reason, response.getheaders(), response.read())
        finally:
            conn.close()
        with self._lock:
            self.forwarded[method] += 1
        return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, like S3

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except ConnectionError:
                    self.close_connection = True

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy.take(self.command, self.path)
                if fault is not None and fault.action in ("409", "500"):
                    self._error(int(fault.action))
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                answer = proxy.forward(self.command, self.path, headers, body)
                if fault is not None:
                    if fault.after_forward is not None:
                        fault.after_forward()
                    if fault.action in ("drop-after", "slow-after"):
                        if fault.action == "slow-after":
                            time.sleep(SLOW_SECONDS)  # past the client's read timeout
                        self.close_connection = True  # the server committed; the client never hears of it
                        return
                    self._error(503)
                    return
                self.send_response_only(answer.status, answer.reason)
                for name, value in answer.headers:
                    if name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                if self.command == "HEAD":
                    length = next((v for k, v in answer.headers if k.lower() == "content-length"), "0")
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _error(self, status: int) -> None:
                code, message = _ERRORS[status]
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>"
                ).encode()
                self.send_response_only(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        return Handler


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


# -- lost responses --------------------------------------------------------------


@pytest.mark.parametrize("action", ["drop-after", "503-after", "slow-after"])
async def test_update_whose_response_was_lost_is_applied_once(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str, action: str
) -> None:
    """The put lands, its answer is lost (connection dropped, 503, read timeout), the resend gets 412:
    still one success and one increment."""
    store = Store(via_proxy(moto_server, proxy, bucket, read_timeout=SLOW_SECONDS / 2))
    try:
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 1
        proxy.add(Fault("PUT", action))
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 2
        assert proxy.faulted["PUT"] == 1
        assert proxy.forwarded["PUT"] == 3  # the faulted put reached the server twice
        fresh = Store(s3_backend(moto_server, bucket))
        assert await fresh.get_state("w1", StateType.WORKFLOWS) == {"n": 2}
        await fresh.aclose()
    finally:
        await store.aclose()


async def test_create_whose_response_was_lost_is_applied_once(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    store = Store(via_proxy(moto_server, proxy, bucket))
    try:
        proxy.add(Fault("PUT", "drop-after"))
        assert await store.update_state("w1", StateType.WORKFLOWS, bump) == {"n": 1}
        assert proxy.forwarded["PUT"] == 2
        assert await store.get_state("w1", StateType.WORKFLOWS) == {"n": 1}
    finally:
        await store.aclose()


async def test_lost_response_of_a_write_already_replaced(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    """Ours landed, another writer built on it before the resend: success with a non-current ETag."""
    backend = via_proxy(moto_server, proxy, bucket)
    other = s3_backend(moto_server, bucket)
    import botocore.session

    raw = botocore.session.get_session().create_client(
        "s3", endpoint_url=moto_server.endpoint_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip

    def other_writer_on_top() -> None:
        head = raw.get_object(Bucket=bucket, Key=KEY)
        history = head["Metadata"][WRITES_METADATA]
        raw.put_object(
            Bucket=bucket, Key=KEY, Body=b"theirs", IfMatch=head["ETag"],
            Metadata={WRITES_METADATA: "0123456789abcdef," + history},
        )  # fmt: skip

    try:
        first = await backend.put(KEY, b"base", if_none_match=True)
        proxy.add(Fault("PUT", "drop-after", after_forward=other_writer_on_top))
        etag = await backend.put(KEY, b"mine", if_match=first)
        current = await other.get(KEY)
        assert current is not None and current.data == b"theirs"
        assert etag == md5_etag(b"mine") and etag != current.etag
        with pytest.raises(PreconditionFailed):  # the caller's next CAS re-reads instead of overwriting
            await backend.put(KEY, b"next", if_match=etag)
    finally:
        raw.close()
        await backend.aclose()
        await other.aclose()


async def test_412_from_someone_else_is_a_conflict_with_the_current_object(
    moto_server: MotoServer, bucket: str
) -> None:
    backend = s3_backend(moto_server, bucket)
    try:
        first = await backend.put(KEY, b"1")
        await backend.put(KEY, b"2", if_match=first)
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"3", if_match=first)
        assert info.value.current_known and info.value.current is not None and info.value.current.data == b"2"
        with pytest.raises(PreconditionFailed) as missing:  # If-Match on a missing key: 404 NoSuchKey
            await backend.put("other/key", b"3", if_match=first)
        assert missing.value.current_known and missing.value.current is None
    finally:
        await backend.aclose()


# -- 409 and 5xx -------------------------------------------------------------------


async def test_409_conditional_request_conflict_is_precondition_failed(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    backend = via_proxy(moto_server, proxy, bucket)
    try:
        etag = await backend.put(KEY, b"1")
        proxy.add(Fault("PUT", "409"))
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"2", if_match=etag)
        assert info.value.current_known and info.value.current is not None and info.value.current.data == b"1"
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1"
    finally:
        await backend.aclose()


async def test_409_through_the_store_is_retried_and_applied_once(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    store = Store(via_proxy(moto_server, proxy, bucket))
    try:
        await store.update_state("w1", StateType.WORKFLOWS, bump)
        proxy.add(Fault("PUT", "409", times=2))
        assert (await store.update_state("w1", StateType.WORKFLOWS, bump))["n"] == 2
        assert proxy.faulted["PUT"] == 2 and proxy.forwarded["PUT"] == 2
        assert await store.get_state("w1", StateType.WORKFLOWS) == {"n": 2}
    finally:
        await store.aclose()


async def test_transient_5xx_is_retried(moto_server: MotoServer, proxy: FaultProxy, bucket: str) -> None:
    backend = via_proxy(moto_server, proxy, bucket)
    try:
        await backend.put(KEY, b"1")
        proxy.add(Fault("GET", "500", times=2))
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1"
        assert proxy.faulted["GET"] == 2
    finally:
        await backend.aclose()


async def test_failed_read_is_an_error_and_the_save_writes_nothing(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    direct = Store(s3_backend(moto_server, bucket), cache_size=0)
    store = Store(via_proxy(moto_server, proxy, bucket), cache_size=0)
    try:
        await direct.save_state_object("w1", {"keep": "me"}, StateType.WORKFLOWS)
        proxy.add(Fault("GET", "500", times=100))
        with pytest.raises(BackendError, match=r"get of .*InternalError \(HTTP 500\)") as info:
            await store.get_state("w1", StateType.WORKFLOWS)
        assert info.value.__cause__ is not None
        with pytest.raises(BackendError):
            await store.save_state("new", 1, "w1", StateType.WORKFLOWS)
        assert proxy.forwarded["PUT"] == 0
        assert await direct.get_state("w1", StateType.WORKFLOWS) == {"keep": "me"}
    finally:
        await store.aclose()
        await direct.aclose()


async def test_5xx_on_put_that_never_landed_gives_up_with_backend_error(
    moto_server: MotoServer, proxy: FaultProxy, bucket: str
) -> None:
    backend = via_proxy(moto_server, proxy, bucket)
    try:
        proxy.add(Fault("PUT", "500", times=100))
        with pytest.raises(BackendError, match=r"put of .*InternalError \(HTTP 500\)"):
            await backend.put(KEY, b"1", if_none_match=True)
        assert proxy.faulted["PUT"] == FAST_RETRY.attempts
        assert await backend.get(KEY) is None
    finally:
        await backend.aclose()


# -- wrong bucket, stopped server --------------------------------------------------


async def test_wrong_bucket_is_a_backend_error(moto_server: MotoServer) -> None:
    store = Store(s3_backend(moto_server, "no-such-bucket-statestore"))
    try:
        with pytest.raises(BackendError, match=r"NoSuchBucket \(HTTP 404\)"):
            await store.get_state("w1", StateType.WORKFLOWS)
        with pytest.raises(BackendError, match="NoSuchBucket"):
            await store.save_state("a", 1, "w1", StateType.WORKFLOWS)
        with pytest.raises(BackendError, match="NoSuchBucket"):
            await store.list_states(StateType.WORKFLOWS)
    finally:
        await store.aclose()


async def test_wrong_bucket_with_conditions_is_not_a_conflict(moto_server: MotoServer) -> None:
    backend = s3_backend(moto_server, "no-such-bucket-statestore")
    try:
        with pytest.raises(BackendError, match="NoSuchBucket"):
            await backend.put(KEY, b"1", if_match='"0123456789abcdef0123456789abcdef"')
        with pytest.raises(BackendError, match="NoSuchBucket"):
            await backend.delete(KEY, if_match='"0123456789abcdef0123456789abcdef"')
    finally:
        await backend.aclose()


async def test_no_credentials_anywhere_is_a_backend_error(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    store = Store(S3Backend(moto_server.create_bucket(), endpoint_url=moto_server.endpoint_url, region="us-east-1"))
    try:
        with pytest.raises(BackendError, match="NoCredentialsError"):
            await store.get_state("w1", StateType.WORKFLOWS)
    finally:
        await store.aclose()
    with pytest.raises(BackendError, match="ProfileNotFound"):
        await Store(S3Backend("b", endpoint_url=moto_server.endpoint_url, profile="nope")).get_state("w", "workflows")


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
        with pytest.raises(BackendError):
            await store.save_state("b", 2, "w1", StateType.WORKFLOWS)
        with pytest.raises(BackendError):
            await store.update_state("w1", StateType.WORKFLOWS, bump)
    finally:
        server.stop()
        await store.aclose()
    # moto keeps its data in this process: the session server shows the same bucket
    check = Store(s3_backend(moto_server, bucket))
    try:
        assert await check.get_state("w1", StateType.WORKFLOWS) == {"a": 1}
    finally:
        await check.aclose()
