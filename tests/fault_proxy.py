"""``FaultProxy``: an HTTP proxy on 127.0.0.1 between an ``S3Backend`` and an S3 server, for failure paths.

It forwards every request, but a queued ``Fault`` (or, with ``rate`` > 0, a seeded random one of ``kinds`` on
``methods``) answers an S3 error, resets or times out unforwarded, or forwards (the server commits) and then does
not answer (see ``_AFTER``); ``deny`` answers 403; ``reject_if_match`` answers 412 to a PutObject whose If-Match
has one of the given forms, as Ceph RGW does for ``quoted``; ``unimplemented_delete_if_match`` answers 501
NotImplemented to a DeleteObject with If-Match, unforwarded, as LocalStack does; ``drop_on_put`` /
``ignore_delete_if_match`` strip those headers, as servers that ignore them do (moto only: they are signed);
``drop_list_prefix`` strips the ``prefix`` query parameter of ListObjectsV2 and ListObjectVersions, as a gateway
that ignores it would (moto only: it is signed too). It counts what reached the server, what it faulted and the
If-Match forms it saw. ``Host`` goes through unchanged, so signatures still check.
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
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SLOW_SECONDS = 2.0  # the client times out after half of it: long enough for a loaded machine to answer a normal put
CHAOS_KINDS = ("500", "503", "reset", "timeout", "lost")
#: Faults that forward the request (the server commits), then do this instead of answering.
_AFTER = {"drop-after": "drop", "503-after": "503", "slow-after": "timeout", "lost": "reset"}
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "content-length"}
_ERRORS = {
    409: ("ConditionalRequestConflict", "A conflicting conditional operation is currently in progress."),
    403: ("AccessDenied", "Access Denied"),
    412: ("PreconditionFailed", ""),
    429: ("TooManyRequests", "Please slow down."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented"),
    # a hostile server: an error code with a terminal escape sequence (OSC title, clear screen, colour)
    418: ("Evil\x1b]0;pwned\x07\x1b[2J\x1b[31mCode" + "x" * 300, "\x1b[2Jmessage"),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


@dataclass
class Fault:
    """What to do to the next ``times`` requests with ``method`` whose path contains ``path``."""

    method: str
    action: str  # "403" | "409" | "500" | "503", one of CHAOS_KINDS, or a key of _AFTER
    path: str = ""
    times: int = 1
    after_forward: Callable[[], None] | None = None


def if_match_form(value: str) -> str:
    """``quoted`` or ``unquoted``: how an If-Match header value carries its ETag."""
    return "quoted" if value.startswith('"') else "unquoted"


def without_list_prefix(path: str) -> str:
    """``path`` without its ``prefix`` query parameter if it is a ListObjectsV2 or ListObjectVersions request."""
    parts = urlsplit(path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    if "list-type" not in names and "versions" not in names:
        return path
    kept = [(name, value) for name, value in query if name != "prefix"]
    return urlunsplit(parts._replace(query=urlencode(kept, safe="/")))


class FaultProxy:
    """A forwarding HTTP proxy on 127.0.0.1 with queued faults; counts what reached the server."""

    def __init__(
        self,
        upstream: str,
        *,
        reject_if_match: frozenset[str] = frozenset(),
        drop_on_put: tuple[str, ...] = (),
        ignore_delete_if_match: bool = False,
        unimplemented_delete_if_match: bool = False,
        drop_list_prefix: bool = False,
        deny: Callable[[str, str], bool] | None = None,
        rate: float = 0.0,
        kinds: tuple[str, ...] = CHAOS_KINDS,
        methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "DELETE", "POST"),
        seed: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.reject_if_match, self.ignore_delete_if_match, self.deny = reject_if_match, ignore_delete_if_match, deny
        self.drop_on_put = {h.lower() for h in drop_on_put}
        self.drop_list_prefix = drop_list_prefix
        self.unimplemented_delete_if_match = unimplemented_delete_if_match
        self.rate, self.kinds, self.methods = rate, kinds, methods
        self.slow_seconds = SLOW_SECONDS
        self.chaos: Counter[str] = Counter()  # random faults by kind
        self.forwarded: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.if_match_seen: Counter[str] = Counter()  # "PUT quoted", "DELETE unquoted"...
        self.paths: list[tuple[str, str]] = []  # (method, path) of every request received
        self.answered: Counter[str] = Counter()  # "GET 200", "GET 304"...: statuses of forwarded requests
        self.body_bytes: Counter[str] = Counter()  # response body bytes of forwarded requests, by method
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self.endpoint_url = "http://{}:{}".format(*self._server.server_address[:2])

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
        """Forget what was forwarded, faulted (but ``chaos``) and seen."""
        with self._lock:
            for seen in (self.forwarded, self.faulted, self.if_match_seen, self.paths, self.answered, self.body_bytes):
                seen.clear()

    def _decide(self, method: str, path: str, if_match: str | None) -> tuple[str | None, Fault | None]:
        """Record a request; what to do with it (None: forward it) and the queued fault that says so."""
        with self._lock:
            self.paths.append((method, path))
            if if_match is not None:
                self.if_match_seen[f"{method} {if_match_form(if_match)}"] += 1
                if method == "PUT" and if_match_form(if_match) in self.reject_if_match:
                    self.faulted["PUT 412"] += 1
                    return "412", None
                if method == "DELETE" and self.unimplemented_delete_if_match:
                    self.faulted["DELETE 501"] += 1
                    return "501", None
            if self.deny is not None and self.deny(method, path):
                return "403", None
            for fault in self.faults:
                if fault.method == method and fault.path in path and fault.times > 0:
                    fault.times -= 1
                    self.faulted[method] += 1
                    return fault.action, fault
            if self.rate and method in self.methods and self._random.random() < self.rate:
                kind = self._random.choice(self.kinds)
                self.chaos[kind] += 1
                return kind, None
        return None, None

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
        """Send the request upstream; its (status, reason, headers, body)."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body if body or method in ("PUT", "POST") else None, headers=headers)
            response = conn.getresponse()
            answer = (response.status, response.reason, response.getheaders(), response.read())
        finally:
            conn.close()
        with self._lock:
            self.forwarded[method] += 1
            self.answered[f"{method} {answer[0]}"] += 1
            self.body_bytes[method] += len(answer[3])
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

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind, fault = proxy._decide(self.command, self.path, self.headers.get("If-Match"))
                if kind is not None and kind not in _AFTER:
                    self._fail(kind)
                    return
                dropped = _HOP_HEADERS | (proxy.drop_on_put if self.command == "PUT" else set())
                if self.command == "DELETE" and proxy.ignore_delete_if_match:
                    dropped |= {"if-match"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                path = self.path
                if proxy.drop_list_prefix and self.command == "GET":
                    path = without_list_prefix(path)
                status, reason, answer_headers, answer = proxy.forward(self.command, path, headers, body)
                if fault is not None and fault.after_forward is not None:
                    fault.after_forward()
                if kind is not None:  # the server committed; the client never hears of it
                    self._fail(_AFTER[kind])
                    return
                self._send(status, reason, answer_headers, answer)

            def _send(self, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response_only(status, reason)
                length = str(len(body))
                for name, value in headers:
                    if name.lower() == "content-length" and self.command == "HEAD":
                        length = value  # the length of the body a GET would get
                    elif name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _fail(self, kind: str) -> None:
                """An S3 error for a status, else no answer: ``drop``, ``reset`` or ``timeout`` (held, then closed)."""
                if kind.isdigit():
                    code, message = _ERRORS[int(kind)]
                    body = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>"
                    )
                    self._send(int(kind), None, [("Content-Type", "application/xml")], body.encode())
                    return
                if kind == "timeout":
                    time.sleep(proxy.slow_seconds)  # past the client's read timeout
                if kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        return Handler
