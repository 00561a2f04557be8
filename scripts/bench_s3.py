"""Figures for S3Backend against a local moto server: request rates, Store costs, contention across processes.

    .venv/bin/python scripts/bench_s3.py [--n 200] [--processes 6] [--saves 40]

moto (in this process, on 127.0.0.1) is the bottleneck, not the client: the
figures compare statestore's paths with each other, not with AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable

from statestore import CountingBackend, S3Backend, StateType, Store
from statestore.testing import MotoServer

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from statestore import PreconditionFailed, RetryPolicy, S3Backend, StateType, Store, WrapperBackend

    class ConflictCounter(WrapperBackend):
        conflicts = 0

        async def put(self, key, data, *, if_match=None, if_none_match=False):
            try:
                return await super().put(key, data, if_match=if_match, if_none_match=if_none_match)
            except PreconditionFailed:
                self.conflicts += 1
                raise

    async def main(worker, saves, endpoint, bucket):
        backend = ConflictCounter(S3Backend(bucket, endpoint_url=endpoint, region="us-east-1"))
        store = Store(backend, retry=RetryPolicy(attempts=60, base_delay=0.01, max_delay=0.5, deadline=120))
        await store.list_states(StateType.WORKFLOWS)
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(saves):
            await store.save_state(f"w{worker}-{i}", i, "shared", StateType.WORKFLOWS)
        await store.aclose()
        print(json.dumps({"conflicts": backend.conflicts}), flush=True)

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    """
)


def backend_for(server: MotoServer, bucket: str) -> S3Backend:
    return S3Backend(
        bucket,
        endpoint_url=server.endpoint_url,
        region="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


async def timed(n: int, op: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """Run ``op(i)`` ``n`` times in sequence; (operations per second, median latency in ms)."""
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        latencies.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    return n / total, statistics.median(latencies) * 1000


async def single_process(server: MotoServer, n: int) -> None:
    bucket = server.create_bucket()
    backend = backend_for(server, bucket)
    key = "persistent-artifacts/apps/bench/workflows/w/config.json"
    etag = await backend.put(key, b"{}", if_none_match=True)

    async def put(i: int) -> None:
        nonlocal etag
        etag = await backend.put(key, json.dumps({"i": i}).encode(), if_match=etag)

    async def get(i: int) -> None:
        await backend.get(key)

    rows = [("backend.put (If-Match)", *await timed(n, put)), ("backend.get", *await timed(n, get))]
    counting = CountingBackend(backend)
    store = Store(counting, app_name="bench")
    rate, median = await timed(n, lambda i: store.save_state(f"k{i % 10}", i, "one", StateType.WORKFLOWS))
    rows.append(
        (f"Store.save_state, one id ({counting.counts['put'] / n:.2f} PUT, {counting.counts['get']} GET)", rate, median)
    )

    counting.reset()
    start = time.perf_counter()
    await asyncio.gather(*(store.save_state(f"k{i}", i, f"id{i % 20}", StateType.WORKFLOWS) for i in range(n)))
    elapsed = time.perf_counter() - start
    rows.append(
        (f"{n} concurrent save_state on 20 ids ({counting.counts['put']} PUT, coalesced)", n / elapsed, float("nan"))
    )
    await store.aclose()
    print(f"{'operation':<62} {'ops/s':>8} {'median ms':>10}")
    for name, rate, median in rows:
        shown = "-" if median != median else f"{median:.1f}"  # NaN: no per-call latency
        print(f"{name:<62} {rate:>8.1f} {shown:>10}")


def contention(server: MotoServer, processes: int, saves: int) -> None:
    bucket = server.create_bucket()
    env = {**os.environ, **server.fake_credentials()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(w), str(saves), server.endpoint_url, bucket],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(processes)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    elapsed = time.perf_counter() - start
    conflicts = sum(json.loads(out.strip().splitlines()[-1])["conflicts"] for out in outputs)

    async def check() -> int:
        async with Store(backend_for(server, bucket)) as store:
            return len(await store.get_state("shared", StateType.WORKFLOWS))

    keys = asyncio.run(check())
    total = processes * saves
    print(
        f"{processes} processes x {saves} save_state on one id: {elapsed:.1f} s, {total / elapsed:.1f} saves/s, "
        f"{conflicts} conflicts retried ({conflicts / total:.2f} per save), {keys}/{total} keys present"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--saves", type=int, default=40)
    args = parser.parse_args()
    with MotoServer() as server:
        asyncio.run(single_process(server, args.n))
        contention(server, args.processes, args.saves)


if __name__ == "__main__":
    main()
