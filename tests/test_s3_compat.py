"""S3-compatible servers as they are: the If-Match form honoured, conditions refused on unchanged objects,
conditional delete, and what a steady update costs. ``s3_server`` tests run on the S3 target (moto or Ceph RGW);
``FaultProxy`` counts requests and plays a server refusing one If-Match form or ignoring If-Match on DeleteObject.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import pytest
from conftest import S3Location, S3Target
from fault_proxy import FaultProxy

from statestore import BackendError, ConflictError, PutMode, RetryPolicy, StateType, Store
from statestore.backends.base import Capability
from statestore.backends.s3.backend import PROBE_PREFIX, IfMatchRejectedError, S3Backend
from statestore.errors import ConditionalDeleteUnsupportedError, PreconditionFailed

KEY = "persistent-artifacts/apps/a/workflows/w1/config.json"
WF = StateType.WORKFLOWS
QUOTED = frozenset({"quoted"})
BOTH = frozenset({"quoted", "unquoted"})
#: Whether DeleteObject with a wrong If-Match is refused (412, object kept), measured: Ceph RGW deletes the object,
#: LocalStack answers 501 NotImplemented.
KNOWN_CONDITIONAL_DELETE = {"moto": True, "ceph-rgw": False, "localstack": False}


@pytest.fixture
def proxy(s3_target: S3Target) -> Iterator[FaultProxy]:
    p = FaultProxy(s3_target.endpoint_url).start()
    yield p
    p.stop()


def through(target: S3Target, proxy: FaultProxy, reject: frozenset[str] = frozenset(), **options: Any) -> S3Backend:
    """A backend on a fresh location of ``target`` behind ``proxy``, which refuses the If-Match forms ``reject``."""
    proxy.reject_if_match = reject
    return target.backend(target.new_location(), endpoint_url=proxy.endpoint_url, **options)


def bump(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


def requests(proxy: FaultProxy) -> dict[str, int]:
    """The requests the proxy received since its last reset, by method (refused ones included)."""
    return dict(Counter(method for method, _ in proxy.paths))


# -- the If-Match form ------------------------------------------------------------------


@pytest.mark.s3_server
async def test_a_lone_writer_pays_one_put_per_steady_update(
    s3_target: S3Target, proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the server's If-Match form, once it is known an update is one PUT and nothing else."""
    async with Store(through(s3_target, proxy)) as store:
        await store.update_state("w1", WF, bump)  # create
        proxy.reset_counts()
        await store.update_state("w1", WF, bump)  # the first If-Match put: where a form is learnt, if at all
        first = requests(proxy)
        proxy.reset_counts()
        for _ in range(10):
            await store.update_state("w1", WF, bump)
        steady = requests(proxy)
        assert await store.get_state("w1", WF) == {"n": 12}
    assert steady == {"PUT": 10}
    if s3_target.name == "moto":  # a server that honours the quoted form: nothing changes
        assert first == {"PUT": 1}
    else:
        assert first in ({"PUT": 1}, {"PUT": 2, "GET": 1})
    with capsys.disabled():
        print(f"\n{s3_target.name}: first update {first}, then {steady['PUT'] / 10:g} PUT per update")


@pytest.mark.s3_server
async def test_auto_learns_the_form_a_server_honours_and_keeps_it(s3_target: S3Target, proxy: FaultProxy) -> None:
    """A server that refuses the quoted form (as Ceph RGW): the verification before the first write learns it (one
    PUT more), once per backend; every update then sends the form the server honours."""
    backend = through(s3_target, proxy, QUOTED)
    async with Store(backend, retry=RetryPolicy(attempts=3, base_delay=0.01, deadline=5)) as store:
        await store.update_state("w1", WF, bump)
        assert proxy.if_match_seen["PUT quoted"] == 1  # refused once, in the verification
        assert backend.if_match_form == "unquoted" and backend.if_match_setting == "auto"
        proxy.reset_counts()
        await store.update_state("w1", WF, bump)
        assert requests(proxy) == {"PUT": 1}
        assert proxy.if_match_seen == {"PUT unquoted": 1}
        proxy.reset_counts()
        for _ in range(5):
            await store.update_state("w1", WF, bump)
        assert requests(proxy) == {"PUT": 5}
        assert proxy.if_match_seen == {"PUT unquoted": 5}

        # the form belongs to the backend: another thread with its own loop and store uses it at once
        def in_thread() -> None:
            other = Store(backend)
            asyncio.run(other.get_state("w1", WF))
            proxy.reset_counts()
            asyncio.run(other.update_state("w1", WF, bump))

        await asyncio.to_thread(in_thread)
        assert requests(proxy) == {"PUT": 1}
        assert await store.get_state("w1", WF) == {"n": 8}


