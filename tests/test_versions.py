"""Versions in the caller's hands: get_versioned_state, if_version=, create_state, on every backend."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import S3Location, S3Target
from fault_proxy import FaultProxy

from statestore import (
    InvalidInputError,
    LocalBackend,
    MemoryBackend,
    ObjectBackend,
    PutMode,
    StateExistsError,
    StateStore,
    StateStoreError,
    StateType,
    Store,
    VersionConflictError,
    VersionedState,
)
from statestore.backends import PutResult, WrapperBackend
from statestore.backends.base import Capability
from statestore.errors import ConditionalDeleteUnsupportedError
from statestore.sync import SyncStore
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS
ID = "wf-1"


async def stale_and_current(store: Store, other: Store) -> tuple[str, str]:
    """A version of ``ID`` that another store then replaced, and the version it stored."""
    await store.replace_state(ID, W, {"n": 1, "keep": True})
    stale = (await store.get_versioned_state(ID, W)).version
    await other.save_state("n", 2, ID, W)
    current = (await other.get_versioned_state(ID, W)).version
    assert stale is not None and current is not None and stale != current
    return stale, current


# -- reading -------------------------------------------------------------------------


async def test_versioned_state_of_a_missing_and_a_stored_state(store: Store) -> None:
    assert await store.get_versioned_state(ID, W) == VersionedState({}, None)
    await store.save_state_object(ID, {"a": 1}, W)
    got = await store.get_versioned_state(ID, W)
    assert isinstance(got, VersionedState) and got.state == {"a": 1}
    assert isinstance(got.version, str) and got.version
    await store.save_state("b", 2, ID, W)
    after = await store.get_versioned_state(ID, W)
    assert after.state == {"a": 1, "b": 2} and after.version != got.version


# -- changes at a version ----------------------------------------------------------------


async def skip_without_conditional_delete(store: Store, op: str = "delete_state") -> None:
    """Skip a versioned delete on a server that does not honour If-Match on DeleteObject (Ceph RGW, MinIO,
    LocalStack): it is refused there, as ``test_stale_versioned_delete_on_s3_that_ignores_if_match_deletes_nothing``
    proves."""
    if op == "delete_state" and not await store.backend.supports(Capability.CONDITIONAL_DELETE):
        pytest.skip("the server does not honour If-Match on DeleteObject: a versioned delete is refused there")


Op = Callable[[Store, str], Awaitable[Any]]

OPS: dict[str, Op] = {
    "save_state": lambda s, v: s.save_state("x", 9, ID, W, if_version=v),
    "save_state_object": lambda s, v: s.save_state_object(ID, {"x": 9}, W, if_version=v),
    "replace_state": lambda s, v: s.replace_state(ID, W, {"x": 9}, if_version=v),
    "delete_state": lambda s, v: s.delete_state(ID, W, if_version=v),
}
EXPECTED = {
    "save_state": {"n": 1, "keep": True, "x": 9},
    "save_state_object": {"n": 1, "keep": True, "x": 9},
    "replace_state": {"x": 9},
    "delete_state": {},
}


@pytest.mark.parametrize("op", OPS)
async def test_a_change_at_the_current_version_applies(store: Store, op: str) -> None:
    await skip_without_conditional_delete(store, op)
    await store.replace_state(ID, W, {"n": 1, "keep": True})
    version = (await store.get_versioned_state(ID, W)).version
    assert version is not None
    await OPS[op](store, version)
    assert await store.get_state(ID, W) == EXPECTED[op]


@pytest.mark.parametrize("op", OPS)
async def test_a_stale_version_never_overwrites(
    store: Store, make_backend: Callable[[], ObjectBackend], op: str
) -> None:
    await skip_without_conditional_delete(store, op)
    other = Store(make_backend(), app_name=store.app_name)
    stale, current = await stale_and_current(store, other)
    with pytest.raises(VersionConflictError) as caught:
        await OPS[op](store, stale)
    assert isinstance(caught.value, StateStoreError) and not isinstance(caught.value, StateExistsError)
    assert caught.value.current_version is not None
    assert caught.value.current_version.strip('"') == current.strip('"')
    assert await store.get_versioned_state(ID, W) == VersionedState({"n": 2, "keep": True}, current)


@pytest.mark.parametrize("op", OPS)
async def test_a_version_of_a_state_that_is_gone_conflicts(store: Store, op: str) -> None:
    await skip_without_conditional_delete(store, op)
    await store.save_state_object(ID, {"n": 1}, W)
    version = (await store.get_versioned_state(ID, W)).version
    assert version is not None
    await store.delete_state(ID, W)
    with pytest.raises(VersionConflictError) as caught:
        await OPS[op](store, version)
    assert caught.value.current_version is None
    assert await store.get_versioned_state(ID, W) == VersionedState({}, None)


async def test_the_version_the_backend_holds_wins_over_a_stale_cache(
    store: Store, make_backend: Callable[[], ObjectBackend]
) -> None:
    """This store cached its own write; another store changed the state since: its version is the one to use."""
    other = Store(make_backend(), app_name=store.app_name)
    _, current = await stale_and_current(store, other)
    state = await store.save_state_object(ID, {"x": 1}, W, if_version=current)
    assert state == {"n": 2, "keep": True, "x": 1}
    assert (await other.get_versioned_state(ID, W)).state == state


async def test_a_conflict_is_never_retried() -> None:
    counting = CountingBackend(MemoryBackend())
    store, other = Store(counting), Store(counting)
    stale, _ = await stale_and_current(store, other)
    counting.reset()
    with pytest.raises(VersionConflictError):
        await store.save_state_object(ID, {"x": 1}, W, if_version=stale)
    assert counting.counts["put"] <= 1 and counting.counts["get"] <= 2


# -- create_state ------------------------------------------------------------------------


@pytest.mark.parametrize("first", [{"owner": "a"}, {}], ids=["state", "empty"])
async def test_create_state_stores_only_once(store: Store, first: dict[str, Any]) -> None:
    """The first create claims the id, even with an empty state; a second is refused and changes nothing."""
    assert await store.create_state(ID, W, first) == first
    version = (await store.get_versioned_state(ID, W)).version
    assert version is not None
    with pytest.raises(StateExistsError) as caught:
        await store.create_state(ID, W, {"owner": "b"})
    assert isinstance(caught.value, VersionConflictError) and caught.value.current_version == version
    assert await store.get_state(ID, W) == first


async def test_tasks_with_a_store_each_at_one_version_one_wins(
    store: Store, make_backend: Callable[[], ObjectBackend]
) -> None:
    await store.replace_state(ID, W, {"n": 0})
    version = (await store.get_versioned_state(ID, W)).version
    assert version is not None
    stores = [Store(make_backend(), app_name=store.app_name) for _ in range(6)]
    results = await asyncio.gather(
        *(s.replace_state(ID, W, {"n": i + 1}, if_version=version) for i, s in enumerate(stores)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 1, results
    assert all(isinstance(r, VersionConflictError) for r in results if not isinstance(r, dict))
    assert await store.get_state(ID, W) == won[0]


# -- coalescing ------------------------------------------------------------------------


class Recording(WrapperBackend):
    """Records the JSON of every put that succeeded (the memory backend with the default, plain codec)."""

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.written: list[dict[str, Any]] = []

    async def put(self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE) -> PutResult:
        result = await super().put(key, data, mode)
        self.written.append(json.loads(data))
        return result


@pytest.mark.parametrize("versioned_first", [True, False])
async def test_a_versioned_change_is_never_merged_into_a_batch(versioned_first: bool) -> None:
    """Concurrent plain changes never ride along with a versioned one: it applies to its version alone."""
    backend = Recording(MemoryBackend())
    store = Store(backend)
    await store.replace_state(ID, W, {"base": 0})
    version = (await store.get_versioned_state(ID, W)).version
    assert version is not None
    plain = [store.save_state_object(ID, {f"p{i}": i}, W) for i in range(3)]
    versioned = store.save_state_object(ID, {"v": 1}, W, if_version=version)
    calls = [versioned, *plain] if versioned_first else [*plain, versioned]
    results = await asyncio.gather(*calls, return_exceptions=True)
    outcome = results[0] if versioned_first else results[-1]
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, VersionConflictError)
        assert all("v" not in state for state in backend.written)
    else:
        assert {"base": 0, "v": 1} in backend.written  # written on its version, with nothing else
    final = await store.get_state(ID, W)
    assert {k: final[k] for k in ("p0", "p1", "p2")} == {"p0": 0, "p1": 1, "p2": 2}


# -- conditional delete where the server ignores it ---------------------------------------


class NoConditionalDelete(WrapperBackend):
    """A backend that says it cannot honour ``delete(if_match=...)``, and would delete anyway."""

    async def supports(self, capability: Capability) -> bool:
        return False

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        await self.inner.delete(key)


async def test_versioned_delete_refused_where_conditional_delete_is_not_honoured() -> None:
    store = Store(NoConditionalDelete(MemoryBackend()))
    await store.save_state_object(ID, {"n": 1}, W)
    version = (await store.get_versioned_state(ID, W)).version
    assert version is not None
    with pytest.raises(ConditionalDeleteUnsupportedError, match="nothing was deleted"):
        await store.delete_state(ID, W, if_version=version)
    assert await store.get_state(ID, W) == {"n": 1}
    await store.delete_state(ID, W)  # an unconditional delete needs no such promise
    assert await store.get_state(ID, W) == {}


@pytest.fixture
def proxy(s3_target: S3Target) -> Iterator[FaultProxy]:
    if s3_target.external:
        pytest.skip("the proxy rewrites a signed header: moto only")
    p = FaultProxy(s3_target.endpoint_url).start()
    yield p
    p.stop()


@pytest.mark.s3_server
async def test_stale_versioned_delete_on_s3_that_ignores_if_match_deletes_nothing(
    s3_target: S3Target, proxy: FaultProxy
) -> None:
    proxy.ignore_delete_if_match = True
    location = s3_target.new_location()
    store = Store(s3_target.backend(location, endpoint_url=proxy.endpoint_url))
    other = Store(s3_target.backend(location))
    try:
        stale, current = await stale_and_current(store, other)
        for version in (stale, current):
            with pytest.raises(
                ConditionalDeleteUnsupportedError, match=r"does not honour a conditional delete.*nothing was deleted"
            ):
                await store.delete_state(ID, W, if_version=version)
            assert await other.get_versioned_state(ID, W) == VersionedState({"n": 2, "keep": True}, current)
    finally:
        await store.aclose()
        await other.aclose()


# -- bad input -------------------------------------------------------------------------

BAD_VERSIONS: list[Any] = ["", '""', 7, b'"abc"', "a\nb", "x" * 2000, ["v"]]


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=repr)
@pytest.mark.parametrize("op", OPS)
async def test_a_bad_version_is_refused_before_any_io(op: str, bad: Any) -> None:
    counting = CountingBackend(MemoryBackend())
    store = Store(counting)
    await store.replace_state(ID, W, {"n": 1})
    counting.reset()
    with pytest.raises(InvalidInputError, match="if_version"):
        await OPS[op](store, bad)
    assert sum(counting.counts.values()) == 0
    assert await store.get_state(ID, W) == {"n": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.create_state("../x", W, {"a": 1}),
        lambda s: s.create_state(ID, "nope", {"a": 1}),
        lambda s: s.create_state(ID, W, ["a"]),
        lambda s: s.create_state(ID, W, {"a": float("nan")}),
        lambda s: s.create_state(ID, W, {"a": object()}),
        lambda s: s.get_versioned_state("", W),
        lambda s: s.get_versioned_state(ID, "nope"),
        lambda s: s.save_state_object("a/b", {"a": 1}, W, if_version='"abc"'),
        lambda s: s.replace_state(ID, W, {"a": {1, 2}}, if_version='"abc"'),
        lambda s: s.delete_state("..", W, if_version='"abc"'),
    ],
)
async def test_bad_input_to_the_new_calls_is_refused_before_any_io(call: Callable[[Store], Awaitable[Any]]) -> None:
    counting = CountingBackend(MemoryBackend())
    store = Store(counting)
    with pytest.raises(InvalidInputError):
        await call(store)
    assert sum(counting.counts.values()) == 0


# -- the facade and the sync client ---------------------------------------------------------


async def test_statestore_facade_has_versions(store: Store) -> None:
    assert await StateStore.create_state(ID, W, {"n": 1}) == {"n": 1}
    with pytest.raises(StateExistsError):
        await StateStore.create_state(ID, W, {"n": 2})
    versioned = await StateStore.get_versioned_state(ID, W)
    assert versioned.state == {"n": 1} and versioned.version is not None
    await StateStore.save_state("a", 1, ID, W, if_version=versioned.version)
    with pytest.raises(VersionConflictError):
        await StateStore.save_state_object(ID, {"b": 2}, W, if_version=versioned.version)
    v2 = (await StateStore.get_versioned_state(ID, W)).version
    assert v2 is not None
    assert await StateStore.replace_state(ID, W, {"c": 3}, if_version=v2) == {"c": 3}
    await skip_without_conditional_delete(store)
    with pytest.raises(VersionConflictError):
        await StateStore.delete_state(ID, W, if_version=v2)
    await StateStore.delete_state(ID, W, if_version=(await StateStore.get_versioned_state(ID, W)).version)
    assert await StateStore.get_versioned_state(ID, W) == VersionedState({}, None)


def test_syncstore_has_versions() -> None:
    with SyncStore(Store(MemoryBackend())) as s:
        assert s.create_state(ID, W, {"n": 1}) == {"n": 1}
        version = s.get_versioned_state(ID, W).version
        assert version is not None
        s.save_state("a", 1, ID, W, if_version=version)
        with pytest.raises(VersionConflictError):
            s.replace_state(ID, W, {}, if_version=version)
        with pytest.raises(VersionConflictError):
            s.delete_state(ID, W, if_version=version)
        current = s.get_versioned_state(ID, W).version
        assert s.save_state_object(ID, {"b": 2}, W, if_version=current) == {"n": 1, "a": 1, "b": 2}
        with pytest.raises(StateExistsError):
            s.create_state(ID, W, {})


# -- real processes ------------------------------------------------------------------------

CREATORS = 8

CREATOR = textwrap.dedent(
    """
    import asyncio, json, sys
    from statestore import StateExistsError, StateType, build_store

    async def main(worker):
        store = build_store()
        await store.list_states(StateType.WORKFLOWS)  # connections open before the start line
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            await store.create_state("claimed", StateType.WORKFLOWS, {"owner": worker})
            print(json.dumps({"won": True}), flush=True)
        except StateExistsError as exc:
            print(json.dumps({"won": False, "current": exc.current_version}), flush=True)
        finally:
            await store.aclose()

    asyncio.run(main(int(sys.argv[1])))
    """
)

INCREMENTER = textwrap.dedent(
    """
    import asyncio, json, sys
    from statestore import StateType, VersionConflictError, build_store

    async def main(times):
        store = build_store()
        conflicts = 0
        for _ in range(times):
            while True:
                state, version = await store.get_versioned_state("counter", StateType.WORKFLOWS)
                try:
                    await store.replace_state("counter", StateType.WORKFLOWS, {"n": state["n"] + 1}, if_version=version)
                    break
                except VersionConflictError:
                    conflicts += 1
        await store.aclose()
        print(json.dumps({"conflicts": conflicts}), flush=True)

    asyncio.run(main(int(sys.argv[1])))
    """
)


def run_workers(script: str, args: list[list[str]], env: dict[str, str], start_line: bool) -> list[dict[str, Any]]:
    """Run one process per ``args``; with ``start_line``, release them together once all are ready."""
    full_env = {**os.environ, **env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *a],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        for a in args
    ]
    try:
        if start_line:
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline().strip()
                assert line == "ready", (line, p.stderr.read() if p.stderr else "")
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
        out = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, out, strict=True):
        assert p.returncode == 0, err
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in out]


async def read_and_close(store: Store, state_id: str) -> dict[str, Any]:
    try:
        return (await store.get_versioned_state(state_id, W)).state
    finally:
        await store.aclose()


def local_env(root: Path) -> dict[str, str]:
    return {"STATESTORE_BACKEND": "local", "STATESTORE_LOCAL_ROOT": str(root), "STATESTORE_APP_NAME": "default"}


def target_env(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict[str, str], Store]:
    """Variables pointing worker processes at a fresh local root or S3 location, and a store on the same."""
    if kind == "local":
        return local_env(tmp_path / "root"), Store(LocalBackend(tmp_path / "root"), app_name="default")
    target: S3Target = request.getfixturevalue("s3_target")
    location: S3Location = target.new_location()
    return {**target.env(location), "STATESTORE_APP_NAME": "default"}, Store(
        target.backend(location), app_name="default"
    )


PROCESS_KINDS = ["local", pytest.param("s3", marks=pytest.mark.s3_server)]


@pytest.mark.parametrize("kind", PROCESS_KINDS)
def test_create_state_from_8_processes_exactly_one_wins(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env, store = target_env(kind, tmp_path, request)
    results = run_workers(CREATOR, [[str(w)] for w in range(CREATORS)], env, start_line=True)
    winners = [w for w, r in enumerate(results) if r["won"]]
    assert len(winners) == 1, results
    assert asyncio.run(read_and_close(store, "claimed")) == {"owner": winners[0]}
    assert all(r["current"] is not None for r in results if not r["won"])


@pytest.mark.parametrize("kind", PROCESS_KINDS)
def test_processes_changing_at_a_version_lose_no_update(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """4 processes x 10 read-then-write-at-version increments: a stale version never overwrites, so n ends at 40."""
    env, store = target_env(kind, tmp_path, request)
    asyncio.run(store.create_state("counter", W, {"n": 0}))
    results = run_workers(INCREMENTER, [["10"] for _ in range(4)], env, start_line=False)
    assert asyncio.run(read_and_close(store, "counter")) == {"n": 40}
    assert all(isinstance(r["conflicts"], int) for r in results)
