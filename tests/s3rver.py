"""``S3rver``: s3rver (a small S3 server from the npm registry that accepts If-Match / If-None-Match and ignores
them), installed once per machine and started on a free loopback port.

``npm install --prefix ~/.cache/statestore-test/s3rver s3rver@3.7.1`` on first use (about 5 s); a test
that needs it is skipped, with the reason, only where npm is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

VERSION = "3.7.1"
CACHE = Path(os.environ.get("STATESTORE_TEST_CACHE", Path.home() / ".cache" / "statestore-test")) / "s3rver"
KEY_ID = SECRET = "S3RVER"  # s3rver's fixed credentials


def executable() -> Path | None:
    """The s3rver executable, installed with npm if need be; None where npm is missing."""
    exe = CACHE / "node_modules" / ".bin" / "s3rver"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(CACHE), f"s3rver@{VERSION}", "--no-audit", "--no-fund"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return exe


class S3rver:
    """One s3rver process with one bucket, on 127.0.0.1."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="s3rver-")

    def start(self, exe: Path) -> S3rver:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._process = subprocess.Popen(
            [str(exe), "-d", self._dir.name, "-a", "127.0.0.1", "-p", str(port), "--configure-bucket", self.bucket],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers (403 without credentials)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("s3rver did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        self._dir.cleanup()
