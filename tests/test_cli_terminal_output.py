"""Nothing a server sends, a state holds or an exception says reaches a terminal raw: ``statestore`` escapes it.

C0 controls (but tab and newline), DEL, C1 controls and bidi controls are written as ``\\u001b``-style escapes
on every path: error lines, the ``--debug`` traceback, cause chain and log, tab-separated listings, the
``check`` table, and JSON (where the escape keeps the JSON valid and equal).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import CliResult

from statestore import BackendError, Store
from statestore.check import CheckReport, Outcome, Probe, Verdict
from statestore.cli.render import info_line, render_check, terminal_safe, version_line
from statestore.core.store import StateInfo, StateVersion

PACKAGE = Path(__file__).resolve().parent.parent / "statestore" / "cli"
# What a terminal acts on; tab and newline are layout.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
HOSTILE = "Evil\x1b]0;pwned\x07\x1b[2J\x1b[31mRed\x9b31m\u202eesrever\x7f"


def assert_terminal_safe(*texts: str) -> None:
    for text in texts:
        assert RAW.search(text) is None, ascii(text)


@pytest.fixture
def hostile_s3() -> Iterator[str]:
    """An S3 endpoint that answers every request 400 with escape sequences in its error Code and Message."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{HOSTILE}</Code>'
        f"<Message>msg {HOSTILE}</Message><RequestId>r</RequestId></Error>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(400)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "http://{}:{}".format(*server.server_address[:2])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("transport", ["aioboto3", "obstore"])
@pytest.mark.parametrize("debug", [False, True])
def test_a_servers_error_text_is_escaped_on_the_normal_and_debug_paths(
    hostile_s3: str, cli_run: Callable[..., CliResult], transport: str, debug: bool
) -> None:
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "STATESTORE_S3_CLIENT": transport}
    env["STATESTORE_S3_MAX_ATTEMPTS"] = "1"
    url = f"s3://bucket?endpoint_url={hostile_s3}&region=us-east-1"
    for json_flag in ([], ["--json"]):
        done = cli_run(*(["--debug"] if debug else []), *json_flag, "--url", url, "get", "wf", env=env)
        assert done.code == 1 and done.out == ""
        assert_terminal_safe(done.err)
        if debug:
            assert "Traceback" in done.err and "caused by" in done.err
        # the S3 layer keeps no server text: a code is cut to letters, digits and ._- (aioboto3's parser drops
        # this error document), and obstore's fallback error is told by its status only (decision 50)
        assert "pwned\\u0007" not in done.err and "(HTTP 400)" in done.err


@pytest.mark.parametrize("debug", [False, True])
def test_an_exception_holding_escape_sequences_is_escaped(
    cli_run: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    async def failing_get(self: Store, state_id: str, stype: Any) -> Any:
        try:
            raise OSError(f"cause {HOSTILE}\nsecond line")
        except OSError as exc:
            raise BackendError(f"it failed: {HOSTILE}") from exc

    monkeypatch.setattr(Store, "get_state", failing_get)
    done = cli_run(*(["--debug"] if debug else []), "--root", "root", "get", "wf")
    assert done.code == 1 and done.out == ""
    assert_terminal_safe(done.err)
    assert "it failed: Evil\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31mRed\\u009b31m\\u202eesrever\\u007f" in done.err
    assert len([line for line in done.err.splitlines() if line.startswith("statestore: ")]) == (2 if debug else 1)


def test_a_stored_key_with_control_characters_prints_as_valid_escaped_json(
    tmp_path: Path, cli_run: Callable[..., CliResult]
) -> None:
    state = {HOSTILE: HOSTILE, "nested": [{"\u2028": "x\x85y"}]}
    path = tmp_path / "root/persistent-artifacts/apps/default/workflows/wf/config.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(orjson.dumps(state))
    for args in (["get", "wf"], ["--json", "get", "wf"]):
        done = cli_run("--root", "root", *args)
        assert done.code == 0, done.err
        assert_terminal_safe(done.out)
        assert orjson.loads(done.out) == state  # the escapes are JSON's: the same value


def test_listings_history_and_check_escape_what_a_server_sent(capsys: pytest.CaptureFixture[str]) -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert_terminal_safe(info_line(StateInfo("wf", f'"{HOSTILE}"', 10, when)))
    line = version_line(StateVersion(f"v\t1\n{HOSTILE}", when, 10, False))
    assert line.count("\t") == 2 and "\n" not in line
    assert_terminal_safe(line)
    report = CheckReport(f"s3 {HOSTILE}", "s3", Verdict.UNSAFE, HOSTILE, [Probe("put", Outcome.UNSAFE, HOSTILE)])
    render_check(report)
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "Evil\\u001b]0;pwned" in out


def test_terminal_safe_keeps_layout_and_ordinary_text() -> None:
    assert terminal_safe("a\tb\nc é 名前 \u200b") == "a\tb\nc é 名前 \u200b"
    assert (
        terminal_safe("\x1b\x00\x7f\x80\x9f\u202e\u2066\u2028")
        == "\\u001b\\u0000\\u007f\\u0080\\u009f\\u202e\\u2066\\u2028"
    )


def test_every_line_the_command_prints_goes_through_echo() -> None:
    """One place escapes: no module of the command prints but through ``render.echo`` (and ``render_check``'s table)."""
    pattern = r"click\.(?:echo|secho)\(|(?<![.\w])print\(|\.print\(|sys\.std(?:out|err)\.write\(|traceback\.print"
    for module in PACKAGE.glob("*.py"):
        calls = re.findall(pattern, module.read_text(encoding="utf-8"))
        allowed = ["click.echo(", ".print(", ".print(", ".print("] if module.name == "render.py" else []
        assert calls == allowed, f"{module.name}: {calls}"
