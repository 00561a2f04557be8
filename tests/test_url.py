"""Store URLs: ``parse_store_url`` for every form and every error, and ``Store.from_url`` on each backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import S3Target

from statestore import (
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    S3Backend,
    Settings,
    StateType,
    Store,
    build_store,
)
from statestore.config.build import backend_from_settings
from statestore.config.url import StoreURL, parse_store_url

W = StateType.WORKFLOWS


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        *[(url, StoreURL("memory")) for url in ("memory://", "memory:", "MEMORY://")],
        ("file:///var/lib/statestore", StoreURL("local", local_root="/var/lib/statestore")),
        ("file:///var/lib/statestore/", StoreURL("local", local_root="/var/lib/statestore/")),
        ("file://localhost/srv/state", StoreURL("local", local_root="/srv/state")),
        ("file:/srv/state", StoreURL("local", local_root="/srv/state")),
        ("file:relative/path", StoreURL("local", local_root="relative/path")),
        ("file:./local/tmp/", StoreURL("local", local_root="./local/tmp/")),
        ("file:///tmp/my%20dir/%C3%A9t%C3%A9", StoreURL("local", local_root="/tmp/my dir/été")),
        ("  file:///trimmed \n", StoreURL("local", local_root="/trimmed")),
        *[(url, StoreURL("s3", bucket="bucket")) for url in ("s3://bucket", "s3://bucket/")],
        ("s3://my.bucket-1/team/prod", StoreURL("s3", bucket="my.bucket-1", prefix="team/prod")),
        ("s3://bucket/team/prod/", StoreURL("s3", bucket="bucket", prefix="team/prod")),
        ("s3://bucket/a%20b", StoreURL("s3", bucket="bucket", prefix="a b")),
        (
            "s3://bucket/p?endpoint_url=http://127.0.0.1:9000&region=us-east-1",
            StoreURL("s3", bucket="bucket", prefix="p", endpoint_url="http://127.0.0.1:9000", region="us-east-1"),
        ),
        (
            "s3://bucket?endpoint_url=https%3A%2F%2Fminio.example.com%2F",
            StoreURL("s3", bucket="bucket", endpoint_url="https://minio.example.com/"),
        ),
        ("s3://bucket?region=eu-west-3", StoreURL("s3", bucket="bucket", region="eu-west-3")),
    ],
)
def test_parse_every_form(url: str, expected: StoreURL) -> None:
    assert parse_store_url(url) == expected


@pytest.mark.parametrize(
    ("url", "named"),
    [
        *[(u, "empty") for u in ("", "   ")],
        *[(u, "scheme") for u in ("/var/lib/statestore", "bucket/prefix", "1s3://bucket")],
        ("gs://bucket", "'gs'"),
        ("http://127.0.0.1:9000/bucket", "'http'"),
        ("local:///tmp/x", "'local'"),
        *[(u, "needs a directory") for u in ("file:", "file://")],
        ("file://relative/path", "'relative'"),
        ("file:///tmp/x?mode=0700", "mode"),
        *[(u, "fragment") for u in ("file:///tmp/x#frag", "file:///tmp/x#", "s3://bucket#frag")],
        *[(u, "not UTF-8") for u in ("file:///tmp/%ff", "s3://bucket/%ff")],
        *[(u, "control character") for u in ("file:///tmp/a\x00b", "file:///tmp/a\nb")],
        *[(u, "memory://") for u in ("memory://name", "memory:///path")],
        ("memory://?x=1", "'?x'|x"),
        *[(u, "needs a bucket") for u in ("s3://", "s3:///prefix", "s3:bucket")],
        ("s3://bucket:9000/p", "endpoint_url"),
        *[(u, "bucket name") for u in ("s3://buck et", "s3://-bucket")],
        ("s3://[::1]/p", "not a server"),
        *[(u, "malformed") for u in ("s3://[bucket/p", "s3://bucket?&", "s3://bucket?=x", "s3://bucket?region=%ff")],
        *[(u, "segment") for u in ("s3://bucket/a//b", "s3://bucket/a/../b")],
        ("s3://bucket?prefix=x", "'prefix'"),
        ("s3://bucket?endpoint=http://h", "'endpoint'"),
        ("s3://bucket?region=us-east-1&Region=x&zone=a", "'Region', 'zone'"),
        *[(u, "region is empty") for u in ("s3://bucket?region", "s3://bucket?region=")],
        ("s3://bucket?region=a&region=b", "region is given twice"),
        ("s3://bucket?region=US_EAST", "region"),
        ("s3://bucket?endpoint_url=ftp://h", "http:// or https://"),
        ("s3://bucket?endpoint_url=127.0.0.1:9000", "http:// or https://"),
        ("s3://bucket?endpoint_url=http://h:port", "not a URL"),
        ("s3://bucket?endpoint_url=http://h/%3Fq%3D1", "query"),
        *[(u, "string") for u in (None, 42, b"memory://")],
    ],
)
def test_bad_urls_name_the_part_at_fault(url: object, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        parse_store_url(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLEKEY:wJalrXUtnFEMIsEcReT@bucket/prefix",
        "s3://wJalrXUtnFEMIsEcReT@bucket",
        "s3://AKIAEXAMPLEKEY%3AwJalrXUtnFEMIsEcReT%40bucket",  # escaped: not a bucket name, not repeated
        "file://AKIAEXAMPLEKEY:wJalrXUtnFEMIsEcReT@localhost/tmp",
        "memory://AKIAEXAMPLEKEY:wJalrXUtnFEMIsEcReT@",
        "s3://bucket?endpoint_url=http://AKIAEXAMPLEKEY:wJalrXUtnFEMIsEcReT@127.0.0.1:9000",
        "s3://bucket?aws_secret_access_key=wJalrXUtnFEMIsEcReT",
        "s3://bucket?endpoint_url=http://h/?token=wJalrXUtnFEMIsEcReT",
    ],
)
def test_credentials_in_a_url_are_refused_and_never_repeated(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_store_url(url)
    message = str(caught.value)
    assert "wJalrXUtnFEMIsEcReT" not in message
    assert "AKIAEXAMPLEKEY" not in message


async def test_from_url_memory() -> None:
    store = Store.from_url("memory://", app_name="urlapp")
    assert isinstance(store.backend, MemoryBackend)
    assert store.app_name == "urlapp"
    await store.save_state_object("wf", {"n": 1}, W)
    assert await store.get_state("wf", W) == {"n": 1}
    assert await Store.from_url("memory://").get_state("wf", W) == {}  # each URL store is its own


async def test_from_url_memory_honours_the_encryption_key_as_build_store_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """One way from configuration to a store: the URL names the backend, the environment the rest."""
    from statestore.codec.crypto import generate_key

    monkeypatch.setenv("STATESTORE_ENCRYPTION_KEY", generate_key())
    for store in (Store.from_url("memory://"), build_store(Settings.from_env(backend="memory"))):
        await store.save_state_object("db", {"password": "hunter2"}, StateType.CREDENTIALS)
        stored = await store.backend.get(store.key("db", StateType.CREDENTIALS).object_key)
        assert stored is not None and b"statestore_encrypted" in stored.data and b"hunter2" not in stored.data
        assert await store.get_state("db", StateType.CREDENTIALS) == {"password": "hunter2"}


async def test_from_url_local_absolute_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.from_url(f"file://{tmp_path}/abs", app_name="urlapp", max_state_bytes=1000)
    assert isinstance(store.backend, LocalBackend)
    assert store.max_state_bytes == 1000
    await store.save_state_object("wf", {"n": 1}, W)
    assert (
        tmp_path / "abs/persistent-artifacts/apps/urlapp/workflows/wf/config.json"
    ).read_bytes().rstrip() == b'{"n":1}'

    monkeypatch.chdir(tmp_path)
    relative = Store.from_url("file:rel/dir")
    await relative.save_state_object("wf", {"n": 2}, W)
    assert (
        tmp_path / "rel/dir/persistent-artifacts/apps/default/workflows/wf/config.json"
    ).read_bytes().rstrip() == b'{"n":2}'
    monkeypatch.chdir("/")
    assert await relative.get_state("wf", W) == {"n": 2}  # resolved when built, not per call


@pytest.mark.s3_server
async def test_from_url_s3(s3_target: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bucket, prefix, endpoint and region from the URL; credentials from the AWS chain (here the environment)."""
    if s3_target.access_key_id and s3_target.secret_access_key:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_target.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_target.secret_access_key)
    location = s3_target.new_location()
    prefix = f"{location.prefix}/url-test".strip("/")
    url = f"s3://{location.bucket}/{prefix}/?endpoint_url={s3_target.endpoint_url}&region={s3_target.region}"
    store = Store.from_url(url, app_name="urlapp")
    try:
        assert isinstance(store.backend, S3Backend)
        await store.save_state_object("wf", {"n": 1}, W)
        assert await store.get_state("wf", W) == {"n": 1}
    finally:
        await store.aclose()
    client = s3_target.client()
    try:
        key = f"{prefix}/persistent-artifacts/apps/urlapp/workflows/wf/config.json"
        assert client.get_object(Bucket=location.bucket, Key=key)["Body"].read().rstrip() == b'{"n":1}'
    finally:
        client.close()


