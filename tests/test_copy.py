"""``copy_states`` and ``statestore copy``: between a local root and moto over HTTP, both ways.

What is checked is what the destination really stores: objects listed and read with a plain S3
client, files read from disk, states read back through a store with the destination's key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from conftest import CliResult, s3_backend
from test_cli import clean_env, failed, ok

from statestore import (
    DecryptionError,
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    SecretPolicyError,
    StateType,
    Store,
    VersionConflictError,
)
from statestore.backends.s3.backend import S3Backend
from statestore.codec.crypto import EncryptingCodec, generate_key
from statestore.codec.jsonio import Codec
from statestore.copying import CopyReport, copy_states
from statestore.errors import PlaintextCopyError
from statestore.testing import MotoServer

W, C = StateType.WORKFLOWS, StateType.CREDENTIALS
SECRET = "hunter2-very-secret"
KEY = "persistent-artifacts/apps/default/{type}/{id}/config.json"


def s3_objects(server: MotoServer, bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket``, read with a plain client: key -> bytes."""
    client = server.client()
    try:
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                found[entry["Key"]] = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
        return found
    finally:
        client.close()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(LocalBackend(tmp_path / "src"), codec=EncryptingCodec(generate_key()))
    yield store
    await store.aclose()


@pytest.fixture
async def on_moto(moto_server: MotoServer) -> AsyncIterator[Callable[..., Store]]:
    """Stores on moto with the given codec (on a new bucket unless one is named); closed afterwards."""
    stores: list[Store] = []

    def make(codec: Codec, bucket: str | None = None) -> Store:
        stores.append(Store(s3_backend(moto_server, bucket or moto_server.create_bucket()), codec=codec))
        return stores[-1]

    yield make
    for store in stores:
        await store.aclose()


def bucket_of(store: Store) -> str:
    return cast(S3Backend, store.backend).bucket


async def seed(store: Store, workflows: int = 5) -> None:
    for i in range(workflows):
        await store.create_state(f"wf-{i}", W, {"n": i, "status": "running"})
    await store.create_state("db", C, {"host": "db", "password": SECRET})
    await store.create_state("ref", C, {"host": "db", "password_ref": "vault:db"})


async def test_local_to_s3_and_back_copies_both_types(
    tmp_path: Path, local: Store, moto_server: MotoServer, on_moto: Callable[..., Store]
) -> None:
    await seed(local)
    dst_key = generate_key()
    s3 = on_moto(EncryptingCodec(dst_key))
    report = await copy_states(local, s3)
    assert report.ok and not report.skipped
    assert sorted((i.type, i.id) for i in report.copied) == [
        ("credentials", "db"),
        ("credentials", "ref"),
        *[("workflows", f"wf-{i}") for i in range(5)],
    ]
    assert await s3.get_state("wf-3", W) == {"n": 3, "status": "running"}
    assert await s3.get_state("db", C) == {"host": "db", "password": SECRET}
    stored = s3_objects(moto_server, bucket_of(s3))
    assert len(stored) == 7 and all(SECRET.encode() not in body for body in stored.values())

    back = Store(LocalBackend(tmp_path / "back"), codec=EncryptingCodec(dst_key))
    report = await copy_states(s3, back, types="credentials")
    assert [i.id for i in report.copied] == ["db", "ref"] and report.ok
    assert await back.list_states(W) == []
    assert await back.get_state("db", C) == {"host": "db", "password": SECRET}
    assert SECRET.encode() not in (tmp_path / "back" / KEY.format(type="credentials", id="db")).read_bytes()


async def test_credentials_are_resealed_with_the_destination_key(
    local: Store, moto_server: MotoServer, on_moto: Callable[..., Store]
) -> None:
    await seed(local, workflows=0)
    s3 = on_moto(EncryptingCodec(generate_key()))
    assert (await copy_states(local, s3)).ok
    raw = s3_objects(moto_server, bucket_of(s3))[KEY.format(type="credentials", id="db")]
    assert SECRET.encode() not in raw and b'"ciphertext"' in raw
    assert await s3.get_state("db", C) == {"password": SECRET, "host": "db"}
    with pytest.raises(DecryptionError):  # sealed with the destination's key, not the source's
        await on_moto(local.codec, bucket_of(s3)).get_state("db", C)


