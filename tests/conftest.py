"""Shared fixtures: a backend of every kind, one moto server per session, and the S3 target.

Tests marked ``s3_server`` run on the S3 target: the moto server, or the server ``STATESTORE_TEST_S3_ENDPOINT``
names (Ceph RGW, LocalStack, MinIO, AWS; ``scripts/ceph-rgw.sh test`` and ``scripts/localstack.sh test`` run
``pytest -m s3_server`` on a throw-away Ceph RGW or LocalStack), with ``STATESTORE_TEST_S3_ACCESS_KEY_ID`` /
``_SECRET_ACCESS_KEY`` (else the AWS chain), ``_REGION`` (default ``us-east-1``), ``_BUCKET`` (an existing bucket,
a fresh prefix per test; else a bucket per test) and ``_NAME`` (a label for reports).

The tests of ``TWO_TRANSPORT_MODULES`` (the shared conformance suite and the S3 fault suites) run once per S3
transport (the ``s3_transport`` fixture; ``S3Target.backend`` / ``s3_backend`` / ``S3Target.env`` use it); the
other S3 tests once, on aioboto3. ``STATESTORE_TEST_S3_CLIENT`` picks one transport for the whole run, or
``both`` runs every ``s3_server`` test on each (``scripts/ceph-rgw.sh test`` does).
"""

from __future__ import annotations

import io
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statestore import LocalBackend, MemoryBackend, ObjectBackend, S3Backend, Store, set_default_store
from statestore.testing import MotoServer

#: Test tiers a plain ``pytest`` leaves out; ``pytest -m NAME`` (any ``-m`` expression naming it) runs one.
#: Each maps to its folder, which is not even collected while the tier is off (its dependencies are in ``[dev]``),
#: or to None where its tests are marked where they live (``slow``: crash loops, pytester runs, scale).
OPT_IN_TIERS: dict[str, str | None] = {"temporal": "temporal", "sdk_port": "sdk_port", "slow": None}

BACKEND_KINDS = ["memory", "local", pytest.param("s3", marks=pytest.mark.s3_server)]
S3_TRANSPORTS = ("aioboto3", "obstore")
#: Modules whose every test runs on each S3 transport: the second transport is proven by these suites.
TWO_TRANSPORT_MODULES = frozenset({"test_backend_conformance", "test_s3_faults", "test_s3_contention_and_faults"})
#: Modules whose ``s3_server`` tests pin their transport (``client="boto3"``): run once even with ``both``.
ONE_TRANSPORT_MODULES = frozenset({"test_mock_aws"})
_transport = ["aioboto3"]  # the transport of the running test (set by the ``s3_transport`` fixture)


def tier_selected(config: pytest.Config, tier: str) -> bool:
    """Whether the ``-m`` expression names ``tier`` (``-m temporal``, ``-m "temporal or s3_server"``, ...)."""
    return re.search(rf"\b{re.escape(tier)}\b", config.getoption("markexpr") or "") is not None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip collecting the folder of a tier that is off."""
    here = Path(__file__).parent
    for tier, folder in OPT_IN_TIERS.items():
        if folder is not None and collection_path == here / folder and not tier_selected(config, tier):
            return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests of a tier that is off, wherever they are."""
    off = [tier for tier in OPT_IN_TIERS if not tier_selected(config, tier)]
    keep, deselected = [], []
    for item in items:
        (deselected if any(item.get_closest_marker(tier) for tier in off) else keep).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    off = [tier for tier in OPT_IN_TIERS if not tier_selected(config, tier)]
    return f"tiers off: {', '.join(off)} (pytest -m NAME runs one)" if off else "tiers: all selected"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the ``TWO_TRANSPORT_MODULES`` (with ``STATESTORE_TEST_S3_CLIENT=both``: every ``s3_server`` test) once
    per S3 transport (``s3_transport``); one named transport runs alone."""
    module = metafunc.module.__name__
    marked = metafunc.definition.get_closest_marker("s3_server") is not None
    chosen = os.environ.get("STATESTORE_TEST_S3_CLIENT") or None
    if chosen not in (None, "both", *S3_TRANSPORTS):
        raise pytest.UsageError(f"STATESTORE_TEST_S3_CLIENT must be both or one of {S3_TRANSPORTS}, got {chosen!r}")
    own = any("s3_transport" in m.args[0] for m in metafunc.definition.iter_markers("parametrize"))
    on_s3 = not own and (marked or not {"moto_server", "s3_target"}.isdisjoint(metafunc.fixturenames))
    both = on_s3 and (module in TWO_TRANSPORT_MODULES or (chosen == "both" and module not in ONE_TRANSPORT_MODULES))
    if both and chosen not in S3_TRANSPORTS:
        metafunc.parametrize("s3_transport", S3_TRANSPORTS, indirect=True)


@pytest.fixture(autouse=True)
def s3_transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """The S3 transport of this test: its parameter (two-transport tests), else the one chosen, else aioboto3."""
    chosen = os.environ.get("STATESTORE_TEST_S3_CLIENT")
    name: str = getattr(request, "param", None) or (chosen if chosen in S3_TRANSPORTS else "aioboto3")
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
    _shared_client: Any = None

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
        name = f"statestore-test-{uuid.uuid4().hex[:12]}"
        if self.bucket is not None:
            return S3Location(self.bucket, name)
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return S3Location(name)

    def shared_location(self) -> S3Location:
        """A fresh, empty prefix in one bucket shared by the session's tests on moto (one verification of the
        server's conditions per transport, no bucket to create per test); elsewhere as ``new_location``.

        The bucket is made again when gone: ``mock_aws`` in a test of this process resets moto's state, which
        the session's in-process moto server shares."""
        if self.moto is None or self.bucket is not None:
            return self.new_location()
        if self._shared_client is None:
            self._shared_client = self.client()
        bucket = "statestore-test-shared"
        try:
            self._shared_client.head_bucket(Bucket=bucket)
        except self._shared_client.exceptions.ClientError:
            self._shared_client.create_bucket(Bucket=bucket)
        return S3Location(bucket, f"statestore-test-{uuid.uuid4().hex[:12]}")

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
        return S3Backend(location.bucket, **(defaults | options))

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


