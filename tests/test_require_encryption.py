"""``STATESTORE_REQUIRE_ENCRYPTION``: a planted plain-JSON credentials state is refused, never merged into.

Only ``replace_state`` / ``delete_state`` write over it; ``reencrypt`` (requirement still off) is the migration path.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import CliResult

from statestore import CorruptStateError, InvalidInputError, ObjectBackend, Settings, StateType, Store
from statestore.codec.crypto import EncryptingCodec, generate_key
from statestore.config.build import codec_from_settings
from statestore.errors import UnencryptedStateError

C = StateType.CREDENTIALS
W = StateType.WORKFLOWS
KEY = generate_key()
PLANTED = {"host": "evil.example.com", "username": "attacker", "password": "Sentinel-Planted-kq2"}


@pytest.fixture(params=["local", "s3"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Only the real backends: a directory and a moto server over HTTP."""
    kind: str = request.param
    return kind


def required(backend: ObjectBackend, **options: bool) -> Store:
    return Store(backend, app_name="app", codec=EncryptingCodec(KEY, require_encryption=True, **options))


async def plant(store: Store, id: str, state: dict[str, object], type: StateType = C) -> bytes:  # noqa: A002
    data = orjson.dumps(state)
    await store.backend.put(store.key(id, type).object_key, data)
    return data


async def stored(store: Store, id: str, type: StateType = C) -> bytes | None:  # noqa: A002
    obj = await store.backend.get(store.key(id, type).object_key)
    return None if obj is None else obj.data


# -- configuration ----------------------------------------------------------------------------


def test_the_setting_needs_a_key() -> None:
    with pytest.raises(InvalidInputError, match="require_encryption needs a primary encryption key"):
        EncryptingCodec(require_encryption=True)
    with pytest.raises(InvalidInputError, match="STATESTORE_REQUIRE_ENCRYPTION"):
        Settings.from_env({"STATESTORE_REQUIRE_ENCRYPTION": "sometimes", "STATESTORE_ENCRYPTION_KEY": KEY})
    settings = Settings.from_env({"STATESTORE_REQUIRE_ENCRYPTION": "true", "STATESTORE_ENCRYPTION_KEY": KEY})
    assert settings.require_encryption is True
    codec = codec_from_settings(settings)
    assert codec.require_encryption is True and "require_encryption=True" in repr(codec)
    assert Settings.from_env({}).require_encryption is False
    assert codec_from_settings(Settings()).require_encryption is False


# -- reading and writing ----------------------------------------------------------------------


async def test_a_planted_plaintext_credentials_state_is_refused_and_never_merged_into(
    backend: ObjectBackend,
) -> None:
    store = required(backend)
    planted = await plant(store, "db", PLANTED)
    with pytest.raises(UnencryptedStateError) as info:
        await store.get_state("db", C)
    assert isinstance(info.value, CorruptStateError)
    message = str(info.value)
    assert "credentials state 'db'" in message and "plain JSON" in message
    assert "Sentinel-Planted" not in message and "evil" not in message
    for merge in (
        store.save_state("port", 5432, "db", C),
        store.save_state_object("db", {"port": 5432}, C),
        store.update_state("db", C, lambda s: {**s, "port": 5432}),
    ):
        with pytest.raises(UnencryptedStateError):
            await merge
    assert await stored(store, "db") == planted


async def test_replace_and_delete_recover_a_refused_state(backend: ObjectBackend) -> None:
    store = required(backend)
    await plant(store, "db", PLANTED)
    await plant(store, "gone", PLANTED)
    assert await store.replace_state("db", C, {"host": "db", "password": "real"}) == {"host": "db", "password": "real"}
    data = await stored(store, "db")
    assert data is not None and data.startswith(b'{"statestore_encrypted":') and b"real" not in data
    assert await required(backend).get_state("db", C) == {"host": "db", "password": "real"}
    await store.delete_state("gone", C)
    assert await stored(store, "gone") is None
    assert await store.get_state("gone", C) == {}


async def test_a_state_replaced_with_plaintext_behind_the_stores_back_is_not_merged_into(
    backend: ObjectBackend,
) -> None:
    store = required(backend)
    await store.save_state_object("db", {"host": "db"}, C)  # encrypted, and now in the store's cache
    planted = await plant(store, "db", PLANTED)
    with pytest.raises(UnencryptedStateError):
        await store.save_state("port", 5432, "db", C)
    assert await stored(store, "db") == planted


async def test_encrypted_states_and_unencrypted_types_read_as_usual(backend: ObjectBackend) -> None:
    store = required(backend)
    await store.save_state_object("db", {"password": "p"}, C)
    assert await required(backend).get_state("db", C) == {"password": "p"}
    await plant(store, "wf", {"step": 1}, W)  # workflows are not encrypted: plain JSON is their normal form
    assert await store.save_state("step", 2, "wf", W) is None
    assert await store.get_state("wf", W) == {"step": 2}
    both = required(backend, encrypt_workflows=True)  # encrypted workflows are required too
    await plant(both, "wf2", {"step": 1}, W)
    with pytest.raises(UnencryptedStateError, match="workflows state 'wf2'"):
        await both.get_state("wf2", W)


async def test_reencrypt_is_the_migration_path_before_turning_it_on(backend: ObjectBackend) -> None:
    legacy = Store(backend, app_name="app", codec=EncryptingCodec(secret_policy="allow"))
    for i in range(3):
        await legacy.save_state_object(f"c{i}", {"password": f"p{i}"}, C)  # plain JSON, as the previous service wrote
    on = required(backend)
    with pytest.raises(UnencryptedStateError):
        await on.reencrypt_states(C)  # turned on too early: stops at the first plain state, rewrites nothing
    for i in range(3):
        assert orjson.loads(await stored(on, f"c{i}") or b"") == {"password": f"p{i}"}

    migrating = Store(backend, app_name="app", codec=EncryptingCodec(KEY))  # key on, requirement still off
    assert await migrating.reencrypt_states(C) == 3
    assert await migrating.reencrypt_states(C) == 0
    for i in range(3):
        assert await on.get_state(f"c{i}", C) == {"password": f"p{i}"}


# -- the real console script --------------------------------------------------------------------


def test_cli_reencrypt_then_require(tmp_path: Path, cli_run: Callable[..., CliResult]) -> None:
    root = tmp_path / "root"
    path = root / "persistent-artifacts/apps/default/credentials/db/config.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(orjson.dumps({"host": "db", "password": "Sentinel-Cli-pw"}))
    keyed = {"STATESTORE_ENCRYPTION_KEY": KEY}
    strict = {**keyed, "STATESTORE_REQUIRE_ENCRYPTION": "true"}

    refused = cli_run("--root", str(root), "get", "db", "--type", "credentials", env=strict)
    assert refused.code == 3 and "plain JSON" in refused.err and "Sentinel" not in refused.err
    early = cli_run("--root", str(root), "reencrypt", "--type", "credentials", env=strict)
    assert early.code == 3

    done = cli_run("--root", str(root), "reencrypt", "--type", "credentials", env=keyed)
    assert done.code == 0 and "credentials: 1 rewritten" in done.out, done.err
    assert b"Sentinel-Cli-pw" not in path.read_bytes()
    got = cli_run("--root", str(root), "get", "db", "--type", "credentials", "--show-secrets", env=strict)
    assert got.code == 0, got.err
    assert orjson.loads(got.out) == {"host": "db", "password": "Sentinel-Cli-pw"}
    config = cli_run("--root", str(root), "config", env=strict)
    assert "settings.require_encryption: true" in config.out
    assert base64.b64decode(KEY).hex() not in config.out and KEY not in config.out