async def test_a_refused_state_fails_alone_and_no_plaintext_secret_lands(
    local: Store, moto_server: MotoServer, on_moto: Callable[..., Store]
) -> None:
    """A destination without a key refuses raw secrets: that state fails typed, the others are copied."""
    await seed(local, workflows=2)
    s3 = on_moto(EncryptingCodec())
    report = await copy_states(local, s3, allow_plaintext=True)
    assert [(f.type, f.id) for f in report.failed] == [("credentials", "db")]
    assert isinstance(report.failed[0].error, SecretPolicyError)
    assert SECRET not in str(report.failed[0].error) and SECRET not in orjson.dumps(report.to_dict()).decode()
    assert sorted(i.id for i in report.copied) == ["ref", "wf-0", "wf-1"]
    stored = s3_objects(moto_server, bucket_of(s3))
    assert KEY.format(type="credentials", id="db") not in stored
    assert all(SECRET.encode() not in body for body in stored.values())


class _Interrupted(Exception):
    pass


async def test_rerun_after_an_interrupted_copy_skips_what_landed(local: Store, on_moto: Callable[..., Store]) -> None:
    await seed(local, workflows=20)
    s3 = on_moto(EncryptingCodec(generate_key()))

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        await copy_states(local, s3, types=W, progress=stop_after_five, concurrency=2)
    landed = set(await s3.list_states(W))
    assert 5 <= len(landed) < 20
    seen: list[tuple[int, int]] = []
    report = await copy_states(local, s3, progress=lambda done, total: seen.append((done, total)))
    # a write cancelled by the interruption may still land after that listing (its request was sent)
    skipped = {i.id for i in report.skipped}
    assert landed <= skipped and len(skipped) <= len(landed) + 1 and {i.reason for i in report.skipped} == {"exists"}
    assert len(report.copied) == 22 - len(skipped) and report.ok
    assert seen[-1] == (22, 22) and len(seen) == 22
    assert await s3.get_states([f"wf-{i}" for i in range(20)], W) == {
        f"wf-{i}": {"n": i, "status": "running"} for i in range(20)
    }
    again = await copy_states(local, s3)
    assert not again.copied and len(again.skipped) == 22


async def test_existing_states_are_skipped_unless_overwrite(local: Store, on_moto: Callable[..., Store]) -> None:
    await seed(local, workflows=3)
    s3 = on_moto(EncryptingCodec(generate_key()))
    await s3.create_state("wf-0", W, {"theirs": True})
    await s3.create_state("wf-1", W, {"n": 1, "status": "running"})  # already the same
    report = await copy_states(local, s3, types=W)
    assert [(i.id, i.reason) for i in report.skipped] == [("wf-0", "exists"), ("wf-1", "exists")]
    assert await s3.get_state("wf-0", W) == {"theirs": True}

    report = await copy_states(local, s3, types=W, overwrite=True)
    assert [i.id for i in report.copied] == ["wf-0"] and [i.id for i in report.overwritten] == ["wf-0"]
    assert [(i.id, i.reason) for i in report.skipped] == [("wf-1", "identical"), ("wf-2", "identical")]
    assert await s3.get_state("wf-0", W) == {"n": 0, "status": "running"}


async def test_dry_run_writes_nothing(
    tmp_path: Path, local: Store, moto_server: MotoServer, on_moto: Callable[..., Store]
) -> None:
    await seed(local, workflows=4)
    s3 = on_moto(EncryptingCodec())  # refuses the raw secret of "db"
    await s3.create_state("wf-0", W, {"theirs": True})
    before, src_before = s3_objects(moto_server, bucket_of(s3)), files(tmp_path / "src")
    report = await copy_states(local, s3, dry_run=True, allow_plaintext=True)
    assert report.dry_run
    assert sorted(i.id for i in report.copied) == ["ref", "wf-1", "wf-2", "wf-3"]
    assert [(i.id, i.reason) for i in report.skipped] == [("wf-0", "exists")]
    assert [(f.id, type(f.error)) for f in report.failed] == [("db", SecretPolicyError)]
    over = await copy_states(local, s3, dry_run=True, overwrite=True, types=W)
    assert [i.id for i in over.overwritten] == ["wf-0"]
    assert s3_objects(moto_server, bucket_of(s3)) == before
    assert files(tmp_path / "src") == src_before


