"""``statestore list`` when the listing fails on a later page: ``--json`` prints nothing, plain lines say so.

A proxy fails every request for the second page of ListObjectsV2 (one with a continuation token) after the
first page of two ids went through.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import orjson
import pytest
from conftest import CliResult
from fault_proxy import Fault, FaultProxy

import statestore.config.build
from statestore import S3Backend
from statestore.testing import MotoServer

IDS = ["wf-1", "wf-2", "wf-3", "wf-4", "wf-5"]


@pytest.fixture
def second_page_fails(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[str], dict[str, str], FaultProxy]]:
    """(store options, environment, proxy) of a bucket with five states listed two per page through the proxy."""
    bucket = moto_server.create_bucket()
    client = moto_server.client()
    try:
        for state_id in IDS:
            key = f"persistent-artifacts/apps/default/workflows/{state_id}/config.json"
            client.put_object(Bucket=bucket, Key=key, Body=b'{"n": 1}')
    finally:
        client.close()
    monkeypatch.setattr(statestore.config.build, "S3Backend", functools.partial(S3Backend, list_page_size=2))
    proxy = FaultProxy(moto_server.endpoint_url).start()
    env = {**moto_server.fake_credentials(), "STATESTORE_S3_MAX_ATTEMPTS": "1"}
    yield ["--backend", "s3", "--bucket", bucket, "--endpoint-url", proxy.endpoint_url], env, proxy
    proxy.stop()


def test_listings_that_fail_on_the_second_page(
    second_page_fails: tuple[list[str], dict[str, str], FaultProxy], cli_run: Callable[..., CliResult]
) -> None:
    args, env, proxy = second_page_fails
    whole = cli_run(*args, "--json", "list", env=env)
    assert whole.code == 0 and sorted(orjson.loads(whole.out)) == IDS

    proxy.add(Fault("GET", "503", path="continuation-token", times=100))
    for json_args in (["--json", "list"], ["--json", "list", "--long"]):
        failed = cli_run(*args, *json_args, env=env)
        assert (failed.code, failed.out) == (5, "")  # no partial, unterminated array
        error = orjson.loads(failed.err)
        assert error["error"] == "BackendUnavailableError" and "stopped after" not in error["message"]

    for long_args in ([], ["--long"]):
        failed = cli_run(*args, "list", *long_args, env=env)
        assert failed.code == 5
        assert [line.split("\t")[0] for line in failed.out.splitlines()] == IDS[:2]  # streamed, then stopped
        lines = failed.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("statestore: backend unavailable")
        assert lines[0].endswith("; the listing stopped after 2 ids: the ids printed above are incomplete")