@pytest.mark.s3_server
async def test_a_stale_etag_is_still_contention_behind_a_form_refusing_server(
    s3_target: S3Target, proxy: FaultProxy
) -> None:
    async with aclosing(through(s3_target, proxy, QUOTED)) as backend:
        first = (await backend.put(KEY, b"1")).etag
        await backend.put(KEY, b"2", PutMode.update(first))
        with pytest.raises(PreconditionFailed) as info:
            await backend.put(KEY, b"3", PutMode.update(first))
        assert info.value.current_known and info.value.current is not None and info.value.current.data == b"2"


@pytest.mark.s3_server
@pytest.mark.parametrize("form", ["quoted", "unquoted"])
async def test_a_pinned_form_is_the_one_sent(s3_target: S3Target, proxy: FaultProxy, form: str) -> None:
    async with aclosing(through(s3_target, proxy, if_match_form=form, verify=False)) as backend:
        etag = (await backend.put(KEY, b"1")).etag
        if form == "quoted" and s3_target.name == "ceph-rgw":
            with pytest.raises(IfMatchRejectedError):
                await backend.put(KEY, b"2", PutMode.update(etag))
        else:
            await backend.put(KEY, b"2", PutMode.update(etag))
        assert proxy.if_match_seen == {f"PUT {form}": 1}


@pytest.mark.s3_server
async def test_a_pinned_form_the_server_refuses_is_a_clear_error_at_once(
    s3_target: S3Target, proxy: FaultProxy
) -> None:
    backend = through(s3_target, proxy, QUOTED, if_match_form="quoted", verify=False)  # the runtime path
    async with Store(backend) as store:
        await store.save_state("a", 1, "w1", WF)
        proxy.reset_counts()
        with pytest.raises(IfMatchRejectedError, match=r"STATESTORE_S3_IF_MATCH is 'quoted'") as info:
            await store.save_state("a", 2, "w1", WF)
        assert "quoted form" in str(info.value) and "unquoted" in str(info.value)  # names the setting's values
        assert requests(proxy) == {"PUT": 1, "GET": 1}  # no other form tried, no retry
        assert await store.get_state("w1", WF) == {"a": 1}


# -- a condition refused although nothing changed ------------------------------------


@pytest.mark.s3_server
async def test_a_server_refusing_both_forms_is_an_error_within_one_attempt(
    s3_target: S3Target, proxy: FaultProxy
) -> None:
    """Not contention: no 30 s of retries ending in ConflictError, but one BackendError naming the setting."""
    async with Store(through(s3_target, proxy, BOTH, verify=False)) as store:  # the runtime path
        await store.save_state_object("w1", {"n": 1}, WF)
        proxy.reset_counts()
        with pytest.raises(BackendError) as info:
            await store.update_state("w1", WF, bump)
        assert isinstance(info.value, IfMatchRejectedError) and not isinstance(info.value, ConflictError)
        message = str(info.value)
        assert "quoted and unquoted form" in message and "had not changed" in message
        assert "STATESTORE_S3_IF_MATCH" in message
        assert proxy.if_match_seen == {"PUT quoted": 1, "PUT unquoted": 1}
        assert requests(proxy) == {"PUT": 2, "GET": 2}  # each refusal read once; no retry
        assert await store.get_state("w1", WF) == {"n": 1}


# -- conditional delete ------------------------------------------------------------------


def server_refuses_a_wrong_if_match_on_delete(target: S3Target) -> bool:
    """Ground truth, asked of the server directly: does DeleteObject with a wrong If-Match answer 412 and keep the
    object? (Ceph RGW deletes it; LocalStack answers 501 NotImplemented and keeps it: neither honours it.)"""
    location = target.new_location()
    client = target.client()
    key = f"{location.prefix}/truth" if location.prefix else "truth"
    status = None
    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=b"x")
        try:
            client.delete_object(Bucket=location.bucket, Key=key, IfMatch='"00000000000000000000000000000000"')
        except client.exceptions.ClientError as exc:
            status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        try:
            client.head_object(Bucket=location.bucket, Key=key)
        except client.exceptions.ClientError:
            return False
        client.delete_object(Bucket=location.bucket, Key=key)
        return status == 412
    finally:
        client.close()


