"""Shared fixtures: a backend of every kind for the conformance suite, and one moto server per session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statestore import LocalBackend, MemoryBackend, ObjectBackend, S3Backend, Store, set_default_store
from statestore.testing import MotoServer

BACKEND_KINDS = ["memory", "local", "s3"]


class _SessionMotoServer(MotoServer):
    """``MotoServer`` whose ``create_bucket`` reuses one botocore client (a new one costs ~0.2 s)."""

    _client: Any = None

    def create_bucket(self, name: str | None = None) -> str:
        if self._client is None:
            import botocore.session

            self._client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self._client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        super().stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server on 127.0.0.1 for the whole test session."""
    with _SessionMotoServer() as server:
        yield server


@pytest.fixture(params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], ObjectBackend]:
    """A factory of backends of one kind that all see the same objects (a shared root or dict)."""
    if backend_kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if backend_kind == "local":
        return lambda: LocalBackend(tmp_path / "root")
    if backend_kind == "s3":
        server: MotoServer = request.getfixturevalue("moto_server")
        bucket = server.create_bucket()
        return lambda: s3_backend(server, bucket)
    raise AssertionError(backend_kind)


def s3_backend(server: MotoServer, bucket: str, **options: object) -> S3Backend:
    """An ``S3Backend`` on the moto ``server``'s ``bucket`` with its dummy credentials; small list pages."""
    creds = server.fake_credentials()
    defaults: dict[str, object] = {
        "endpoint_url": server.endpoint_url,
        "region": creds["AWS_DEFAULT_REGION"],
        "aws_access_key_id": creds["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"],
        "list_page_size": 250,
    }
    defaults.update(options)
    return S3Backend(bucket, **defaults)  # type: ignore[arg-type]


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