def _moto_target(server: MotoServer) -> S3Target:
    creds = server.fake_credentials()
    key_id, secret, region = (creds[f"AWS_{n}"] for n in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "DEFAULT_REGION"))
    return S3Target("moto", server.endpoint_url, key_id, secret, region, moto=server)


def _env(name: str) -> str | None:
    return os.environ.get(f"STATESTORE_TEST_S3_{name}") or None


@pytest.fixture(scope="session")
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """The S3 server of the ``s3_server`` tests: ``STATESTORE_TEST_S3_ENDPOINT`` if set, else moto."""
    endpoint = _env("ENDPOINT")
    if endpoint is None:
        return _moto_target(request.getfixturevalue("moto_server"))
    region = _env("REGION") or "us-east-1"
    return S3Target(
        _env("NAME") or "external", endpoint, _env("ACCESS_KEY_ID"), _env("SECRET_ACCESS_KEY"), region, _env("BUCKET")
    )


@pytest.fixture(scope="session")
def moto_server(statestore_moto_server: MotoServer) -> MotoServer:
    """One moto S3 server on 127.0.0.1 for the whole test session: the plugin's own."""
    return statestore_moto_server


@pytest.fixture(params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], ObjectBackend]:
    """A factory of backends of one kind that all see the same objects (a shared root or dict)."""
    if backend_kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if backend_kind == "local":
        return lambda: LocalBackend(tmp_path / "root")
    target: S3Target = request.getfixturevalue("s3_target")  # "s3"
    location = target.shared_location()
    return lambda: target.backend(location)


def s3_backend(server: MotoServer, bucket: str, **options: object) -> S3Backend:
    """An ``S3Backend`` on the moto ``server``'s ``bucket`` with its dummy credentials; small list pages."""
    return _moto_target(server).backend(S3Location(bucket), **options)


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


@dataclass
class CliResult:
    """What one in-process ``statestore`` run did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def ok(self) -> str:
        """stdout, once the run is known to have succeeded with nothing on stderr."""
        assert self.code == 0 and self.err == "", (self.code, self.err)
        return self.out

    def failed(self, code: int, *fragments: str) -> str:
        """The one line on stderr, once the run is known to have exited ``code``, printed nothing on stdout
        and said every fragment."""
        assert self.code == code and self.out == "", (self.code, self.out, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("statestore: "), self.err
        assert all(fragment in lines[0] for fragment in fragments), lines[0]
        return lines[0]


@pytest.fixture
def cli_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Callable[..., CliResult]:
    """``statestore ARGS`` run in this process (``statestore.cli.run``), with only ``env`` set of the
    ``STATESTORE_*``, ``ATLAN_*`` and ``AWS_*`` variables, in ``cwd`` (default ``tmp_path``), ``stdin`` piped.

    The same code path as the console script, without a process start (about 0.3 s each).
    """
    from statestore.cli import run

    def call(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str = "") -> CliResult:
        with monkeypatch.context() as m:
            for name in list(os.environ):
                if name.startswith(("STATESTORE_", "ATLAN_", "AWS_")):
                    m.delenv(name)
            for name, value in (env or {}).items():
                m.setenv(name, value)
            m.chdir(cwd or tmp_path)
            m.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
            capsys.readouterr()
            code = run(list(args))
            out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return call
