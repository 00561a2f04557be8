"""Credentials: encrypted at rest, bound to their key, never leaked -- on every backend kind (raw bytes via get)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from statestore import (
    CorruptStateError,
    DecryptionError,
    InvalidInputError,
    LocalBackend,
    ObjectBackend,
    PutMode,
    StateType,
    Store,
)
from statestore.backends import PutResult, WrapperBackend
from statestore.codec.crypto import EncryptingCodec, generate_key, key_id
from statestore.codec.jsonio import Codec
from statestore.keys.paths import state_key
from statestore.testing import CountingBackend

C = StateType.CREDENTIALS
W = StateType.WORKFLOWS

PASSWORD = "Sentinel-Pa55w0rd-qZ81x"
TOKEN = "Sentinel-T0ken-hY27kw"
NESTED = "Sentinel-Nested-pL93aa"
SENTINELS = (PASSWORD, TOKEN, NESTED)

CREDENTIAL = {
    "credential_type": "database",
    "host": "db.example.com",
    "port": 5432,
    "username": "app_user",
    "password": PASSWORD,
    "auth": {"refresh_token": TOKEN, "extra": [{"client_secret": NESTED}]},
    "password_ref": "db-password-secret",
}

MakeStore = Callable[..., Store]


@pytest.fixture
def make_store(backend: ObjectBackend) -> MakeStore:
    """Stores on one backend, each with its own codec and ETag cache, like separate processes."""

    def factory(codec: Codec | None = None, app_name: str = "app", **options: Any) -> Store:
        return Store(backend, app_name=app_name, codec=codec, **options)

    return factory


async def raw(store: Store, id: str, type: StateType = C) -> bytes:  # noqa: A002
    obj = await store.backend.get(store.key(id, type).object_key)
    assert obj is not None
    return obj.data


async def put_raw(store: Store, id: str, data: bytes, type: StateType = C) -> None:  # noqa: A002
    await store.backend.put(store.key(id, type).object_key, data)


def assert_no_sentinels(data: bytes) -> None:
    for sentinel in SENTINELS:
        assert sentinel.encode() not in data


# -- encrypted at rest ---------------------------------------------------------------


async def test_raw_stored_bytes_never_hold_secrets(make_store: MakeStore, backend: ObjectBackend) -> None:
    key = generate_key()
    store = make_store(EncryptingCodec(key))
    assert await store.save_state_object("cred-1", CREDENTIAL, C) == CREDENTIAL
    await store.save_state("api_key", TOKEN, "cred-1", C)
    await store.replace_state("cred-2", C, {"token": TOKEN})
    await store.update_state("cred-3", C, lambda s: {**s, "password": PASSWORD})

    for state_id in ("cred-1", "cred-2", "cred-3"):
        data = await raw(store, state_id)
        assert_no_sentinels(data)
        envelope = orjson.loads(data)
        assert envelope["statestore_encrypted"] == "AES-256-GCM"
        assert envelope["version"] == 1
        assert envelope["key_id"] == key_id(base64.b64decode(key))
        assert set(envelope) == {"statestore_encrypted", "version", "key_id", "nonce", "ciphertext"}
    root = getattr(backend, "root", None)
    if root is not None:  # the local backend: no file at all (temp, lock) holds a secret
        files = [p for p in Path(root).rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert_no_sentinels(path.read_bytes())

    reader = make_store(EncryptingCodec(key))
    assert await reader.get_state("cred-1", C) == {**CREDENTIAL, "api_key": TOKEN}
    assert await reader.get_state("cred-2", C) == {"token": TOKEN}
    assert await reader.get_state("cred-3", C) == {"password": PASSWORD}
    assert await reader.list_states(C) == ["cred-1", "cred-2", "cred-3"]


async def test_same_state_encrypts_differently_each_write(make_store: MakeStore) -> None:
    store = make_store(EncryptingCodec(generate_key()))
    await store.save_state_object("c", {"password": PASSWORD}, C)
    first = await raw(store, "c")
    await store.replace_state("c", C, {"password": PASSWORD, "x": 1})
    await store.replace_state("c", C, {"password": PASSWORD})
    assert orjson.loads(await raw(store, "c"))["nonce"] != orjson.loads(first)["nonce"]


async def test_workflows_plain_by_default_encrypted_when_asked(make_store: MakeStore) -> None:
    key = generate_key()
    plain = make_store(EncryptingCodec(key))
    await plain.save_state_object("wf", {"step": TOKEN}, W)
    assert orjson.loads(await raw(plain, "wf", W) or b"") == {"step": TOKEN}

    sealed = make_store(EncryptingCodec(key, encrypt_workflows=True))
    await sealed.save_state("n", 1, "wf", W)  # the plain workflow state is migrated on this write
    assert_no_sentinels(await raw(sealed, "wf", W))
    assert await sealed.get_state("wf", W) == {"step": TOKEN, "n": 1}
    # a store with workflow encryption off still reads it, and turns it back into plain JSON on request
    assert await plain.get_state("wf", W) == {"step": TOKEN, "n": 1}
    assert await plain.reencrypt_states(W) == 1
    assert orjson.loads(await raw(plain, "wf", W) or b"") == {"step": TOKEN, "n": 1}


# -- CAS merges ----------------------------------------------------------------------


async def test_concurrent_writers_merge_with_encryption(make_store: MakeStore) -> None:
    key = generate_key()
    stores = [make_store(EncryptingCodec(key)) for _ in range(3)]
    await stores[0].save_state_object("c", {"base": 0}, C)
    for s in stores:
        await s.get_state("c", C)  # every cache now holds the same etag: every writer but one will conflict
    await asyncio.gather(*(s.save_state(f"k{i}_{j}", j, "c", C) for j in range(4) for i, s in enumerate(stores)))
    expected = {"base": 0} | {f"k{i}_{j}": j for j in range(4) for i in range(3)}
    assert await stores[1].get_state("c", C) == expected
    assert orjson.loads(await raw(stores[0], "c"))["statestore_encrypted"] == "AES-256-GCM"


# -- rotation ------------------------------------------------------------------------


async def test_rotation_old_keys_decrypt_and_reencrypt_moves_everything_to_primary(make_store: MakeStore) -> None:
    old_key, new_key = generate_key(), generate_key()
    old_id, new_id = key_id(base64.b64decode(old_key)), key_id(base64.b64decode(new_key))
    before = make_store(EncryptingCodec(old_key))
    for i in range(5):
        await before.save_state_object(f"c{i}", {"password": f"{PASSWORD}{i}"}, C)
    await before.save_state_object("wf", {"a": 1}, W)

    rotated = make_store(EncryptingCodec(new_key, [old_key]))
    assert await rotated.get_state("c0", C) == {"password": f"{PASSWORD}0"}  # old-key read
    assert orjson.loads(await raw(rotated, "c0"))["key_id"] == old_id  # a read writes nothing

    counting = CountingBackend(rotated.backend)
    rotated = Store(counting, app_name=rotated.app_name, codec=rotated.codec)
    assert await rotated.reencrypt_states(C, concurrency=2) == 5
    assert (counting.counts["get"], counting.counts["put"]) == (5, 5)  # one read and one write per state
    for i in range(5):
        assert orjson.loads(await raw(rotated, f"c{i}"))["key_id"] == new_id
    assert await rotated.reencrypt_states(C) == 0  # nothing left to do
    assert await rotated.reencrypt_states(W) == 0  # plain workflows stay plain

    only_new = make_store(EncryptingCodec(new_key))
    assert await only_new.get_state("c3", C) == {"password": f"{PASSWORD}3"}
    with pytest.raises(DecryptionError, match=new_id):
        await make_store(EncryptingCodec(old_key)).get_state("c3", C)


async def test_next_write_under_an_old_key_reencrypts_it(make_store: MakeStore) -> None:
    old_key, new_key = generate_key(), generate_key()
    await make_store(EncryptingCodec(old_key)).save_state_object("c", {"host": "h"}, C)
    rotated = make_store(EncryptingCodec(new_key, [old_key]))
    await rotated.save_state_object("c", {"host": "h"}, C)  # no change to the state, but a change of key
    assert orjson.loads(await raw(rotated, "c"))["key_id"] == key_id(base64.b64decode(new_key))


class RacingBackend(WrapperBackend):
    """Runs ``before_put`` once, just before the first conditional put of ``key`` goes through."""

    def __init__(self, inner: ObjectBackend, key: str, before_put: Callable[[], Any]) -> None:
        super().__init__(inner)
        self.key, self.before_put, self.fired = key, before_put, False

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        if key == self.key and not self.fired:
            self.fired = True
            await self.before_put()
        return await super().put(key, data, mode)


async def test_reencrypt_is_a_conditional_write_that_keeps_a_concurrent_update(
    make_store: MakeStore, backend: ObjectBackend
) -> None:
    old_key, new_key = generate_key(), generate_key()
    writer = make_store(EncryptingCodec(old_key))
    await writer.save_state_object("c", {"a": 1}, C)
    object_key = writer.key("c", C).object_key

    async def concurrent_update() -> None:
        await writer.save_state("b", 2, "c", C)  # lands between the rotation's read and its write

    racing = RacingBackend(backend, object_key, concurrent_update)
    rotator = Store(racing, app_name="app", codec=EncryptingCodec(new_key, [old_key]))
    assert await rotator.reencrypt_states(C) == 1
    assert racing.fired
    assert await rotator.get_state("c", C) == {"a": 1, "b": 2}
    assert orjson.loads(await raw(rotator, "c"))["key_id"] == key_id(base64.b64decode(new_key))


async def test_reencrypt_stops_on_a_state_no_key_opens(make_store: MakeStore) -> None:
    await make_store(EncryptingCodec(generate_key())).save_state_object("lost", {"a": 1}, C)
    with pytest.raises(DecryptionError, match="lost"):
        await make_store(EncryptingCodec(generate_key())).reencrypt_states(C)
    with pytest.raises(InvalidInputError):
        await make_store().reencrypt_states(C, concurrency=0)


# -- bound to its key; wrong key, no key, tampering ----------------------------------


@pytest.mark.parametrize(("app", "sid", "stype"), [("app", "other-id", C), ("app", "c", W), ("other-app", "c", C)])
async def test_envelope_copied_elsewhere_does_not_decrypt(
    make_store: MakeStore, app: str, sid: str, stype: StateType
) -> None:
    key = generate_key()
    source = make_store(EncryptingCodec(key, encrypt_workflows=True))
    await source.save_state_object("c", {"password": PASSWORD}, C)
    envelope = await raw(source, "c")

    target = make_store(EncryptingCodec(key, encrypt_workflows=True), app_name=app)
    await put_raw(target, sid, envelope, stype)
    with pytest.raises(DecryptionError) as info:
        await target.get_state(sid, stype)
    assert f"{stype.value} state {sid!r}" in str(info.value)
    assert "copied from another id, type or app" in str(info.value)


async def test_wrong_key_and_no_key_raise_naming_id_and_type(make_store: MakeStore) -> None:
    key = generate_key()
    await make_store(EncryptingCodec(key)).save_state_object("c", {"password": PASSWORD}, C)
    with pytest.raises(DecryptionError, match=r"credentials state 'c'.*neither the primary key nor an old key"):
        await make_store(EncryptingCodec(generate_key())).get_state("c", C)
    with pytest.raises(CorruptStateError, match=r"credentials state 'c'.*no encryption key is configured") as info:
        await make_store().get_state("c", C)  # the default codec: no key
    assert type(info.value) is DecryptionError
    with pytest.raises(DecryptionError, match="no encryption key"):
        await make_store(EncryptingCodec(secret_policy="allow")).get_state("c", C)


async def test_wrong_key_with_the_same_key_id_field_fails_authentication(make_store: MakeStore) -> None:
    key, other = generate_key(), generate_key()
    store = make_store(EncryptingCodec(key))
    await store.save_state_object("c", {"password": PASSWORD}, C)
    envelope = orjson.loads(await raw(store, "c"))
    envelope["key_id"] = key_id(base64.b64decode(other))  # claims the other key
    await put_raw(store, "c", orjson.dumps(envelope))
    with pytest.raises(DecryptionError, match="tampered"):
        await make_store(EncryptingCodec(other)).get_state("c", C)


async def test_truncated_and_bit_flipped_objects_raise(make_store: MakeStore) -> None:
    key = generate_key()
    store = make_store(EncryptingCodec(key))
    await store.save_state_object("c", {"password": PASSWORD}, C)
    good = await raw(store, "c")
    reader = make_store(EncryptingCodec(key))
    damaged = [good[: len(good) // 2], good[:-1], good[:30], good[:-5] + b"}"]
    for pos in (len(good) // 3, len(good) - 10, len(good) - 30):  # in the ciphertext and its tag
        damaged.append(good[:pos] + bytes([good[pos] ^ 0x01]) + good[pos + 1 :])
    ciphertext_start = good.index(b'"ciphertext":"') + len(b'"ciphertext":"')
    damaged.append(good[:ciphertext_start] + bytes([good[ciphertext_start] ^ 0x04]) + good[ciphertext_start + 1 :])
    for data in damaged:
        await put_raw(store, "c", data)
        with pytest.raises(DecryptionError, match="credentials state 'c'"):
            await reader.get_state("c", C)


def test_every_single_bit_flip_and_truncation_is_detected() -> None:
    """Exhaustive, on the codec alone: no damaged envelope ever opens (not as garbage, not as plain JSON)."""
    key = generate_key()
    sealing = EncryptingCodec(key, encrypt_workflows=True)
    for state_type, codec in ((C, sealing), (W, sealing), (W, EncryptingCodec(key)), (C, EncryptingCodec())):
        skey = state_key("app", state_type, "c")
        good = sealing.seal(skey, orjson.dumps({"password": PASSWORD}))
        if codec.encrypts(state_type) or codec.key_ids:
            assert codec.open(skey, good).plain == orjson.dumps({"password": PASSWORD})
        for pos in range(len(good)):
            for bit in range(8):
                bad = good[:pos] + bytes([good[pos] ^ (1 << bit)]) + good[pos + 1 :]
                with pytest.raises(DecryptionError):
                    codec.open(skey, bad)
        for length in range(3, len(good)):
            with pytest.raises(DecryptionError):
                codec.open(skey, good[:length])


async def test_undecryptable_state_is_kept_until_replaced_or_deleted(make_store: MakeStore) -> None:
    await make_store(EncryptingCodec(generate_key())).save_state_object("c", {"a": 1}, C)
    store = make_store(EncryptingCodec(generate_key()))
    before = await raw(store, "c")
    for call in (store.save_state("b", 2, "c", C), store.save_state_object("c", {"b": 2}, C)):
        with pytest.raises(DecryptionError):
            await call
    with pytest.raises(DecryptionError):
        await store.update_state("c", C, lambda s: s)
    assert await raw(store, "c") == before
    assert await store.replace_state("c", C, {"fresh": True}) == {"fresh": True}  # recovery: replace
    assert await store.get_state("c", C) == {"fresh": True}
    await store.delete_state("c", C)
    assert await store.get_state("c", C) == {}


# -- migration from plain JSON -------------------------------------------------------


async def test_plain_state_reads_and_is_encrypted_by_the_next_save(make_store: MakeStore) -> None:
    legacy = make_store(EncryptingCodec(secret_policy="allow"))  # the old service: plain JSON, raw secrets
    await legacy.save_state_object("c", {"host": "h", "password": PASSWORD}, C)
    assert PASSWORD.encode() in await raw(legacy, "c")

    key = generate_key()
    store = make_store(EncryptingCodec(key))
    assert await store.get_state("c", C) == {"host": "h", "password": PASSWORD}
    assert PASSWORD.encode() in await raw(store, "c")  # reading alone writes nothing
    await store.save_state_object("c", {"host": "h"}, C)  # changes nothing in the state, yet rewrites it
    assert_no_sentinels(await raw(store, "c"))
    assert await make_store(EncryptingCodec(key)).get_state("c", C) == {"host": "h", "password": PASSWORD}


async def test_reserved_marker_key_is_refused(make_store: MakeStore) -> None:
    store = make_store(EncryptingCodec(generate_key()))
    with pytest.raises(InvalidInputError, match="reserved"):
        await store.save_state_object("wf", {"statestore_encrypted": "x"}, W)
    assert await store.list_states(W) == []


async def test_plain_state_with_envelope_like_keys_is_still_plain(make_store: MakeStore) -> None:
    store = make_store(EncryptingCodec(generate_key()))
    value = {"nonce": "n", "ciphertext": "my own blob", "key_id": "k", "version": 3}
    await store.save_state_object("wf", value, W)
    assert await make_store(EncryptingCodec(generate_key())).get_state("wf", W) == value
    assert await make_store().get_state("wf", W) == value


# -- secret policy -------------------------------------------------------------------


async def test_policy_allows_references_non_secrets_and_workflows(make_store: MakeStore) -> None:
    store = make_store()
    # reference names are in test_secret_rule.py; here: empty secrets, references below a secret name
    ok = {"secretName": "db", "password": "", "api_key": None, "tokens_used": 12, "auth": {"password": {"ref": "v"}}}
    assert await store.save_state_object("c", ok, C) == ok
    assert await store.save_state_object("wf", {"password": PASSWORD}, W) == {"password": PASSWORD}


# -- file modes on the local backend -------------------------------------------------


def _modes(root: Path) -> tuple[set[int], set[int]]:
    files = {p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}
    dirs = {p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_dir()}
    return files, dirs


@pytest.mark.parametrize("umask", [0o000, 0o022])
async def test_local_credentials_files_0600_in_0700_dirs_also_after_rewrites(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "root"
    previous = os.umask(umask)
    try:
        store = Store(LocalBackend(root), app_name="app", codec=EncryptingCodec(generate_key()))
        await store.save_state_object("c", {"password": PASSWORD}, C)
        assert _modes(root) == ({0o600}, {0o700})
        for i in range(3):
            await store.save_state(f"k{i}", i, "c", C)
        assert _modes(root) == ({0o600}, {0o700})
    finally:
        os.umask(previous)


async def test_local_tightens_preexisting_dirs_and_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    state_dir = root / "persistent-artifacts" / "apps" / "app" / "credentials" / "c"
    state_dir.mkdir(parents=True)
    (state_dir / "config.json").write_bytes(b'{"host":"h"}')
    for p in [*state_dir.parents, state_dir]:
        if root in p.parents:
            p.chmod(0o755)
    (state_dir / "config.json").chmod(0o644)
    root.chmod(0o755)

    store = Store(LocalBackend(root), app_name="app", codec=EncryptingCodec(generate_key()))
    await store.save_state("password", PASSWORD, "c", C)
    assert _modes(root) == ({0o600}, {0o700})
    assert root.stat().st_mode & 0o777 == 0o755  # the root is the user's: left alone


async def test_local_temp_file_is_0600_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No window where the temp file is readable by others: its mode is 0600 the moment it exists."""
    from statestore.backends import localfs

    seen: list[int] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, mode, *args, **kwargs)
        if str(path).endswith(localfs.TEMP_SUFFIX):
            seen.append(os.fstat(fd).st_mode & 0o777)
        return fd

    monkeypatch.setattr(localfs.os, "open", recording_open)
    previous = os.umask(0)
    try:
        store = Store(LocalBackend(tmp_path), app_name="app", codec=EncryptingCodec(generate_key()))
        await store.save_state_object("c", {"password": PASSWORD}, C)
        await store.save_state("x", 1, "c", C)
    finally:
        os.umask(previous)
    assert seen == [0o600, 0o600]