@pytest.mark.s3_server
async def test_auto_probes_conditional_delete_once_and_a_stale_one_deletes_nothing(
    s3_target: S3Target, proxy: FaultProxy, s3_transport: str
) -> None:
    """On obstore, which cannot send If-Match on DeleteObject, every conditional delete is refused unprobed."""
    honoured = server_refuses_a_wrong_if_match_on_delete(s3_target)
    assert honoured == KNOWN_CONDITIONAL_DELETE.get(s3_target.name, honoured)
    obstore = s3_transport == "obstore"
    honoured = honoured and not obstore
    async with aclosing(through(s3_target, proxy)) as backend:
        assert backend.conditional_delete == "auto"
        first = (await backend.put(KEY, b"1")).etag
        second = (await backend.put(KEY, b"2", PutMode.update(first))).etag
        proxy.reset_counts()
        outcomes = await asyncio.gather(
            *(backend.delete(KEY, if_match=first) for _ in range(3)), return_exceptions=True
        )
        expected = PreconditionFailed if honoured else ConditionalDeleteUnsupportedError
        assert all(isinstance(o, expected) for o in outcomes), outcomes
        got = await backend.get(KEY)
        assert got is not None and got.data == b"2"
        assert await backend.supports(Capability.CONDITIONAL_DELETE) is honoured  # known: no request
        probes = [path for method, path in proxy.paths if method == "PUT" and PROBE_PREFIX in path]
        assert len(probes) == (0 if obstore else 1)  # one probe for three concurrent callers; none on obstore
        assert not obstore or not any(method == "DELETE" for method, _ in proxy.paths)
        assert [m.key async for m in backend.list(PROBE_PREFIX)] == []  # and it cleaned up
        if honoured:
            await backend.delete(KEY, if_match=second)
            assert await backend.get(KEY) is None
        else:
            with pytest.raises(ConditionalDeleteUnsupportedError, match="nothing was deleted"):
                await backend.delete(KEY, if_match=second)
            assert await backend.get(KEY) is not None


async def test_auto_finds_a_server_that_ignores_if_match_on_delete(s3_target: S3Target, proxy: FaultProxy) -> None:
    """The proxy drops If-Match from DeleteObject, as MinIO and Ceph RGW ignore it."""
    if s3_target.external:
        pytest.skip("the proxy rewrites a signed header: moto only")
    proxy.ignore_delete_if_match = True
    backend = through(s3_target, proxy, client="aioboto3")  # obstore cannot send If-Match on DeleteObject at all
    same_objects = S3Location(backend.bucket, backend.prefix.rstrip("/"))
    trusting = s3_target.backend(
        same_objects, endpoint_url=proxy.endpoint_url, conditional_delete=True, client="aioboto3"
    )
    try:
        assert await backend.supports(Capability.CONDITIONAL_DELETE) is False
        await backend.put(KEY, b"1")
        proxy.reset_counts()
        with pytest.raises(
            ConditionalDeleteUnsupportedError, match=r"does not honour If-Match on DeleteObject \(probed\)"
        ):
            await backend.delete(KEY, if_match='"00000000000000000000000000000000"')
        assert requests(proxy) == {}  # refused before any request
        assert await backend.get(KEY) is not None
        # ``true`` trusts the server blindly: that is what the setting says, and why ``auto`` is the default
        assert await trusting.supports(Capability.CONDITIONAL_DELETE) is True
        await trusting.delete(KEY, if_match='"00000000000000000000000000000000"')
        assert await backend.get(KEY) is None
    finally:
        await backend.aclose()
        await trusting.aclose()


@pytest.mark.s3_server
async def test_a_server_answering_501_to_if_match_on_delete_has_no_conditional_delete(
    s3_target: S3Target, proxy: FaultProxy, s3_transport: str
) -> None:
    """The proxy answers 501 NotImplemented to DeleteObject with If-Match, as LocalStack does: ``auto`` probes
    that as unsupported (not a ``BackendError``), and ``true`` turns the 501 into the same typed refusal."""
    proxy.unimplemented_delete_if_match = True
    async with aclosing(through(s3_target, proxy)) as backend:
        etag = (await backend.put(KEY, b"1")).etag
        assert await backend.supports(Capability.CONDITIONAL_DELETE) is False
        assert [m.key async for m in backend.list(PROBE_PREFIX)] == []  # the probe cleaned up
        proxy.reset_counts()
        with pytest.raises(ConditionalDeleteUnsupportedError, match="nothing was deleted"):
            await backend.delete(KEY, if_match=etag)
        assert requests(proxy) == {}  # refused before any request
        if s3_transport == "aioboto3":  # obstore cannot send If-Match on DeleteObject, so it refuses ``true``
            same_objects = S3Location(backend.bucket, backend.prefix.rstrip("/"))
            trusting = s3_target.backend(same_objects, endpoint_url=proxy.endpoint_url, conditional_delete=True)
            async with aclosing(trusting):
                with pytest.raises(ConditionalDeleteUnsupportedError, match=r"501.*nothing was deleted"):
                    await trusting.delete(KEY, if_match=etag)
            assert proxy.faulted["DELETE 501"] == 1
        got = await backend.get(KEY)
        assert got is not None and got.data == b"1"


async def test_conditional_delete_false_refuses_without_a_request(s3_target: S3Target, proxy: FaultProxy) -> None:
    async with aclosing(through(s3_target, proxy, conditional_delete="false", client="aioboto3")) as backend:
        etag = (await backend.put(KEY, b"1")).etag
        proxy.reset_counts()
        with pytest.raises(ConditionalDeleteUnsupportedError, match="STATESTORE_S3_CONDITIONAL_DELETE=false"):
            await backend.delete(KEY, if_match=etag)
        assert requests(proxy) == {}
        assert await backend.get(KEY) is not None
