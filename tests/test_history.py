"""History and restore: kept versions on a versioned S3 bucket (moto over HTTP), and the clear error elsewhere."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import CliResult, s3_backend
from fault_proxy import FaultProxy
from test_cli import failed, ok, s3_cli
from test_credentials import RacingBackend

from statestore import (
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    StateStore,
    StateType,
    StateVersion,
    Store,
    VersionConflictError,
    use_store,
)
from statestore.codec.crypto import EncryptingCodec, generate_key, key_id
from statestore.errors import VersionNotFoundError, VersionsUnsupportedError
from statestore.sync import SyncStore
from statestore.testing import FaultBackend, MotoServer

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS
ID = "wf-1"
ENABLE = "aws s3api put-bucket-versioning"


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    """A new bucket with versioning enabled."""
    bucket = moto_server.create_bucket()
    client = moto_server.client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.close()
    return bucket


@pytest.fixture
async def store(moto_server: MotoServer, bucket: str) -> AsyncIterator[Store]:
    s = Store(s3_backend(moto_server, bucket, prefix="team"), app_name="app")
    yield s
    await s.aclose()


async def write_versions(store: Store, states: list[dict[str, object]], id_: str = ID) -> list[StateVersion]:
    for state in states:
        await store.replace_state(id_, W, state)
    return await store.state_history(id_, W)


# -- the API ---------------------------------------------------------------------------


async def test_history_is_newest_first_with_sizes_and_each_version_reads_back(store: Store) -> None:
    states: list[dict[str, object]] = [{"n": 1}, {"n": 2, "pad": "x" * 50}, {"n": 3, "status": "done"}]
    history = await write_versions(store, states)
    record = 1 + 64  # each write's record after the JSON: a newline and 64 bits as whitespace
    assert [v.size for v in history] == [len(orjson.dumps(s)) + record for s in reversed(states)]
    assert len({v.version for v in history}) == 3
    assert [v.last_modified for v in history] == sorted((v.last_modified for v in history), reverse=True)
    assert all(v.last_modified.tzinfo is not None and not v.deleted for v in history)
    for version, state in zip(history, reversed(states), strict=True):
        assert await store.get_state_version(ID, W, version.version) == state
    await store.replace_state("wf-10", W, {"other": True})  # a key the first one is a prefix of
    assert await store.state_history(ID, W) == history
    assert await store.state_history("never-written", W) == []


async def test_history_pages_through_many_versions(moto_server: MotoServer, bucket: str) -> None:
    store = Store(s3_backend(moto_server, bucket, prefix="p", list_page_size=2), app_name="app")
    states: list[dict[str, object]] = [{"n": i} for i in range(7)]
    await store.replace_state("wf", W, {"before": True})  # keys the exact key is a prefix of, either side
    await store.replace_state("wf-0", W, {"other": True})
    history = await write_versions(store, states, id_="wf")
    await store.delete_state("wf-0", W)
    assert [await store.get_state_version("wf", W, v.version) for v in history] == [
        *reversed(states),
        {"before": True},
    ]
    assert len(await store.state_history("wf-0", W)) == 2
    await store.aclose()


@pytest.mark.parametrize("page_size", [1, 2, 1000])
@pytest.mark.parametrize("last_deleted", [False, True], ids=["ends-written", "ends-deleted"])
async def test_history_shows_deletions_in_their_place_whatever_the_page_size(
    moto_server: MotoServer, bucket: str, page_size: int, last_deleted: bool
) -> None:
    """v1, delete, v2, delete, v3 (, delete) within one second: newest first, each deletion in its place.

    moto lists whole seconds, so the versions and the delete markers (two lists in the answer) tie on time.
    """
    store = Store(s3_backend(moto_server, bucket, prefix="p", list_page_size=page_size), app_name="app")
    states: list[dict[str, object]] = [{"n": 1}, {"n": 22}, {"n": 333}]
    expected: list[tuple[bool, int]] = []
    for attempt in range(5):  # until the writes land within one second (they take a few ms)
        state_id, expected = f"wf-{attempt}", []
        for n, state in enumerate(states):
            await store.replace_state(state_id, W, state)
            expected.insert(0, (False, len(orjson.dumps(state)) + 1 + 64))  # and the write's record
            if n < len(states) - 1 or last_deleted:
                await store.delete_state(state_id, W)
                expected.insert(0, (True, 0))
        history = await store.state_history(state_id, W)
        if len({v.last_modified for v in history}) == 1:
            break
    else:
        pytest.fail("the writes never landed within one second")
    assert [(v.deleted, v.size) for v in history] == expected
    written = [v.version for v in history if not v.deleted]
    assert [await store.get_state_version(state_id, W, version) for version in written] == states[::-1]
    await store.aclose()


async def test_history_asks_the_server_once_more_per_deletion_that_ties_on_time(
    moto_server: MotoServer, bucket: str
) -> None:
    """A deletion with the same time as a version costs one listing more (from that marker on); no more."""
    with FaultProxy(moto_server.endpoint_url) as proxy:
        store = Store(s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url), app_name="app")
        for attempt in range(5):
            state_id = f"wf-{attempt}"
            for n in range(3):
                await store.replace_state(state_id, W, {"n": n})
                if n < 2:
                    await store.delete_state(state_id, W)
            proxy.reset_counts()
            history = await store.state_history(state_id, W)
            if len({v.last_modified for v in history}) == 1:
                break
        else:
            pytest.fail("the writes never landed within one second")
        await store.aclose()
    listings = [path for method, path in proxy.paths if method == "GET" and "versions" in path]
    assert [v.deleted for v in history] == [False, True, False, True, False]
    assert len(listings) == 1 + 2 and sum("version-id-marker" in path for path in listings) == 2


async def test_restore_writes_the_old_content_as_a_new_version(store: Store) -> None:
    history = await write_versions(store, [{"n": 1, "old": True}, {"n": 2}])
    restored = await store.restore_state(ID, W, history[1].version)
    assert restored == {"n": 1, "old": True}
    assert await store.get_state(ID, W) == {"n": 1, "old": True}
    after = await store.state_history(ID, W)
    assert len(after) == 3 and after[1:] == history  # a new version on top; the others stay
    assert await store.get_state_version(ID, W, after[1].version) == {"n": 2}


async def test_history_shows_a_deletion_and_restore_brings_the_state_back(store: Store) -> None:
    history = await write_versions(store, [{"n": 1}])
    await store.delete_state(ID, W)
    after = await store.state_history(ID, W)
    assert [v.deleted for v in after] == [True, False] and after[0].size == 0
    with pytest.raises(VersionNotFoundError, match="deletion"):
        await store.get_state_version(ID, W, after[0].version)
    assert await store.restore_state(ID, W, history[0].version) == {"n": 1}
    assert await store.get_state(ID, W) == {"n": 1}


async def test_an_unknown_version_is_a_typed_error_naming_it_and_writes_nothing(store: Store) -> None:
    history = await write_versions(store, [{"n": 1}, {"n": 2}])
    for bad in ("no-such-version", "null"):
        with pytest.raises(VersionNotFoundError, match=bad) as caught:
            await store.restore_state(ID, W, bad)
        assert caught.value.state_id == ID and caught.value.operation == "restore_state"
        with pytest.raises(VersionNotFoundError, match=bad):
            await store.get_state_version(ID, W, bad)
    other = (await write_versions(store, [{"other": 1}], id_="wf-2"))[0].version
    with pytest.raises(VersionNotFoundError):  # a version of another state is not one of this state
        await store.restore_state(ID, W, other)
    for junk in ("", None, 5, "x" * 2000, "bad\nid"):
        with pytest.raises(InvalidInputError, match="version"):
            await store.restore_state(ID, W, junk)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await store.state_history("../escape", W)
    assert await store.state_history(ID, W) == history
    assert await store.get_state(ID, W) == {"n": 2}


async def test_restore_is_a_compare_and_swap_write(moto_server: MotoServer, bucket: str) -> None:
    """An update landing between the restore's read and its write is seen (the write is refused and redone)."""
    writer = Store(s3_backend(moto_server, bucket), app_name="app")
    history = await write_versions(writer, [{"n": 1}, {"n": 2}])

    async def concurrent_update() -> None:
        await writer.update_state(ID, W, lambda s: {**s, "n": s["n"] + 10})

    faults = FaultBackend(
        RacingBackend(s3_backend(moto_server, bucket), writer.key(ID, W).object_key, concurrent_update)
    )
    restorer = Store(faults, app_name="app")
    await restorer.get_state(ID, W)  # the restorer has seen (and cached) version 2
    assert await restorer.restore_state(ID, W, history[1].version) == {"n": 1}
    assert faults.counts["conflict"] == 1  # its first write was conditional on version 2, and refused
    after = await writer.state_history(ID, W)
    assert [await writer.get_state_version(ID, W, v.version) for v in after] == [
        {"n": 1},
        {"n": 12},
        {"n": 2},
        {"n": 1},
    ]

    # an update that starts after the restore lands on top of the restored content
    assert await writer.update_state(ID, W, lambda s: {**s, "later": True}) == {"n": 1, "later": True}
    await writer.aclose()
    await restorer.aclose()