# -- rotation while other processes write ----------------------------------------------

ROTATION_WORKER = """
import asyncio, sys
from statestore import StateStore, StateType

async def main(worker: int, ids: int, rounds: int) -> None:
    for r in range(rounds):
        for i in range(ids):
            await StateStore.save_state(f"w{worker}-{r}", r, f"c{i}", StateType.CREDENTIALS)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_rotation_while_processes_write_loses_nothing(tmp_path: Path) -> None:
    old_key, new_key = generate_key(), generate_key()
    ids, rounds, workers = 6, 8, 3
    seed = Store(LocalBackend(tmp_path), app_name="app", codec=EncryptingCodec(old_key))
    for i in range(ids):
        await seed.save_state_object(f"c{i}", {"password": PASSWORD}, C)
    env = {
        **os.environ,
        "STATESTORE_BACKEND": "local",
        "STATESTORE_LOCAL_ROOT": str(tmp_path),
        "STATESTORE_APP_NAME": "app",
        "STATESTORE_ENCRYPTION_KEY": new_key,  # the workers are already on the new key, as in a real rotation
        "STATESTORE_ENCRYPTION_OLD_KEYS": old_key,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ROTATION_WORKER, str(w), str(ids), str(rounds)], env=env, stderr=subprocess.PIPE
        )
        for w in range(workers)
    ]
    rotator = Store(LocalBackend(tmp_path), app_name="app", codec=EncryptingCodec(new_key, [old_key]))
    rotated = 0
    while any(p.poll() is None for p in procs):
        rotated += await rotator.reencrypt_states(C)
        await asyncio.sleep(0.01)
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    rotated += await rotator.reencrypt_states(C)
    assert rotated <= ids  # each state moves to the new key once, by the rotator or by a worker's write

    only_new = Store(LocalBackend(tmp_path), app_name="app", codec=EncryptingCodec(new_key))
    expected = {"password": PASSWORD} | {f"w{w}-{r}": r for w in range(workers) for r in range(rounds)}
    for i in range(ids):
        assert await only_new.get_state(f"c{i}", C) == expected
        assert_no_sentinels(await raw(only_new, f"c{i}"))
