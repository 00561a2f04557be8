"""Where a steady ``save_state`` on obstore spends the event-loop thread's CPU, segment by segment.

    .venv/bin/python scripts/bench_segments.py [--ops N] [--stub [--delay MS]]

obstore's ``put_async`` is wrapped to note the loop thread's CPU time
(``time.thread_time``) when it is called, when it has issued the request and when
its answer resumes the caller. Per operation, for the raw conditional put and
for ``save_state``, it prints the medians of:

- ``before``: from the call to the request (statestore's validation, merge,
  encoding and S3 layer; the raw put's own few steps);
- ``issue``: obstore's synchronous part of ``put_async``;
- ``wait``: the loop thread while the request is in flight (event-loop wake-ups);
- ``after``: from the answer to the call's return.

``--stub`` answers at once instead (no moto): the same code in a tight loop, hot in
the CPU caches. ``--stub --delay 5`` answers after 5 ms of ``asyncio.sleep``: the
loop thread idles as it does while a server works, with no server process or
object_store thread running. The timer's own cost (a few us per mark) is in every segment.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import obstore
from bench import REGION, W, moto_server, obstore_raw_store, raw_client

from statestore import S3Backend, Store
from statestore.testing import MotoServer

SEGMENTS = ("before", "issue", "wait", "after")


async def main(ops: int, stub: bool, delay: float) -> None:
    real_put = obstore.put_async
    marks: dict[str, float] = {}
    clock = time.thread_time

    async def answered(*args: Any, **options: Any) -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)
        return {"e_tag": hashlib.md5(args[2]).hexdigest(), "version": None}

    async def noted(*args: Any, **options: Any) -> Any:
        marks["called"] = clock()
        pending = (answered if stub else real_put)(*args, **options)
        marks["issued"] = clock()
        result = await pending
        marks["answered"] = clock()
        return result

    obstore.put_async = noted  # type: ignore[assignment]
    with moto_server() as endpoint:
        bucket = "bench-segments"
        async with raw_client(endpoint) as client:
            await client.create_bucket(Bucket=bucket)
        raw = obstore_raw_store(endpoint, bucket)
        store = Store(S3Backend(bucket, endpoint_url=endpoint, region=REGION, client="obstore"))
        await store.save_state_object("steady", {"k": 0, "name": "steady"}, W)
        etag = [(await real_put(raw, "raw.json", b"{}"))["e_tag"]]

        async def raw_put(i: int) -> None:
            result = await obstore.put_async(raw, "raw.json", b'{"k":%d,"name":"steady"}' % i, mode={"e_tag": etag[0]})
            etag[0] = result["e_tag"]

        async def save(i: int) -> None:
            await store.save_state("k", i, "steady", W)

        subjects: dict[str, Callable[[int], Awaitable[None]]] = {"raw put": raw_put, "save_state": save}
        how = f" -- stubbed, no server, answered after {delay * 1000:g} ms" if stub else ""
        print(f"loop-thread CPU per operation, us (median of {ops}){how}")
        print(f"{'':<12}" + "".join(f"{name:>9}" for name in (*SEGMENTS, "total")))
        for name, op in subjects.items():
            for i in range(20):
                await op(-1 - i)
            got: dict[str, list[float]] = {segment: [] for segment in SEGMENTS}
            for i in range(ops):
                start = clock()
                await op(i)
                end = clock()
                got["before"].append(marks["called"] - start)
                got["issue"].append(marks["issued"] - marks["called"])
                got["wait"].append(marks["answered"] - marks["issued"])
                got["after"].append(end - marks["answered"])
            medians = [statistics.median(got[segment]) * 1e6 for segment in SEGMENTS]
            print(f"{name:<12}" + "".join(f"{m:>9.1f}" for m in (*medians, sum(medians))))
        await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--stub", action="store_true", help="answer every put at once, without a server")
    parser.add_argument("--delay", type=float, default=0.0, help="with --stub: answer after this many ms, idling")
    args = parser.parse_args()
    for name, value in MotoServer.fake_credentials().items():
        os.environ.setdefault(name, value)
    asyncio.run(main(args.ops, args.stub, args.delay / 1000))
