"""S3 reliability over real HTTP: contention across processes, random faults, failed reads.

``ChaosProxy`` sits between ``S3Backend`` and the moto server on 127.0.0.1 and
makes a share of the requests fail, at random (seeded), with one of:

- ``500``: InternalError, not forwarded;
- ``503``: SlowDown (S3's XML error body), not forwarded;
- ``reset``: the connection is reset before anything is forwarded;
- ``timeout``: the request is held past the client's read timeout, then the
  connection is closed; it is never forwarded;
- ``lost``: the request is forwarded and the server commits it, then the
  connection is dropped instead of answering.

Under 20 % faults every ``update_state`` either succeeds and is applied exactly
once, or raises a typed ``StateStoreError`` and is not applied.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_reliability_contention import check_final, report, run_processes

from statestore import BackendError, RetryPolicy, StateStoreError, StateType, Store
from statestore.backends.s3 import S3Backend
from statestore.testing import MotoServer

WF = StateType.WORKFLOWS
FAULT_KINDS = ("500", "503", "reset", "timeout", "lost")
READ_TIMEOUT = 0.4
TRANSIENT_RETRY = RetryPolicy(attempts=5, base_delay=0.02, max_delay=0.2, deadline=15)
_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "content-length"}
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
}


def s3(server_url: str, bucket: str, **options: Any) -> S3Backend:
    """An ``S3Backend`` with moto's dummy credentials."""
    return S3Backend(
        bucket,
        endpoint_url=server_url,
        region="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **options,
    )


