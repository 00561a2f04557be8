"""S3 reliability over real HTTP: contention across processes and random faults (failed reads: test_s3_faults.py).

``FaultProxy`` fails a seeded random 20 % of the requests (500, 503, reset, timeout, response lost after commit):
every ``update_state`` either succeeds and is applied exactly once, or raises a ``StateStoreError`` and is not.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import s3_backend
from fault_proxy import CHAOS_KINDS, FaultProxy
from test_contention import check_final, report, run_processes

from statestore import BackendError, RetryPolicy, StateStoreError, StateType, Store
from statestore.testing import MotoServer

WF = StateType.WORKFLOWS
READ_TIMEOUT = 0.4
TRANSIENT_RETRY = RetryPolicy(attempts=5, base_delay=0.02, max_delay=0.2, deadline=15)


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    return moto_server.create_bucket()


# -- contention --------------------------------------------------------------------


def test_processes_on_one_s3_object(moto_server: MotoServer, bucket: str, tmp_path: Path) -> None:
    workers, updates = 4, 25
    started = time.monotonic()
    spec = {"kind": "s3", "bucket": bucket, "endpoint_url": moto_server.endpoint_url}
    counts = run_processes(spec, workers, updates, tmp_path)
    report(f"s3 {workers} processes x {updates}", counts, time.monotonic() - started)

    async def final() -> dict[str, Any]:
        async with Store(s3_backend(moto_server, bucket), app_name="rel") as store:
            return await store.get_state("shared", WF)

    check_final(asyncio.run(final()), workers, updates)
    assert counts["conflict"] > 0, "the writers never collided, so this test proved nothing"


# -- random faults -------------------------------------------------------------------


ChaosRun = tuple[list[str], list[tuple[str, StateStoreError]], FaultProxy, float]


async def chaos_run(
    moto_server: MotoServer, bucket: str, *, transient: RetryPolicy, methods: tuple[str, ...], seed: str
) -> ChaosRun:
    """Two stores (one coalescing, one not) x 3 tasks increment one counter through the chaos proxy.

    Each increment also appends its token to ``ops``, so the final state tells
    which changes were applied, and how often. Returns the tokens that
    succeeded, those that gave up (with their error), the proxy and the time.
    """
    seeded = int(os.environ.get("CHAOS_SEED", seed))
    updates = int(os.environ.get("CHAOS_UPDATES", "15"))
    with FaultProxy(moto_server.endpoint_url, rate=0.2, seed=seeded, methods=methods) as proxy:
        proxy.slow_seconds = READ_TIMEOUT * 2
        options: dict[str, Any] = {"read_timeout": READ_TIMEOUT, "connect_timeout": 1.0, "retry": transient}
        backend = s3_backend(moto_server, bucket, endpoint_url=proxy.endpoint_url, **options)
        proxy.rate, rate = 0.0, proxy.rate  # the safety verification first, unfaulted: the faults are for updates
        await backend.verify_conditions()
        proxy.rate = rate
        stores = [
            Store(backend, app_name="chaos", retry=RetryPolicy(attempts=50, base_delay=0.01, max_delay=0.2)),
            Store(backend, app_name="chaos", coalesce=False),
        ]
        done: list[str] = []
        gave_up: list[tuple[str, StateStoreError]] = []

        async def worker(store: Store, name: str) -> None:
            for i in range(updates):
                token = f"{name}-{i}"
                try:
                    await store.update_state(
                        "counter", WF, lambda s, t=token: {**s, "n": s.get("n", 0) + 1, "ops": [*s.get("ops", []), t]}
                    )
                except StateStoreError as exc:  # any other exception fails the test
                    gave_up.append((token, exc))
                else:
                    done.append(token)

        started = time.monotonic()
        await asyncio.gather(*(worker(store, f"s{s}t{t}") for s, store in enumerate(stores) for t in range(3)))
        elapsed = time.monotonic() - started
        await backend.aclose()
    return done, gave_up, proxy, elapsed


async def check_exactly_once(moto_server: MotoServer, bucket: str, what: str, run: ChaosRun) -> None:
    done, gave_up, proxy, elapsed = run
    async with Store(s3_backend(moto_server, bucket), app_name="chaos") as clean:
        state = await clean.get_state("counter", WF)
    ops = state.get("ops", [])
    print(
        f"\n[reliability] s3 {what}: {len(done) + len(gave_up)} update_state calls in {elapsed:.1f} s, "
        f"{len(done)} succeeded, {len(gave_up)} gave up {dict(Counter(type(e).__name__ for _, e in gave_up))}; "
        f"{len(proxy.paths)} requests {dict(Counter(m for m, _ in proxy.paths))}, "
        f"{sum(proxy.chaos.values())} faults injected {dict(proxy.chaos)}, forwarded {dict(proxy.forwarded)}"
    )
    doubled = sorted(t for t, n in Counter(ops).items() if n > 1)
    lost = sorted(t for t in done if t not in ops)
    failed_but_applied = sorted(t for t, _ in gave_up if t in ops)
    assert not doubled, f"applied twice: {doubled}"
    assert not lost, f"reported done but not applied: {lost}"
    assert not failed_but_applied, f"reported failed but applied: {failed_but_applied}"
    assert state["n"] == len(done) == len(ops)


async def test_updates_under_20_percent_faults_apply_exactly_once(moto_server: MotoServer, bucket: str) -> None:
    """All requests may fail; transient retries (5 tries) absorb the faults."""
    methods = ("GET", "PUT", "HEAD", "DELETE")
    run = await chaos_run(moto_server, bucket, transient=TRANSIENT_RETRY, methods=methods, seed="20261128")
    await check_exactly_once(moto_server, bucket, "chaos, 5 tries", run)
    done, _, proxy, _ = run
    assert set(proxy.chaos) == set(CHAOS_KINDS), "some kind of fault was never injected"
    assert len(done) >= 45, "too few updates got through to prove anything"


async def test_updates_that_give_up_are_not_applied(moto_server: MotoServer, bucket: str) -> None:
    """Puts fail 20 % of the time and get one try, so updates give up: none of those is applied.

    Reads are not faulted here: after a put whose answer was lost, only a read
    can tell whether it landed; when that read fails too the outcome is unknown
    (see docs/reliability.md).
    """
    one_try = RetryPolicy(attempts=1, deadline=10)
    run = await chaos_run(moto_server, bucket, transient=one_try, methods=("PUT",), seed="7")
    await check_exactly_once(moto_server, bucket, "chaos, puts only, 1 try", run)
    _, gave_up, _, _ = run
    assert gave_up, "nothing gave up, so this test proved nothing"
    # a read can give up too: with one try and a 0.4 s read timeout, a loaded machine's moto answers a GET late
    assert all(isinstance(e, BackendError) and ("S3 put" in str(e) or "S3 get" in str(e)) for _, e in gave_up), [
        str(e) for _, e in gave_up
    ]