def test_from_url_refuses_before_building_anything() -> None:
    with pytest.raises(InvalidInputError, match="'redis'"):
        Store.from_url("redis://localhost/0")
    with pytest.raises(TypeError):
        Store.from_url("memory://", no_such_option=1)


@pytest.mark.parametrize(
    "url",
    ["memory://", "file:///srv/state", "s3://bucket/team?endpoint_url=http://127.0.0.1:9000&region=eu-west-1"],
)
def test_settings_fields_build_the_same_backend(url: str) -> None:
    """What ``STATESTORE_URL`` will set: every companion of the backend, so none left in the environment mixes in."""
    stale = Settings(
        backend="s3", local_root="/stale", bucket="stale", s3_prefix="stale", s3_endpoint_url="http://stale:1"
    )
    settings = dataclasses.replace(stale, **parse_store_url(url).settings_fields())
    built, direct = backend_from_settings(settings), Store.from_url(url).backend
    assert type(built) is type(direct)
    assert built.describe() == direct.describe()
    assert getattr(built, "region", None) == getattr(direct, "region", None)


def test_settings_fields_of_s3_clear_what_the_url_leaves_out() -> None:
    fields = parse_store_url("s3://bucket").settings_fields()
    assert fields == {"backend": "s3", "bucket": "bucket", "s3_prefix": "", "s3_endpoint_url": None, "s3_region": None}


