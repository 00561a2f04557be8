"""pytest fixtures that give every test its own state store (registered through the ``pytest11`` entry point).

- ``statestore_memory``: a fresh in-memory store;
- ``statestore_local``: a fresh local-directory store under ``tmp_path``;
- ``statestore_s3``: a fresh bucket on a moto S3 server (``statestore_moto_server``,
  started once per session on 127.0.0.1 and a free port).

Each installs its store as the default of the ``StateStore`` facade, points the
``STATESTORE_*`` environment at the same place (so ``build_store()`` agrees),
yields the ``Store``, and afterwards restores the previous default and closes
the store, also when the test failed. The fixtures are synchronous, so they
work in plain tests and under pytest-asyncio in strict and auto mode.
Override ``statestore_options`` to pass ``Store`` options (``app_name``, ``codec``, ...).

Importing this module never imports moto; ``statestore_s3`` without
``moto[server]`` is skipped (or fails, with ``statestore_missing_moto = error``
in the ini file) with a message naming the extra to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..core.store import Store
from . import INSTALL_HINT, MotoServer, MotoUnavailableError, install_default_store, local_store, memory_store

_MISSING_MOTO_INI = "statestore_missing_moto"
#: Variables that would make ``Settings.from_env`` disagree with the installed store.
_ENV_PREFIXES = ("STATESTORE_",)
_ENV_FALLBACKS = ("ATLAN_APPLICATION_NAME", "ATLAN_TEMPORARY_PATH")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _MISSING_MOTO_INI,
        "what statestore_s3 does when moto[server] is not installed: 'skip' (default) or 'error'",
        default="skip",
    )


def _point_environment(monkeypatch: pytest.MonkeyPatch, store: Store, values: Mapping[str, str]) -> None:
    """Point the ``STATESTORE_*`` variables at ``store`` (plus ``values``) for code that calls ``build_store()``."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_FALLBACKS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("STATESTORE_APP_NAME", store.app_name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def statestore_options() -> dict[str, Any]:
    """Keyword arguments for the ``Store`` of the ``statestore_*`` fixtures; override it to change them."""
    return {}


@pytest.fixture
def statestore_memory(statestore_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh in-memory store, installed as the default for this test."""
    store = memory_store(**statestore_options)
    _point_environment(monkeypatch, store, {"STATESTORE_BACKEND": "memory"})
    with install_default_store(store):
        yield store


@pytest.fixture
def statestore_local(
    statestore_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Store]:
    """A fresh local-directory store under ``tmp_path / "statestore"``, installed as the default for this test."""
    root = tmp_path / "statestore"
    store = local_store(root, **statestore_options)
    _point_environment(monkeypatch, store, {"STATESTORE_BACKEND": "local", "STATESTORE_LOCAL_ROOT": str(root)})
    with install_default_store(store):
        yield store


@pytest.fixture(scope="session")
def statestore_moto_server(pytestconfig: pytest.Config) -> Iterator[MotoServer]:
    """One moto S3 server on 127.0.0.1 (a free port) for the whole session; skipped without ``moto[server]``."""
    server = MotoServer()
    try:
        server.start()
        missing = False
    except MotoUnavailableError:
        missing = True
    if missing:  # outside the except block, so the report is the message alone
        message = f"statestore_s3 needs moto[server]: {INSTALL_HINT}"
        if str(pytestconfig.getini(_MISSING_MOTO_INI)).strip().lower() == "error":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def statestore_s3(
    statestore_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, statestore_moto_server: MotoServer
) -> Iterator[Store]:
    """A store on a fresh bucket of the session's moto server, installed as the default for this test."""
    store = statestore_moto_server.new_store(**statestore_options)
    bucket: str = getattr(store.backend, "bucket", "")
    _point_environment(
        monkeypatch,
        store,
        {
            "STATESTORE_BACKEND": "s3",
            "STATESTORE_BUCKET": bucket,
            "STATESTORE_S3_ENDPOINT_URL": statestore_moto_server.endpoint_url,
            **MotoServer.fake_credentials(),
        },
    )
    # A user's endpoint, profile or token must not redirect code that builds its own store from the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with install_default_store(store):
        yield store
