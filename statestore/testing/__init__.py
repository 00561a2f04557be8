"""Helpers for testing code that uses statestore: stores on fresh backends, a local moto S3 server, and
``BackendTests``, the conformance suite a backend subclasses to prove it keeps the ``ObjectBackend`` contract.

The pytest fixtures built on these live in ``statestore.pytest_plugin`` (see
docs/testing.md). moto is imported only when ``MotoServer`` is started, and
the S3 backend only when an S3 store is built, and pytest only when
``BackendTests`` is asked for (it lives in ``statestore.conformance``), so this
module imports without the ``test`` extra.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..api import set_default_store
from ..backends.local import LocalBackend
from ..backends.memory import MemoryBackend
from ..core.store import Store
from ..errors import StateStoreError
from .backends import CountingBackend, LatencyBackend
from .faults import FaultBackend, InjectedFault

if TYPE_CHECKING:
    from .conformance import BackendTests as BackendTests

__all__ = [
    "INSTALL_HINT",
    "BackendTests",
    "CountingBackend",
    "FaultBackend",
    "InjectedFault",
    "LatencyBackend",
    "MotoServer",
    "MotoUnavailableError",
    "close_store",
    "install_default_store",
    "local_store",
    "memory_store",
    "s3_store",
]

#: What to install for ``MotoServer`` and the ``statestore_s3`` fixture.
INSTALL_HINT = "pip install 'moto[server]' (statestore's test extra has it)"
#: The region the moto helpers use; moto accepts any, botocore needs one.
MOTO_REGION = "us-east-1"

_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": MOTO_REGION,
}


class MotoUnavailableError(StateStoreError, RuntimeError):
    """moto's server cannot be imported: the ``test`` extra (``moto[server]``) is not installed."""


def __getattr__(name: str) -> Any:
    """``BackendTests`` on first use: importing it imports pytest, which the rest of this module does not need."""
    if name == "BackendTests":
        from .conformance import BackendTests

        return BackendTests
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def memory_store(**options: Any) -> Store:
    """A ``Store`` on a fresh ``MemoryBackend``; ``options`` go to ``Store``."""
    return Store(MemoryBackend(), **options)


def local_store(root: str | os.PathLike[str], **options: Any) -> Store:
    """A ``Store`` on a ``LocalBackend`` rooted at ``root``; ``options`` go to ``Store``."""
    return Store(LocalBackend(Path(root)), **options)


def s3_store(endpoint_url: str, bucket: str, **options: Any) -> Store:
    """A ``Store`` on an ``S3Backend`` for ``bucket`` at a test server (moto) with dummy credentials.

    The credentials and region are passed explicitly, so neither the
    environment nor ``~/.aws`` can point the store at a real account.
    """
    from ..backends.s3.backend import S3Backend

    backend = S3Backend(
        bucket,
        endpoint_url=endpoint_url,
        region=MOTO_REGION,
        aws_access_key_id=_FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    return Store(backend, **options)


def close_store(store: Store) -> None:
    """Close ``store`` from synchronous code, such as a fixture's teardown, on a private event loop.

    An S3 client that was opened on another event loop is closed when that
    loop shuts down (``asyncio.run`` and pytest-asyncio's runners do so).
    Inside a running event loop use ``await store.aclose()`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(store.aclose())
        return
    raise StateStoreError("close_store() cannot run inside an event loop; use 'await store.aclose()'")


@contextmanager
def install_default_store(store: Store, *, close: bool = True) -> Iterator[Store]:
    """Make ``store`` the default for the ``StateStore`` facade in a ``with`` block.

    Afterwards, also when the block raised, the previous default is restored
    and (unless ``close=False``) the store is closed with ``close_store``.
    """
    previous = set_default_store(store)
    try:
        yield store
    finally:
        set_default_store(previous)
        if close:
            close_store(store)


_atomic_lock = threading.Lock()
_atomic_done = False


def _make_conditional_writes_atomic() -> None:
    """Make moto's conditional PutObject / DeleteObject check-and-write one step, as on S3.

    moto checks ``If-Match`` / ``If-None-Match`` and then stores, without a lock
    between the two: under load two writers holding the same ETag can both
    win, and a test of "no lost update" fails for moto's sake. One lock around
    the two handlers (this process only) closes that window.
    """
    global _atomic_done
    with _atomic_lock:
        if _atomic_done:
            return
        from moto.s3.responses import S3Response

        write_lock = threading.RLock()
        for name in ("put_object", "delete_object"):
            handler = getattr(S3Response, name)

            def locked(self: Any, *args: Any, __handler: Any = handler, **kwargs: Any) -> Any:
                with write_lock:
                    return __handler(self, *args, **kwargs)

            setattr(S3Response, name, locked)
        _atomic_done = True


class MotoServer:
    """A moto S3 server on 127.0.0.1 and a free port, in a thread of this process.

    Its conditional writes are atomic (moto's own are not; see
    ``_make_conditional_writes_atomic``), so concurrency tests mean something.

    ``with MotoServer() as server:`` starts and stops it; ``server.endpoint_url``
    is what ``S3Backend`` (or any S3 client) needs, ``server.new_store()`` a
    store on a fresh bucket. Requires ``moto[server]``; without it ``start``
    raises ``MotoUnavailableError``.
    """

    def __init__(self) -> None:
        self._server: Any = None
        self._admin: Any = None  # one botocore client for create_bucket, made on first use
        self._lock = threading.Lock()
        self.endpoint_url = ""

    @staticmethod
    def fake_credentials() -> dict[str, str]:
        """Environment variables with dummy AWS credentials moto accepts."""
        return dict(_FAKE_CREDENTIALS)

    @staticmethod
    def check_available() -> None:
        """Raise ``MotoUnavailableError`` (naming the extra to install) unless moto's server imports."""
        try:
            from moto.server import ThreadedMotoServer  # noqa: F401
        except ImportError as exc:
            raise MotoUnavailableError(f"a moto S3 server needs moto[server]: {INSTALL_HINT}") from exc

    def start(self) -> MotoServer:
        with self._lock:
            if self._server is not None:
                return self
            self.check_available()
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            _make_conditional_writes_atomic()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            self._server = server
            self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None
            if self._server is not None:
                self._server.stop()
                self._server = None

    def client(self) -> Any:
        """A plain (synchronous) botocore S3 client for this server; close it when done."""
        import botocore.session

        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=MOTO_REGION,
            aws_access_key_id=_FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) with plain botocore; returns its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        with self._lock:
            if self._admin is None:
                self._admin = self.client()
            admin = self._admin
        admin.create_bucket(Bucket=name)
        return name

    def new_store(self, bucket: str | None = None, **options: Any) -> Store:
        """A ``Store`` on ``bucket`` of this server (a fresh bucket by default); see ``s3_store``."""
        return s3_store(self.endpoint_url, self.create_bucket(bucket), **options)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