async def test_restore_with_if_version_refuses_when_the_state_changed(store: Store) -> None:
    history = await write_versions(store, [{"n": 1}, {"n": 2}])
    seen = (await store.get_versioned_state(ID, W)).version
    await store.save_state("n", 3, ID, W)
    with pytest.raises(VersionConflictError):
        await store.restore_state(ID, W, history[1].version, if_version=seen)
    assert await store.get_state(ID, W) == {"n": 3}
    now = (await store.get_versioned_state(ID, W)).version
    assert await store.restore_state(ID, W, history[1].version, if_version=now) == {"n": 1}


async def test_restored_credentials_are_sealed_with_the_current_key(moto_server: MotoServer, bucket: str) -> None:
    old_key, new_key = generate_key(), generate_key()
    before = Store(s3_backend(moto_server, bucket), app_name="app", codec=EncryptingCodec(old_key))
    await before.replace_state("db", C, {"password": "first-secret"})
    await before.replace_state("db", C, {"password": "second-secret"})
    first = (await before.state_history("db", C))[1].version
    await before.aclose()

    rotated = Store(s3_backend(moto_server, bucket), app_name="app", codec=EncryptingCodec(new_key, [old_key]))
    assert await rotated.get_state_version("db", C, first) == {"password": "first-secret"}
    assert await rotated.restore_state("db", C, first) == {"password": "first-secret"}
    raw = await rotated.backend.get(rotated.key("db", C).object_key)
    assert raw is not None and b"first-secret" not in raw.data
    assert orjson.loads(raw.data)["key_id"] == key_id(base64.b64decode(new_key))
    only_new = Store(s3_backend(moto_server, bucket), app_name="app", codec=EncryptingCodec(new_key))
    assert await only_new.get_state("db", C) == {"password": "first-secret"}
    for s in (rotated, only_new):
        await s.aclose()


