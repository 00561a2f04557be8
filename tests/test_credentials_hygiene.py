"""Credentials never leak: settings, reprs, error messages and log records, with known sentinel values."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path

import orjson
import pytest

from statestore import (
    DecryptionError,
    InvalidInputError,
    ObjectBackend,
    SecretPolicyError,
    Settings,
    StateStore,
    StateType,
    Store,
    build_store,
    set_default_store,
    use_store,
)
from statestore.codec.crypto import EncryptingCodec, key_id, parse_key
from statestore.config.build import codec_from_settings

C = StateType.CREDENTIALS
W = StateType.WORKFLOWS

PASSWORD = "Sentinel-Pa55w0rd-qZ81x"
TOKEN = "Sentinel-T0ken-hY27kw"
RAW_KEY = os.urandom(32)
OLD_RAW_KEY = os.urandom(32)
KEY = base64.b64encode(RAW_KEY).decode()
OLD_KEY = base64.b64encode(OLD_RAW_KEY).decode()


def forbidden() -> list[str]:
    """Every spelling of a secret that must never show up."""
    out = [PASSWORD, TOKEN]
    for raw in (RAW_KEY, OLD_RAW_KEY):
        b64 = base64.b64encode(raw).decode()
        out += [b64, b64.rstrip("="), base64.urlsafe_b64encode(raw).decode(), raw.hex(), repr(raw)[2:-1]]
    return out


def assert_clean(text: str) -> None:
    for secret in forbidden():
        assert secret not in text, "a secret value leaked"


def exception_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    return texts


# -- settings --------------------------------------------------------------------------


def test_settings_read_keys_flags_and_policy() -> None:
    env = {
        "STATESTORE_ENCRYPTION_KEY": KEY,
        "STATESTORE_ENCRYPTION_OLD_KEYS": f" {OLD_KEY} ,{base64.urlsafe_b64encode(OLD_RAW_KEY).decode()},",
        "STATESTORE_ENCRYPT_WORKFLOWS": "yes",
        "STATESTORE_SECRET_POLICY": "Allow",
    }
    s = Settings.from_env(env)
    assert (s.encryption_key, s.encryption_old_keys, s.secret_policy) == (RAW_KEY, (OLD_RAW_KEY, OLD_RAW_KEY), "allow")
    assert s.encrypt_workflows is True
    codec = codec_from_settings(s)
    assert codec.primary_key_id == key_id(RAW_KEY)
    assert codec.key_ids == [key_id(RAW_KEY), key_id(OLD_RAW_KEY)]
    assert codec.encrypts(W) and codec.encrypts(C)

    defaults = Settings.from_env({})
    assert defaults.encryption_key is None and defaults.encryption_old_keys == ()
    assert defaults.encrypt_workflows is False and defaults.secret_policy == "refuse"
    assert not codec_from_settings(defaults).encrypts(C)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"STATESTORE_ENCRYPTION_KEY": PASSWORD}, "STATESTORE_ENCRYPTION_KEY is not valid base64"),
        ({"STATESTORE_ENCRYPTION_KEY": base64.b64encode(PASSWORD.encode()).decode()}, "got 23 bytes"),
        ({"STATESTORE_ENCRYPTION_KEY": KEY[:-4]}, "STATESTORE_ENCRYPTION_KEY"),
        ({"STATESTORE_ENCRYPTION_KEY": KEY, "STATESTORE_ENCRYPTION_OLD_KEYS": f"{OLD_KEY},{TOKEN}"}, "entry #2"),
        ({"STATESTORE_ENCRYPTION_OLD_KEYS": OLD_KEY}, "STATESTORE_ENCRYPTION_KEY is not"),
        ({"STATESTORE_ENCRYPT_WORKFLOWS": "maybe"}, "STATESTORE_ENCRYPT_WORKFLOWS"),
        ({"STATESTORE_SECRET_POLICY": "warn"}, "STATESTORE_SECRET_POLICY"),
    ],
)
def test_bad_settings_are_clear_errors_that_never_echo_a_key(env: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        Settings.from_env(env)
    for text in exception_texts(info.value):
        assert_clean(text)
    assert info.value.__cause__ is None


def test_codec_rejects_bad_keys_without_echoing_them() -> None:
    for bad in (PASSWORD, RAW_KEY[:31], KEY + "AAAA"):
        with pytest.raises(InvalidInputError) as info:
            EncryptingCodec(bad)
        for text in exception_texts(info.value):
            assert_clean(text)
    with pytest.raises(InvalidInputError, match="a list of keys"):
        EncryptingCodec(KEY, OLD_KEY)
    with pytest.raises(InvalidInputError, match="without a primary key"):
        EncryptingCodec(None, [OLD_KEY])
    with pytest.raises(InvalidInputError, match="secret_policy"):
        EncryptingCodec(KEY, secret_policy="warn")
    assert parse_key(RAW_KEY) == parse_key(KEY) == parse_key(base64.urlsafe_b64encode(RAW_KEY).decode())


def test_reprs_never_show_key_material(tmp_path: Path) -> None:
    settings = Settings(backend="local", local_root=str(tmp_path), encryption_key=KEY, encryption_old_keys=(OLD_KEY,))
    codec = codec_from_settings(settings)
    store = build_store(settings)
    for text in (repr(settings), str(settings), repr(codec), str(codec), repr(store), str(store), repr(vars(codec))):
        assert_clean(text)
    assert "encryption_key" not in repr(settings)
    assert key_id(RAW_KEY) in repr(codec) and key_id(OLD_RAW_KEY) in repr(codec)


# -- build_store wiring ----------------------------------------------------------------


async def test_build_store_encrypts_and_enforces_the_policy(tmp_path: Path) -> None:
    store = build_store(Settings(backend="local", local_root=str(tmp_path), encryption_key=KEY))
    await store.save_state_object("c", {"password": PASSWORD}, C)
    stored = next(tmp_path.rglob("config.json")).read_bytes()
    assert PASSWORD.encode() not in stored
    assert orjson.loads(stored)["key_id"] == key_id(RAW_KEY)

    plain = build_store(Settings(backend="local", local_root=str(tmp_path / "plain")))
    with pytest.raises(SecretPolicyError, match="'password'"):
        await plain.save_state_object("c", {"password": PASSWORD}, C)
    assert not (tmp_path / "plain").exists()
    allowing = build_store(
        Settings.from_env({"STATESTORE_LOCAL_ROOT": str(tmp_path / "a"), "STATESTORE_SECRET_POLICY": "allow"})
    )
    await allowing.save_state_object("c", {"password": PASSWORD}, C)
    assert await allowing.get_state("c", C) == {"password": PASSWORD}


# -- the full round trip ---------------------------------------------------------------


async def test_full_credentials_round_trip_never_leaks(
    backend: ObjectBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything a user does with credentials, logged at DEBUG on every logger: no secret in any output."""
    caplog.set_level(logging.DEBUG)  # the root logger: every logger propagates here
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)  # restored when the test ends
    errors: list[BaseException] = []

    async def expect(exc_type: type[BaseException], call: object) -> None:
        with pytest.raises(exc_type) as info:
            await call  # type: ignore[misc]
        errors.append(info.value)

    settings = Settings.from_env({"STATESTORE_ENCRYPTION_KEY": KEY, "STATESTORE_ENCRYPTION_OLD_KEYS": OLD_KEY})
    store = Store(backend, app_name="app", codec=codec_from_settings(settings))
    old = Store(backend, app_name="app", codec=EncryptingCodec(OLD_KEY))
    other = Store(backend, app_name="app", codec=EncryptingCodec(os.urandom(32)))
    no_key = Store(backend, app_name="app")
    peer = Store(backend, app_name="app", codec=codec_from_settings(settings))
    with use_store(store):
        credential = {"host": "db", "username": "u", "password": PASSWORD, "auth": {"token": TOKEN}}
        assert await StateStore.save_state_object("cred", credential, C) == credential
        await StateStore.save_state("api_key", TOKEN, "cred", C)
        assert (await StateStore.get_state("cred", C))["api_key"] == TOKEN
        await StateStore.update_state("cred", C, lambda s: {**s, "password": PASSWORD + "2"})
        assert await StateStore.list_states(C) == ["cred"]
        await old.save_state_object("legacy", {"password": PASSWORD}, C)
        assert await store.get_state("legacy", C) == {"password": PASSWORD}
        assert await store.reencrypt_states(C) == 1
        # a conflict between two writers, to exercise the retry path's logging
        await peer.get_state("cred", C)  # both caches hold the same etag: one of the two writes conflicts
        await asyncio.gather(store.save_state("a", 1, "cred", C), peer.save_state("b", TOKEN, "cred", C))
        assert {"a", "b"} <= set(await peer.get_state("cred", C))
        await expect(DecryptionError, other.get_state("cred", C))
        await expect(DecryptionError, no_key.get_state("cred", C))
        await expect(DecryptionError, old.save_state("x", PASSWORD, "legacy", C))
        await expect(SecretPolicyError, no_key.save_state_object("fresh", {"password": PASSWORD}, C))
        await expect(SecretPolicyError, no_key.save_state("token", TOKEN, "fresh", C))
        with pytest.raises(InvalidInputError) as info:
            Settings.from_env({"STATESTORE_ENCRYPTION_KEY": PASSWORD})
        errors.append(info.value)
        await StateStore.delete_state("cred", C)
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    for exc in errors:
        texts += exception_texts(exc)
    for s in (store, old, other, no_key, peer):
        texts += [repr(s), repr(s.codec)]
    texts += [repr(settings), str(settings)]
    assert "key id" in caplog.text and "conflict on" in caplog.text  # DEBUG records were captured
    for text in texts:
        assert_clean(text)


async def test_default_store_from_environment_encrypts_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(("STATESTORE_", "ATLAN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STATESTORE_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("STATESTORE_ENCRYPTION_KEY", KEY)
    previous = set_default_store(None)
    try:
        await StateStore.save_state_object("cred", {"password": PASSWORD}, C)
        assert await StateStore.get_state("cred", C) == {"password": PASSWORD}
        stored = (tmp_path / "persistent-artifacts/apps/default/credentials/cred/config.json").read_bytes()
        assert orjson.loads(stored)["key_id"] == key_id(RAW_KEY)
        assert PASSWORD.encode() not in stored
    finally:
        set_default_store(previous)
