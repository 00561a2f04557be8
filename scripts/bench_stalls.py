"""Large states: how long coalesced writes block the event loop, how long a batch takes, and peak memory.

    .venv/bin/python scripts/bench_stalls.py [--backend local|memory|both] [--only NAME ...] [--repeat N]

Each scenario runs in a fresh subprocess (so peak RSS is its own) on a
``LocalBackend`` in a temp dir and on a ``MemoryBackend``:

- ``save100``: a 4 MB state; one ``save_state`` (median of 3, cache warm) is
  the baseline; then 100 ``save_state`` calls at once (coalesced). A ticker
  task that sleeps 2 ms at a time records how late it wakes up: the longest
  lateness is the longest event-loop stall.
- ``save100+over``: the same, plus one caller whose value pushes the state
  over the size limit (it alone must fail).
- ``object100``: 100 ``save_state_object`` calls (each caller gets a state of
  its own), for comparison; no target.
- ``update8``: one ``update_state`` on a state just under the 8 MiB limit; no
  target (parsing that much JSON holds the GIL for a while in any thread).
- ``copy3`` / ``copy3over``: ``copy_states`` of three dense 4.5 MB
  credentials states (many small records, no secret in them) to a store
  without a key, whose secret policy scans every value: a dry run, and an
  overwrite onto identical states (both sides read and compared). Also
  printed: one parse of the state, the floor of any stall (orjson holds the
  GIL while it parses, in whichever thread).
- ``s3first``: the first ``get_state`` of a fresh process on an S3 store (a moto server
  this script starts), once per transport (aioboto3, obstore): the longest event-loop
  stall while the client library is imported and the client built. Target <= 50 ms.
- ``rss40``: 40 ``save_state`` calls at once on a 7.6 MB state, cache cold
  (the state was written by another process); peak RSS (``ru_maxrss``) minus
  the peak before the calls, as a multiple of the state's size. Linux keeps
  ``ru_maxrss`` across fork and exec, so the state is made in a process of its
  own and the parent that starts the measuring process stays small.

States are lists of small records (5-8 bytes of Python objects per byte of
JSON), the shape where copies cost the most. ``save100``, ``save100+over``
and ``update8`` measure ``--repeat`` batches (default 3) in one process and
print the median (and the range): on a shared machine the scheduler alone can
hold a process back for tens of milliseconds. Targets are printed with each
figure; the run exits 1 if a median misses one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

import statestore
from statestore import LocalBackend, MemoryBackend, ObjectBackend, StateTooLargeError, StateType, Store
from statestore.copying import copy_states

W, C = StateType.WORKFLOWS, StateType.CREDENTIALS
TICK = 0.002
MB = 1_000_000
LIMIT = 8 * 1024 * 1024


def make_state(nbytes: int) -> dict[str, Any]:
    """A workflow-like state of about ``nbytes`` of JSON: a cursor and a list of table records."""
    tables: list[dict[str, Any]] = []
    size, i = 30, 0
    while size < nbytes:
        record = {
            "name": f"schema_{i % 37}.table_{i:06d}",
            "rows": i * 7919 % 1_000_003,
            "columns": [f"col_{j}" for j in range(6)],
            "checkpoint": f"2024-05-{i % 28 + 1:02d}T12:00:00Z",
            "ok": i % 3 == 0,
            "note": "x" * (i % 50),
        }
        tables.append(record)
        size += len(orjson.dumps(record)) + 1
        i += 1
    return {"cursor": 0, "tables": tables}


async def ticking(work: Awaitable[Any]) -> tuple[Any, float, float]:
    """Run ``work`` while a ticker measures lateness; returns (result, seconds, longest stall)."""
    stop = False
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            worst = max(worst, time.perf_counter() - due)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(TICK * 3)
    worst = 0.0
    start = time.perf_counter()
    try:
        result = await work
    finally:
        elapsed = time.perf_counter() - start
        stop = True
        await task
    return result, elapsed, worst


def make_backend(kind: str, root: Path) -> ObjectBackend:
    return LocalBackend(root) if kind == "local" else MemoryBackend()


# -- scenarios (run in a child process) ---------------------------------------------------------------


async def seeded(kind: str, root: Path, nbytes: int) -> tuple[Store, int]:
    store = Store(make_backend(kind, root), app_name="bench")
    state = make_state(nbytes)
    await store.replace_state("big", W, state)
    size = len(orjson.dumps(state))
    del state
    gc.collect()
    return store, size


async def one_save(store: Store) -> float:
    times = []
    for i in range(3):
        _, seconds, _ = await ticking(store.save_state("single", i, "big", W))
        times.append(seconds)
    return statistics.median(times)


async def save100(kind: str, root: Path, repeat: int, over: bool = False) -> dict[str, Any]:
    store, size = await seeded(kind, root, 4 * MB)
    single = await one_save(store)
    batches, stalls = [], []
    for run in range(repeat):  # new values each run, so that every batch writes
        calls: list[Awaitable[Any]] = [store.save_state(f"k{i}", i + run, "big", W) for i in range(100)]
        if over:
            calls.insert(50, store.save_state("huge", "x" * (LIMIT - size + 1000), "big", W))
        results, seconds, stall = await ticking(asyncio.gather(*calls, return_exceptions=True))
        failed = [r for r in results if r is not None]
        expected = [StateTooLargeError] if over else []
        assert [type(r) for r in failed] == expected, f"unexpected outcomes: {failed[:3]}"
        state = await store.get_state("big", W)
        assert all(state[f"k{i}"] == i + run for i in range(100)) and "huge" not in state
        batches.append(seconds)
        stalls.append(stall)
    return {"size": size, "one_save": single, "batch": batches, "stall": stalls}


async def object100(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    store, size = await seeded(kind, root, 4 * MB)
    single = await one_save(store)
    calls = [store.save_state_object("big", {f"k{i}": i}, W) for i in range(100)]
    results, seconds, stall = await ticking(asyncio.gather(*calls))
    assert all(r[f"k{i}"] == i for i, r in enumerate(results))
    return {"size": size, "one_save": single, "batch": [seconds], "stall": [stall]}


async def update8(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    store, size = await seeded(kind, root, LIMIT - 200_000)
    await store.save_state("n", 0, "big", W)  # the cache is warm, as for a lone writer in steady state

    def bump(state: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        return state

    batches, stalls = [], []
    for _ in range(repeat):
        _, seconds, stall = await ticking(store.update_state("big", W, bump))
        batches.append(seconds)
        stalls.append(stall)
    return {"size": size, "batch": batches, "stall": stalls}


def make_credentials(nbytes: int) -> dict[str, Any]:
    """A dense credentials state of about ``nbytes`` of JSON: many small connection records, secrets by reference."""
    connections: list[dict[str, Any]] = []
    size, i = 20, 0
    while size < nbytes:
        record = {"name": f"c{i}", "host": f"db{i}.internal", "port": 5432, "user": "app", "password_ref": f"vault:{i}"}
        connections.append(record)
        size += len(orjson.dumps(record)) + 1
        i += 1
    return {"connections": connections}


async def copy3(kind: str, root: Path, repeat: int, overwrite: bool = False) -> dict[str, Any]:
    """``copy_states`` of three 4.5 MB credentials states to a store without a key (its policy scans them)."""
    src = Store(make_backend(kind, root / "src"), app_name="bench-src")
    dst = Store(make_backend(kind, root / "dst"), app_name="bench-dst")
    state = make_credentials(4_500_000)
    for i in range(3):
        await src.replace_state(f"c{i}", C, state)
        if overwrite:
            await dst.replace_state(f"c{i}", C, state)
    data = orjson.dumps(state)
    size = len(data)
    del state
    gc.collect()
    parses = []
    for _ in range(3):  # the floor: one parse holds the GIL, in whichever thread
        start = time.perf_counter()
        orjson.loads(data)
        parses.append(time.perf_counter() - start)
    batches, stalls = [], []
    for _ in range(repeat):
        report, seconds, stall = await ticking(
            copy_states(src, dst, types=C, dry_run=not overwrite, overwrite=overwrite)
        )
        expected = [("identical" if overwrite else "")] * 3
        outcome = [i.reason for i in report.skipped] if overwrite else [""] * len(report.copied)
        assert report.ok and outcome == expected, report
        batches.append(seconds)
        stalls.append(stall)
    return {"size": size, "batch": batches, "stall": stalls, "parse": statistics.median(parses)}


async def rss40(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    data = (root / "seed.json").read_bytes()
    backend = make_backend(kind, root / "store")
    store = Store(backend, app_name="bench")
    if kind == "memory":
        await backend.put(store.key("big", W).object_key, data)
    size = len(data)
    del data
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _, seconds, stall = await ticking(asyncio.gather(*(store.save_state(f"k{i}", i, "big", W) for i in range(40))))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"size": size, "batch": [seconds], "stall": [stall], "rss": peak - before}


async def s3first(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    """The first S3 call of a fresh process (``kind`` is the transport): the loop's longest stall during it."""
    from statestore.backends.s3 import S3Backend
    from statestore.testing import MOTO_REGION, MotoServer

    endpoint, bucket = os.environ["BENCH_S3_ENDPOINT"], os.environ["BENCH_S3_BUCKET"]
    creds = MotoServer.fake_credentials()
    backend = S3Backend(
        bucket,
        endpoint_url=endpoint,
        region=MOTO_REGION,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        client=kind,
    )
    store = Store(backend, app_name="bench")
    _, seconds, stall = await ticking(store.get_state("wf-1", W))
    await backend.aclose()
    return {"size": 0, "batch": [seconds], "stall": [stall]}


