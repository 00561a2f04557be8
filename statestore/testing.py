"""Helpers for testing code that uses statestore: stores on fresh backends and a local moto S3 server.

moto is imported only when ``MotoServer`` is started, so this module imports
without the ``test`` extra.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from .backends.local import LocalBackend
from .backends.memory import MemoryBackend
from .store import Store

_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def memory_store(**options: Any) -> Store:
    """A ``Store`` on a fresh ``MemoryBackend``."""
    return Store(MemoryBackend(), **options)


def local_store(root: str | os.PathLike[str], **options: Any) -> Store:
    """A ``Store`` on a ``LocalBackend`` rooted at ``root``."""
    return Store(LocalBackend(Path(root)), **options)


class MotoServer:
    """A moto S3 server on 127.0.0.1 and a free port, in a thread of this process.

    ``with MotoServer() as server:`` starts and stops it; ``server.endpoint_url``
    is what ``S3Backend`` (or any S3 client) needs. Requires ``moto[server]``.
    """

    def __init__(self) -> None:
        self._server: Any = None
        self._lock = threading.Lock()
        self.endpoint_url = ""

    @staticmethod
    def fake_credentials() -> dict[str, str]:
        """Environment variables with dummy AWS credentials moto accepts."""
        return dict(_FAKE_CREDENTIALS)

    def start(self) -> MotoServer:
        with self._lock:
            if self._server is not None:
                return self
            try:
                from moto.server import ThreadedMotoServer
            except ImportError as exc:
                raise RuntimeError(
                    "MotoServer needs moto's server: pip install 'statestore[test]' (or 'moto[server]')"
                ) from exc
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            self._server = server
            self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) with plain botocore; returns its name."""
        import botocore.session

        name = name or f"test-{uuid.uuid4().hex[:12]}"
        session = botocore.session.get_session()
        client: Any = session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