async def test_the_facade_offers_history(store: Store) -> None:
    history = await write_versions(store, [{"n": 1}, {"n": 2}])
    with use_store(store):
        assert await StateStore.state_history(ID, W) == history
        assert await StateStore.get_state_version(ID, W, history[1].version) == {"n": 1}
        assert await StateStore.restore_state(ID, W, history[1].version) == {"n": 1}


def test_sync_store_offers_history(moto_server: MotoServer, bucket: str) -> None:
    with SyncStore(Store(s3_backend(moto_server, bucket), app_name="app")) as sync:
        sync.replace_state(ID, W, {"n": 1})
        sync.replace_state(ID, W, {"n": 2})
        history = sync.state_history(ID, W)
        assert sync.get_state_version(ID, W, history[1].version) == {"n": 1}
        assert sync.restore_state(ID, W, history[1].version) == {"n": 1}
        assert len(sync.state_history(ID, W)) == 3


# -- stores that keep no versions --------------------------------------------------------


@pytest.fixture
def unversioned(moto_server: MotoServer, tmp_path: Path) -> Iterator[list[Store]]:
    yield [
        Store(s3_backend(moto_server, moto_server.create_bucket()), app_name="app"),
        Store(LocalBackend(str(tmp_path)), app_name="app"),
        Store(MemoryBackend(), app_name="app"),
    ]


async def test_a_store_without_versions_says_how_to_enable_them(unversioned: list[Store]) -> None:
    for store in unversioned:
        await store.replace_state(ID, W, {"n": 1})
        for call in (
            store.state_history(ID, W),
            store.get_state_version(ID, W, "null"),
            store.restore_state(ID, W, "null"),
        ):
            with pytest.raises(VersionsUnsupportedError, match=ENABLE) as caught:
                await call
            assert caught.value.state_id == ID
        assert await store.get_state(ID, W) == {"n": 1}
        await store.aclose()


