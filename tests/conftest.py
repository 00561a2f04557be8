"""Shared fixtures: a backend of every kind for the conformance suite, and one moto server per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from statestore import LocalBackend, MemoryBackend, ObjectBackend, Store, set_default_store
from statestore.testing import MotoServer

BACKEND_KINDS = ["memory", "local"]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server on 127.0.0.1 for the whole test session."""
    with MotoServer() as server:
        yield server


@pytest.fixture(params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path) -> Callable[[], ObjectBackend]:
    """A factory of backends of one kind that all see the same objects (a shared root or dict)."""
    if backend_kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if backend_kind == "local":
        return lambda: LocalBackend(tmp_path / "root")
    raise AssertionError(backend_kind)


@pytest.fixture
async def backend(make_backend: Callable[[], ObjectBackend]) -> AsyncIterator[ObjectBackend]:
    b = make_backend()
    yield b
    await b.aclose()


@pytest.fixture
async def store(backend: ObjectBackend) -> AsyncIterator[Store]:
    """A store on each kind of backend, installed as the default for the ``StateStore`` facade."""
    s = Store(backend, app_name="appName")
    previous = set_default_store(s)
    yield s
    set_default_store(previous)
    await s.aclose()