class ChaosProxy:
    """A forwarding HTTP proxy on 127.0.0.1 failing a ``rate`` share of requests with random ``kinds``."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        kinds: tuple[str, ...] = FAULT_KINDS,
        methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "DELETE", "POST"),
        seed: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = rate
        self.kinds = kinds
        self.methods = methods
        self.always: str | None = None  # a fault for every request (e.g. "403")
        self.faults: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host!s}:{port}"

    def __enter__(self) -> ChaosProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def pick(self, method: str) -> str | None:
        with self._lock:
            self.requests[method] += 1
            kind = self.always
            if kind is None and method in self.methods and self._random.random() < self.rate:
                kind = self._random.choice(self.kinds)
            if kind is not None:
                self.faults[kind] += 1
            return kind

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send the request to the server; its response (headers) and body."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body if body or method in ("PUT", "POST") else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        with self._lock:
            self.forwarded[method] += 1
        return response, data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as S3 speaks

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (ConnectionError, TimeoutError):
                    self.close_connection = True

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _error(self, kind: str) -> None:
                status, code, message = _ERRORS[kind]
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{message}</Message><RequestId>chaos</RequestId></Error>"
                ).encode()
                self.send_response_only(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind = proxy.pick(self.command)
                if kind in _ERRORS:
                    self._error(kind)
                    return
                if kind == "reset":
                    self._reset()
                    return
                if kind == "timeout":
                    time.sleep(READ_TIMEOUT * 2)
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                answer, data = proxy.forward(self.command, self.path, headers, body)
                if kind == "lost":  # the server committed; the client never hears of it
                    self._reset()
                    return
                self.send_response_only(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        return Handler


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    return moto_server.create_bucket()


# -- contention --------------------------------------------------------------------


def test_processes_on_one_s3_object(moto_server: MotoServer, bucket: str, tmp_path: Path) -> None:
    workers, updates = 4, 25
    started = time.monotonic()
    spec = {"kind": "s3", "bucket": bucket, "endpoint_url": moto_server.endpoint_url}
    counts = run_processes(spec, workers, updates, tmp_path)
    report(f"s3 {workers} processes x {updates}", counts, time.monotonic() - started)

    async def final() -> dict[str, Any]:
        async with Store(s3(moto_server.endpoint_url, bucket), app_name="rel") as store:
            return await store.get_state("shared", WF)

    check_final(asyncio.run(final()), workers, updates)
    assert counts["conflict"] > 0, "the writers never collided, so this test proved nothing"


# -- random faults -------------------------------------------------------------------


ChaosRun = tuple[list[str], list[tuple[str, StateStoreError]], ChaosProxy, float]


async def chaos_run(
    moto_server: MotoServer, bucket: str, *, transient: RetryPolicy, methods: tuple[str, ...], seed: int, updates: int
) -> ChaosRun:
    """Two stores (one coalescing, one not) x 3 tasks increment one counter through the chaos proxy.

    Each increment also appends its token to ``ops``, so the final state tells
    which changes were applied, and how often. Returns the tokens that
    succeeded, those that gave up (with their error), the proxy and the time.
    """
    with ChaosProxy(moto_server.endpoint_url, rate=0.2, seed=seed, methods=methods) as proxy:
        backend = s3(proxy.endpoint_url, bucket, read_timeout=READ_TIMEOUT, connect_timeout=1.0, retry=transient)
        stores = [
            Store(backend, app_name="chaos", retry=RetryPolicy(attempts=50, base_delay=0.01, max_delay=0.2)),
            Store(backend, app_name="chaos", coalesce=False),
        ]
        done: list[str] = []
        gave_up: list[tuple[str, StateStoreError]] = []

        async def worker(store: Store, name: str) -> None:
            for i in range(updates):
                token = f"{name}-{i}"
                try:
                    await store.update_state(
                        "counter", WF, lambda s, t=token: {**s, "n": s.get("n", 0) + 1, "ops": [*s.get("ops", []), t]}
                    )
                except StateStoreError as exc:  # any other exception fails the test
                    gave_up.append((token, exc))
                else:
                    done.append(token)

        started = time.monotonic()
        await asyncio.gather(*(worker(store, f"s{s}t{t}") for s, store in enumerate(stores) for t in range(3)))
        elapsed = time.monotonic() - started
        await backend.aclose()
    return done, gave_up, proxy, elapsed


async def check_exactly_once(moto_server: MotoServer, bucket: str, what: str, run: ChaosRun) -> None:
    done, gave_up, proxy, elapsed = run
    async with Store(s3(moto_server.endpoint_url, bucket), app_name="chaos") as clean:
        state = await clean.get_state("counter", WF)
    ops = state.get("ops", [])
    print(
        f"\n[reliability] s3 {what}: {len(done) + len(gave_up)} update_state calls in {elapsed:.1f} s, "
        f"{len(done)} succeeded, {len(gave_up)} gave up {dict(Counter(type(e).__name__ for _, e in gave_up))}; "
        f"{sum(proxy.requests.values())} requests {dict(proxy.requests)}, "
        f"{sum(proxy.faults.values())} faults injected {dict(proxy.faults)}, forwarded {dict(proxy.forwarded)}"
    )
    doubled = sorted(t for t, n in Counter(ops).items() if n > 1)
    lost = sorted(t for t in done if t not in ops)
    failed_but_applied = sorted(t for t, _ in gave_up if t in ops)
    assert not doubled, f"applied twice: {doubled}"
    assert not lost, f"reported done but not applied: {lost}"
    assert not failed_but_applied, f"reported failed but applied: {failed_but_applied}"
    assert state["n"] == len(done) == len(ops)


async def test_updates_under_20_percent_faults_apply_exactly_once(moto_server: MotoServer, bucket: str) -> None:
    """All requests may fail; transient retries (5 tries) absorb the faults."""
    run = await chaos_run(
        moto_server,
        bucket,
        transient=TRANSIENT_RETRY,
        methods=("GET", "PUT", "HEAD", "DELETE"),
        seed=int(os.environ.get("CHAOS_SEED", "20261128")),
        updates=int(os.environ.get("CHAOS_UPDATES", "15")),
    )
    await check_exactly_once(moto_server, bucket, "chaos, 5 tries", run)
    done, _, proxy, _ = run
    assert set(proxy.faults) == set(FAULT_KINDS), "some kind of fault was never injected"
    assert len(done) >= 45, "too few updates got through to prove anything"


async def test_updates_that_give_up_are_not_applied(moto_server: MotoServer, bucket: str) -> None:
    """Puts fail 20 % of the time and get one try, so updates give up: none of those is applied.

    Reads are not faulted here: after a put whose answer was lost, only a read
    can tell whether it landed; when that read fails too the outcome is unknown
    (see docs/reliability.md).
    """
    run = await chaos_run(
        moto_server,
        bucket,
        transient=RetryPolicy(attempts=1, deadline=10),
        methods=("PUT",),
        seed=int(os.environ.get("CHAOS_SEED", "7")),
        updates=int(os.environ.get("CHAOS_UPDATES", "15")),
    )
    await check_exactly_once(moto_server, bucket, "chaos, puts only, 1 try", run)
    _, gave_up, _, _ = run
    assert gave_up, "nothing gave up, so this test proved nothing"
    assert all(isinstance(e, BackendError) and "S3 put" in str(e) for _, e in gave_up)


# -- read failures -------------------------------------------------------------------


async def seeded(moto_server: MotoServer, bucket: str) -> tuple[Store, bytes]:
    """A store on the real server with one state stored; returns it and the stored bytes."""
    store = Store(s3(moto_server.endpoint_url, bucket), app_name="app")
    await store.save_state("k", "original", "wf", WF)
    got = await store.backend.get(store.key("wf", WF).object_key)
    assert got is not None
    return store, got.data


async def assert_read_fails_and_save_writes_nothing(failing: Store, direct: Store, original: bytes) -> None:
    with pytest.raises(BackendError):
        await failing.get_state("wf", WF)
    for save in (
        failing.save_state("k", "lost?", "wf", WF),
        failing.save_state_object("wf", {"k": "lost?"}, WF),
        failing.update_state("wf", WF, lambda s: {**s, "k": "lost?"}),
    ):
        with pytest.raises(BackendError):
            await save
    got = await direct.backend.get(direct.key("wf", WF).object_key)
    assert got is not None and got.data == original


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_server_down(moto_server: MotoServer, bucket: str) -> None:
    direct, original = await seeded(moto_server, bucket)
    fast = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, deadline=5)
    failing = Store(s3(f"http://127.0.0.1:{unused_port()}", bucket, retry=fast, connect_timeout=0.5), app_name="app")
    await assert_read_fails_and_save_writes_nothing(failing, direct, original)
    await direct.aclose()
    await failing.aclose()


async def test_bucket_missing(moto_server: MotoServer, bucket: str) -> None:
    direct, original = await seeded(moto_server, bucket)
    failing = Store(s3(moto_server.endpoint_url, f"{bucket}-missing"), app_name="app")
    await assert_read_fails_and_save_writes_nothing(failing, direct, original)
    with pytest.raises(BackendError, match="NoSuchBucket"):
        await failing.list_states(WF)
    await direct.aclose()
    await failing.aclose()


async def test_access_denied(moto_server: MotoServer, bucket: str) -> None:
    direct, original = await seeded(moto_server, bucket)
    with ChaosProxy(moto_server.endpoint_url) as proxy:
        proxy.always = "403"
        failing = Store(s3(proxy.endpoint_url, bucket), app_name="app")
        await assert_read_fails_and_save_writes_nothing(failing, direct, original)
        with pytest.raises(BackendError, match="AccessDenied"):
            await failing.get_state("wf", WF)
        await failing.aclose()
    assert proxy.forwarded == Counter()
    await direct.aclose()
