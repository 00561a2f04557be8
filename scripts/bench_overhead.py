"""statestore's own CPU per steady-state call, with no network: what its layers add to the client's call.

    .venv/bin/python scripts/bench_overhead.py [--calls N] [--rounds R]

Two setups, each against its own raw call in the same run:

- a ``MemoryBackend``: statestore's layers (validation, coalescing, compare-and-swap
  loop, cache, codec) over a dict;
- the S3 backend on the obstore transport with obstore's ``put_async`` replaced by a
  stub that answers at once: the S3 layer and the obstore adapter too, and none of
  object_store's own work (which ``scripts/bench.py --transport`` measures against moto).

``--without-otel`` hides an installed ``opentelemetry`` from statestore (as if not
installed), to compare with a run that has it installed and no provider set.

Prints, per call, the CPU time (median of rounds, process time) and the number of
Python function calls (deterministic for a given code: counted with ``cProfile``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Op = Callable[[int], Awaitable[None]]


async def cpu_per_call(op: Op, calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the process time per call of ``op``, after a warm-up."""
    for i in range(50):
        await op(-1 - i)
    samples = []
    for r in range(rounds):
        start = time.process_time()
        for i in range(calls):
            await op(r * calls + i)
        samples.append((time.process_time() - start) / calls)
    return statistics.median(samples)


async def python_calls_per_call(op: Op, calls: int) -> float:
    """Python function calls per call of ``op`` (cProfile's count: deterministic for a given code)."""
    for i in range(20):
        await op(-1 - i)
    profile = cProfile.Profile()
    profile.enable()
    for i in range(calls):
        await op(i)
    profile.disable()
    total: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return total / calls


async def stub_put_async(store: Any, path: str, body: bytes, **options: Any) -> dict[str, Any]:
    """obstore's ``put_async`` answering at once, with an ETag of the body (no request)."""
    from statestore.backends.base import md5_etag

    return {"e_tag": md5_etag(body), "version": None}


async def report(pairs: Sequence[tuple[str, Op, str, Op]], calls: int, rounds: int) -> None:
    for name, op, raw_name, raw in pairs:
        raw_cpu = await cpu_per_call(raw, calls, rounds)
        cpu = await cpu_per_call(op, calls, rounds)
        raw_n = await python_calls_per_call(raw, calls)
        n = await python_calls_per_call(op, calls)
        print(f"{raw_name:<36}{raw_cpu * 1e6:>10.1f}{raw_n:>10.1f}{'':>13}")
        print(f"{name:<36}{cpu * 1e6:>10.1f}{n:>10.1f}{(cpu - raw_cpu) * 1e6:>13.1f}")


async def obstore_stubbed(calls: int, rounds: int) -> None:
    """save_state on S3Backend(client="obstore") with obstore's put answering at once, against the stub alone."""
    import obstore

    from statestore import S3Backend, Store
    from statestore.backends.base import md5_etag
    from statestore.core.cas import Stored

    obstore.put_async = stub_put_async  # type: ignore[assignment]
    store = Store(S3Backend("bench", endpoint_url="http://127.0.0.1:9", region="us-east-1", client="obstore"))
    body = b'{"k":0,"name":"steady"}'
    skey = store.key("steady", "workflows")
    store._cas._cache.put(skey.object_key, Stored(body, md5_etag(body)))  # as after a first read: no GET
    counter = [0]

    async def raw_put(i: int) -> None:
        body = b'{"k":%d,"name":"steady"}' % i
        await obstore.put_async(None, "raw.json", body, mode={"e_tag": "x"})  # type: ignore[arg-type]

    async def save(i: int) -> None:
        counter[0] += 1  # a new value each call: every call writes
        await store.save_state("k", counter[0], "steady", "workflows")

    await report([("save_state (S3, obstore stubbed)", save, "stub put_async", raw_put)], calls, rounds)


async def main(calls: int, rounds: int) -> None:
    from statestore import MemoryBackend, Store, telemetry
    from statestore.backends.base import PutMode

    print(f"opentelemetry {'installed, no provider set' if telemetry.available() else 'not importable'}")
    backend = MemoryBackend()
    store = Store(backend)
    await store.save_state_object("steady", {"k": 0, "name": "steady"}, "workflows")
    raw_key = "raw.json"
    etag = [(await backend.put(raw_key, b'{"k":0,"name":"steady"}')).etag]

    async def raw_put(i: int) -> None:
        result = await backend.put(raw_key, b'{"k":%d,"name":"steady"}' % i, PutMode.update(etag[0]))
        etag[0] = result.etag

    async def raw_get(i: int) -> None:
        await backend.get(raw_key)

    async def save(i: int) -> None:
        await store.save_state("k", i, "steady", "workflows")

    async def get(i: int) -> None:
        await store.get_state("steady", "workflows")

    pairs = [
        ("save_state (memory)", save, "MemoryBackend put(If-Match)", raw_put),
        ("get_state (memory)", get, "MemoryBackend get", raw_get),
    ]
    print(f"{'per call':<36}{'CPU us':>10}{'py calls':>10}{'overhead us':>13}")
    await report(pairs, calls, rounds)
    await store.aclose()
    await obstore_stubbed(calls, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--without-otel", action="store_true", help="run as if opentelemetry were not installed")
    args = parser.parse_args()
    if args.without_otel:
        if "statestore" in sys.modules or "statestore.telemetry" in sys.modules:
            raise SystemExit("--without-otel: statestore was imported already")
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails: telemetry.available() is False
    asyncio.run(main(args.calls, args.rounds))
