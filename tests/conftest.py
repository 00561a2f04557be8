"""Shared fixtures: a backend of every kind for the conformance suite, one moto server per session, and the S3 target.

The S3 target is the moto server unless ``STATESTORE_TEST_S3_ENDPOINT`` names another S3 server (Ceph RGW,
MinIO, AWS...). Tests marked ``s3_server`` run on the target; ``pytest -m s3_server`` with the variables set
runs them against that server (``scripts/ceph-rgw.sh test`` does so for a throw-away Ceph RGW):

- ``STATESTORE_TEST_S3_ENDPOINT``: the endpoint URL;
- ``STATESTORE_TEST_S3_ACCESS_KEY_ID`` / ``STATESTORE_TEST_S3_SECRET_ACCESS_KEY``: credentials (else the AWS chain);
- ``STATESTORE_TEST_S3_REGION``: default ``us-east-1``;
- ``STATESTORE_TEST_S3_BUCKET``: an existing bucket to use (each test gets a fresh prefix in it); without it
  each test creates a bucket of its own;
- ``STATESTORE_TEST_S3_NAME``: a label for reports (``ceph-rgw``, ``minio``...).

Transports: every ``s3_server`` test, and every test of the modules in ``TWO_TRANSPORT_MODULES`` (the
fault-proxy exactly-once tests), runs once per S3 transport (``aioboto3`` and ``obstore``); the
``s3_transport`` fixture names it, and ``S3Target.backend`` / ``s3_backend`` / ``S3Target.env`` use it.
``STATESTORE_TEST_S3_CLIENT`` picks one transport for the whole run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statestore import LocalBackend, MemoryBackend, ObjectBackend, S3Backend, Store, set_default_store
from statestore.testing import MotoServer

BACKEND_KINDS = ["memory", "local", pytest.param("s3", marks=pytest.mark.s3_server)]
S3_TRANSPORTS = ("aioboto3", "obstore")
#: Modules whose every test runs on each S3 transport (besides every test marked ``s3_server``).
TWO_TRANSPORT_MODULES = frozenset({"test_s3_faults", "test_reliability_s3"})
#: Modules whose ``s3_server`` tests pin their transport (``client="boto3"``): run once.
ONE_TRANSPORT_MODULES = frozenset({"test_mock_aws"})
_transport = ["aioboto3"]  # the transport of the running test (set by the ``s3_transport`` fixture)


def s3_transports() -> list[str]:
    """The transports to run the two-transport tests on: ``STATESTORE_TEST_S3_CLIENT``, else all."""
    only = os.environ.get("STATESTORE_TEST_S3_CLIENT")
    return [only] if only else list(S3_TRANSPORTS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the ``s3_server`` tests and the ``TWO_TRANSPORT_MODULES`` once per S3 transport."""
    if "s3_transport" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__
    marked = metafunc.definition.get_closest_marker("s3_server") is not None
    if (marked and module not in ONE_TRANSPORT_MODULES) or module in TWO_TRANSPORT_MODULES:
        metafunc.parametrize("s3_transport", s3_transports(), indirect=True)


@pytest.fixture(autouse=True)
def s3_transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """The S3 transport of this test: its parameter (two-transport tests), else aioboto3."""
    name: str = getattr(request, "param", None) or "aioboto3"
    _transport[0] = name
    yield name
    _transport[0] = "aioboto3"


@dataclass(frozen=True)
class S3Location:
    """Where one test keeps its objects: a bucket, and a key prefix inside it (may be empty)."""

    bucket: str
    prefix: str = ""


@dataclass
class S3Target:
    """The S3 server the ``s3_server`` tests talk to: the session's moto server or an external endpoint."""

    name: str
    endpoint_url: str
    access_key_id: str | None
    secret_access_key: str | None
    region: str
    bucket: str | None = None  # a fixed bucket to share, with a prefix per test
    moto: MotoServer | None = None

    @property
    def external(self) -> bool:
        return self.moto is None

    def client(self) -> Any:
        """A plain botocore S3 client for set-up and inspection (path-style, as the backend uses)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_location(self) -> S3Location:
        """A fresh, empty place for one test's objects."""
        if self.bucket is not None:
            return S3Location(self.bucket, f"statestore-test-{uuid.uuid4().hex[:12]}")
        name = f"statestore-test-{uuid.uuid4().hex[:12]}"
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return S3Location(name)

    def backend(self, location: S3Location, **options: Any) -> S3Backend:
        """An ``S3Backend`` on ``location`` with this target's endpoint and credentials; small list pages."""
        defaults: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "prefix": location.prefix,
            "list_page_size": 250,
            "client": _transport[0],
        }
        defaults.update(options)
        return S3Backend(location.bucket, **defaults)

    def env(self, location: S3Location) -> dict[str, str]:
        """``STATESTORE_*`` and ``AWS_*`` variables that point a subprocess (or the CLI) at ``location``."""
        env = {
            "STATESTORE_BACKEND": "s3",
            "STATESTORE_BUCKET": location.bucket,
            "STATESTORE_S3_ENDPOINT_URL": self.endpoint_url,
            "STATESTORE_S3_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "STATESTORE_S3_CLIENT": _transport[0],
        }
        if location.prefix:
            env["STATESTORE_S3_PREFIX"] = location.prefix
        if self.access_key_id and self.secret_access_key:
            env["AWS_ACCESS_KEY_ID"] = self.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_access_key
        return env


def _external_target() -> S3Target | None:
    endpoint = os.environ.get("STATESTORE_TEST_S3_ENDPOINT")
    if not endpoint:
        return None
    return S3Target(
        name=os.environ.get("STATESTORE_TEST_S3_NAME") or "external",
        endpoint_url=endpoint,
        access_key_id=os.environ.get("STATESTORE_TEST_S3_ACCESS_KEY_ID") or None,
        secret_access_key=os.environ.get("STATESTORE_TEST_S3_SECRET_ACCESS_KEY") or None,
        region=os.environ.get("STATESTORE_TEST_S3_REGION") or "us-east-1",
        bucket=os.environ.get("STATESTORE_TEST_S3_BUCKET") or None,
    )


@pytest.fixture(scope="session")
def s3_target(request: pytest.FixtureRequest) -> Iterator[S3Target]:
    """The S3 server of the ``s3_server`` tests: ``STATESTORE_TEST_S3_ENDPOINT`` if set, else moto."""
    external = _external_target()
    if external is not None:
        yield external
        return
    server: MotoServer = request.getfixturevalue("moto_server")
    creds = server.fake_credentials()
    yield S3Target(
        name="moto",
        endpoint_url=server.endpoint_url,
        access_key_id=creds["AWS_ACCESS_KEY_ID"],
        secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        region=creds["AWS_DEFAULT_REGION"],
        moto=server,
    )


@pytest.fixture(scope="session")
def moto_server(statestore_moto_server: MotoServer) -> MotoServer:
    """One moto S3 server on 127.0.0.1 for the whole test session: the plugin's own."""
    return statestore_moto_server


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
        target: S3Target = request.getfixturevalue("s3_target")
        location = target.new_location()
        return lambda: target.backend(location)
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
        "client": _transport[0],
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
