"""What encryption costs: seal/open per state size, and a lone writer's save_state with and without a key.

    .venv/bin/python scripts/bench_credentials.py [--seconds 0.5]

Prints microseconds per operation and the backend requests per save (which
must stay 1 PUT, 0 GET with encryption on). Numbers depend on the machine;
compare the columns, not absolute values.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import orjson

from statestore import MemoryBackend, StateType, Store
from statestore.codec.crypto import EncryptingCodec, generate_key
from statestore.keys.paths import state_key
from statestore.testing import CountingBackend


def per_op(fn: Callable[[], object], seconds: float) -> float:
    """Mean microseconds per call of ``fn``, run for about ``seconds``."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            fn()
        n += 50
    return (time.perf_counter() - start) / n * 1e6


async def save_cost(codec: EncryptingCodec, saves: int) -> tuple[float, dict[str, int]]:
    backend = CountingBackend(MemoryBackend())
    store = Store(backend, app_name="bench", codec=codec)
    await store.save_state_object("c", {"host": "db", "username": "u"}, StateType.CREDENTIALS)
    backend.reset()
    start = time.perf_counter()
    for i in range(saves):
        await store.save_state("n", i, "c", StateType.CREDENTIALS)
    elapsed = time.perf_counter() - start
    return elapsed / saves * 1e6, {op: count // saves for op, count in backend.counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()

    codec = EncryptingCodec(generate_key())
    skey = state_key("bench", StateType.CREDENTIALS, "c")
    print(f"{'state size':>12} {'seal us':>10} {'open us':>10} {'stored/plain':>13}")
    for size in (256, 4096, 65536, 1 << 20):
        plain = orjson.dumps({"host": "db", "blob": "x" * size})
        sealed = codec.seal(skey, plain)
        seal_us = per_op(lambda p=plain: codec.seal(skey, p), args.seconds)
        open_us = per_op(lambda s=sealed: codec.open(skey, s), args.seconds)
        print(f"{len(plain):>12} {seal_us:>10.1f} {open_us:>10.1f} {len(sealed) / len(plain):>13.2f}")

    saves = 2000
    for label, c in (("no key", EncryptingCodec(secret_policy="allow")), ("encrypted", codec)):
        us, counts = asyncio.run(save_cost(c, saves))
        print(f"save_state on MemoryBackend, {label:>9}: {us:7.1f} us/op, requests per save {counts}")


if __name__ == "__main__":
    main()
