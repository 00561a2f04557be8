"""statestore under moto's in-process ``mock_aws``, written the way a user's test suite would be: no moto server,
the decorator or context manager, a bucket made with boto3, and the S3 backend picking the transport moto serves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
from conftest import S3Target
from moto import mock_aws

import statestore
from statestore import StateStore, StateType, Store
from statestore.backends.base import PreconditionFailed, PutMode
from statestore.backends.s3.backend import S3Backend
from statestore.config.settings import Settings
from statestore.errors import InvalidInputError
from statestore.testing import BackendTests

BUCKET = "user-bucket"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials, no endpoint (moto serves AWS's own), and no statestore settings from outside."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "STATESTORE_URL", "STATESTORE_S3_CLIENT"):
        monkeypatch.delenv(name, raising=False)
    previous = statestore.set_default_store(None)
    yield
    statestore.set_default_store(previous)


def make_bucket(name: str = BUCKET) -> Any:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    return s3


def object_key(state_id: str, type: StateType = StateType.WORKFLOWS, app: str = "default") -> str:  # noqa: A002
    return Store(S3Backend(BUCKET), app_name=app).key(state_id, type).object_key


@mock_aws
def test_every_operation_under_the_decorator_with_asyncio_run() -> None:
    s3 = make_bucket()

    async def scenario() -> None:
        async with Store(S3Backend(BUCKET), app_name="orders") as store:
            assert store.backend.transport == "boto3"  # type: ignore[attr-defined]
            await store.save_state("step", 1, "wf-1", StateType.WORKFLOWS)
            assert await store.get_state("wf-1", StateType.WORKFLOWS) == {"step": 1}
            await store.save_state_object("wf-2", {"a": 1}, StateType.WORKFLOWS)
            assert await store.update_state("wf-2", StateType.WORKFLOWS, lambda s: {**s, "b": 2}) == {"a": 1, "b": 2}
            assert await store.replace_state("wf-2", StateType.WORKFLOWS, {"c": 3}) == {"c": 3}
            await store.save_state_object("cred-1", {"user": "u"}, StateType.CREDENTIALS)
            assert await store.list_states(StateType.WORKFLOWS) == ["wf-1", "wf-2"]
            assert sorted([i async for i in store.iter_states(StateType.WORKFLOWS)]) == ["wf-1", "wf-2"]
            got = await store.get_states(["wf-2", "wf-1", "nope"], StateType.WORKFLOWS)
            assert got == {"wf-2": {"c": 3}, "wf-1": {"step": 1}, "nope": {}}
            assert await store.reencrypt_states(StateType.WORKFLOWS) == 0
            report = await store.check()
            assert report.safe, report
            await store.delete_state("wf-1", StateType.WORKFLOWS)
            assert await store.list_states(StateType.WORKFLOWS) == ["wf-2"]
            assert await store.get_state("wf-1", StateType.WORKFLOWS) == {}

    asyncio.run(scenario())
    # what statestore wrote is in moto's bucket, for plain boto3
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == sorted(
        [object_key("wf-2", app="orders"), object_key("cred-1", StateType.CREDENTIALS, app="orders")]
    ), keys


def test_context_manager_and_boto3_objects_both_ways() -> None:
    with mock_aws():
        s3 = make_bucket()
        key = object_key("made-by-boto3")
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({"from": "boto3"}).encode())

        async def scenario() -> None:
            store = Store(S3Backend(BUCKET))
            assert await store.get_state("made-by-boto3", StateType.WORKFLOWS) == {"from": "boto3"}
            await store.save_state("from", "statestore", "made-by-statestore", StateType.WORKFLOWS)
            await store.aclose()

        asyncio.run(scenario())
        body = s3.get_object(Bucket=BUCKET, Key=object_key("made-by-statestore"))["Body"].read()
        assert json.loads(body) == {"from": "statestore"}


async def test_pytest_asyncio_test_two_stores_one_bucket() -> None:
    with mock_aws():
        make_bucket()
        make_bucket("other-bucket")
        a, b = Store(S3Backend(BUCKET)), Store(S3Backend(BUCKET))
        elsewhere = Store(S3Backend("other-bucket"))
        await a.save_state("n", 0, "shared", StateType.WORKFLOWS)
        # concurrent read-modify-writes from two stores: none lost
        await asyncio.gather(
            *(store.update_state("shared", StateType.WORKFLOWS, lambda s: {"n": s["n"] + 1}) for store in [a, b] * 10)
        )
        assert await b.get_state("shared", StateType.WORKFLOWS) == {"n": 20}
        assert await a.get_state("shared", StateType.WORKFLOWS) == {"n": 20}
        assert await elsewhere.list_states(StateType.WORKFLOWS) == []
        for store in (a, b, elsewhere):
            await store.aclose()


async def test_stale_conditional_write_is_refused() -> None:
    """In an async test (pytest-asyncio), ``with mock_aws():`` inside: moto's decorator does not wrap coroutines."""
    with mock_aws():
        make_bucket()
        backend = S3Backend(BUCKET)
        first = await backend.put("obj", b"one")
        second = await backend.put("obj", b"two", PutMode.update(first.etag))
        with pytest.raises(PreconditionFailed) as refused:
            await backend.put("obj", b"three", PutMode.update(first.etag))
        assert refused.value.current is not None and refused.value.current.data == b"two"
        with pytest.raises(PreconditionFailed):
            await backend.put("obj", b"again", PutMode.CREATE)
        got = await backend.get("obj")
        assert got is not None and got.data == b"two" and got.etag == second.etag
        await backend.aclose()


