"""S3Backend beyond the conformance suite: settings, SSE, key prefix, MinIO mode, event loops, clean exit."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
import threading
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_TRANSPORTS, s3_backend

import statestore.backends.s3.writes as s3_writes
from statestore import InvalidInputError, PutMode, S3Backend, Settings, StateType, Store, build_store
from statestore.backends.base import Capability
from statestore.backends.s3.backend import HISTORY, WRITES_METADATA
from statestore.config.build import backend_from_settings
from statestore.errors import ConditionalDeleteUnsupportedError
from statestore.testing import MotoServer

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"


# -- settings ------------------------------------------------------------------


def test_settings_from_env_reads_every_s3_variable() -> None:
    settings = Settings.from_env(
        {
            "STATESTORE_BACKEND": "s3",
            "STATESTORE_BUCKET": "my-bucket",
            "STATESTORE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "STATESTORE_S3_REGION": "eu-west-1",
            "STATESTORE_S3_PREFIX": "team-a",
            "STATESTORE_S3_CONNECT_TIMEOUT": "2.5",
            "STATESTORE_S3_READ_TIMEOUT": "7",
            "STATESTORE_S3_SSE": "aws:kms",
            "STATESTORE_S3_SSE_KMS_KEY_ID": "alias/state",
            "STATESTORE_S3_CONDITIONAL_DELETE": "false",
            "STATESTORE_S3_IF_MATCH": "Unquoted",
            "STATESTORE_S3_MAX_ATTEMPTS": "7",
        }
    )
    backend = backend_from_settings(settings)
    assert isinstance(backend, S3Backend)
    assert backend.bucket == "my-bucket"
    assert backend.endpoint_url == "http://127.0.0.1:9000"
    assert backend.region == "eu-west-1"
    assert backend.prefix == "team-a/"
    assert (backend.connect_timeout, backend.read_timeout) == (2.5, 7.0)
    assert (backend.sse, backend.sse_kms_key_id) == ("aws:kms", "alias/state")
    assert backend.conditional_delete == "false"
    assert asyncio.run(backend.supports(Capability.CONDITIONAL_DELETE)) is False
    assert backend.if_match_setting == "unquoted" and backend.if_match_form == "unquoted"
    assert backend.retry.attempts == 7
    assert backend.object_key(KEY) == "team-a/" + KEY


def test_settings_defaults_for_s3() -> None:
    backend = backend_from_settings(Settings.from_env({"STATESTORE_BACKEND": "s3", "STATESTORE_BUCKET": "b"}))
    assert isinstance(backend, S3Backend)
    assert backend.prefix == "" and backend.sse is None
    # auto: the quoted If-Match form until a server refuses it; conditional delete not trusted until probed
    assert (backend.if_match_setting, backend.if_match_form) == ("auto", "quoted")
    assert backend.conditional_delete == "auto"  # probed on first need


@pytest.mark.parametrize(
    ("value", "mode"), [("auto", "auto"), ("TRUE", "true"), ("1", "true"), ("off", "false"), ("", "auto")]
)
def test_conditional_delete_setting_values(value: str, mode: str) -> None:
    settings = Settings.from_env({"STATESTORE_S3_CONDITIONAL_DELETE": value})
    assert settings.s3_conditional_delete == mode
    backend = backend_from_settings(Settings(backend="s3", bucket="b", s3_conditional_delete=mode))
    assert isinstance(backend, S3Backend)
    assert backend.conditional_delete == mode
    if mode != "auto":
        assert asyncio.run(backend.supports(Capability.CONDITIONAL_DELETE)) is (mode == "true")


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"STATESTORE_BACKEND": "s3"}, "STATESTORE_BUCKET"),
        ({"STATESTORE_BACKEND": "s3", "STATESTORE_BUCKET": "b", "STATESTORE_S3_SSE": "des"}, "STATESTORE_S3_SSE"),
        ({"STATESTORE_BUCKET": "b", "STATESTORE_S3_SSE_KMS_KEY_ID": "k"}, "aws:kms"),
        ({"STATESTORE_S3_CONNECT_TIMEOUT": "soon"}, "STATESTORE_S3_CONNECT_TIMEOUT"),
        ({"STATESTORE_S3_READ_TIMEOUT": "-1"}, "positive"),
        ({"STATESTORE_S3_CONDITIONAL_DELETE": "maybe"}, "auto, true or false"),
        ({"STATESTORE_S3_IF_MATCH": "single"}, "STATESTORE_S3_IF_MATCH must be one of auto, quoted, unquoted"),
        ({"STATESTORE_BACKEND": "s3", "STATESTORE_BUCKET": "b", "STATESTORE_S3_MAX_ATTEMPTS": "0"}, "at least 1"),
    ],
)
def test_bad_s3_settings_are_clear_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        build_store(Settings.from_env(env))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bucket": ""}, "bucket"),
        ({"sse": "AES128"}, "sse"),
        ({"sse_kms_key_id": "k"}, "aws:kms"),
        ({"connect_timeout": 0}, "positive"),
        ({"list_page_size": 0}, "list_page_size"),
        ({"aws_access_key_id": "AKIDONLY"}, "both"),
        ({"if_match_form": "bare"}, "if_match_form"),
        ({"conditional_delete": "sometimes"}, "conditional_delete"),
    ],
)
def test_bad_constructor_arguments(options: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"bucket": "b", **options}
    with pytest.raises(InvalidInputError, match=match):
        S3Backend(**args)


def test_describe_and_repr_never_show_credentials() -> None:
    secrets = {"aws_access_key_id": "AKIA-SECRET-ID", "aws_secret_access_key": "very-secret-key"}
    backend = S3Backend("b", endpoint_url="http://user:pw-secret@127.0.0.1:9000", **secrets)
    for text in (repr(backend), backend.describe(), repr(Store(backend))):
        assert "secret" not in text.lower() and "AKIA" not in text
    assert "127.0.0.1:9000" in backend.describe()


def test_settings_read_the_aws_endpoint_variables_the_backend_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Settings`` reads AWS_ENDPOINT_URL(_S3) (it is the only reader of the environment), not the backend."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9999")
    assert S3Backend("b").effective_endpoint_url is None
    settings = Settings.from_env(backend="s3", bucket="b")
    assert settings.s3_endpoint_url == "http://127.0.0.1:9999"
    assert "127.0.0.1:9999" in backend_from_settings(settings).describe()
    assert S3Backend("b", endpoint_url="http://127.0.0.1:1").effective_endpoint_url == "http://127.0.0.1:1"
    base = {"STATESTORE_BACKEND": "s3", "STATESTORE_BUCKET": "b"}
    assert Settings.from_env({**base, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}).s3_endpoint_url == "http://127.0.0.1:1"
    both = {**base, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2"}
    assert Settings.from_env(both).s3_endpoint_url == "http://127.0.0.1:2"
    ours = {**both, "STATESTORE_S3_ENDPOINT_URL": "http://127.0.0.1:3"}
    assert Settings.from_env(ours).s3_endpoint_url == "http://127.0.0.1:3"
    assert backend_from_settings(Settings.from_env(ours)).describe().count("127.0.0.1:3") == 1


async def test_aws_endpoint_url_s3_is_used_for_requests(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No endpoint argument: botocore's own AWS_ENDPOINT_URL_S3 reaches the server, path-style."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint_url)
    bucket = moto_server.create_bucket()
    backend = S3Backend(bucket, region="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    async with aclosing(backend):
        await backend.put(KEY, b"1")
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1"


def test_importing_statestore_and_using_the_local_backend_does_not_import_the_aws_sdk(tmp_path: Path) -> None:
    """Naming ``S3Backend`` and saving and reading through the env-configured local facade load no AWS SDK."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        import statestore
        from statestore import S3Backend, StateStore, StateType

        async def main() -> None:
            await StateStore.save_state("k", 1, "wf", StateType.WORKFLOWS)
            assert await StateStore.get_state("wf", StateType.WORKFLOWS) == {"k": 1}

        statestore.Store(statestore.LocalBackend("x"))
        asyncio.run(main())
        sdk = ("aioboto3", "aiobotocore", "botocore", "boto3", "aiohttp")
        print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in sdk)))
        """
    )
    env = {"STATESTORE_BACKEND": "local", "STATESTORE_LOCAL_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


# -- puts: SSE, metadata, prefix -------------------------------------------------


@pytest.mark.parametrize("s3_transport", S3_TRANSPORTS, indirect=True)
@pytest.mark.parametrize(
    ("sse", "kms_key"),
    [("AES256", None), ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/statestore-test")],
)
async def test_sse_settings_reach_the_object(moto_server: MotoServer, sse: str, kms_key: str | None) -> None:
    """Every put (create and update, on both transports) carries the server-side encryption asked for."""
    bucket = moto_server.create_bucket()
    async with aclosing(s3_backend(moto_server, bucket, sse=sse, sse_kms_key_id=kms_key)) as backend:
        first = (await backend.put(KEY, b"1", PutMode.CREATE)).etag
        await backend.put(KEY, b"2", PutMode.update(first))
    with closing(moto_server.client()) as client:
        head = client.head_object(Bucket=bucket, Key=KEY)
    assert head["ServerSideEncryption"] == sse
    assert head.get("SSEKMSKeyId") == kms_key


async def test_writes_carry_a_bounded_history_of_write_ids(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the full history of 16-hex-digit ids fits S3's 2 KB user-metadata limit; a short one keeps the test quick
    assert len(WRITES_METADATA) + HISTORY * 17 - 1 <= 2048
    monkeypatch.setattr(s3_writes, "HISTORY", 16)
    bucket = moto_server.create_bucket()
    seen: list[list[str]] = []
    async with aclosing(s3_backend(moto_server, bucket)) as backend:
        etag = (await backend.put(KEY, b"0", PutMode.CREATE)).etag
        with closing(moto_server.client()) as client:
            for i in range(20):
                etag = (await backend.put(KEY, str(i).encode(), PutMode.update(etag))).etag
                seen.append(client.head_object(Bucket=bucket, Key=KEY)["Metadata"][WRITES_METADATA].split(","))
    assert len(seen[0]) == 2
    assert all(later[1:] == earlier[: len(later) - 1] for earlier, later in itertools.pairwise(seen))
    assert len(seen[-1]) == 16 and len(set(seen[-1])) == 16


async def test_prefix_keeps_keys_under_it(moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket()
    async with (
        aclosing(s3_backend(moto_server, bucket, prefix="/tenant-1/")) as backend,
        aclosing(s3_backend(moto_server, bucket)) as plain,
    ):
        await backend.put(KEY, b"1")
        assert [m.key async for m in backend.list("persistent-artifacts/")] == [KEY]
        assert [m.key async for m in plain.list("")] == ["tenant-1/" + KEY]
        assert await plain.get(KEY) is None


async def test_wrong_etag_formats_still_compare(moto_server: MotoServer) -> None:
    async with aclosing(s3_backend(moto_server, moto_server.create_bucket())) as backend:
        etag = (await backend.put(KEY, b"1")).etag
        assert etag.startswith('"')
        got = await backend.get(KEY)
        assert got is not None and got.etag == etag


# -- MinIO mode: no conditional delete -----------------------------------------


async def test_without_conditional_delete_if_match_is_refused_not_ignored(moto_server: MotoServer) -> None:
    async with aclosing(s3_backend(moto_server, moto_server.create_bucket(), conditional_delete=False)) as backend:
        assert await backend.supports(Capability.CONDITIONAL_DELETE) is False
        etag = (await backend.put(KEY, b"1")).etag
        with pytest.raises(ConditionalDeleteUnsupportedError, match="nothing was deleted"):
            await backend.delete(KEY, if_match=etag)
        assert await backend.get(KEY) is not None
        await backend.delete(KEY)
        assert await backend.get(KEY) is None
        store = Store(backend)  # delete_state never needs the condition
        await store.save_state("a", 1, "w", StateType.WORKFLOWS)
        await store.delete_state("w", StateType.WORKFLOWS)
        assert await store.get_state("w", StateType.WORKFLOWS) == {}


# -- clients and event loops -----------------------------------------------------


def test_one_backend_across_several_asyncio_run(moto_server: MotoServer) -> None:
    backend = s3_backend(moto_server, moto_server.create_bucket())
    store = Store(backend)

    async def bump() -> int:
        state = await store.update_state("w", StateType.WORKFLOWS, lambda s: {"n": s.get("n", 0) + 1})
        return int(state["n"])

    assert [asyncio.run(bump()) for _ in range(3)] == [1, 2, 3]
    # each loop's client was closed when its loop shut down
    assert backend._clients.entries() == []
    asyncio.run(store.aclose())


def test_a_long_lived_backend_forgets_closed_loops(moto_server: MotoServer) -> None:
    """What the backend keeps per event loop (client, lock) does not grow with every ``asyncio.run``."""
    backend = s3_backend(moto_server, moto_server.create_bucket())
    store = Store(backend)
    for i in range(6):
        asyncio.run(store.save_state("n", i, "w", StateType.WORKFLOWS))
        assert len(backend._clients._clients) <= 1 and len(backend._clients._open_locks) <= 2
    asyncio.run(store.aclose())


async def test_client_is_reused_and_aclose_reopens(moto_server: MotoServer) -> None:
    async with aclosing(s3_backend(moto_server, moto_server.create_bucket())) as backend:
        await asyncio.gather(*(backend.put(f"k/{i}", b"x") for i in range(8)))
        entries = backend._clients.entries()
        assert len(entries) == 1
        client = entries[0].transport
        await backend.get("k/1")
        assert backend._clients.entries()[0].transport is client
        await backend.aclose()
        assert backend._clients.entries() == []
        assert await backend.get("k/2") is not None  # usable again: a new client
        assert backend._clients.entries()[0].transport is not client


async def test_aclose_closes_the_client_of_a_loop_running_in_another_thread(moto_server: MotoServer) -> None:
    backend = s3_backend(moto_server, moto_server.create_bucket())
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(backend.put(KEY, b"1"), other))
        assert [e.loop for e in backend._clients.entries()] == [other]
        await backend.aclose()
        assert backend._clients.entries() == []
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(timeout=10)
        other.close()


async def test_threads_with_their_own_loops(moto_server: MotoServer) -> None:
    store = Store(s3_backend(moto_server, moto_server.create_bucket()))

    def in_thread(i: int) -> None:
        asyncio.run(store.save_state(f"k{i}", i, "w", StateType.WORKFLOWS))

    await asyncio.gather(*(asyncio.to_thread(in_thread, i) for i in range(4)))
    assert await store.get_state("w", StateType.WORKFLOWS) == {f"k{i}": i for i in range(4)}
    await store.aclose()


def run_on_default_store(server: MotoServer, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter whose default store is on ``server`` (warnings always shown)."""
    env = {
        **os.environ,
        **server.fake_credentials(),
        "STATESTORE_BACKEND": "s3",
        "STATESTORE_BUCKET": server.create_bucket(),
        "STATESTORE_S3_ENDPOINT_URL": server.endpoint_url,
        "PYTHONWARNINGS": "always",
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out


def test_default_store_exits_without_unclosed_warnings(moto_server: MotoServer) -> None:
    out = run_on_default_store(
        moto_server,
        """
        import asyncio
        from statestore import StateStore, StateType

        async def step(i):
            await StateStore.save_state(key=f"k{i}", value=i, id="wf", type=StateType.WORKFLOWS)
            return await StateStore.get_state(id="wf", type=StateType.WORKFLOWS)

        asyncio.run(step(1))
        print(sorted(asyncio.run(step(2))))
        """,
    )
    assert out.stdout.strip() == "['k1', 'k2']"
    assert "Unclosed" not in out.stderr and "unclosed" not in out.stderr, out.stderr


def test_run_until_complete_users_are_closed_at_exit(moto_server: MotoServer) -> None:
    """A loop that is never closed: the atexit hook closes the client on it."""
    out = run_on_default_store(
        moto_server,
        """
        import asyncio
        from statestore import StateStore, StateType
        loop = asyncio.new_event_loop()
        loop.run_until_complete(StateStore.save_state(key="a", value=1, id="wf", type=StateType.WORKFLOWS))
        print(loop.run_until_complete(StateStore.get_state(id="wf", type=StateType.WORKFLOWS)))
        """,
    )
    assert out.stdout.strip() == "{'a': 1}"
    # the script's own loop is left unclosed on purpose (Python warns about that); our session and connector are not
    assert "Unclosed client session" not in out.stderr and "Unclosed connector" not in out.stderr, out.stderr
