"""Values and names the hardening review broke: lone surrogates, integers beyond 64 bits, look-alike ids, long keys.

Bad values and names are refused before any I/O, leaving stored state untouched; integers of any size round-trip
exactly, also in states the previous service wrote with ``json.dump``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from statestore import (
    CorruptStateError,
    InvalidInputError,
    MemoryBackend,
    ObjectBackend,
    S3Backend,
    StateType,
    Store,
    build_state_store_path,
)
from statestore.codec.crypto import EncryptingCodec, generate_key
from statestore.codec.jsonio import check_json, copy_state, decode, dumps, encode, loads
from statestore.keys.paths import MAX_KEY_BYTES, check_object_key, state_key, validate_app_name, validate_id
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS
C = StateType.CREDENTIALS


async def raw(store: Store, id: str, type: StateType = W) -> bytes | None:  # noqa: A002
    obj = await store.backend.get(store.key(id, type).object_key)
    return None if obj is None else obj.data


# -- item 2: lone surrogates -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("x\ud800", "holds a string"),
        ("\udfff", "holds a string"),
        ("\ud83d\ude00", "holds a string"),  # a surrogate *pair* as two code points is not a character either
        (["ok", {"deep": ["é", "a\udc00"]}], "holds a string"),
        (("tuple", "\ud800"), "holds a string"),
        ({"k\ud800": 1}, "has a key"),
        ({"a": [{"b": {"\udbff": "v"}}]}, "has a key"),
    ],
)
def test_check_json_refuses_lone_surrogates_in_keys_and_values(value: Any, where: str) -> None:
    with pytest.raises(InvalidInputError, match=f"{where} with a lone surrogate"):
        check_json(value, "value")


def test_check_json_accepts_real_non_ascii_text() -> None:
    check_json({"名前": "ünïcødé 😀", "list": ["\U0001f600", "\u2028"], "é": {"ß": "\ufffd"}})


async def test_a_lone_surrogate_is_refused_before_any_io(backend: ObjectBackend) -> None:
    await Store(backend, app_name="app").save_state("keep", 1, "wf", W)
    counting = CountingBackend(backend)
    store = Store(counting, app_name="app")  # a fresh store: no cached state, so any work would need a GET
    before = await raw(store, "wf")
    counting.reset()
    calls = [
        store.save_state("k", "bad\ud800", "wf", W),
        store.save_state_object("wf", {"k": ["ok", {"x": "\ud800"}]}, W),
        store.replace_state("wf", W, {"\ud800": 1}),
        store.save_state("k", "\ud800", "cred", C),
        store.save_state("bad\udc00key", 1, "wf", W),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match="lone surrogate"):
            await call
    assert sum(counting.counts.values()) == 0, counting.counts
    assert await raw(store, "wf") == before
    assert await raw(store, "cred", C) is None


# -- item 9: integers of any size ----------------------------------------------------------

PREVIOUS_SERVICE_STATE = {
    "snowflake_id": 18446744073709551616,
    "neg": -99999999999999999999,
    "edges": [2**64 - 1, 2**64, -(2**63), -(2**63) - 1],
    "beyond_floats": 10**400,
    "ratio": 0.1,
    "tiny": 0.00012345678901234568,
    "large_float": 1e300,
    "negative_zero": -0.0,
    "digits_in_a_string": "123456789012345678901234567890",
}


def assert_exact(got: Any, want: Any) -> None:
    """Equal, and every number of the same type (1e20 == 10**20, so equality alone would not tell)."""
    assert got == want
    assert json.dumps(got) == json.dumps(want)


@pytest.mark.parametrize("indent", [None, 2])
async def test_big_ints_written_by_the_previous_service_read_and_write_back_exactly(
    backend: ObjectBackend, indent: int | None
) -> None:
    store = Store(backend, app_name="app")
    key = store.key("wf", W).object_key
    await backend.put(key, json.dumps(PREVIOUS_SERVICE_STATE, indent=indent).encode())  # what json.dump wrote

    state = await store.get_state("wf", W)
    assert_exact(state, PREVIOUS_SERVICE_STATE)
    assert type(state["snowflake_id"]) is int

    await store.save_state("status", "running", "wf", W)  # an unrelated change
    stored = await raw(store, "wf")
    assert stored is not None
    assert b"18446744073709551616" in stored and b"-99999999999999999999" in stored
    assert_exact(json.loads(stored), {**PREVIOUS_SERVICE_STATE, "status": "running"})
    assert_exact(await store.get_state("wf", W), {**PREVIOUS_SERVICE_STATE, "status": "running"})


async def test_big_ints_can_be_written_by_every_call(backend: ObjectBackend) -> None:
    store = Store(backend, app_name="app")
    await store.save_state("a", 2**100, "wf", W)
    await store.save_state_object("wf", {"b": -(10**50), "c": [2**64, {"d": 2**70}]}, W)
    merged = await store.update_state("wf", W, lambda s: {**s, "e": s["a"] + 1})
    want = {"a": 2**100, "b": -(10**50), "c": [2**64, {"d": 2**70}], "e": 2**100 + 1}
    assert_exact(merged, want)
    assert_exact(await store.get_state("wf", W), want)
    assert_exact(await store.replace_state("wf", W, {"z": 2**65}), {"z": 2**65})
    assert json.loads(await raw(store, "wf") or b"") == {"z": 2**65}


async def test_big_ints_in_encrypted_credentials(backend: ObjectBackend) -> None:
    store = Store(backend, app_name="app", codec=EncryptingCodec(generate_key()))
    await store.save_state_object("c", {"account": 2**64 + 5, "password": "p"}, C)
    fresh = Store(backend, app_name="app", codec=store.codec)  # no cache: decrypts and decodes the stored bytes
    assert_exact(await fresh.get_state("c", C), {"account": 2**64 + 5, "password": "p"})


def _dense_state(extra: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(7)
    state: dict[str, Any] = {
        f"item-{i}": {"n": rng.randint(0, 10**15), "f": rng.random() / 1000, "ts": 1700000000000 + i, "s": "x" * 5}
        for i in range(3000)
    }
    return {**state, **extra}


def _sparse_state(extra: dict[str, Any]) -> dict[str, Any]:
    return {**{f"doc{i}": "lorem ipsum 12345678901234567890123 " * 300 for i in range(20)}, **extra}


@pytest.mark.parametrize(
    "shape",
    [_dense_state, _sparse_state, lambda extra: extra],
    ids=["dense (text scan)", "sparse (walk)", "small"],
)
@pytest.mark.parametrize(
    "extra",
    [
        {"big": 2**64},
        {"big": -(2**63) - 1},
        {"nested": [[{"big": -(10**30)}]]},
        {"huge": 10**400},  # orjson refuses this one outright ("number is infinity")
        {"big_float": 1.8446744073709552e19, "int": 2**64},
    ],
)
def test_every_detection_path_finds_a_big_int(shape: Any, extra: dict[str, Any]) -> None:
    state = shape(extra)
    for text in (json.dumps(state), json.dumps(state, separators=(",", ":")), json.dumps(state, indent=1)):
        assert_exact(loads(text.encode()), state)


@pytest.mark.parametrize("shape", [_dense_state, _sparse_state], ids=["dense", "sparse"])
def test_states_without_big_ints_decode_as_before(shape: Any) -> None:
    state = shape({"in_range": [2**64 - 1, -(2**63), 9999999999999999999], "digits": "1" * 40, "f": 1e25})
    data = json.dumps(state).encode()
    assert_exact(loads(data), state)
    assert_exact(decode(data, state_key("app", W, "wf")), state)


def test_floats_round_trip_exactly() -> None:
    rng = random.Random(3)
    floats = [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(2000)] + [5e-324, 1.7976931348623157e308]
    for state in ({"f": floats}, {"f": floats, "big": 2**64}):
        assert loads(encode(state)) == state
        assert copy_state(state) == state


def test_encode_keeps_its_shape_when_a_big_int_is_present() -> None:
    state = {"a": 2**64, "é": "ü", "list": [1.5, None, True], "nested": {"b": -(2**63) - 1}}
    expected = '{"a":18446744073709551616,"é":"ü","list":[1.5,null,true],"nested":{"b":-9223372036854775809}}'
    assert encode(state) == expected.encode()
    assert dumps(state, indent=True) == json.dumps(state, indent=2, ensure_ascii=False).encode()
    copied = copy_state(state)
    assert_exact(copied, state)
    assert copied is not state and copied["nested"] is not state["nested"]


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 18446744073709551616, "b": 1e400}',
        b'{"a": 18446744073709551616, "b": "\\ud800"}',
        b'{"a": 18446744073709551616, "b": "\xed\xa0\x80"}',
        b'{"a": 18446744073709551616, "b": "\xff"}',
        b'\xef\xbb\xbf{"a": 18446744073709551616}',
        b'{"a": 18446744073709551616,}',
        b'{"a": ' + b"1" * 5000 + b"}",  # more digits than Python converts
    ],
)
def test_the_exact_path_is_as_strict_as_orjson(data: bytes) -> None:
    with pytest.raises(CorruptStateError, match="is not valid JSON"):
        decode(data, state_key("app", W, "wf"))


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_input_refuses_nan_while_a_stored_nan_reads_as_none(token: bytes) -> None:
    """What a caller gives is strict JSON; a stored bare NaN (the previous service's) reads as None (decision 62)."""
    data = b'{"a": 18446744073709551616, "b": ' + token + b"}"
    with pytest.raises(ValueError):
        loads(data)
    assert decode(data, state_key("app", W, "wf")) == {"a": 18446744073709551616, "b": None}


def test_check_json_accepts_big_ints_and_refuses_ints_python_cannot_print() -> None:
    check_json({"a": 2**64, "b": -(10**4000), "c": [10**299]})
    with pytest.raises(InvalidInputError, match="more than 4300 digits"):
        check_json({"a": [10**5000]})


# -- item 11: names that look like other names, and long keys --------------------------------

LOOK_ALIKES = (
    [(s, "leading or trailing whitespace") for s in (" wf", "wf ", "wf\u00a0", "\u3000wf")]
    + [(s, "only whitespace") for s in (" ", "   ", "\u2003\u00a0")]
    + [(s, "not in Unicode NFC form") for s in ("e\u0301", "cafe\u0301-1", "\u212b")]  # U+212B: NFC is U+00C5
    + [("wf\u00ad1", "invisible format character U+00AD"), ("wf\U000e0041", "invisible format character U+E0041")]
    + [
        (f"wf{chr(c)}1", f"bidirectional control character U+{c:04X}")
        for c in [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C]
    ]
    + [(f"wf{chr(c)}1", f"zero-width character U+{c:04X}") for c in [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]]
)


@pytest.mark.parametrize(("bad", "rule"), LOOK_ALIKES)
def test_look_alike_ids_and_app_names_are_refused_naming_the_rule(bad: str, rule: str) -> None:
    for check in (validate_id, validate_app_name):
        with pytest.raises(InvalidInputError, match=re.escape(rule)):
            check(bad)
    with pytest.raises(InvalidInputError, match=re.escape(rule)):
        build_state_store_path(bad, W, root="/srv", app_name="app")
    with pytest.raises(InvalidInputError, match=re.escape(rule)):
        Store(MemoryBackend(), app_name=bad)


def test_nfc_and_plain_names_are_accepted() -> None:
    for good in ("café", unicodedata.normalize("NFC", "cafe\u0301"), "a b", "名前-1", "Å", "x" * 255, "-"):
        assert validate_id(good) == good


async def test_look_alike_ids_planted_by_another_tool_are_not_listed(
    backend: ObjectBackend, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(backend, app_name="app")
    await store.save_state("k", 1, "wf", W)
    for planted in ("wf\u200b", "wf ", "\u202ewf"):
        await backend.put(f"persistent-artifacts/apps/app/workflows/{planted}/config.json", b"{}")
    with caplog.at_level(logging.WARNING, logger="statestore.keys.paths"):
        assert await store.list_states(W) == ["wf"]
    assert caplog.text.count("not listing") == 3 and "\\u200b" in caplog.text


def test_object_keys_over_1024_bytes_are_refused() -> None:
    longest = state_key("a" * 255, C, "b" * 255).object_key  # every name at its limit
    assert len(longest.encode()) < MAX_KEY_BYTES  # so without a prefix the rule cannot be broken
    room = MAX_KEY_BYTES - len(longest.encode())
    assert check_object_key(longest, "p" * room) == "p" * room + longest
    with pytest.raises(InvalidInputError, match=r"1025 bytes in UTF-8.*at most 1024 bytes for a whole object key"):
        check_object_key(longest, "p" * (room + 1))
    with pytest.raises(InvalidInputError, match="at most 1024 bytes"):
        state_key("app", W, "é" * 127, key_prefix="tenant/" * 120)
    assert state_key("app", W, "wf", key_prefix="tenant/" * 120).id == "wf"


async def test_the_backend_prefix_counts_toward_the_key_limit(tmp_path: Path) -> None:
    """An S3 prefix counts: an id that fits alone is refused behind a long prefix, before any request."""
    backend = CountingBackend(S3Backend("bucket", prefix="tenant/" * 110, endpoint_url="http://127.0.0.1:9"))
    store = Store(backend, app_name="app")
    with pytest.raises(InvalidInputError, match="at most 1024 bytes"):
        await store.save_state("k", 1, "é" * 120, W)
    assert sum(backend.counts.values()) == 0
    with pytest.raises(InvalidInputError, match="at most 1024"):
        check_object_key("k" * 1025)