@pytest.mark.parametrize(
    "url",
    [
        *["s3://bucket/a%1B%5B31mb", "s3://bucket/a%00b", "s3://bucket/a%0Ab", "s3://bucket/a%E2%80%AEb"],
        *["s3://bucket/a%C2%9Bb", "s3://bucket/a%7Fb", "s3://bucket/a%E2%80%A8b", "s3://bucket/a%E2%81%A6b"],
        *["file:/tmp/a%0Ab", "file:///tmp/a%1B]0;x%07b", "file:///tmp/a%E2%80%AEb", "file:relative%09dir"],
        *["s3://bucket?endpoint_url=http://h%0A.example", "s3://bucket?endpoint_url=http://h/%E2%80%AE"],
        *["s3://bucket?region=us-east-1%0A", "s3://bucket?region%1B=x"],
    ],
)
def test_control_and_format_characters_are_refused_after_percent_decoding(url: str) -> None:
    with pytest.raises(InvalidInputError, match="control or format character") as caught:
        parse_store_url(url)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u202e\u2066\u2028" for ch in str(caught.value))


SECRET = "wJalrXUtnFEMIsEcReT"


@pytest.mark.parametrize(
    "url",
    [
        f"s3://bucket?region={SECRET}",
        f"s3://bucket?region=us-east-1&region={SECRET}",
        f"s3://bucket?endpoint_url={SECRET}",
        f"s3://bucket?endpoint_url=ftp://{SECRET}",
        f"s3://bucket?endpoint_url=http://h:{SECRET}",
        f"s3://bucket?{SECRET}",
        f"s3://bucket?region=us-east-1&{SECRET}",
        f"s3://bucket?region=us-east-1&x={SECRET}",
        f"file:///tmp/x?{SECRET}",
        f"memory://?{SECRET}",
        f"s3://bucket?region={SECRET}%0A",
    ],
)
def test_messages_never_repeat_a_parameter_value(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_store_url(url)
    assert SECRET not in str(caught.value)
    assert SECRET.lower() not in str(caught.value).lower()