async def test_the_s3_error_names_the_bucket(moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket()
    store = Store(s3_backend(moto_server, bucket), app_name="app")
    with pytest.raises(VersionsUnsupportedError, match=f"--bucket {bucket} --versioning-configuration Status=Enabled"):
        await store.state_history(ID, W)
    await store.aclose()


# -- the command line -----------------------------------------------------------------------


def test_cli_history_show_and_restore(cli_run: Callable[..., CliResult], moto_server: MotoServer, bucket: str) -> None:
    args, _ = s3_cli(moto_server, bucket)
    env = moto_server.fake_credentials()

    def run(*more: str) -> str:
        return cli_run(*args, *more, env=env).ok()

    run("replace", ID, '{"n": 1, "status": "good"}')
    run("replace", ID, '{"n": 2, "status": "broken"}')

    lines = run("history", ID).splitlines()
    assert lines[0].split("\t") == ["version", "time", "size"]
    rows = [line.split("\t") for line in lines[1:]]
    record = 1 + 64  # each write's record after its JSON
    assert [int(row[2]) for row in rows] == [
        len(b'{"n":2,"status":"broken"}') + record,
        len(b'{"n":1,"status":"good"}') + record,
    ]
    assert all(row[1].endswith("Z") for row in rows)
    old = rows[1][0]

    listed = orjson.loads(run("--json", "history", ID))
    assert [v["version"] for v in listed["versions"]] == [row[0] for row in rows]
    assert listed["versions"][0]["deleted"] is False and listed["id"] == ID

    shown = orjson.loads(run("show", ID, "--version", old))
    assert shown == {"n": 1, "status": "good"}
    assert orjson.loads(run("get", ID, "--version", old)) == shown
    assert orjson.loads(run("get", ID))["n"] == 2

    refused = cli_run(*args, "restore", ID, "--version", "nope", env=env)
    assert refused.code == 2 and refused.out == "" and "nope" in refused.err and "history" in refused.err
    assert orjson.loads(run("get", ID))["n"] == 2
    restored = orjson.loads(run("restore", ID, "--version", old))
    assert restored == {"n": 1, "status": "good"}
    assert orjson.loads(run("get", ID)) == restored
    assert len(run("history", ID).splitlines()) == 4


def test_cli_show_redacts_credentials(cli_run: Callable[..., CliResult], moto_server: MotoServer, bucket: str) -> None:
    args, _ = s3_cli(moto_server, bucket)
    args += ["--type", "credentials"]
    env = {**moto_server.fake_credentials(), "STATESTORE_ENCRYPTION_KEY": generate_key()}

    def run(*more: str) -> str:
        return cli_run(*args, *more, env=env).ok()

    run("replace", "db", '{"password": "hunter2-secret"}')
    [row] = [line.split("\t") for line in run("history", "db").splitlines()[1:]]
    shown = run("show", "db", "--version", row[0])
    assert "hunter2-secret" not in shown and orjson.loads(shown) == {"password": "<redacted>"}
    revealed = run("show", "db", "--version", row[0], "--show-secrets")
    assert orjson.loads(revealed) == {"password": "hunter2-secret"}
    restored = run("restore", "db", "--version", row[0])
    assert "hunter2-secret" not in restored


def test_cli_without_versions_fails_with_the_misconfigured_code(
    tmp_path: Path, moto_server: MotoServer, cli_run: Callable[..., CliResult]
) -> None:
    root = ["--root", str(tmp_path / "root")]
    ok(cli_run(*root, "set", ID, "n", "1", cwd=tmp_path))
    for command in (["history", ID], ["show", ID, "--version", "v"], ["restore", ID, "--version", "v"]):
        failed(cli_run(*root, *command, cwd=tmp_path), 7, "no history", ENABLE, "local")
    as_json = cli_run(*root, "--json", "history", ID, cwd=tmp_path)
    assert as_json.code == 7 and as_json.out == ""
    error = orjson.loads(as_json.err)
    assert error["error"] == "VersionsUnsupportedError" and error["exit_code"] == 7 and ENABLE in error["message"]
    bucket = moto_server.create_bucket()
    args, env = s3_cli(moto_server, bucket)
    failed(cli_run(*args, "history", ID, cwd=tmp_path, env=env), 7, f"--bucket {bucket}", ENABLE)
    failed(cli_run(*root, "show", ID, cwd=tmp_path), 2, "--version")
