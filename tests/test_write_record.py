"""A version names one write, never two: the write record every write stores after the state's JSON.

Hardening II, item 2: a version that was a content hash repeated when a state was rewritten with the same bytes
(deleted and re-created, or toggled idle -> busy -> idle), so ``if_version`` and ``prune_states`` could act on
the wrong write. Each write now stores a fresh 64-bit id as insignificant whitespace after the JSON (decision
0044): every JSON reader still sees exactly the state's keys.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import S3Location, S3Target

from statestore import LocalBackend, MemoryBackend, ObjectBackend, StateType, Store, VersionConflictError
from statestore.backends import ObjectMeta, WrapperBackend
from statestore.codec.record import NO_RECORD, Record, attach, detach, new_rev
from statestore.errors import ConditionalDeleteUnsupportedError
from statestore.testing import CountingBackend

W = StateType.WORKFLOWS


async def test_the_same_content_written_again_is_another_version(store: Store) -> None:
    await store.save_state_object("wf", {"status": "idle"}, W)
    _, first = await store.get_versioned_state("wf", W)
    await store.save_state("status", "busy", "wf", W)
    await store.save_state("status", "idle", "wf", W)  # the very content of the first version
    state, now = await store.get_versioned_state("wf", W)
    assert state == {"status": "idle"} and first is not None and now is not None and now != first
    with pytest.raises(VersionConflictError) as info:
        await store.replace_state("wf", W, {"status": "stale"}, if_version=first)
    assert info.value.current_version == now
    with pytest.raises(VersionConflictError):
        await store.save_state("status", "stale", "wf", W, if_version=first)
    assert await store.get_state("wf", W) == {"status": "idle"}


async def test_a_state_deleted_and_created_again_alike_is_another_version(store: Store) -> None:
    await store.create_state("wf", W, {"n": 1})
    _, first = await store.get_versioned_state("wf", W)
    await store.delete_state("wf", W)
    await store.create_state("wf", W, {"n": 1})
    assert first is not None
    try:
        await store.delete_state("wf", W, if_version=first)
    except (VersionConflictError, ConditionalDeleteUnsupportedError):
        pass  # refused as stale, or refused outright where the server ignores a conditional delete (Ceph RGW)
    else:
        pytest.fail("a delete at the version of the deleted state removed its successor")
    assert await store.get_state("wf", W) == {"n": 1}


class _AfterListing(WrapperBackend):
    """Runs ``hook`` once the listing is done: another writer acting between prune's listing and its deletes."""

    def __init__(self, inner: ObjectBackend, hook: Any) -> None:
        super().__init__(inner)
        self.hook = hook

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        listed = [meta async for meta in self.inner.list(prefix)]
        await self.hook()
        for meta in listed:
            yield meta


async def test_prune_keeps_a_state_recreated_alike_after_its_listing(make_backend: Any) -> None:
    """docs/cli.md: "a state updated during the prune is kept" -- also when the update restores the same bytes."""
    writer = Store(make_backend(), app_name="app")
    await writer.save_state_object("wf", {"status": "done"}, W)
    await asyncio.sleep(0.05)

    async def recreate() -> None:
        await writer.delete_state("wf", W)
        await writer.save_state_object("wf", {"status": "done"}, W)

    pruner = Store(_AfterListing(make_backend(), recreate), app_name="app")
    try:
        if not await pruner.backend.supports(_conditional_delete()):
            pytest.skip("the server does not honour conditional deletes: prune refuses there")
        assert await pruner.prune_states(W, older_than=timedelta(milliseconds=1)) == []
        assert await writer.get_state("wf", W) == {"status": "done"}
    finally:
        await pruner.aclose()
        await writer.aclose()


def _conditional_delete() -> Any:
    from statestore.backends.base import Capability

    return Capability.CONDITIONAL_DELETE


async def test_a_lone_writer_still_pays_one_put_per_update() -> None:
    counting = CountingBackend(MemoryBackend())
    async with Store(counting) as store:
        await store.save_state("n", 0, "wf", W)
        counting.reset()
        for i in range(1, 21):
            await store.save_state("n", i, "wf", W)
        assert dict(counting.counts) == {"put": 20}


async def test_stored_json_has_only_the_states_keys_for_any_json_reader(tmp_path: Any) -> None:
    async with Store(LocalBackend(tmp_path), app_name="app") as store:
        await store.save_state_object("wf", {"a": 1, "b": [True, None]}, W)
        path = tmp_path / store.key("wf", W).object_key
        raw = path.read_bytes()
    assert json.loads(raw) == {"a": 1, "b": [True, None]}
    assert raw.startswith(b'{"a":1,"b":[true,null]}\n') and set(raw[raw.index(b"\n") :]) <= set(b" \t\n")


@pytest.mark.s3_server
async def test_an_s3_object_reads_as_plain_json_with_botocore(s3_target: S3Target) -> None:
    location: S3Location = s3_target.new_location()
    async with Store(s3_target.backend(location), app_name="app") as store:
        await store.save_state_object("wf", {"progress": 50}, W)
        key = location.prefix + ("/" if location.prefix else "") + store.key("wf", W).object_key
    client = s3_target.client()
    try:
        body = client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    finally:
        client.close()
    assert json.loads(body) == {"progress": 50}


def test_a_record_is_found_after_the_json_and_nothing_else_is_taken_for_one() -> None:
    rev = new_rev()
    assert detach(attach(b'{"a":1}', rev, 0)) == (b'{"a":1}', Record(rev, 0))
    assert detach(attach(b"{}", rev, 1_765_000_000_000_001)) == (b"{}", Record(rev, 1_765_000_000_000_001))
    for foreign in (b'{"a":1}', b'{"a":1}\n', b'{\n  "a": 1\n}\n', b'{"a":1}\n\t\t\n', b'{"a":1} \n' + b" " * 64):
        plain, record = detach(foreign)
        assert record == NO_RECORD and json.loads(plain) == json.loads(foreign)


def test_a_forked_child_draws_other_write_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, str(new_rev()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = int(os.read(read, 64))
    assert child != new_rev()  # without a reseed at fork both would draw the same next number


async def test_a_state_written_by_another_tool_reads_and_gets_a_record_on_its_next_write(tmp_path: Any) -> None:
    async with Store(LocalBackend(tmp_path), app_name="app") as store:
        path = tmp_path / store.key("wf", W).object_key
        path.parent.mkdir(parents=True)
        path.write_bytes(b'{\n  "status": "started"\n}\n')  # json.dump(..., indent=2) and a newline
        assert await store.get_state("wf", W) == {"status": "started"}
        await store.save_state("progress", 1, "wf", W)
        assert detach(path.read_bytes())[1].rev is not None
    assert await Store(MemoryBackend()).get_state("other", W) == {}