@mock_aws
def test_default_store_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    make_bucket()
    monkeypatch.setenv("STATESTORE_BACKEND", "s3")
    monkeypatch.setenv("STATESTORE_BUCKET", BUCKET)
    statestore.set_default_store(None)  # rebuilt from the environment on first use

    async def scenario() -> None:
        await StateStore.save_state("k", 1, "wf", StateType.WORKFLOWS)
        await StateStore.save_state_object("wf2", {"x": 1}, StateType.WORKFLOWS)
        await StateStore.update_state("wf2", StateType.WORKFLOWS, lambda s: {**s, "y": 2})
        await StateStore.replace_state("wf", StateType.WORKFLOWS, {"k": 2})
        assert await StateStore.get_state("wf", StateType.WORKFLOWS) == {"k": 2}
        assert await StateStore.list_states(StateType.WORKFLOWS) == ["wf", "wf2"]
        assert [i async for i in StateStore.iter_states(StateType.WORKFLOWS)] == ["wf", "wf2"]
        assert await StateStore.get_states(["wf2"], StateType.WORKFLOWS) == {"wf2": {"x": 1, "y": 2}}
        await StateStore.delete_state("wf", StateType.WORKFLOWS)
        assert await StateStore.list_states(StateType.WORKFLOWS) == ["wf2"]

    asyncio.run(scenario())


@pytest.mark.parametrize("run", [1, 2])
@mock_aws
def test_no_state_leaks_between_tests(run: int) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.list_buckets()["Buckets"] == []  # moto's reset: nothing from the last test
    make_bucket()

    async def scenario() -> None:
        store = Store(S3Backend(BUCKET))
        assert await store.list_states(StateType.WORKFLOWS) == []
        await store.save_state("run", run, "leak", StateType.WORKFLOWS)

    asyncio.run(scenario())


async def test_plugin_fixture_side_by_side(statestore_memory: Store) -> None:
    with mock_aws():
        make_bucket()
        await StateStore.save_state("where", "memory", "wf", StateType.WORKFLOWS)  # the fixture's store
        async with Store(S3Backend(BUCKET)) as s3_store:
            await s3_store.save_state("where", "s3", "wf", StateType.WORKFLOWS)
            assert await statestore_memory.get_state("wf", StateType.WORKFLOWS) == {"where": "memory"}
            assert await s3_store.get_state("wf", StateType.WORKFLOWS) == {"where": "s3"}


def test_transport_selection_without_the_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "moto.core.models" in sys.modules  # this file imported moto
    assert S3Backend(BUCKET).transport == "aioboto3"  # loaded but not active: aioboto3, as before
    assert S3Backend(BUCKET, client="boto3").transport == "boto3"
    with mock_aws():
        assert S3Backend(BUCKET).transport == "boto3"
        assert S3Backend(BUCKET, client="aioboto3").transport == "aioboto3"
    monkeypatch.setenv("STATESTORE_S3_CLIENT", "BOTO3")
    assert Settings.from_env().s3_client == "boto3"
    monkeypatch.setenv("STATESTORE_S3_CLIENT", "urllib")
    with pytest.raises(InvalidInputError, match="STATESTORE_S3_CLIENT"):
        Settings.from_env()
    with pytest.raises(InvalidInputError, match="client must be one of"):
        S3Backend(BUCKET, client="requests")


def test_outside_a_mock_nothing_more_is_imported() -> None:
    """Without moto loaded, a store on S3 neither imports moto nor the threaded transport."""
    code = (
        "import asyncio, sys\n"
        "from statestore import S3Backend\n"
        "b = S3Backend('some-bucket', client='auto')\n"
        "assert b.transport == 'aioboto3'\n"
        "asyncio.run(b.open_transport())\n"
        "print(sorted(m for m in sys.modules if m.startswith('moto')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


class TestBackendUnderMockAws(BackendTests):
    """The whole backend contract, against moto's in-process buckets."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[S3Backend]:
        with mock_aws():
            make_bucket()
            backend = S3Backend(BUCKET, prefix="conformance")
            yield backend
            await backend.aclose()


@pytest.mark.s3_server
class TestBoto3TransportOverHttp(BackendTests):
    """``STATESTORE_S3_CLIENT=boto3`` outside a mock: the same contract over HTTP (a moto server, or the S3 target)."""

    @pytest.fixture
    async def backend(self, s3_target: S3Target) -> AsyncIterator[S3Backend]:
        backend = s3_target.backend(s3_target.new_location(), client="boto3")
        assert backend.transport == "boto3"
        yield backend
        await backend.aclose()
