"""``FaultProxy``: an HTTP proxy on 127.0.0.1 between an ``S3Backend`` and an S3 server, for failure paths.

It forwards every request, except that:

- a queued ``Fault`` can drop the response of a request the server has already
  committed (closing the connection instead of answering), answer 503 after
  committing, answer late (past the client's read timeout), or answer 403 / 409 /
  500 / 503 without forwarding at all;
- with ``rate`` > 0 a seeded random share of the requests (of ``methods``)
  fails with one of ``kinds`` (``CHAOS_KINDS``): ``500`` / ``503`` (not
  forwarded), ``reset`` (connection reset, not forwarded), ``timeout`` (held
  ``slow_seconds``, then closed, not forwarded) or ``lost`` (forwarded and
  committed, then the connection is reset);
- ``deny(method, path)`` answers 403 AccessDenied without forwarding;
- ``reject_if_match`` answers 412 to every PutObject whose If-Match is in one of
  the given forms (``quoted``, ``unquoted``) without forwarding it, as Ceph RGW
  does for the quoted form;
- ``drop_on_put`` forwards PutObject without the named headers (a server that
  ignores If-Match / If-None-Match), and ``ignore_delete_if_match`` forwards
  DeleteObject without its If-Match, as MinIO and Ceph RGW ignore it (both change
  signed headers: moto only).

It counts what reached the server (``forwarded``; ``answered`` by status,
``body_bytes`` of the answers), what it faulted (queued
faults by method in ``faulted``, random ones by kind in ``chaos``), and the
If-Match forms it saw. The ``Host`` header goes through unchanged, so servers
that check signatures (Ceph RGW) accept the forwarded requests.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

SLOW_SECONDS = 2.0  # the client times out after half of it: long enough for a loaded machine to answer a normal put
CHAOS_KINDS = ("500", "503", "reset", "timeout", "lost")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "content-length"}

_ERRORS = {
    409: ("ConditionalRequestConflict", "A conflicting conditional operation is currently in progress."),
    403: ("AccessDenied", "Access Denied"),
    412: ("PreconditionFailed", ""),
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
    action: str  # "drop-after" | "503-after" | "slow-after" | "403" | "409" | "500", or one of CHAOS_KINDS
    path: str = ""
    times: int = 1
    after_forward: Callable[[], None] | None = None


def if_match_form(value: str) -> str:
    """``quoted`` or ``unquoted``: how an If-Match header value carries its ETag."""
    return "quoted" if value.startswith('"') else "unquoted"


class FaultProxy:
    """A forwarding HTTP proxy on 127.0.0.1 with queued faults; counts what reached the server."""

    def __init__(
        self,
        upstream: str,
        *,
        reject_if_match: frozenset[str] = frozenset(),
        drop_on_put: tuple[str, ...] = (),
        ignore_delete_if_match: bool = False,
        deny: Callable[[str, str], bool] | None = None,
        rate: float = 0.0,
        kinds: tuple[str, ...] = CHAOS_KINDS,
        methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "DELETE", "POST"),
        seed: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.reject_if_match = reject_if_match
        self.drop_on_put = {h.lower() for h in drop_on_put}
        self.ignore_delete_if_match = ignore_delete_if_match
        self.deny = deny
        self.rate, self.kinds, self.methods = rate, kinds, methods
        self.slow_seconds = SLOW_SECONDS
        self.forwarded: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.chaos: Counter[str] = Counter()  # random faults by kind
        self.if_match_seen: Counter[str] = Counter()  # "PUT quoted", "DELETE unquoted"...
        self.paths: list[tuple[str, str]] = []  # (method, path) of every request received
        self.answered: Counter[str] = Counter()  # "GET 200", "GET 304"...: statuses of forwarded requests
        self.body_bytes: Counter[str] = Counter()  # response body bytes of forwarded requests, by method
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def reset_counts(self) -> None:
        with self._lock:
            self.forwarded.clear()
            self.faulted.clear()
            self.if_match_seen.clear()
            self.paths.clear()
            self.answered.clear()
            self.body_bytes.clear()

    def pick(self, method: str) -> str | None:
        """A random fault kind for this request, at ``rate`` (None: no fault)."""
        with self._lock:
            if self.rate and method in self.methods and self._random.random() < self.rate:
                kind = self._random.choice(self.kinds)
                self.chaos[kind] += 1
                return kind
        return None

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path in path and fault.times > 0:
                    fault.times -= 1
                    self.faulted[method] += 1
                    return fault
        return None

    def _received(self, method: str, path: str, if_match: str | None) -> bool:
        """Record a request; True when it is to be rejected for its If-Match form."""
        with self._lock:
            self.paths.append((method, path))
            if if_match is None:
                return False
            form = if_match_form(if_match)
            self.if_match_seen[f"{method} {form}"] += 1
            if method == "PUT" and form in self.reject_if_match:
                self.faulted["PUT 412"] += 1
                return True
            return False

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
            self.answered[f"{method} {answer.status}"] += 1
            self.body_bytes[method] += len(answer.body)
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
                except (ConnectionError, TimeoutError):
                    self.close_connection = True

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._received(self.command, self.path, self.headers.get("If-Match")):
                    self._error(412)
                    return
                if proxy.deny is not None and proxy.deny(self.command, self.path):
                    self._error(403)
                    return
                fault = proxy.take(self.command, self.path)
                kind = fault.action if fault is not None else proxy.pick(self.command)
                if kind in ("403", "409", "500", "503"):
                    self._error(int(kind))
                    return
                if kind in ("reset", "timeout"):
                    if kind == "timeout":
                        time.sleep(proxy.slow_seconds)  # past the client's read timeout
                        self.close_connection = True
                    else:
                        self._reset()
                    return
                dropped = set(_HOP_HEADERS)
                if self.command == "PUT":
                    dropped |= proxy.drop_on_put
                if self.command == "DELETE" and proxy.ignore_delete_if_match:
                    dropped.add("if-match")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                answer = proxy.forward(self.command, self.path, headers, body)
                if fault is not None and fault.after_forward is not None:
                    fault.after_forward()
                if kind == "lost":  # the server committed; the client never hears of it
                    self._reset()
                    return
                if kind in ("drop-after", "slow-after"):
                    if kind == "slow-after":
                        time.sleep(proxy.slow_seconds)  # past the client's read timeout
                    self.close_connection = True  # the server committed; the client never hears of it
                    return
                if kind == "503-after":
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
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        return Handler