SCENARIOS: dict[str, Callable[[str, Path, int], Coroutine[Any, Any, dict[str, Any]]]] = {
    "save100": save100,
    "save100+over": lambda kind, root, repeat: save100(kind, root, repeat, over=True),
    "object100": object100,
    "update8": update8,
    "copy3": copy3,
    "copy3over": lambda kind, root, repeat: copy3(kind, root, repeat, overwrite=True),
    "rss40": rss40,
    "s3first": s3first,
}
S3_TRANSPORTS = ("aioboto3", "obstore")


async def seed(kind: str, root: Path, repeat: int) -> dict[str, Any]:
    """Write the 7.6 MB state for ``rss40`` (in a process of its own, so the measuring one starts cold)."""
    state = make_state(7_600_000)
    if kind == "local":
        await Store(LocalBackend(root / "store"), app_name="bench").replace_state("big", W, state)
    (root / "seed.json").write_bytes(orjson.dumps(state))
    return {}


def child(name: str, kind: str, root: Path, repeat: int) -> None:
    scenario = seed if name == "seed" else SCENARIOS[name]
    print(json.dumps(asyncio.run(scenario(kind, root, repeat))))


# -- the parent: run each scenario in its own process, print the table ----------------------------------


def run_child(name: str, kind: str, root: Path, repeat: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, kind, str(root), str(repeat)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} on {kind} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_scenario(name: str, kind: str, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-stalls-") as tmp:
        if name == "rss40":
            run_child("seed", kind, Path(tmp), repeat)
        return run_child(name, kind, Path(tmp), repeat)


def spread(values: list[float], scale: float = 1000, digits: int = 0) -> str:
    """The median, and the range if there is more than one value (milliseconds by default)."""
    text = f"{statistics.median(values) * scale:.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})"
    return text


def rows_for(name: str, r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, passed) rows of one scenario's result."""
    stall = statistics.median(r["stall"])
    stall_text = f"{spread(r['stall'])} ms"
    if name in ("save100", "save100+over", "object100"):
        ratios = [b / r["one_save"] for b in r["batch"]]
        ratio = statistics.median(ratios)
        ratio_text = f"{spread(ratios, 1, 1)}x, {spread(r['batch'])} / {r['one_save'] * 1000:.0f} ms"
        if name == "object100":
            return [("longest stall", stall_text, "-", None), ("batch / one save", ratio_text, "-", None)]
        return [
            ("longest stall", stall_text, "<= 100 ms", stall <= 0.100),
            ("batch / one save", ratio_text, "<= 3x", ratio <= 3),
        ]
    if name in ("copy3", "copy3over"):
        return [
            ("longest stall", stall_text, "<= 100 ms", stall <= 0.100),
            ("one parse", f"{r['parse'] * 1000:.0f} ms", "-", None),
            ("time", f"{spread(r['batch'])} ms", "-", None),
        ]
    if name == "s3first":
        return [
            ("longest stall", stall_text, "<= 50 ms", stall <= 0.050),
            ("first call", f"{spread(r['batch'])} ms", "-", None),
        ]
    if name == "update8":
        return [("longest stall", stall_text, "-", None), ("time", f"{spread(r['batch'])} ms", "-", None)]
    multiple = r["rss"] / r["size"]
    return [
        ("peak RSS - before", f"{r['rss'] / MB:.0f} MB = {multiple:.1f}x state", "<= 10x", multiple <= 10),
        ("longest stall", stall_text, "-", None),
    ]


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=("local", "memory", "both"), default="both")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--repeat", type=int, default=3, help="measured batches per scenario (median reported)")
    args = parser.parse_args()
    kinds = ("local", "memory") if args.backend == "both" else (args.backend,)
    print(f"statestore from {Path(statestore.__file__).parent}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"repeat {args.repeat}: medians, (min-max)")
    print(f"{'scenario':<13} {'backend':<7} {'state':>7} {'measure':<18} {'value':<38} {'target':<9} result")
    missed = 0
    names = args.only or SCENARIOS
    server = None
    if "s3first" in names:
        from statestore.testing import MotoServer

        server = MotoServer().start()
        os.environ["BENCH_S3_ENDPOINT"] = server.endpoint_url
        os.environ["BENCH_S3_BUCKET"] = server.create_bucket()
    for name in names:
        for kind in S3_TRANSPORTS if name == "s3first" else kinds:
            r = run_scenario(name, kind, args.repeat)
            for measure, value, target, passed in rows_for(name, r):
                verdict = "-" if passed is None else "PASS" if passed else "FAIL"
                missed += passed is False
                size = f"{r['size'] / MB:.1f}MB"
                print(f"{name:<13} {kind:<7} {size:>7} {measure:<18} {value:<38} {target:<9} {verdict}", flush=True)
    if server is not None:
        server.stop()
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