async def test_bad_arguments_are_refused_before_any_io(local: Store) -> None:
    with pytest.raises(InvalidInputError, match="same store"):
        await copy_states(local, local)
    other = Store(MemoryBackend(), app_name="x")
    with pytest.raises(InvalidInputError):
        await copy_states(local, other, types="nope")
    with pytest.raises(InvalidInputError):
        await copy_states(local, other, overwrite="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await copy_states(local, other, concurrency=0)
    assert isinstance(CopyReport().to_dict()["counts"], dict)


# -- the command -------------------------------------------------------------------


def test_copy_command_local_to_s3_rerun_dry_run_and_failures(
    tmp_path: Path, moto_server: MotoServer, cli_run: Callable[..., CliResult]
) -> None:
    src_key, dst_key = generate_key(), generate_key()
    root = tmp_path / "old"
    env = clean_env(**moto_server.fake_credentials(), STATESTORE_ENCRYPTION_KEY=src_key, DEST_KEY=dst_key)
    r = ["--root", str(root)]
    ok(cli_run(*r, "merge", "wf-1", '{"a": 1}', cwd=tmp_path, env=env))
    ok(cli_run(*r, "merge", "wf-2", '{"a": 2}', cwd=tmp_path, env=env))
    ok(cli_run(*r, "--type", "credentials", "merge", "db", f'{{"password": "{SECRET}"}}', cwd=tmp_path, env=env))
    bucket = moto_server.create_bucket()
    url = f"s3://{bucket}/team?endpoint_url={moto_server.endpoint_url}&region=us-east-1"

    dry = orjson.loads(ok(cli_run(*r, "--json", "copy", "-", url, "--dry-run", cwd=tmp_path, env=env)))
    assert dry["dry_run"] and dry["counts"] == {"copied": 3, "skipped": 0, "failed": 0} and dry["exit_code"] == 0
    assert s3_objects(moto_server, bucket) == {}

    args = [*r, "copy", "-", url, "--dest-key-env", "DEST_KEY", "--progress", "--type", "workflows"]
    result = cli_run(*args, cwd=tmp_path, env=env)
    assert result.code == 0, result.err
    assert "copying: 2/2" in result.err
    assert result.out.splitlines() == [
        "copied\tworkflows\twf-1",
        "copied\tworkflows\twf-2",
        "copied 2, skipped 0, failed 0",
    ]
    args = [*r, "--json", "copy", "-", url, "--dest-key-env", "DEST_KEY"]
    summary = orjson.loads(ok(cli_run(*args, cwd=tmp_path, env=env)))
    assert summary["counts"] == {"copied": 1, "skipped": 2, "failed": 0}
    raw = s3_objects(moto_server, bucket)["team/" + KEY.format(type="credentials", id="db")]
    assert SECRET.encode() not in raw
    dst_env = {**env, "STATESTORE_ENCRYPTION_KEY": dst_key}
    shown = cli_run("--url", url, "get", "db", "--type", "credentials", "--show-secrets", cwd=tmp_path, env=dst_env)
    assert orjson.loads(ok(shown)) == {"password": SECRET}

    # back to a new local root with no key: refused as a whole unless --allow-plaintext; then the secret
    # policy still refuses the raw secret of the credentials state (exit 2), and the rest is copied
    back = tmp_path / "back"
    no_key = clean_env(**moto_server.fake_credentials(), SRC_KEY=dst_key)
    args = ["copy", url, f"file://{back}", "--source-key-env", "SRC_KEY"]
    failed(cli_run(*args, cwd=tmp_path, env=no_key), 2, "plain JSON", "--allow-plaintext")
    assert not back.exists()
    result = cli_run(*args, "--allow-plaintext", cwd=tmp_path, env=no_key)
    assert result.code == 2, result.err
    lines = result.out.splitlines()
    assert lines[-1] == "copied 2, skipped 0, failed 1"
    assert any(line.startswith("failed\tcredentials\tdb\tSecretPolicyError") for line in lines)
    assert SECRET not in result.out + result.err
    assert not (back / KEY.format(type="credentials", id="db")).exists()
    assert (back / KEY.format(type="workflows", id="wf-2")).is_file()


def test_copy_command_refuses_bad_input(tmp_path: Path, cli_run: Callable[..., CliResult]) -> None:
    for args, fragment in (
        (["copy", "file:a", "ftp://x"], "unknown store URL scheme"),
        (["--root", "x", "copy", "file:a", "file:b"], "'-'"),
        (["copy", "-", "file:b", "--dest-key-env", "NOPE_UNSET"], "NOPE_UNSET"),
        (["copy", "file:a", "file:a"], "same store"),
    ):
        done = cli_run(*args)
        assert (done.code, done.out) == (2, ""), done.err
        assert done.err.startswith("statestore: ") and fragment in done.err and len(done.err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


async def test_overwrite_never_overwrites_a_change_made_after_its_read(
    local: Store, on_moto: Callable[..., Store]
) -> None:
    """A writer that changes the destination between the copy's read and its write wins; that state fails."""
    await seed(local, workflows=2)
    s3 = on_moto(EncryptingCodec(generate_key()))
    other = on_moto(s3.codec, bucket_of(s3))
    await s3.create_state("wf-0", W, {"old": True})
    await s3.create_state("wf-1", W, {"old": True})
    read = s3.get_versioned_state

    async def read_then_someone_writes(state_id: str, stype: Any) -> Any:
        seen = await read(state_id, stype)
        if state_id == "wf-0":
            await other.save_state("theirs", 1, state_id, stype)  # lands after the copy's read
        return seen

    s3.get_versioned_state = read_then_someone_writes  # type: ignore[method-assign]
    report = await copy_states(local, s3, types=W, overwrite=True)
    assert [(f.id, type(f.error)) for f in report.failed] == [("wf-0", VersionConflictError)]
    assert [i.id for i in report.overwritten] == ["wf-1"]
    assert await other.get_state("wf-0", W) == {"old": True, "theirs": 1}
    assert await other.get_state("wf-1", W) == {"n": 1, "status": "running"}


# -- taking the encryption off, keys, arguments, the event loop -------------------------------


async def test_copy_from_an_encrypted_store_to_one_without_a_key_is_refused_before_any_io(tmp_path: Path) -> None:
    src = Store(LocalBackend(tmp_path / "src"), codec=EncryptingCodec(generate_key(), encrypt_workflows=True))
    await src.create_state("db", C, {"host": "db", "user": "app"})  # no secret-looking value: the policy lets it by
    await src.create_state("wf", W, {"n": 1})
    plain = Store(LocalBackend(tmp_path / "dst"), codec=EncryptingCodec())
    for dry_run in (True, False):
        with pytest.raises(PlaintextCopyError, match="credentials states and the destination") as info:
            await copy_states(src, plain, types="credentials", dry_run=dry_run)
        assert "allow_plaintext=True" in str(info.value)
    with pytest.raises(PlaintextCopyError, match="workflows and credentials"):
        await copy_states(src, plain)
    assert not (tmp_path / "dst").exists()
    # a destination that encrypts only credentials still takes the encryption off workflows
    half = Store(LocalBackend(tmp_path / "half"), codec=EncryptingCodec(generate_key()))
    with pytest.raises(PlaintextCopyError, match="encrypts workflows states"):
        await copy_states(src, half)
    assert (await copy_states(src, half, types=C)).ok

    report = await copy_states(src, plain, allow_plaintext=True)
    assert [i.id for i in report.copied] == ["db", "wf"] and report.ok
    assert orjson.loads((tmp_path / "dst" / KEY.format(type="credentials", id="db")).read_bytes()) == {
        "host": "db",
        "user": "app",
    }
    with pytest.raises(InvalidInputError, match="allow_plaintext must be True or False"):
        await copy_states(src, plain, allow_plaintext="yes")  # type: ignore[arg-type]
    # plain to plain, and plain to encrypted, need no flag
    assert (await copy_states(plain, Store(MemoryBackend(), app_name="x"), dry_run=True)).ok


def test_copy_command_refuses_to_decrypt_unless_allowed(tmp_path: Path, cli_run: Callable[..., CliResult]) -> None:
    key = generate_key()
    env = {"STATESTORE_ENCRYPTION_KEY": key}
    assert cli_run("--root", "src", "--type", "credentials", "merge", "db", '{"user": "app"}', env=env).code == 0
    refused = cli_run("copy", "-", "file:dst", "--dest-key-env", "UNSET_KEY", env=env)
    assert refused.code == 2 and "UNSET_KEY is not set" in refused.err
    refused = cli_run("copy", "file:src", "file:dst", "--source-key-env", "SRC_KEY", env={"SRC_KEY": key})
    assert refused.code == 2 and refused.out == ""
    assert refused.err.startswith("statestore: invalid input: the source store encrypts credentials states")
    assert "--allow-plaintext" in refused.err
    assert not (tmp_path / "dst").exists()
    done = cli_run(
        "copy", "file:src", "file:dst", "--source-key-env", "SRC_KEY", "--allow-plaintext", env={"SRC_KEY": key}
    )
    assert done.code == 0, done.err
    assert done.out.splitlines() == ["copied\tcredentials\tdb", "copied 1, skipped 0, failed 0"]
    stored = tmp_path / "dst" / KEY.format(type="credentials", id="db")
    assert orjson.loads(stored.read_bytes()) == {"user": "app"}


def test_copy_source_key_env_keeps_the_old_keys_of_the_environment(
    tmp_path: Path, cli_run: Callable[..., CliResult]
) -> None:
    """``--source-key-env`` names the source's primary key; STATESTORE_ENCRYPTION_OLD_KEYS still decrypt."""
    old, new, dest = generate_key(), generate_key(), generate_key()
    cred = ["--type", "credentials"]
    assert (
        cli_run("--root", "src", *cred, "merge", "c-old", '{"n": 1}', env={"STATESTORE_ENCRYPTION_KEY": old}).code == 0
    )
    # c-old stays sealed under the old key, as after a rotation not yet followed by 'reencrypt'
    assert (
        cli_run("--root", "src", *cred, "merge", "c-new", '{"n": 2}', env={"STATESTORE_ENCRYPTION_KEY": new}).code == 0
    )

    env = {"SRC_KEY": new, "STATESTORE_ENCRYPTION_KEY": dest}
    args = ["copy", "file:src", "file:dst", "--source-key-env", "SRC_KEY"]
    missing = cli_run(*args, env=env)
    assert missing.code == 3
    assert "add that key to STATESTORE_ENCRYPTION_OLD_KEYS" in missing.out  # true: that variable is used
    done = cli_run(*args, env={**env, "STATESTORE_ENCRYPTION_OLD_KEYS": old})
    assert done.code == 0, done.out + done.err
    assert done.out.splitlines()[-1] == "copied 1, skipped 1, failed 0"
    got = cli_run("--root", "dst", *cred, "get", "c-old", env={"STATESTORE_ENCRYPTION_KEY": dest})
    assert orjson.loads(got.out) == {"n": 1}


async def test_copy_types_that_are_no_collection_are_invalid_input(local: Store) -> None:
    other = Store(MemoryBackend(), app_name="x")
    for types in (5, b"workflows", object()):
        with pytest.raises(InvalidInputError, match="types must be"):
            await copy_states(local, other, types=types)  # type: ignore[arg-type]


async def test_dry_run_checks_a_large_state_off_the_event_loop(tmp_path: Path) -> None:
    """The destination's secret scan walks the whole state: for a large one it runs in the offload thread."""
    threads: list[str] = []

    class Recording(EncryptingCodec):
        def check(self, key: Any, state: dict[str, Any]) -> None:
            threads.append(threading.current_thread().name)
            super().check(key, state)

    src = Store(LocalBackend(tmp_path / "src"), codec=EncryptingCodec())
    big = {"connections": [{"host": f"db{i}", "password_ref": f"vault:{i}"} for i in range(5000)]}
    await src.create_state("big", C, big)
    await src.create_state("small", C, {"host": "db"})
    dst = Store(LocalBackend(tmp_path / "dst"), codec=Recording())
    await copy_states(src, dst, dry_run=True)
    await copy_states(src, dst, dry_run=True, overwrite=True)
    loop_thread = threading.current_thread().name
    assert sorted(threads) == sorted([loop_thread, "statestore-offload_0"] * 2)
